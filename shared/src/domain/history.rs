//! One entry per change of a user's subscription, listed newest first.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Subscription, SubscriptionStatus, Tier, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryChange {
    Created,
    TierChanged,
    StatusChanged,
    Renewed,
    CancelScheduled,
    Reactivated,
    Canceled,
    Expired,
    Synced,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub user_id: UserId,
    pub subscription_id: String,
    pub at: DateTime<Utc>,
    pub change: HistoryChange,
    pub from_tier: Option<Tier>,
    pub to_tier: Tier,
    pub from_status: Option<SubscriptionStatus>,
    pub to_status: SubscriptionStatus,
    pub end_date: Option<DateTime<Utc>>,
    /// Who made the change: `admin:<subject>`, `stripe:<event id>`, `job:<name>`.
    pub actor: String,
    pub comment: Option<String>,
    /// The subscription version this entry produced; with `at` it orders entries
    /// written in the same second.
    pub version: u64,
}

impl HistoryEntry {
    pub fn record(
        before: Option<&Subscription>,
        after: &Subscription,
        change: HistoryChange,
        actor: impl Into<String>,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            user_id: after.user_id.clone(),
            subscription_id: after.id.clone(),
            at,
            change,
            from_tier: before.map(|b| b.tier),
            to_tier: after.tier,
            from_status: before.map(|b| b.status),
            to_status: after.status,
            end_date: after.end_date,
            actor: actor.into(),
            comment: after.comment.clone(),
            version: after.version,
        }
    }
}
