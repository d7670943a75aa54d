//! The three jobs that walk the expiry index and apply the library's lifecycle rules
//! ([`shared::usecase::lifecycle`]) to each subscription they select; this module only
//! selects and counts.
//!
//! | job | selects (from the sparse expiry index: a `Query` per shard, never a `Scan`) | applies |
//! | --- | --- | --- |
//! | `expiry-warnings` | live subscriptions ending within the widest warning window (`now ..= now + WARNING_DAYS`) | [`Lifecycle::warn`]: the narrowest window's mail, once per period and window |
//! | `expire-lapsed` | live subscriptions that ended before `now - EXPIRY_GRACE_HOURS` | [`Lifecycle::expire`]: Stripe asked first, Stripe told first, one commit |
//! | `reconcile` | live subscriptions whose period ends before `now + RECONCILE_HORIZON_DAYS` (default 40) | [`Lifecycle::reconcile`]: Stripe's current state through the one sync path |
//!
//! `reconcile`'s horizon covers every monthly subscription on every run (a period is at
//! most 31 days), every lapsed one, and a yearly one during its last 40 days, when drift
//! matters most. It does not cover records that are no longer live locally
//! (canceled/expired) while Stripe still bills — those are not in the index; their
//! webhooks bring them back, and the admin API's read path can re-sync one user. A live
//! record Stripe does not know is counted as an error (an operator's look, not a failed run).
//!
//! [`Lifecycle::warn`]: shared::usecase::lifecycle::Lifecycle::warn
//! [`Lifecycle::expire`]: shared::usecase::lifecycle::Lifecycle::expire
//! [`Lifecycle::reconcile`]: shared::usecase::lifecycle::Lifecycle::reconcile

use chrono::{DateTime, Duration, Utc};
use shared::{
    store::{ExpiryCursor, ExpiryRange, StoreError},
    usecase::lifecycle::{Reconciled, Warned},
};

use super::Progress;
use crate::{budget::Budget, input::JobName, summary::Counts, Jobs};

impl Jobs {
    /// Runs one of the index-walking jobs as of `now` from `start` within `budget`.
    pub(crate) async fn lifecycle_step(
        &self,
        job: JobName,
        now: DateTime<Utc>,
        start: Option<ExpiryCursor>,
        budget: &Budget,
        counts: &mut Counts,
    ) -> Result<Progress, StoreError> {
        let actor = job.actor();
        let actor = actor.as_str();
        match job {
            JobName::ExpiryWarnings => {
                let widest = self.lifecycle.rules().windows.iter().copied().max().unwrap_or(self.settings.warning_days);
                let range = ExpiryRange::EndingBetween(now, now + Duration::days(i64::from(widest)));
                self.each(job, range, start, budget, counts, |sub| async move {
                    Ok(match self.lifecycle.warn(&sub, now).await? {
                        Warned::Queued { renewal: true } => Counts { reminded: 1, ..Counts::default() },
                        Warned::Queued { renewal: false } => Counts { warned: 1, ..Counts::default() },
                        Warned::AlreadyQueued => Counts { already_warned: 1, ..Counts::default() },
                        Warned::NotDue => Counts::default(),
                    })
                })
                .await
            }
            JobName::ExpireLapsed => {
                let range = ExpiryRange::EndedBefore(now - self.settings.expiry_grace);
                self.each(job, range, start, budget, counts, |sub| async move {
                    let done = self.lifecycle.expire(&sub, now, actor).await?;
                    Ok(Counts {
                        synced: u64::from(done.synced),
                        deferred: u64::from(done.deferred),
                        canceled_at_stripe: u64::from(done.canceled_at_stripe),
                        expired: u64::from(done.expired),
                        ..Counts::default()
                    })
                })
                .await
            }
            JobName::Reconcile => {
                let range = ExpiryRange::EndedBefore(now + self.settings.reconcile_horizon);
                self.each(job, range, start, budget, counts, |sub| async move {
                    Ok(match self.lifecycle.reconcile(&sub, now, actor).await? {
                        Reconciled::Repaired => Counts { reconciled: 1, ..Counts::default() },
                        Reconciled::UnknownAtStripe => Counts { errors: 1, ..Counts::default() },
                        Reconciled::NotBilled | Reconciled::InLine => Counts::default(),
                    })
                })
                .await
            }
            // Not index walks: delivery has its own step, `daily` is expanded by the caller.
            JobName::DeliverPending | JobName::Daily => Ok(Progress::Done),
        }
    }
}
