//! The pure domain model: no AWS, Stripe or HTTP types, and no clock reads —
//! every function that needs "now" takes it as an argument, so any day can be replayed.

pub mod access;
pub mod events;
pub mod history;
pub mod ids;
pub mod mail;
pub mod money;
pub mod notification;
pub mod profile;
pub mod request;
pub mod status;
pub mod subscription;
pub mod tier;
mod validation;

pub use access::AccessPolicy;
pub use events::{DomainEvent, DomainEventKind};
pub use history::{HistoryChange, HistoryEntry};
pub use ids::{StripeCustomerId, StripeInvoiceId, StripeSubscriptionId, UserId};
pub use mail::{
    CancellationConfirmedContext, EmailContext, ExpiryWarningContext, PaymentFailedContext, PaymentReceiptContext, PlanChangedContext,
    RenewalReminderContext, SubscriptionConfirmationContext, SubscriptionExpiredContext, TrialEndingContext,
};
pub use money::{Currency, Money};
pub use notification::{NotificationKind, OutboxItem, OutboxPayload, OutboxState};
pub use profile::{Delivered, DeliveryState, EmailAddress, Erasure, ProfileUpdate, Undeliverable, UndeliverableReason, UserProfile};
pub use request::{Billing, SubscriptionRequest, SubscriptionUpdate};
pub use status::SubscriptionStatus;
pub use subscription::{StripeSnapshot, Subscription, SubscriptionSource, Transition};
pub use tier::Tier;
pub use validation::{FieldError, ValidationErrors};
