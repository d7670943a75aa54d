//! `expiry-warnings`: tell users their subscription ends (or renews) soon.
//!
//! One index query selects the subscriptions ending within the widest warning window
//! (`now ..= now + WARNING_DAYS`); each is handed to
//! [`shared::usecase::lifecycle::Lifecycle::warn`], which picks the narrowest window, queues
//! at most one mail per period and window, and changes no subscription.

use chrono::{DateTime, Duration, Utc};
use shared::{
    store::{ExpiryCursor, ExpiryRange, StoreError},
    usecase::lifecycle::Warned,
};

use super::Progress;
use crate::{budget::Budget, input::JobName, summary::Counts, Jobs};

impl Jobs {
    pub(crate) async fn expiry_warnings(
        &self,
        now: DateTime<Utc>,
        start: Option<ExpiryCursor>,
        budget: &Budget,
        counts: &mut Counts,
    ) -> Result<Progress, StoreError> {
        let widest = self.lifecycle.rules().windows.iter().copied().max().unwrap_or(self.settings.warning_days);
        let range = ExpiryRange::EndingBetween(now, now + Duration::days(i64::from(widest)));
        self.walk(range, start, budget, counts, |sub| async move {
            self.with_retry(sub, JobName::ExpiryWarnings, |sub| async move {
                Ok(match self.lifecycle.warn(&sub, now).await? {
                    Warned::Queued { renewal: true } => Counts { reminded: 1, ..Counts::default() },
                    Warned::Queued { renewal: false } => Counts { warned: 1, ..Counts::default() },
                    Warned::AlreadyQueued => Counts { already_warned: 1, ..Counts::default() },
                    Warned::NotDue => Counts::default(),
                })
            })
            .await
        })
        .await
    }
}
