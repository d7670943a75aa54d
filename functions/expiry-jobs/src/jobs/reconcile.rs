//! `reconcile`: repair local subscriptions that drifted from Stripe (a webhook that never
//! arrived, or was dropped after Stripe's retries ran out).
//!
//! Which subscriptions: the live ones with a Stripe id whose period ends before
//! `now + RECONCILE_HORIZON_DAYS` (default 40), read from the sparse expiry index — a
//! `Query` per shard, never a `Scan`. That covers every monthly subscription on every run
//! (a period is at most 31 days), every lapsed one, and a yearly one during its last 40
//! days, when drift matters most. What it does not cover: records that are no longer
//! live locally (canceled/expired) while Stripe still bills — those are not in the index;
//! their webhooks bring them back, and the admin API's read path can re-sync one user.
//!
//! Each is compared with Stripe's current snapshot; a difference is committed with
//! `apply_stripe` (history `Synced`, actor `job:reconcile`, and the domain events of what
//! changed), guarded by the version read. A version conflict re-reads and re-compares.

use chrono::{DateTime, Utc};
use shared::{
    billing::BillingError,
    domain::Subscription,
    store::{ExpiryCursor, ExpiryRange, StoreError},
};
use tracing::instrument;

use super::{sync_change, ItemError, Progress};
use crate::{budget::Budget, input::JobName, summary::Counts, Jobs};

impl Jobs {
    pub(crate) async fn reconcile(
        &self,
        now: DateTime<Utc>,
        start: Option<ExpiryCursor>,
        budget: &Budget,
        counts: &mut Counts,
    ) -> Result<Progress, StoreError> {
        let range = ExpiryRange::EndedBefore(now + self.settings.reconcile_horizon);
        self.walk(range, start, budget, counts, |sub| async move {
            self.with_retry(sub, "reconcile", |sub| async move { self.reconcile_one(sub, now).await }).await
        })
        .await
    }

    #[instrument(skip_all, fields(user_id = %sub.user_id, subscription_id = %sub.id))]
    async fn reconcile_one(&self, sub: Subscription, now: DateTime<Utc>) -> Result<Counts, ItemError> {
        let mut counts = Counts::default();
        let Some(stripe_id) = sub.stripe_subscription_id.as_ref().filter(|_| sub.status.is_live()) else { return Ok(counts) };
        let snapshot = match self.billing.subscription(stripe_id).await {
            Ok(snapshot) => snapshot,
            Err(BillingError::NotFound(what)) => {
                // Nothing to apply: the record is left as it is and expire-lapsed ends it
                // at its period end. Worth an operator's look, not a failed run.
                tracing::warn!(stripe_subscription_id = %stripe_id, what, "stripe does not know this live subscription");
                counts.errors += 1;
                return Ok(counts);
            }
            Err(error) => return Err(error.into()),
        };
        let Some((next, change)) = sync_change(&sub, &snapshot, now, &JobName::Reconcile.actor()) else { return Ok(counts) };
        self.store.commit(change).await?;
        counts.reconciled += 1;
        tracing::info!(
            from_status = %sub.status, to_status = %next.status,
            from_tier = %sub.tier, to_tier = %next.tier,
            from_end = ?sub.end_date, to_end = ?next.end_date,
            "drift from stripe repaired"
        );
        Ok(counts)
    }
}
