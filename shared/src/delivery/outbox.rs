//! [`OutboxDelivery`]: sends outbox items and records the outcome on each item.

use std::{sync::Arc, time::Duration as StdDuration};

use async_trait::async_trait;
use chrono::Duration;
use futures::{stream, StreamExt};
use tokio::sync::Mutex;
use tracing::instrument;

use super::{
    pacing::{Pacer, SendSlots, SystemTicker},
    Deliver, DeliveryReport,
};
use crate::{
    clock::{Clock, RunClock},
    domain::{OutboxItem, OutboxPayload, OutboxState},
    email::{EmailRenderer, Mailer, SendError},
    events::{EventPublisher, PublishError},
    metrics::Metrics,
    store::{Store, StoreError},
};

#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    /// Attempts before a transiently failing item is dead-lettered.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles per attempt, capped at `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// How long a claimed item is hidden from other sweepers while it is being sent.
    pub lease: Duration,
    /// Items delivered at once.
    pub concurrency: usize,
    /// SES sending rate limit (messages per second); `None` for no pacing. Shared by every
    /// sender through the table's per-second slots (see [`super::pacing`]).
    pub sends_per_second: Option<u32>,
    /// How long one e-mail may wait for a shared send slot before it is left for later.
    pub slot_wait: StdDuration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_backoff: Duration::minutes(1),
            max_backoff: Duration::hours(6),
            lease: Duration::minutes(2),
            concurrency: 8,
            sends_per_second: Some(10),
            slot_wait: StdDuration::from_secs(10),
        }
    }
}

impl DeliveryPolicy {
    /// The wait before the next attempt after `attempts` failed ones: the shared backoff,
    /// doubling, without jitter (the sweep's own schedule already spreads items).
    fn backoff(&self, attempts: u32) -> Duration {
        let schedule = crate::backoff::Backoff {
            base: self.base_backoff.to_std().unwrap_or_default(),
            factor: 2,
            max: self.max_backoff.to_std().unwrap_or_default(),
        };
        Duration::from_std(schedule.step(attempts)).unwrap_or(self.max_backoff)
    }
}

/// Why one delivery attempt did not succeed.
enum AttemptError {
    Permanent(String),
    Transient(String),
    /// SES (or the shared send rate) refused for rate: retried later with the backoff,
    /// never failed or dead-lettered for it.
    Throttled(String),
    /// The recipient's address is undeliverable: not sent, never retried.
    Suppressed(String),
}

pub struct OutboxDelivery {
    store: Arc<dyn Store>,
    renderer: Arc<EmailRenderer>,
    mailer: Arc<dyn Mailer>,
    publisher: Arc<dyn EventPublisher>,
    policy: DeliveryPolicy,
    clock: Arc<dyn Clock>,
    /// When the next e-mail may go out, for SES rate pacing.
    next_send: Mutex<tokio::time::Instant>,
}

