//! The lifecycle rules the scheduled jobs apply to one subscription at a time: warn before
//! an end, expire after it (catching up with Stripe is [`crate::usecase::catch_up`]'s). The
//! jobs crate only walks the expiry
//! index within its budget and counts what these return; the rules live here, over the
//! ports, beside the other use cases.
//!
//! Invariants:
//! - Every write is one version-guarded commit ([`crate::store::Store::commit`]); a lost
//!   race is [`LifecycleError::is_conflict`], and the caller re-reads and calls again.
//! - Stripe's word wins over the calendar: a record with a Stripe subscription is compared
//!   with Stripe's current state (through [`crate::usecase::sync`], the one sync path)
//!   before it is expired, and Stripe is told first when we end what it still bills.
//! - Every notification has a deterministic outbox id, so a rerun or a concurrent run
//!   queues nothing twice.

mod expire;
mod warn;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::{
    billing::{BillingError, BillingGateway},
    domain::{HistoryChange, StripeSnapshot, Subscription},
    store::{Change, Store, StoreError},
    usecase::sync::{self, Cause, Sync},
};

pub use expire::Expiry;
pub use warn::{warning_for, Warned, Warning};

/// The knobs of the rules (the jobs read them from their environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// A subscription is expired only this long after its end, so a renewal webhook that
    /// is merely late does not downgrade a paying customer.
    pub expiry_grace: Duration,
    /// How long a `past_due` subscription is left to Stripe's payment retries.
    pub past_due_grace: Duration,
    /// Warning windows in days; a subscription gets the mail of the narrowest one it is in.
    pub windows: Vec<u32>,
}

/// Why one subscription could not be handled now (the job counts it and retries later).
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Billing(#[from] BillingError),
}

impl LifecycleError {
    /// A concurrent write (a webhook, an admin) won the race: re-read and try again.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Store(StoreError::Conflict(_)))
    }
}

/// The lifecycle use cases, over the store and Stripe.
pub struct Lifecycle {
    store: Arc<dyn Store>,
    billing: Arc<dyn BillingGateway>,
    rules: Rules,
}

impl Lifecycle {
    pub fn new(store: Arc<dyn Store>, billing: Arc<dyn BillingGateway>, rules: Rules) -> Self {
        Self { store, billing, rules }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }
}

/// The change that brings `sub` in line with Stripe's `snap`, and the record after it;
/// `None` when the local record already says what Stripe says (or `snap` is older).
///
/// Planned by the one Stripe-sync path (record guarded by the version read, a `Synced`
/// history entry by `actor`, and the notifications of what changed), so a renewal or
/// cancellation whose webhook was missed is told exactly as the webhook would have told it.
fn sync_change(sub: &Subscription, snap: &StripeSnapshot, now: DateTime<Utc>, actor: &str) -> Option<(Subscription, Change)> {
    match sync::plan(&sub.user_id, Some(sub), snap, now, &Cause::by(actor, HistoryChange::Synced)) {
        Sync::Apply(applied) => Some((applied.next.clone(), applied.change())),
        Sync::InLine | Sync::NotCurrent => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{StripeCustomerId, StripeSubscriptionId, SubscriptionStatus, Tier};
    use chrono::TimeZone;

    /// The domain's paid fixture, ending at `end`.
    pub(crate) fn sub(end: DateTime<Utc>) -> Subscription {
        let base = crate::domain::subscription::tests::paid_sub();
        Subscription { start_date: end - Duration::days(30), end_date: Some(end), next_billing_date: Some(end), ..base }
    }

    #[test]
    fn a_late_renewal_becomes_a_synced_change_with_its_event() {
        let end = Utc.with_ymd_and_hms(2026, 3, 12, 0, 0, 0).single().unwrap_or_default();
        let s = sub(end);
        let snap = StripeSnapshot {
            subscription_id: StripeSubscriptionId::parse("sub_1").unwrap(),
            customer_id: StripeCustomerId::parse("cus_1").unwrap(),
            status: SubscriptionStatus::Active,
            tier: Some(Tier::Premium),
            current_period_start: end,
            current_period_end: end + Duration::days(31),
            cancel_at_period_end: false,
            cancel_at: None,
            canceled_at: None,
            trial_end: None,
            latest_invoice_paid_at: Some(end),
            owner: None,
            source: None,
        };
        let now = end + Duration::days(2);
        let (next, change) = sync_change(&s, &snap, now, "job:expire-lapsed").unwrap();
        assert_eq!(next.end_date, Some(end + Duration::days(31)));
        assert_eq!(change.subscription.as_ref().unwrap().expected_version, Some(s.version));
        assert_eq!(change.history[0].change, HistoryChange::Synced);
        assert_eq!(change.history[0].actor, "job:expire-lapsed");
        assert_eq!(change.outbox.len(), 1);
        assert!(change.outbox[0].id.starts_with("event:SubscriptionRenewed:s1:"), "{}", change.outbox[0].id);
        // Already in line: nothing to do.
        assert!(sync_change(&next, &snap, now, "job:reconcile").is_none());
    }
}
