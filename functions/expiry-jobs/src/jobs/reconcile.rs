//! `reconcile`: repair local subscriptions that drifted from Stripe (a webhook that never
//! arrived, or was dropped after Stripe's retries ran out).
//!
//! Which subscriptions: the live ones whose period ends before `now +
//! RECONCILE_HORIZON_DAYS` (default 40), read from the sparse expiry index — a `Query` per
//! shard, never a `Scan`. That covers every monthly subscription on every run (a period is
//! at most 31 days), every lapsed one, and a yearly one during its last 40 days, when drift
//! matters most. What it does not cover: records that are no longer live locally
//! (canceled/expired) while Stripe still bills — those are not in the index; their webhooks
//! bring them back, and the admin API's read path can re-sync one user.
//!
//! Each is handed to [`shared::usecase::lifecycle::Lifecycle::reconcile`]; a live record
//! Stripe does not know is counted as an error (an operator's look, not a failed run).

use chrono::{DateTime, Utc};
use shared::{
    store::{ExpiryCursor, ExpiryRange, StoreError},
    usecase::lifecycle::Reconciled,
};

use super::Progress;
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
        let actor = JobName::Reconcile.actor();
        self.walk(range, start, budget, counts, |sub| {
            let actor = &actor;
            async move {
                self.with_retry(sub, JobName::Reconcile, |sub| async move {
                    Ok(match self.lifecycle.reconcile(&sub, now, actor).await? {
                        Reconciled::Repaired => Counts { reconciled: 1, ..Counts::default() },
                        Reconciled::UnknownAtStripe => Counts { errors: 1, ..Counts::default() },
                        Reconciled::NotBilled | Reconciled::InLine => Counts::default(),
                    })
                })
                .await
            }
        })
        .await
    }
}
