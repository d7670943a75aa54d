//! Applying one verified Stripe event.
//!
//! - **Idempotent**: the event id is written to the ledger with `attribute_not_exists`
//!   in the same transaction as its effects, so a redelivery changes nothing.
//! - **Order-independent**: the event only names objects; the subscription (and the
//!   invoice, in the same request) are re-fetched from Stripe and the local record is brought in line with
//!   that current state through the one sync path ([`crate::usecase::sync`]).
//!   Notifications carry deterministic ids derived from what they are about (invoice,
//!   attempt, period, trial end), so any delivery order, with any duplicates, ends in the
//!   same record and the same set of queued notifications.
//! - **Never loses an event of ours**: the owner comes from the id mappings, else from the
//!   subscription's own `metadata.user_id` (an event can beat the creating call's commit);
//!   an event is recorded as ignored only when neither ties it to a user.

mod envelope;
mod event;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use thiserror::Error;
use tracing::instrument;

pub use envelope::{decode, decode_value, DecodeError};
pub use event::{EventKind, StripeEvent, Subject};

use crate::{
    billing::{BillingError, BillingGateway, InvoiceSnapshot, InvoiceStatus},
    clock::Clock,
    domain::mail::{EmailContext, PaymentFailedContext, PaymentReceiptContext, TrialEndingContext},
    domain::{
        HistoryChange, OutboxItem, StripeCustomerId, StripeSnapshot, StripeSubscriptionId, Subscription, SubscriptionSource,
        SubscriptionStatus, UserId,
    },
    metrics::Metrics,
    store::{Change, LedgerEntry, Store, StoreError, StripeMapping},
    usecase::sync::{self, Cause, Sync},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The local record or the outbox changed.
    Applied,
    /// Recorded; the local state already matched Stripe's.
    Unchanged,
    /// Seen before; nothing done.
    Duplicate,
    /// Not about anything this service tracks (unknown type, foreign subscription).
    Ignored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
        }
    }
}

/// Failures worth a Stripe retry (the edge answers 5xx for all of them).
#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("stripe unavailable: {0}")]
    StripeUnavailable(String),
    #[error("store unavailable: {0}")]
    StoreUnavailable(String),
    #[error("the subscription kept changing underneath; giving up for this delivery")]
    Contention,
    #[error("unexpected: {0}")]
    Unexpected(String),
}

impl From<StoreError> for ProcessError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(why) => ProcessError::StoreUnavailable(why),
            other => ProcessError::Unexpected(other.to_string()),
        }
    }
}

impl From<BillingError> for ProcessError {
    fn from(e: BillingError) -> Self {
        match e {
            BillingError::Unavailable(why) => ProcessError::StripeUnavailable(why),
            other => ProcessError::Unexpected(other.to_string()),
        }
    }
}

/// Version conflicts (a concurrent admin call or event) are retried from a fresh read.
const MAX_ATTEMPTS: usize = 4;

pub struct Processor {
    store: Arc<dyn Store>,
    billing: Arc<dyn BillingGateway>,
    clock: Arc<dyn Clock>,
}

impl Processor {
    pub fn new(store: Arc<dyn Store>, billing: Arc<dyn BillingGateway>, clock: Arc<dyn Clock>) -> Self {
        Self { store, billing, clock }
    }

