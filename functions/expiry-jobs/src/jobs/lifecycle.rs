//! The two jobs that walk the expiry index and apply the library's lifecycle rules
//! ([`shared::usecase::lifecycle`]) to each subscription they select; this module only
//! selects and counts.
//!
//! | job | selects (from the sparse expiry index: a `Query` per shard, never a `Scan`) | applies |
//! | --- | --- | --- |
//! | `expiry-warnings` | live subscriptions ending within the widest warning window (`now ..= now + WARNING_DAYS`) | [`Lifecycle::warn`]: the narrowest window's mail, once per period and window |
//! | `expire-lapsed` | live subscriptions that ended before `now - EXPIRY_GRACE_HOURS` | [`Lifecycle::expire`]: Stripe asked first, Stripe told first, one commit |
//!
//! Drift from Stripe is not looked for here, one subscription at a time (a cost that grows
//! with the customers): `reconcile` replays missed events and `sweep-stripe` lists every
//! subscription, see [`super::catch_up`].
//!
//! [`Lifecycle::warn`]: shared::usecase::lifecycle::Lifecycle::warn
//! [`Lifecycle::expire`]: shared::usecase::lifecycle::Lifecycle::expire

use chrono::{DateTime, Duration, Utc};
use shared::{
    store::{ExpiryCursor, ExpiryRange, StoreError},
    usecase::lifecycle::Warned,
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
            // Not index walks: the others have steps of their own, `daily` is expanded by the caller.
            JobName::DeliverPending | JobName::Reconcile | JobName::SweepStripe | JobName::Daily => Ok(Progress::Done),
        }
    }
}
