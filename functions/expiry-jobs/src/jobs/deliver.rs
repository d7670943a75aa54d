//! `deliver-pending`: send what the outbox still holds.
//!
//! The sweep itself is the shared [`shared::delivery::OutboxDelivery`]: it claims each due
//! item with a conditional write (so concurrent sweepers and the functions' own immediate
//! delivery never send one twice), paces e-mails to `SES_SEND_RATE`, backs off transient
//! failures and dead-letters an item after `MAX_DELIVERY_ATTEMPTS`. This job calls it in
//! batches of about five seconds' worth of sends until nothing due is left, the budget is
//! spent, or a batch delivers nothing at all (the provider is down: the rest waits for the
//! next run instead of burning an attempt each).

use shared::{clock::RunClock, store::StoreError};

use super::Progress;
use crate::{budget::Budget, summary::Counts, Jobs};

/// Seconds of sending per batch: small enough to check the deadline often.
const BATCH_SECONDS: u32 = 5;

impl Jobs {
    pub(crate) async fn deliver_pending(&self, clock: &RunClock, budget: &Budget, counts: &mut Counts) -> Result<Progress, StoreError> {
        let batch = u64::from(self.settings.send_rate.saturating_mul(BATCH_SECONDS)).clamp(1, 1000);
        loop {
            let claimed = budget.take_up_to(batch);
            if claimed == 0 {
                return Ok(Progress::Stopped(None));
            }
            let limit = i32::try_from(claimed).unwrap_or(i32::MAX);
            let (report, scanned) = self.delivery.deliver_pending(clock, limit).await?;
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