    #[instrument(skip_all, fields(
        event_id = %event.id,
        event_type = %event.kind.as_str(),
        user_id = tracing::field::Empty,
        stripe_subscription_id = tracing::field::Empty,
        stripe_customer_id = tracing::field::Empty,
        stripe_invoice_id = tracing::field::Empty,
    ))]
    pub async fn process(&self, event: &StripeEvent) -> Result<Outcome, ProcessError> {
        // One read for the ledger and the owner's mappings. The ledger check spares Stripe
        // calls for redeliveries; the ledger's conditional write in the commit is what
        // actually guarantees once-only.
        let mappings = subject_mappings(&event.subject);
        let context = self.store.event_context(Some(&event.id), &mappings).await?;
        if context.seen {
            return Ok(Outcome::Duplicate);
        }
        let mapped = context.owners.into_iter().flatten().next();
        record_subject(&event.subject, mapped.as_ref());
        match &event.subject {
            Subject::Subscription { id, .. } => self.sync(event, id, mapped, Fetched::default()).await,
            Subject::Invoice { id, subscription: Some(sub), .. } => {
                // One request for both: the invoice arrives with its subscription expanded.
                let fetched = match self.billing.invoice(id.as_str()).await {
                    Ok(read) => {
                        let subscription = read.subscription.filter(|s| &s.subscription_id == sub);
                        Fetched { invoice: Some(read.invoice), subscription }
                    }
                    Err(BillingError::NotFound(_)) => Fetched::default(),
                    Err(e) => return Err(e.into()),
                };
                self.sync(event, sub, mapped, fetched).await
            }
            Subject::CheckoutSession { subscription: Some(sub), user_hint, .. } => {
                self.sync(event, sub, mapped.or_else(|| user_hint.clone()), Fetched::default()).await
            }
            _ => self.record_only(event, Outcome::Ignored).await,
        }
    }

    async fn record_only(&self, event: &StripeEvent, outcome: Outcome) -> Result<Outcome, ProcessError> {
        match self.store.commit(Change { stripe_event: Some(self.ledger(event)), ..Change::default() }).await {
            Ok(()) => Ok(outcome),
            Err(StoreError::DuplicateEvent) => Ok(Outcome::Duplicate),
            Err(e) => Err(e.into()),
        }
    }

    fn ledger(&self, event: &StripeEvent) -> LedgerEntry {
        LedgerEntry { event_id: event.id.clone(), event_type: event.kind.as_str().to_owned(), received_at: self.clock.now() }
    }

    /// The user the mappings name for this subscription, else its customer: one read.
    async fn owner(&self, subscription: &StripeSubscriptionId, customer: &StripeCustomerId) -> Result<Option<UserId>, ProcessError> {
        let mappings = [StripeMapping::Subscription(subscription.to_string()), StripeMapping::Customer(customer.to_string())];
        Ok(self.store.event_context(None, &mappings).await?.owners.into_iter().flatten().next())
    }

    async fn sync(
        &self,
        event: &StripeEvent,
        stripe_id: &StripeSubscriptionId,
        mapped: Option<UserId>,
        fetched: Fetched,
    ) -> Result<Outcome, ProcessError> {
        let invoice = fetched.invoice.as_ref();
        let mut prefetched = fetched.subscription;
        let span = tracing::Span::current();
        for _ in 0..MAX_ATTEMPTS {
            // The first attempt uses what came with the invoice; a retry after a
            // concurrent write reads Stripe again.
            let snapshot = match prefetched.take() {
                Some(s) => s,
                None => match self.billing.subscription(stripe_id).await {
                    Ok(s) => s,
                    Err(BillingError::NotFound(_)) => return self.record_only(event, Outcome::Ignored).await,
                    Err(e) => return Err(e.into()),
                },
            };
            let Some(user) = mapped.clone().or_else(|| snapshot.owner.clone()) else {
                tracing::warn!(stripe_subscription_id = %stripe_id, "event for a subscription this service does not know");
                return self.record_only(event, Outcome::Ignored).await;
            };
            span.record("user_id", user.as_str());
            let local = self.store.subscription(&user).await?;
            let now = self.clock.now();
            let (mut change, current, applied) = match sync::plan(&user, local.as_ref(), &snapshot, now, &Cause::stripe()) {
                Sync::NotCurrent => {
                    tracing::warn!(user_id = %user, stripe_subscription_id = %stripe_id, "event for a superseded subscription; recorded only");
                    return self.record_only(event, Outcome::Ignored).await;
                }
                Sync::InLine => (Change { user_id: Some(user.clone()), ..Change::default() }, local.clone(), None),
                Sync::Apply(applied) => (applied.change(), Some(applied.next.clone()), Some(applied)),
            };
            if let Some(current) = &current {
                change.outbox.extend(event_notifications(event, current, &snapshot, invoice, now));
            }
            change.stripe_event = Some(self.ledger(event));
            change.mappings =
                vec![StripeMapping::Subscription(stripe_id.to_string()), StripeMapping::Customer(snapshot.customer_id.to_string())];
            let changed = applied.is_some() || !change.outbox.is_empty();
            match self.store.commit(change).await {
                Ok(()) => {
                    let next = applied.as_ref().map(|a| &a.next);
                    if let Some(next) = next {
                        tracing::info!(user_id = %user, stripe_subscription_id = %stripe_id, status = %next.status, tier = %next.tier, version = next.version, "subscription synced");
                    }
                    emit_metrics(event, invoice, next, applied.as_ref().map(|a| a.history.change));
                    return Ok(if changed { Outcome::Applied } else { Outcome::Unchanged });
                }
                Err(StoreError::DuplicateEvent) => return Ok(Outcome::Duplicate),
                Err(StoreError::Conflict(why)) => {
                    tracing::info!(reason = %why, "concurrent change; re-reading");
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ProcessError::Contention)
    }
}

/// Every line of the event's processing, the Stripe calls first among them, names what
/// it is about.
fn record_subject(subject: &Subject, user: Option<&UserId>) {
    let span = tracing::Span::current();
    let (subscription, customer) = match subject {
        Subject::Subscription { id, customer } => (Some(id), customer.as_ref()),
        Subject::Invoice { id, subscription, customer } => {
            span.record("stripe_invoice_id", id.as_str());
            (subscription.as_ref(), customer.as_ref())
        }
        Subject::CheckoutSession { subscription, customer, .. } => (subscription.as_ref(), customer.as_ref()),
        Subject::Other => (None, None),
    };
    if let Some(id) = subscription {
        span.record("stripe_subscription_id", id.as_str());
    }
    if let Some(id) = customer {
        span.record("stripe_customer_id", id.as_str());
    }
    if let Some(user) = user {
        span.record("user_id", user.as_str());
    }
}

/// The mappings that may name an event's owner, most specific first.
fn subject_mappings(subject: &Subject) -> Vec<StripeMapping> {
    let (subscription, customer) = match subject {
        Subject::Subscription { id, customer } => (Some(id), customer.as_ref()),
        Subject::Invoice { subscription, customer, .. } | Subject::CheckoutSession { subscription, customer, .. } => {
            (subscription.as_ref(), customer.as_ref())
        }
        _ => (None, None),
    };
    let subscription = subscription.map(|id| StripeMapping::Subscription(id.to_string()));
    subscription.into_iter().chain(customer.map(|c| StripeMapping::Customer(c.to_string()))).collect()
}

/// What the event's own re-fetch already read (an invoice event reads both at once).
#[derive(Default)]
struct Fetched {
    invoice: Option<InvoiceSnapshot>,
    subscription: Option<StripeSnapshot>,
}

/// What bringing one listed subscription in line did (see [`Processor::apply_snapshot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciliation {
    /// No user of ours: neither a mapping nor `metadata.user_id` names one.
    Foreign,
    /// The owner's record already says what Stripe says (or names a newer subscription
    /// and this one has ended).
    InLine,
    /// The owner's record was brought in line. `adopted`: it did not name this
    /// subscription before (a create whose commit was lost, a Checkout subscription).
    Repaired { adopted: bool },
    /// A live subscription of a user whose record names another live one: two live
    /// subscriptions for one user. Left for an operator (which one is right is a
    /// business decision); counted and logged.
    Conflicting,
}

