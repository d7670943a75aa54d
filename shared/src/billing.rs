//! The billing port: what the application needs from Stripe, in domain terms.
//! `crate::stripe::StripeBilling` implements it with async-stripe; handlers and
//! jobs hold an `Arc<dyn BillingGateway>`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::domain::{Money, StripeCustomerId, StripeSnapshot, StripeSubscriptionId, Tier, UserId};

/// A caller-chosen idempotency key for one logical operation. Each Stripe call the
/// operation makes derives its own key from it (`<key>:<step>`), so a retried request
/// replays exactly the same Stripe calls and creates nothing twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Keys are at most 255 characters at Stripe; longer inputs are hashed.
    pub fn new(raw: impl Into<String>) -> Self {
        let raw = raw.into();
        if raw.len() <= 200 {
            Self(raw)
        } else {
            use sha2::{Digest, Sha256};
            Self(hex::encode(Sha256::digest(raw.as_bytes())))
        }
    }

    pub fn step(&self, step: &str) -> String {
        format!("{}:{step}", self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who the Stripe customer is for.
#[derive(Debug, Clone)]
pub struct CustomerDetails {
    pub user_id: UserId,
    pub email: String,
    pub name: Option<String>,
}

/// A customer just created at Stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCustomer {
    pub id: StripeCustomerId,
    /// The `pm_…` id the payment method given at creation got on the customer (a test
    /// token such as `pm_card_visa` attaches as a new id).
    pub payment_method: Option<String>,
}

/// A subscription to create at Stripe.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub customer: StripeCustomerId,
    pub user_id: UserId,
    pub tier: Tier,
    pub kind: NewSubscriptionKind,
    /// The operation creating it (`metadata.operation_id`).
    pub operation_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewSubscriptionKind {
    /// Charged from `payment_method` (attached to the customer; the subscription's
    /// default) at creation, `payment_behavior=allow_incomplete`: active when the first
    /// payment succeeds, `incomplete` when it is declined or needs authentication.
    /// `cancel_at` ends it after a fixed term when it must not renew.
    Paid { payment_method: String, cancel_at: Option<DateTime<Utc>> },
    /// A trial until `trial_end` with no card; at the end Stripe cancels it
    /// (`trial_settings.end_behavior.missing_payment_method=cancel`), never charges.
    Granted { trial_end: DateTime<Utc> },
}

/// What the customer must do when the first payment did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentAction {
    pub invoice_id: String,
    /// Stripe's hosted page where the customer can pay or authenticate.
    pub hosted_invoice_url: Option<String>,
    /// e.g. `requires_action`, `requires_payment_method`.
    pub status: String,
    pub message: Option<String>,
}

/// A created subscription and, when it is `incomplete`, what is needed to complete it.
#[derive(Debug, Clone)]
pub struct CreatedSubscription {
    pub snapshot: StripeSnapshot,
    pub payment_action: Option<PaymentAction>,
}

/// How a tier change is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proration {
    /// Credit and charge for the rest of the period on the next invoice (Stripe `create_prorations`).
    CreateProrations,
    /// Invoice the difference now (Stripe `always_invoice`).
    InvoiceNow,
    /// No proration (Stripe `none`).
    None,
}

/// Where an invoice is in its life (Stripe's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceStatus {
    Draft,
    Open,
    Paid,
    Uncollectible,
    Void,
}

impl InvoiceStatus {
    /// Stripe's name; an invoice without a status is a draft.
    pub fn parse(raw: Option<&str>) -> Option<Self> {
        Some(match raw.unwrap_or("draft") {
            "draft" => Self::Draft,
            "open" => Self::Open,
            "paid" => Self::Paid,
            "uncollectible" => Self::Uncollectible,
            "void" => Self::Void,
            _ => return None,
        })
    }
}

/// An invoice and, when it belongs to one, its subscription as Stripe has it now,
/// read in one request (the subscription expanded into the invoice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceRead {
    pub invoice: InvoiceSnapshot,
    /// `None` for an invoice of no subscription (a one-off invoice).
    pub subscription: Option<StripeSnapshot>,
}

/// An invoice, in domain terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceSnapshot {
    pub id: String,
    pub customer_id: StripeCustomerId,
    pub subscription_id: Option<StripeSubscriptionId>,
    pub status: InvoiceStatus,
    pub amount_due: Money,
    pub amount_paid: Money,
    pub number: Option<String>,
    pub hosted_invoice_url: Option<String>,
    pub billing_reason: Option<String>,
    pub attempt_count: u32,
    pub next_payment_attempt: Option<DateTime<Utc>>,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BillingError {
    /// The card was declined (HTTP 402 at Stripe).
    #[error("card declined: {message}")]
    CardDeclined { code: Option<String>, decline_code: Option<String>, message: String },
    /// Stripe refused the request as invalid (a bug or a bad id), with the parameter it names.
    #[error("stripe rejected the request: {message}")]
    InvalidRequest { param: Option<String>, message: String },
    #[error("stripe has no such object: {0}")]
    NotFound(String),
    /// Stripe did not answer, or answered 429/5xx, after the bounded retries.
    #[error("stripe unavailable: {0}")]
    Unavailable(String),
    /// The answer could not be understood (unknown price, unparsable object).
    #[error("unexpected stripe response: {0}")]
    Unexpected(String),
}

