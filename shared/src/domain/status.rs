//! Subscription statuses. The first five are LogiScore's own (the original guide's);
//! the rest are Stripe's, kept as they are so nothing Stripe says is lost, each
//! with a documented local meaning.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// Paid and current (Stripe `active`), or a free-tier record.
    Active,
    /// In a trial or a granted (comp) period (Stripe `trialing`).
    Trial,
    /// The latest renewal payment failed and Stripe is retrying. Access continues
    /// for the configured grace period so a card hiccup does not lock a customer out.
    PastDue,
    /// Ended by cancellation (Stripe `canceled`). Terminal.
    Canceled,
    /// Ended locally because its period passed without renewal; downgraded to free. Terminal.
    Expired,
    /// The first payment has not completed yet (Stripe `incomplete`): the customer must
    /// act (authenticate or change card). No access until it is paid.
    Incomplete,
    /// The first payment never completed within Stripe's window (Stripe `incomplete_expired`). Terminal.
    IncompleteExpired,
    /// Stripe gave up retrying but keeps the subscription open (Stripe `unpaid`). No access
    /// until an invoice is paid.
    Unpaid,
    /// Collection is paused, e.g. a trial ended without a payment method under the
    /// `pause` behaviour (Stripe `paused`). No access until resumed.
    Paused,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Trial => "trial",
            Self::PastDue => "past_due",
            Self::Canceled => "canceled",
            Self::Expired => "expired",
            Self::Incomplete => "incomplete",
            Self::IncompleteExpired => "incomplete_expired",
            Self::Unpaid => "unpaid",
            Self::Paused => "paused",
        }
    }

    /// Maps a Stripe subscription `status` string to the local status; `None` for a
    /// value this code does not know (the caller reports it rather than guessing).
    pub fn from_stripe(status: &str) -> Option<Self> {
        Some(match status {
            "active" => Self::Active,
            "trialing" => Self::Trial,
            "past_due" => Self::PastDue,
            "canceled" => Self::Canceled,
            "incomplete" => Self::Incomplete,
            "incomplete_expired" => Self::IncompleteExpired,
            "unpaid" => Self::Unpaid,
            "paused" => Self::Paused,
            _ => return None,
        })
    }

    /// Statuses whose subscription can still run out on its own and must be watched
    /// by the expiry jobs (they are the ones kept in the sparse expiry index).
    pub fn is_live(self) -> bool {
        matches!(self, Self::Active | Self::Trial | Self::PastDue)
    }

    /// Statuses from which nothing happens any more without a new subscription.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Canceled | Self::Expired | Self::IncompleteExpired)
    }
}

impl fmt::Display for SubscriptionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stripe_status_has_a_local_meaning() {
        for s in ["active", "trialing", "past_due", "canceled", "incomplete", "incomplete_expired", "unpaid", "paused"] {
            assert!(SubscriptionStatus::from_stripe(s).is_some(), "{s}");
        }
        assert_eq!(SubscriptionStatus::from_stripe("trialing"), Some(SubscriptionStatus::Trial));
        assert_eq!(SubscriptionStatus::from_stripe("bogus"), None);
    }

    #[test]
    fn serde_uses_the_local_names() {
        assert_eq!(serde_json::to_string(&SubscriptionStatus::PastDue).unwrap(), "\"past_due\"");
        assert_eq!(serde_json::to_string(&SubscriptionStatus::Trial).unwrap(), "\"trial\"");
    }
}
