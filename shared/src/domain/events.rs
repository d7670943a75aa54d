//! Domain events published on the EventBridge bus so other LogiScore services can react.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Subscription, SubscriptionStatus, Tier, UserId};

/// The bus `source` of every event this service publishes.
pub const EVENT_SOURCE: &str = "logiscore.subscriptions";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainEventKind {
    SubscriptionActivated,
    SubscriptionRenewed,
    PaymentFailed,
    SubscriptionCanceled,
    SubscriptionExpired,
    TierChanged,
}

impl DomainEventKind {
    /// The EventBridge `detail-type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SubscriptionActivated => "SubscriptionActivated",
            Self::SubscriptionRenewed => "SubscriptionRenewed",
            Self::PaymentFailed => "PaymentFailed",
            Self::SubscriptionCanceled => "SubscriptionCanceled",
            Self::SubscriptionExpired => "SubscriptionExpired",
            Self::TierChanged => "TierChanged",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainEvent {
    /// Deterministic per logical event, so consumers can de-duplicate too.
    pub id: String,
    pub kind: DomainEventKind,
    pub user_id: UserId,
    pub subscription_id: String,
    pub tier: Tier,
    pub status: SubscriptionStatus,
    pub end_date: Option<DateTime<Utc>>,
    pub occurred_at: DateTime<Utc>,
}

impl DomainEvent {
    /// `discriminator` makes the id unique per logical occurrence (e.g. the period end
    /// of a renewal, or the Stripe invoice of a failed payment).
    pub fn of(kind: DomainEventKind, sub: &Subscription, discriminator: &str, at: DateTime<Utc>) -> Self {
        Self {
            id: format!("{}:{}:{discriminator}", kind.as_str(), sub.id),
            kind,
            user_id: sub.user_id.clone(),
            subscription_id: sub.id.clone(),
            tier: sub.tier,
            status: sub.status,
            end_date: sub.end_date,
            occurred_at: at,
        }
    }
}

impl super::Transition {
    /// The domain event this transition of `after` stands for, if any. The id is derived
    /// from the resulting state only (subscription, period, version), so whoever finds the
    /// transition — the webhook or the reconcile job — publishes the same logical event.
    pub fn domain_event(&self, after: &Subscription, now: DateTime<Utc>) -> Option<DomainEvent> {
        use super::Transition as T;
        let stripe_or_local = after.stripe_subscription_id.as_ref().map_or(after.id.as_str(), |s| s.as_str());
        let period = after.end_date.map(|e| e.timestamp().to_string()).unwrap_or_default();
        let (kind, discriminator) = match self {
            T::Activated => (DomainEventKind::SubscriptionActivated, format!("{stripe_or_local}:{}", after.status)),
            T::Renewed { period_end } => (DomainEventKind::SubscriptionRenewed, period_end.timestamp().to_string()),
            T::PaymentFailed => (DomainEventKind::PaymentFailed, format!("period-{period}")),
            T::Canceled => (DomainEventKind::SubscriptionCanceled, stripe_or_local.to_owned()),
            T::TierChanged { from, to } => (DomainEventKind::TierChanged, format!("{from}-{to}:v{}", after.version)),
            T::Paused | T::Resumed | T::CancelScheduled | T::CancelWithdrawn => return None,
        };
        Some(DomainEvent::of(kind, after, &discriminator, now))
    }
}
