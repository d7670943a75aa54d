//! Expiring a live subscription whose period is over.
//!
//! - With a Stripe subscription, Stripe is asked first (its current state, not a webhook's):
//!   a renewal whose webhook is merely late is applied (`Synced`), not expired; a
//!   cancellation is recorded as such; a `past_due` subscription is left to Stripe's payment
//!   retries until `past_due_grace` after its end; Stripe saying it is still active defers
//!   it (a paying customer is never expired against Stripe's word). When Stripe does not
//!   answer, nothing is written and the error is returned; when Stripe no longer knows the
//!   subscription, it is expired locally.
//! - A paid subscription that Stripe still bills (`past_due` past its grace) is cancelled at
//!   Stripe *before* it is expired here, so Stripe's later payment retries cannot charge a
//!   customer who no longer has access; when that call fails, nothing is written.
//! - Then `Subscription::expire` downgrades it to free, in one transaction with its history
//!   entry (`Expired`), the `subscription_expired` e-mail (paid plans) and the
//!   `SubscriptionExpired` domain event (both with ids derived from the period end).

use chrono::{DateTime, Utc};
use tracing::instrument;

use super::{sync_change, Lifecycle, LifecycleError};
use crate::{
    billing::{BillingError, IdempotencyKey},
    domain::mail::{EmailContext, SubscriptionExpiredContext},
    domain::{DomainEvent, DomainEventKind, HistoryChange, HistoryEntry, OutboxItem, Subscription, SubscriptionStatus},
    store::{keys, Change, SubscriptionWrite},
};

/// What expiring one subscription did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expiry {
    /// Stripe's state differed (a late renewal or cancellation) and was applied.
    pub synced: bool,
    /// Lapsed, but left alone: Stripe still active, or retrying within the past-due grace.
    pub deferred: bool,
    /// Cancelled at Stripe before it was expired here.
    pub canceled_at_stripe: bool,
    /// Expired and downgraded to free.
    pub expired: bool,
}

impl Lifecycle {
    /// Expires `sub` (as read) if it is live and over its end plus grace at `now`; `actor`
    /// is recorded in the history.
    #[instrument(skip_all, fields(user_id = %sub.user_id, subscription_id = %sub.id))]
    pub async fn expire(&self, sub: &Subscription, now: DateTime<Utc>, actor: &str) -> Result<Expiry, LifecycleError> {
        let mut done = Expiry::default();
        let grace = self.rules.expiry_grace;
        // A re-read record may have been renewed or ended meanwhile.
        if !sub.status.is_live() || sub.end_date.is_none_or(|end| now < end + grace) {
            return Ok(done);
        }

        // What Stripe says now, applied on top of the local record.
        let mut change = Change { user_id: Some(sub.user_id.clone()), ..Change::default() };
        let mut record = sub.clone();
        let mut stripe_answered = false;
        if let Some(stripe_id) = &sub.stripe_subscription_id {
            match self.billing.subscription(stripe_id).await {
                Ok(snapshot) => {
                    stripe_answered = true;
                    if let Some((next, synced)) = sync_change(sub, &snapshot, now, actor) {
                        tracing::info!(from = %sub.status, to = %next.status, end_date = ?next.end_date, "stripe state differs; applying it");
                        record = next;
                        change = synced;
                        done.synced = true;
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
            SubscriptionStatus::PastDue => record.end_date.is_some_and(|end| now < end + grace.max(self.rules.past_due_grace)),
            // Stripe says it is running although its period ended long ago (a renewal still
            // being invoiced): Stripe's word wins over the calendar.
            SubscriptionStatus::Active | SubscriptionStatus::Trial => stripe_answered,
            _ => false,
        };
        if lapsed && deferred {
            done.deferred = true;
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
                done.canceled_at_stripe = true;
            }
        }

        match expired {
            Some(expired) => {
                add_expiry(&mut change, &record, &expired, sub, now, actor);
                self.store.commit(change).await?;
                done.expired = true;
                tracing::info!(tier = %record.tier, end_date = ?record.end_date, "subscription expired and downgraded to free");
                crate::metrics::Metrics::new().dimension("Tier", record.tier.as_str()).count("SubscriptionsExpired", 1).emit();
            }
            None if change.subscription.is_some() => {
                self.store.commit(change).await?;
            }
            None => {}
        }
        Ok(done)
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