impl OutboxDelivery {
    pub fn new(
        store: Arc<dyn Store>,
        renderer: Arc<EmailRenderer>,
        mailer: Arc<dyn Mailer>,
        publisher: Arc<dyn EventPublisher>,
        policy: DeliveryPolicy,
    ) -> Self {
        Self {
            store,
            renderer,
            mailer,
            publisher,
            policy,
            clock: crate::clock::system(),
            next_send: Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// The production wiring: e-mail through SES (`aws.ses`, retried per `mail_retry`) rendered
    /// from the embedded templates, domain events to `event_bus` on EventBridge.
    pub fn over_aws(
        store: Arc<dyn Store>,
        aws: &crate::config::AwsClients,
        event_bus: &str,
        mailing: &super::Mailing,
    ) -> Result<Self, crate::email::TemplateError> {
        let renderer = Arc::new(EmailRenderer::embedded(&mailing.email)?);
        let mailer = Arc::new(crate::email::SesMailer::from_client(aws.ses.clone(), &mailing.email).with_retry_policy(mailing.mail_retry));
        let publisher = Arc::new(crate::events::EventBridgePublisher::new(aws.eventbridge.clone(), event_bus));
        Ok(Self::new(store, renderer, mailer, publisher, mailing.policy.clone()))
    }

    /// Uses `clock` for "now" (tests replay days; jobs pass the event's time).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Delivers up to `limit` pending items due now on the run's `clock`. Returns the
    /// outcome counts and how many index items were read.
    #[instrument(skip(self))]
    pub async fn deliver_pending(&self, clock: &RunClock, limit: i32) -> Result<(DeliveryReport, u64), StoreError> {
        self.deliver_pending_at(clock, limit, self.policy.sends_per_second).await
    }

    /// [`Self::deliver_pending`] at `sends_per_second` instead of the policy's (the job
    /// passes the account's quota, read once per run).
    #[instrument(skip(self))]
    pub async fn deliver_pending_at(
        &self,
        clock: &RunClock,
        limit: i32,
        sends_per_second: Option<u32>,
    ) -> Result<(DeliveryReport, u64), StoreError> {
        let page = self.store.pending_outbox(clock.now(), limit).await?;
        let report = self.deliver_all(page.items, clock, sends_per_second).await;
        Ok((report, page.scanned))
    }

    async fn deliver_all(&self, items: Vec<OutboxItem>, clock: &RunClock, rate: Option<u32>) -> DeliveryReport {
        let reports: Vec<DeliveryReport> = stream::iter(items)
            .map(|item| self.deliver_one(item, clock, rate))
            .buffer_unordered(self.policy.concurrency.max(1))
            .collect()
            .await;
        let mut total = DeliveryReport::default();
        for r in reports {
            total.add(r);
        }
        total
    }

    /// One item: claim it (a conditional write bumping its attempt count and hiding it
    /// for the lease, counted from the moment of the claim), send it, record the outcome.
    /// A lost claim means another worker has it; a crash after sending and before
    /// recording resends after the lease.
    #[instrument(skip(self, item, clock), fields(outbox_id = %item.id, kind = item.kind_label(), attempt = item.attempts + 1))]
    async fn deliver_one(&self, item: OutboxItem, clock: &RunClock, rate: Option<u32>) -> DeliveryReport {
        let mut report = DeliveryReport::default();
        if item.state != OutboxState::Pending {
            report.skipped += 1;
            return report;
        }
        let mut claimed = item.clone();
        claimed.attempts += 1;
        claimed.next_attempt_at = clock.now() + self.policy.lease;
        match self.store.update_outbox(&claimed, item.attempts).await {
            Ok(true) => {}
            Ok(false) => {
                report.skipped += 1;
                return report;
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not claim outbox item; left for a later run");
                report.retry_later += 1;
                return report;
            }
        }

        let outcome = self.attempt(&claimed, rate).await;
        let now = clock.now();
        let mut done = claimed.clone();
        match outcome {
            Ok(delivery_id) => {
                tracing::info!(delivery_id = %delivery_id, "delivered");
                done.state = OutboxState::Sent;
                done.delivery_id = Some(delivery_id);
                done.sent_at = Some(now);
                done.last_error = None;
                report.sent += 1;
            }
            Err(AttemptError::Suppressed(why)) => {
                tracing::info!(reason = %why, "address undeliverable; suppressed");
                done.state = OutboxState::Suppressed;
                done.last_error = Some(why);
                report.suppressed += 1;
            }
            Err(AttemptError::Throttled(why)) => {
                tracing::warn!(error = %why, "throttled; will retry");
                done.next_attempt_at = now + self.policy.backoff(claimed.attempts);
                done.last_error = Some(why);
                report.retry_later += 1;
            }
            Err(AttemptError::Permanent(why)) => {
                tracing::warn!(error = %why, "refused for good; not retried");
                done.state = OutboxState::Failed;
                done.last_error = Some(why);
                report.failed += 1;
            }
            Err(AttemptError::Transient(why)) if claimed.attempts >= self.policy.max_attempts => {
                tracing::error!(error = %why, attempts = claimed.attempts, "dead-lettered after repeated failures");
                done.state = OutboxState::DeadLettered;
                done.last_error = Some(why);
                report.dead_lettered += 1;
            }
            Err(AttemptError::Transient(why)) => {
                tracing::warn!(error = %why, "delivery failed; will retry");
                done.next_attempt_at = now + self.policy.backoff(claimed.attempts);
                done.last_error = Some(why);
                report.retry_later += 1;
            }
        }
        if let Err(err) = self.store.update_outbox(&done, claimed.attempts).await {
            // The claim expires and the item is retried; a sent e-mail may then go twice,
            // which is the price of never losing one.
            tracing::error!(error = %err, "could not record delivery outcome");
        }
        self.emit_metrics(&done);
        report
    }

    async fn attempt(&self, item: &OutboxItem, rate: Option<u32>) -> Result<String, AttemptError> {
        match &item.payload {
            OutboxPayload::Event { event } => self.publisher.publish(event).await.map_err(|e| match e {
                PublishError::Transient(why) => AttemptError::Transient(why),
                PublishError::Encode(why) => AttemptError::Permanent(why),
            }),
            OutboxPayload::Unreadable { why, .. } => Err(AttemptError::Permanent(format!("the stored payload cannot be read: {why}"))),
            OutboxPayload::Email { user_id, context } => {
                // The address is read now, not when the item was queued: a user who
                // changed it gets the mail at the new one.
                let profile = match self.store.profile(user_id).await {
                    Ok(Some(profile)) => profile,
                    Ok(None) => return Err(AttemptError::Permanent(format!("user {user_id} has no profile"))),
                    Err(e) => return Err(AttemptError::Transient(e.to_string())),
                };
                if let Some(mark) = profile.undeliverable() {
                    let reason = serde_json::to_value(mark.reason).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
                    return Err(AttemptError::Suppressed(format!(
                        "the address is undeliverable ({reason}, since {})",
                        mark.at.to_rfc3339()
                    )));
                }
                let email = self.renderer.render(&profile, context).map_err(|e| AttemptError::Permanent(e.to_string()))?;
                self.pace(rate).await?;
                self.mailer.send(&profile.email, &profile.user_id, &email, context.kind(), &item.id).await.map_err(|e| match e {
                    SendError::Permanent { .. } => AttemptError::Permanent(e.to_string()),
                    ref throttled if throttled.is_throttling() => AttemptError::Throttled(e.to_string()),
                    SendError::Transient { .. } => AttemptError::Transient(e.to_string()),
                })
            }
        }
    }

    /// Waits for this send's turn under the SES rate: spaced by 1/rate within this process,
    /// then a slot of the rate shared by every sender (the table's per-second counter).
    async fn pace(&self, rate: Option<u32>) -> Result<(), AttemptError> {
        let Some(rate) = rate.filter(|r| *r > 0) else { return Ok(()) };
        let interval = StdDuration::from_secs_f64(1.0 / f64::from(rate));
        let slot = {
            let mut next = self.next_send.lock().await;
            let now = tokio::time::Instant::now();
            let slot = (*next).max(now);
            *next = slot + interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
        let pacer = Pacer { slots: &StoreSlots(self.store.as_ref()), ticker: &SystemTicker, rate, max_wait: self.policy.slot_wait };
        pacer.acquire().await.map(|_| ()).map_err(|no_slot| AttemptError::Throttled(no_slot.to_string()))
    }

    fn emit_metrics(&self, item: &OutboxItem) {
        let (metric, is_email) = match (&item.payload, item.state) {
            (OutboxPayload::Email { .. }, OutboxState::Sent) => ("EmailsSent", true),
            (OutboxPayload::Email { .. }, OutboxState::Failed) => ("EmailsFailed", true),
            (OutboxPayload::Email { .. }, OutboxState::DeadLettered) => ("EmailsDeadLettered", true),
            (OutboxPayload::Email { .. }, OutboxState::Pending) => ("EmailsRetried", true),
            // Only an erasure stops an item; delivery never ends one so.
            (OutboxPayload::Email { .. }, OutboxState::Erased) => ("EmailsErased", true),
            (OutboxPayload::Email { .. }, OutboxState::Suppressed) => ("EmailsSuppressed", true),
            (OutboxPayload::Event { .. }, OutboxState::Sent) => ("DomainEventsPublished", false),
            (OutboxPayload::Event { .. }, OutboxState::DeadLettered) => ("DomainEventsDeadLettered", false),
            (OutboxPayload::Event { .. }, _) => ("DomainEventsRetried", false),
            (OutboxPayload::Unreadable { .. }, _) => ("OutboxUnreadable", false),
        };
        let metrics = Metrics::new();
        let metrics = if is_email { metrics.dimension("Kind", item.kind_label()) } else { metrics };
        metrics.count(metric, 1).emit();
    }
}

#[async_trait]
impl Deliver for OutboxDelivery {
    async fn deliver(&self, items: &[OutboxItem]) -> DeliveryReport {
        self.deliver_all(items.to_vec(), &RunClock::starting_at(self.clock.now()), self.policy.sends_per_second).await
    }
}

/// The shared send slots, kept in the table.
struct StoreSlots<'a>(&'a dyn Store);

#[async_trait]
impl SendSlots for StoreSlots<'_> {
    async fn claim(&self, second: i64, rate: u32) -> Result<bool, StoreError> {
        self.0.claim_send_slot(second, rate).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = DeliveryPolicy::default();
        assert_eq!(p.backoff(1), Duration::minutes(1));
        assert_eq!(p.backoff(2), Duration::minutes(2));
        assert_eq!(p.backoff(4), Duration::minutes(8));
        assert_eq!(p.backoff(30), Duration::hours(6));
    }
}
