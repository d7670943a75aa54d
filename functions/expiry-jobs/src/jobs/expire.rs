//! `expire-lapsed`: end live subscriptions whose period is over.
//!
//! Selected: live subscriptions that ended before `now - EXPIRY_GRACE_HOURS`. For each:
//! - with a Stripe subscription, Stripe is asked first (its current state, not a webhook's):
//!   a renewal whose webhook is merely late is applied (`Synced`), not expired; a
//!   cancellation is recorded as such; a `past_due` subscription is left to Stripe's payment
//!   retries until `PAST_DUE_GRACE_DAYS` after its end; Stripe saying it is still active
//!   defers it (a paying customer is never expired against Stripe's word). When Stripe does
//!   not answer, the item is skipped and counted as an error (retried by the next run); when
//!   Stripe no longer knows the subscription, it is expired locally.
//! - a paid subscription that Stripe still bills (`past_due` past its grace) is cancelled at
//!   Stripe *before* it is expired here, so Stripe's later payment retries cannot charge a
//!   customer who no longer has access; when that call fails, nothing is written and the
//!   item is retried by the next run.
//! - then `Subscription::expire` downgrades it to free, in one transaction with its history
//!   entry (`Expired`, actor `job:expire-lapsed`), the `subscription_expired` e-mail and the
//!   `SubscriptionExpired` domain event (both with ids derived from the period end).
//!
//! A version conflict (a webhook or an admin won the race) re-reads and re-evaluates.

use chrono::{DateTime, Utc};
use shared::{
    billing::{BillingError, IdempotencyKey},
    domain::{DomainEvent, DomainEventKind, HistoryChange, HistoryEntry, OutboxItem, Subscription, SubscriptionStatus},
    email::{EmailContext, SubscriptionExpiredContext},
    store::{keys, Change, ExpiryCursor, ExpiryRange, StoreError, SubscriptionWrite},
};
use tracing::instrument;

use super::{sync_change, ItemError, Progress};
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
        self.walk(range, start, budget, counts, |sub| async move {
            self.with_retry(sub, "expire-lapsed", |sub| async move { self.expire_one(sub, now).await }).await
        })
        .await
    }

    #[instrument(skip_all, fields(user_id = %sub.user_id, subscription_id = %sub.id))]
    async fn expire_one(&self, sub: Subscription, now: DateTime<Utc>) -> Result<Counts, ItemError> {
        let mut counts = Counts::default();
        let actor = JobName::ExpireLapsed.actor();
        let grace = self.settings.expiry_grace;
        // A re-read record may have been renewed or ended meanwhile.
        if !sub.status.is_live() || sub.end_date.is_none_or(|end| now < end + grace) {
            return Ok(counts);
        }

        // What Stripe says now, applied on top of the local record.
        let mut change = Change { user_id: Some(sub.user_id.clone()), ..Change::default() };
        let mut record = sub.clone();
        let mut stripe_answered = false;
        if let Some(stripe_id) = &sub.stripe_subscription_id {
            match self.billing.subscription(stripe_id).await {
                Ok(snapshot) => {
                    stripe_answered = true;
                    if let Some((next, synced)) = sync_change(&sub, &snapshot, now, &actor) {
                        tracing::info!(from = %sub.status, to = %next.status, end_date = ?next.end_date, "stripe state differs; applying it");
                        record = next;
                        change = synced;
                        counts.synced += 1;
                    }
                }
                Err(BillingError::NotFound(what)) => {
                    tracing::warn!(stripe_subscription_id = %stripe_id, what, "stripe no longer knows this subscription; expiring it locally");
                }
                Err(error) => return Err(error.into()),
            }
        }

        let lapsed = record.status.is_live() && record.end_date.is_some_and(|end| now >= end + grace);
        let deferred = match record.status {
            // Stripe is retrying the payment: leave it to Stripe until the past-due grace is over.
            SubscriptionStatus::PastDue => record.end_date.is_some_and(|end| now < end + grace.max(self.settings.past_due_grace)),
            // Stripe says it is running although its period ended long ago (a renewal still
            // being invoiced): Stripe's word wins over the calendar.
            SubscriptionStatus::Active | SubscriptionStatus::Trial => stripe_answered,
            _ => false,
        };
        if lapsed && deferred {
            counts.deferred += 1;
            tracing::info!(status = %record.status, end_date = ?record.end_date, "lapsed but not expired: stripe still collecting");
        }
        let expired = if lapsed && !deferred { record.expire(now, grace) } else { None };
        if let (Some(_), Some(stripe_id)) = (&expired, &sub.stripe_subscription_id) {
            if stripe_answered && !record.status.is_terminal() {
                // Stripe would go on retrying the open invoice: end it there first. One key
                // per subscription: it is cancelled once, however often this is retried.
                let key = IdempotencyKey::new(format!("{actor}:cancel:{stripe_id}"));
                let canceled = self.billing.cancel_now(stripe_id, &key).await?;
                tracing::info!(stripe_subscription_id = %stripe_id, status = %canceled.status, "cancelled at stripe before expiring locally");
                counts.canceled_at_stripe += 1;
            }
        }

        match expired {
            Some(expired) => {
                add_expiry(&mut change, &record, &expired, &sub, now, &actor);
                self.store.commit(change).await?;
                counts.expired += 1;
                tracing::info!(tier = %record.tier, end_date = ?record.end_date, "subscription expired and downgraded to free");
                shared::metrics::Metrics::new().dimension("Tier", record.tier.as_str()).count("SubscriptionsExpired", 1).emit();
            }
            None if change.subscription.is_some() => {
                self.store.commit(change).await?;
            }
            None => {}
        }
        Ok(counts)
    }
}

/// Adds the expiry of `record` (already synced into `change`, or as read) to `change`:
/// the expired record guarded by the version read, its history entry, the e-mail and the event.
fn add_expiry(change: &mut Change, record: &Subscription, expired: &Subscription, read: &Subscription, now: DateTime<Utc>, actor: &str) {
    let ended_at = record.end_date.unwrap_or(now);
    let period = keys::timestamp(ended_at);
    change.subscription = Some(SubscriptionWrite { record: expired.clone(), expected_version: Some(read.version) });
    change.history.push(HistoryEntry::record(Some(record), expired, HistoryChange::Expired, actor, now));
    if record.tier.is_paid_plan() {
        let mail = EmailContext::from(SubscriptionExpiredContext { plan: record.tier, ended_at });
        change.outbox.push(mail.outbox_item(&record.user_id, &format!("{}:{period}", record.id), now));
    }
    change.outbox.push(OutboxItem::event(DomainEvent::of(DomainEventKind::SubscriptionExpired, expired, &period, now), now));
}
