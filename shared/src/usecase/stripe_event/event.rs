//! A Stripe event as the use case sees it: its id, its kind, and the typed ids of the
//! objects it is about. The webhook edge parses the envelope into this once; nothing
//! after it looks at the payload, because a payload may be older than Stripe's state.

use crate::domain::{StripeCustomerId, StripeInvoiceId, StripeSubscriptionId, UserId};

/// The event types this service acts on; any other is kept by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    SubscriptionCreated,
    SubscriptionUpdated,
    SubscriptionDeleted,
    SubscriptionTrialWillEnd,
    SubscriptionPaused,
    SubscriptionResumed,
    InvoicePaid,
    InvoicePaymentSucceeded,
    InvoicePaymentFailed,
    InvoicePaymentActionRequired,
    InvoiceUpcoming,
    CheckoutSessionCompleted,
    Other(String),
}

impl EventKind {
    pub const KNOWN: [EventKind; 12] = [
        Self::SubscriptionCreated,
        Self::SubscriptionUpdated,
        Self::SubscriptionDeleted,
        Self::SubscriptionTrialWillEnd,
        Self::SubscriptionPaused,
        Self::SubscriptionResumed,
        Self::InvoicePaid,
        Self::InvoicePaymentSucceeded,
        Self::InvoicePaymentFailed,
        Self::InvoicePaymentActionRequired,
        Self::InvoiceUpcoming,
        Self::CheckoutSessionCompleted,
    ];

    pub fn parse(raw: &str) -> Self {
        Self::KNOWN.into_iter().find(|k| k.as_str() == raw).unwrap_or_else(|| Self::Other(raw.to_owned()))
    }

    /// Stripe's name of the type.
    pub fn as_str(&self) -> &str {
        match self {
            Self::SubscriptionCreated => "customer.subscription.created",
            Self::SubscriptionUpdated => "customer.subscription.updated",
            Self::SubscriptionDeleted => "customer.subscription.deleted",
            Self::SubscriptionTrialWillEnd => "customer.subscription.trial_will_end",
            Self::SubscriptionPaused => "customer.subscription.paused",
            Self::SubscriptionResumed => "customer.subscription.resumed",
            Self::InvoicePaid => "invoice.paid",
            Self::InvoicePaymentSucceeded => "invoice.payment_succeeded",
            Self::InvoicePaymentFailed => "invoice.payment_failed",
            Self::InvoicePaymentActionRequired => "invoice.payment_action_required",
            Self::InvoiceUpcoming => "invoice.upcoming",
            Self::CheckoutSessionCompleted => "checkout.session.completed",
            Self::Other(raw) => raw,
        }
    }

    /// The metric dimension value: the type for the ones acted on, `other` for the rest,
    /// so the dimension stays small whatever Stripe sends.
    pub fn metric_label(&self) -> &str {
        match self {
            Self::Other(_) => "other",
            known => known.as_str(),
        }
    }
}

/// What an event is about. Ids that do not parse as Stripe ids make the event
/// [`Subject::Other`]: nothing this service created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Subscription { id: StripeSubscriptionId, customer: Option<StripeCustomerId> },
    Invoice { id: StripeInvoiceId, subscription: Option<StripeSubscriptionId>, customer: Option<StripeCustomerId> },
    CheckoutSession { subscription: Option<StripeSubscriptionId>, customer: Option<StripeCustomerId>, user_hint: Option<UserId> },
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeEvent {
    /// Stripe's `evt_…` id, the ledger key.
    pub id: String,
    pub kind: EventKind,
    pub livemode: bool,
    pub subject: Subject,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_unknown_ones_keep_their_name() {
        for kind in EventKind::KNOWN {
            assert_eq!(EventKind::parse(kind.as_str()), kind);
        }
        let other = EventKind::parse("payout.paid");
        assert_eq!((other.as_str(), other.metric_label()), ("payout.paid", "other"));
    }
}
