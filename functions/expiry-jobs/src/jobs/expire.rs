//! `expire-lapsed`: end live subscriptions whose period is over.
//!
//! Selected: live subscriptions that ended before `now - EXPIRY_GRACE_HOURS`, from the
//! expiry index. Each is handed to [`shared::usecase::lifecycle::Lifecycle::expire`] (Stripe
//! asked first, Stripe told first, one commit); this module only walks and counts. A
//! version conflict (a webhook or an admin won the race) re-reads and re-evaluates.

use chrono::{DateTime, Utc};
use shared::store::{ExpiryCursor, ExpiryRange, StoreError};

use super::Progress;
use crate::{budget::Budget, input::JobName, summary::Counts, Jobs};

impl Jobs {
    pub(crate) async fn expire_lapsed(
        &self,
        now: DateTime<Utc>,
        start: Option<ExpiryCursor>,
        budget: &Budget,
        counts: &mut Counts,
    ) -> Result<Progress, StoreError> {
        let range = ExpiryRange::EndedBefore(now - self.settings.expiry_grace);
        let actor = JobName::ExpireLapsed.actor();
        self.walk(range, start, budget, counts, |sub| {
            let actor = &actor;
            async move {
                self.with_retry(sub, JobName::ExpireLapsed, |sub| async move {
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
        })
        .await
    }
}
