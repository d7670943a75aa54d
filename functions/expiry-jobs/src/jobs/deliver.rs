//! `deliver-pending`: send what the outbox still holds.
//!
//! The sweep itself is the shared [`shared::delivery::OutboxDelivery`]: it claims each due
//! item with a conditional write (so concurrent sweepers and the functions' own immediate
//! delivery never send one twice), paces e-mails to `SES_SEND_RATE`, backs off transient
//! failures and dead-letters an item after `MAX_DELIVERY_ATTEMPTS`. This job calls it in
//! batches of about five seconds' worth of sends until nothing due is left, the budget is
//! spent, or a batch delivers nothing at all (the provider is down: the rest waits for the
//! next run instead of burning an attempt each).
//!
//! The rate is the account's SES `MaxSendRate`, read with `GetAccount` once per run (a
//! continuation is a new run and reads it again); when it cannot be read (moto has no
//! `GetAccount`) the configured `SES_SEND_RATE`. Every send then claims a slot of that rate
//! shared by all senders, so overlapping runs share one rate instead of doubling it (see
//! [`shared::delivery::pacing`]); throttling leaves the item pending with the backoff.

use shared::{clock::RunClock, store::StoreError};

use super::Progress;
use crate::{budget::Budget, summary::Counts, Jobs};

/// Seconds of sending per batch: small enough to check the deadline often.
const BATCH_SECONDS: u32 = 5;

/// How long the quota read may take.
const QUOTA_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

impl Jobs {
    /// This run's send rate: SES's quota if it can be read, else `SES_SEND_RATE`.
    async fn send_rate(&self) -> u32 {
        let quota = match &self.quota {
            Some(quota) => quota.max_send_rate(QUOTA_TIMEOUT).await,
            None => None,
        };
        let rate = quota.unwrap_or(self.settings.send_rate).max(1);
        tracing::info!(rate, from_quota = quota.is_some(), "send rate for this run");
        rate
    }

    pub(crate) async fn deliver_pending(&self, clock: &RunClock, budget: &Budget, counts: &mut Counts) -> Result<Progress, StoreError> {
        let rate = self.send_rate().await;
        let batch = u64::from(rate.saturating_mul(BATCH_SECONDS)).clamp(1, 1000);
        loop {
            let claimed = budget.take_up_to(batch);
            if claimed == 0 {
                return Ok(Progress::Stopped(None));
            }
            let limit = i32::try_from(claimed).unwrap_or(i32::MAX);
            let (report, scanned) = self.delivery.deliver_pending_at(clock, limit, Some(rate)).await?;
            counts.items_read += scanned;
            counts.add_delivery(report);
            let handled = report.sent + report.failed + report.dead_lettered + report.suppressed + report.retry_later + report.skipped;
            tracing::info!(?report, scanned, "outbox batch swept");
            // Fewer due items than asked for: the outbox is drained.
            if u64::from(handled) < claimed {
                budget.give_back(claimed - u64::from(handled));
                return Ok(Progress::Done);
            }
            if report.sent + report.failed + report.dead_lettered + report.suppressed == 0 {
                tracing::warn!(?report, "a whole batch failed transiently; leaving the rest for the next run");
                return Ok(Progress::Done);
            }
        }
    }
}
