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