impl Processor {
    /// Brings the owner's record in line with `snapshot`, a subscription no event named
    /// (a sweep listed it): the owner rules and the sync path of an event, without a
    /// ledger entry; history actor `actor`.
    pub async fn apply_snapshot(&self, snapshot: &StripeSnapshot, actor: &str) -> Result<Reconciliation, ProcessError> {
        let stripe_id = &snapshot.subscription_id;
        let Some(user) = self.owner(stripe_id, &snapshot.customer_id).await?.or_else(|| snapshot.owner.clone()) else {
            return Ok(Reconciliation::Foreign);
        };
        for _ in 0..MAX_ATTEMPTS {
            let local = self.store.subscription(&user).await?;
            let adopted = local.as_ref().and_then(|l| l.stripe_subscription_id.as_ref()) != Some(stripe_id);
            let now = self.clock.now();
            let applied = match sync::plan(&user, local.as_ref(), snapshot, now, &Cause::by(actor, HistoryChange::Synced)) {
                Sync::InLine => return Ok(Reconciliation::InLine),
                Sync::NotCurrent if snapshot.status.is_terminal() => return Ok(Reconciliation::InLine),
                Sync::NotCurrent => {
                    tracing::error!(user_id = %user, stripe_subscription_id = %stripe_id, local = ?local.as_ref().and_then(|l| l.stripe_subscription_id.as_ref()), status = %snapshot.status, "a second live stripe subscription for one user");
                    return Ok(Reconciliation::Conflicting);
                }
                Sync::Apply(applied) => applied,
            };
            let mut change = applied.change();
            change.mappings =
                vec![StripeMapping::Subscription(stripe_id.to_string()), StripeMapping::Customer(snapshot.customer_id.to_string())];
            match self.store.commit(change).await {
                Ok(()) => {
                    tracing::warn!(user_id = %user, stripe_subscription_id = %stripe_id, status = %applied.next.status, adopted, "record brought in line with stripe");
                    return Ok(Reconciliation::Repaired { adopted });
                }
                Err(StoreError::Conflict(why)) => {
                    tracing::info!(reason = %why, "concurrent change; re-reading");
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ProcessError::Contention)
    }
}

/// Business metrics of an event applied for the first time (EMF, bounded dimensions):
/// `PaymentsSucceeded` for `invoice.paid` with money collected, `PaymentsFailed` for
/// `invoice.payment_failed` on an open invoice (both dimensionless: the failure-rate alarm
/// reads them so), and the subscription changes the event brought in by tier.
/// `invoice.payment_succeeded` is not counted: Stripe sends it alongside `invoice.paid`.
fn emit_metrics(event: &StripeEvent, invoice: Option<&InvoiceSnapshot>, next: Option<&Subscription>, change: Option<HistoryChange>) {
    match (&event.kind, invoice) {
        (EventKind::InvoicePaid, Some(inv)) if collected(inv) => Metrics::new().count("PaymentsSucceeded", 1).emit(),
        (EventKind::InvoicePaymentFailed, Some(inv)) if inv.status == InvoiceStatus::Open => {
            Metrics::new().count("PaymentsFailed", 1).emit()
        }
        _ => {}
    }
    let Some(next) = next else { return };
    let tier = next.tier.as_str();
    match change {
        Some(HistoryChange::Created) => {
            let source = if next.source == SubscriptionSource::Granted { "granted" } else { "paid" };
            Metrics::new().dimension("Tier", tier).dimension("Source", source).count("SubscriptionsCreated", 1).emit();
        }
        Some(HistoryChange::TierChanged) => Metrics::new().dimension("Tier", tier).count("TierChanges", 1).emit(),
        Some(HistoryChange::Canceled) => Metrics::new().dimension("Tier", tier).count("SubscriptionsCanceled", 1).emit(),
        _ => {}
    }
}

/// A paid invoice that collected money (a zero-amount trial invoice sends no receipt).
fn collected(inv: &InvoiceSnapshot) -> bool {
    inv.status == InvoiceStatus::Paid && inv.amount_paid.amount > 0
}

fn ts(t: DateTime<Utc>) -> String {
    t.timestamp().to_string()
}

/// E-mails an event causes by itself (about an invoice or a trial, not a state change),
/// decided on the current (re-fetched) state.
fn event_notifications(
    event: &StripeEvent,
    current: &Subscription,
    snapshot: &StripeSnapshot,
    invoice: Option<&InvoiceSnapshot>,
    now: DateTime<Utc>,
) -> Vec<OutboxItem> {
    let user = &current.user_id;
    match (&event.kind, invoice) {
        (EventKind::InvoicePaid | EventKind::InvoicePaymentSucceeded, Some(inv)) if collected(inv) => {
            let receipt = EmailContext::from(PaymentReceiptContext {
                amount: inv.amount_paid.clone(),
                plan: current.tier,
                invoice_number: inv.number.clone(),
                hosted_invoice_url: inv.hosted_invoice_url.clone(),
                period_start: inv.period_start,
                period_end: inv.period_end,
            });
            vec![receipt.outbox_item(user, &inv.id, now)]
        }
        (EventKind::InvoicePaymentFailed | EventKind::InvoicePaymentActionRequired, Some(inv)) if inv.status == InvoiceStatus::Open => {
            // Stripe sends both events for one attempt that needs 3-D Secure: they are one
            // notification of that attempt (same id), whichever arrives first.
            let action = event.kind == EventKind::InvoicePaymentActionRequired;
            let failed = EmailContext::from(PaymentFailedContext {
                amount: inv.amount_due.clone(),
                plan: current.tier,
                failure_reason: Some(if action {
                    "Your bank asked you to confirm this payment.".to_owned()
                } else {
                    "Your card was declined.".to_owned()
                }),
                next_attempt_at: inv.next_payment_attempt,
                hosted_invoice_url: inv.hosted_invoice_url.clone(),
            });
            vec![failed.outbox_item(user, &format!("{}-attempt-{}", inv.id, inv.attempt_count), now)]
        }
        (EventKind::SubscriptionTrialWillEnd, _) if snapshot.status == SubscriptionStatus::Trial => {
            let Some(trial_end) = snapshot.trial_end else { return vec![] };
            let ending = EmailContext::from(TrialEndingContext {
                plan: current.tier,
                days_remaining: current.days_remaining(now).unwrap_or(0),
                trial_end,
                has_payment_method: current.source == SubscriptionSource::Paid,
            });
            vec![ending.outbox_item(user, &format!("{}-{}", snapshot.subscription_id, ts(trial_end)), now)]
        }
        _ => vec![],
    }
}