/// Which events to list: of these types, created at or after `created_gte` (unix
/// seconds), older than the event `starting_after` (a page cursor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    pub types: Vec<String>,
    pub created_gte: i64,
    pub starting_after: Option<String>,
}

/// One event as the Events API lists it: its id and time, and its body for decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedEvent {
    pub id: String,
    pub created: i64,
    pub body: serde_json::Value,
}

/// One page of a list, newest first; `has_more` when older items follow.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

/// One subscription of a [`BillingGateway::all_subscriptions`] page: its snapshot, or why
/// none could be made (a subscription of prices this service does not sell).
#[derive(Debug, Clone, PartialEq)]
pub struct ListedSubscription {
    pub id: String,
    pub snapshot: Result<StripeSnapshot, String>,
}

#[async_trait]
pub trait BillingGateway: Send + Sync {
    /// Creates the user's Stripe customer (`metadata.user_id`), with `payment_method`
    /// attached and made its default when given: one request. A retry with the same key
    /// within Stripe's 24 h gets the same customer back; the caller records the id, so
    /// later operations use it instead of creating again. A declined card creates nothing.
    async fn create_customer(
        &self,
        customer: &CustomerDetails,
        payment_method: Option<&str>,
        key: &IdempotencyKey,
    ) -> Result<NewCustomer, BillingError>;
    async fn update_customer(&self, id: &StripeCustomerId, customer: &CustomerDetails, key: &IdempotencyKey) -> Result<(), BillingError>;
    async fn delete_customer(&self, id: &StripeCustomerId, key: &IdempotencyKey) -> Result<(), BillingError>;
    /// Attaches a payment method (or test token) to an existing customer; returns the
    /// attached `pm_…` id. A declined card is `CardDeclined`. The customer's own default is
    /// left alone: a subscription names its payment method itself.
    async fn attach_payment_method(
        &self,
        customer: &StripeCustomerId,
        payment_method: &str,
        key: &IdempotencyKey,
    ) -> Result<String, BillingError>;
    async fn create_subscription(&self, new: &NewSubscription, key: &IdempotencyKey) -> Result<CreatedSubscription, BillingError>;
    /// Stripe's current state of a subscription (the source of truth for webhooks and reconcile).
    async fn subscription(&self, id: &StripeSubscriptionId) -> Result<StripeSnapshot, BillingError>;
    async fn set_cancel_at_period_end(
        &self,
        id: &StripeSubscriptionId,
        cancel: bool,
        key: &IdempotencyKey,
    ) -> Result<StripeSnapshot, BillingError>;
    /// Ends the subscription at once and voids its invoices that are still open (an
    /// incomplete first invoice, a past-due renewal), so nothing of it can be paid later.
    /// Repeating it (same key) is safe.
    async fn cancel_now(&self, id: &StripeSubscriptionId, key: &IdempotencyKey) -> Result<StripeSnapshot, BillingError>;
    /// Swaps the subscription's price to `tier`'s.
    async fn change_tier(
        &self,
        id: &StripeSubscriptionId,
        tier: Tier,
        proration: Proration,
        key: &IdempotencyKey,
    ) -> Result<StripeSnapshot, BillingError>;
    /// The invoice with its subscription's current state: one Stripe request, where an
    /// invoice event needs both.
    async fn invoice(&self, id: &str) -> Result<InvoiceRead, BillingError>;
    /// One page (up to 100) of Stripe's event log, newest first. Stripe keeps 30 days.
    async fn events(&self, query: &EventQuery) -> Result<Page<ListedEvent>, BillingError>;
    /// One page (up to 100) of every subscription in any status, newest first, older than
    /// the subscription `starting_after`.
    async fn all_subscriptions(&self, starting_after: Option<&str>) -> Result<Page<ListedSubscription>, BillingError>;
    /// The subscription of `customer` created by operation `operation_id`, in any status;
    /// `None` if the operation never got that far. A list, not a search: strongly consistent.
    /// A paid subscription whose first invoice the operation never got to pay is paid now
    /// (as `create_subscription` would have), so it does not sit `incomplete` until it expires.
    async fn subscription_of_operation(
        &self,
        customer: &StripeCustomerId,
        operation_id: &str,
    ) -> Result<Option<StripeSnapshot>, BillingError>;
}
