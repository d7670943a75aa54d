//! Applies one verified Stripe event.
//!
//! - **Idempotent**: the event id is written to the ledger with `attribute_not_exists`
//!   in the same transaction as its effects, so a redelivery changes nothing.
//! - **Order-independent**: the payload only names objects; the subscription (and the
//!   invoice) are re-fetched from Stripe and the local record is brought in line with
//!   that current state. Notifications carry deterministic ids derived from what they
//!   are about (invoice, period, trial end), so any delivery order, with any duplicates,
//!   ends in the same record and the same set of queued notifications.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use thiserror::Error;
use tracing::instrument;

use shared::{
    billing::{BillingError, BillingGateway, InvoiceSnapshot},
    clock::Clock,
    domain::{
        HistoryChange, HistoryEntry, OutboxItem, StripeSnapshot, StripeSubscriptionId, Subscription, SubscriptionSource,
        SubscriptionStatus, Tier, Transition, UserId,
    },
    email::{
        EmailContext, PaymentFailedContext, PaymentReceiptContext, PlanChangedContext, SubscriptionConfirmationContext,
        SubscriptionExpiredContext, TrialEndingContext,
    },
    store::{Change, LedgerEntry, Store, StoreError, StripeMapping, SubscriptionWrite},
};

use crate::envelope::{StripeEvent, Subject};

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

/// Failures worth a Stripe retry (the HTTP layer answers 5xx for all of them).
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
        event_type = %event.event_type,
        user_id = tracing::field::Empty,
        stripe_subscription_id = tracing::field::Empty,
        stripe_customer_id = tracing::field::Empty,
        stripe_invoice_id = tracing::field::Empty,
    ))]
    pub async fn process(&self, event: &StripeEvent) -> Result<Outcome, ProcessError> {
        // A cheap read first spares Stripe calls for redeliveries; the ledger's
        // conditional write in the commit is what actually guarantees once-only.
        if self.store.event_seen(&event.id).await? {
            return Ok(Outcome::Duplicate);
        }
        match &event.subject {
            Subject::Subscription { id, customer } => self.sync(event, id, customer.as_deref(), None, None).await,
            Subject::Invoice { id, subscription: Some(sub), customer } => {
                tracing::Span::current().record("stripe_invoice_id", id.as_str());
                let invoice = match self.billing.invoice(id).await {
                    Ok(invoice) => Some(invoice),
                    Err(BillingError::NotFound(_)) => None,
                    Err(e) => return Err(e.into()),
                };
                self.sync(event, sub, customer.as_deref(), None, invoice.as_ref()).await
            }
            Subject::CheckoutSession { subscription: Some(sub), customer, user_hint } => {
                self.sync(event, sub, customer.as_deref(), user_hint.as_deref(), None).await
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
        LedgerEntry { event_id: event.id.clone(), event_type: event.event_type.clone(), received_at: self.clock.now() }
    }

    async fn owner(&self, subscription: &str, customer: Option<&str>, hint: Option<&str>) -> Result<Option<UserId>, ProcessError> {
        if let Some(user) = self.store.user_for(&StripeMapping::Subscription(subscription.to_owned())).await? {
            return Ok(Some(user));
        }
        if let Some(customer) = customer {
            if let Some(user) = self.store.user_for(&StripeMapping::Customer(customer.to_owned())).await? {
                return Ok(Some(user));
            }
        }
        Ok(hint.and_then(|h| UserId::parse(h).ok()))
    }

    async fn sync(
        &self,
        event: &StripeEvent,
        subscription_id: &str,
        customer: Option<&str>,
        user_hint: Option<&str>,
        invoice: Option<&InvoiceSnapshot>,
    ) -> Result<Outcome, ProcessError> {
        let span = tracing::Span::current();
        span.record("stripe_subscription_id", subscription_id);
        if let Some(customer) = customer {
            span.record("stripe_customer_id", customer);
        }
        let Ok(stripe_id) = StripeSubscriptionId::parse(subscription_id) else {
            return self.record_only(event, Outcome::Ignored).await;
        };
        let mapped = self.owner(subscription_id, customer, user_hint).await?;
        if let Some(user) = &mapped {
            span.record("user_id", user.as_str());
        }
        for _ in 0..MAX_ATTEMPTS {
            let snapshot = match self.billing.subscription(&stripe_id).await {
                Ok(s) => s,
                Err(BillingError::NotFound(_)) => return self.record_only(event, Outcome::Ignored).await,
                Err(e) => return Err(e.into()),
            };
            // The id mappings are written by the commit of the call that created the
            // subscription; an event can beat that commit (Stripe sends it as soon as the
            // subscription exists), and then the subscription's own metadata names the user.
            // Only a subscription that neither a mapping nor its metadata ties to a user of
            // ours is ignored.
            let Some(user) = mapped.clone().or_else(|| snapshot.owner.clone()) else {
                tracing::warn!(stripe_subscription_id = subscription_id, "event for a subscription this service does not know");
                return self.record_only(event, Outcome::Ignored).await;
            };
            span.record("user_id", user.as_str());
            let local = self.store.subscription(&user).await?;
            let now = self.clock.now();
            let Some(plan) = plan(&user, local.as_ref(), &snapshot, now) else {
                tracing::warn!(user_id = %user, stripe_subscription_id = subscription_id, "event for a superseded subscription; recorded only");
                return self.record_only(event, Outcome::Ignored).await;
            };
            let mut outbox = plan.outbox;
            let current = plan.next.as_ref().or(local.as_ref());
            if let Some(current) = current {
                outbox.extend(event_notifications(event, current, &snapshot, invoice, now));
            }
            let applied = plan.next.is_some() || !outbox.is_empty();
            let history_change = plan.history.first().map(|h| h.change);
            let change = Change {
                user_id: Some(user.clone()),
                subscription: plan.next.clone().map(|record| SubscriptionWrite { record, expected_version: plan.expected_version }),
                history: plan.history,
                outbox,
                stripe_event: Some(self.ledger(event)),
                mappings: vec![
                    StripeMapping::Subscription(subscription_id.to_owned()),
                    StripeMapping::Customer(snapshot.customer_id.to_string()),
                ],
            };
            match self.store.commit(change).await {
                Ok(()) => {
                    if let Some(next) = &plan.next {
                        tracing::info!(user_id = %user, stripe_subscription_id = subscription_id, status = %next.status, tier = %next.tier, version = next.version, "subscription synced");
                    }
                    emit_metrics(event, invoice, plan.next.as_ref(), history_change);
                    return Ok(if applied { Outcome::Applied } else { Outcome::Unchanged });
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

/// Business metrics of an event applied for the first time (EMF, bounded dimensions):
/// `PaymentsSucceeded` for `invoice.paid` with money collected, `PaymentsFailed` for
/// `invoice.payment_failed` on an open invoice (both dimensionless: the failure-rate alarm
/// reads them so), and the subscription changes the event brought in by tier.
/// `invoice.payment_succeeded` is not counted: Stripe sends it alongside `invoice.paid`.
fn emit_metrics(event: &StripeEvent, invoice: Option<&InvoiceSnapshot>, next: Option<&Subscription>, change: Option<HistoryChange>) {
    use shared::metrics::Metrics;
    match (event.event_type.as_str(), invoice) {
        ("invoice.paid", Some(inv)) if inv.status == "paid" && inv.amount_paid.amount > 0 => {
            Metrics::new().count("PaymentsSucceeded", 1).emit()
        }
        ("invoice.payment_failed", Some(inv)) if inv.status == "open" => Metrics::new().count("PaymentsFailed", 1).emit(),
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

/// What a sync writes.
struct Plan {
    next: Option<Subscription>,
    expected_version: Option<u64>,
    history: Vec<HistoryEntry>,
    outbox: Vec<OutboxItem>,
}

/// Decides how Stripe's `snapshot` changes the user's local record. `None` when the
/// event is about a subscription other than the user's current live one.
fn plan(user: &UserId, local: Option<&Subscription>, snapshot: &StripeSnapshot, now: DateTime<Utc>) -> Option<Plan> {
    let same = |s: &Subscription| s.stripe_subscription_id.as_ref() == Some(&snapshot.subscription_id);
    let (base, expected_version, created) = match local {
        Some(l) if same(l) => (l.clone(), Some(l.version), false),
        // A different subscription is live locally: this one is old news.
        Some(l) if l.status.is_live() && l.stripe_subscription_id.is_some() => return None,
        // Nothing current (none yet, ended, or the free tier): Stripe's subscription becomes it.
        Some(_) if snapshot.status.is_terminal() => return None,
        Some(l) => (blank(user, snapshot, now, l.version), Some(l.version), true),
        None if snapshot.status.is_terminal() => return None,
        None => (blank(user, snapshot, now, 0), None, true),
    };
    let Some((mut next, mut transitions)) = base.apply_stripe(snapshot, now) else {
        return Some(Plan { next: None, expected_version, history: vec![], outbox: vec![] });
    };
    if created {
        // A new record's tier is Stripe's, not a change from the blank's placeholder.
        transitions.retain(|t| !matches!(t, Transition::TierChanged { .. }));
        next.start_date = snapshot.current_period_start.min(now);
    }
    let change = if created { HistoryChange::Created } else { transitions.first().map(history_change).unwrap_or(HistoryChange::Synced) };
    let actor = "stripe";
    let history = vec![HistoryEntry::record(if created { None } else { Some(&base) }, &next, change, actor, now)];
    let mut outbox = Vec::new();
    for transition in &transitions {
        outbox.extend(transition_notifications(transition, &base, &next, snapshot, created, now));
    }
    Some(Plan { next: Some(next), expected_version, history, outbox })
}

/// The placeholder a Stripe subscription is applied onto when no local record names it
/// yet (created by Checkout, or by an admin call whose commit this event beat); `version` continues the replaced record's so the write stays guarded.
fn blank(user: &UserId, snapshot: &StripeSnapshot, now: DateTime<Utc>, version: u64) -> Subscription {
    Subscription {
        id: snapshot.subscription_id.to_string(),
        user_id: user.clone(),
        tier: Tier::Free,
        status: SubscriptionStatus::Incomplete,
        // As the creating call recorded it: a granted trial stays granted (never charged).
        source: snapshot.source.unwrap_or(SubscriptionSource::Paid),
        start_date: now,
        end_date: None,
        auto_renew: true,
        cancel_at_period_end: false,
        canceled_at: None,
        stripe_customer_id: Some(snapshot.customer_id.clone()),
        stripe_subscription_id: Some(snapshot.subscription_id.clone()),
        last_billing_date: None,
        next_billing_date: None,
        comment: None,
        version,
        updated_at: now,
    }
}

fn history_change(t: &Transition) -> HistoryChange {
    match t {
        Transition::Renewed { .. } => HistoryChange::Renewed,
        Transition::Canceled => HistoryChange::Canceled,
        Transition::TierChanged { .. } => HistoryChange::TierChanged,
        Transition::CancelScheduled => HistoryChange::CancelScheduled,
        Transition::CancelWithdrawn => HistoryChange::Reactivated,
        Transition::Activated | Transition::PaymentFailed | Transition::Paused | Transition::Resumed => HistoryChange::StatusChanged,
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.timestamp().to_string()
}

/// Domain events and e-mails a state transition causes. Ids are deterministic, so the
/// admin API queuing the same logical notification (e.g. the confirmation) is a no-op.
fn transition_notifications(
    transition: &Transition,
    before: &Subscription,
    after: &Subscription,
    snapshot: &StripeSnapshot,
    created: bool,
    now: DateTime<Utc>,
) -> Vec<OutboxItem> {
    let stripe_id = snapshot.subscription_id.as_str();
    let mut items: Vec<OutboxItem> = transition.domain_event(after, now).map(|e| OutboxItem::event(e, now)).into_iter().collect();
    match transition {
        Transition::Activated if created => {
            let confirmation = EmailContext::from(SubscriptionConfirmationContext {
                plan: after.tier,
                period_end: after.end_date,
                auto_renew: after.auto_renew,
            });
            items.push(confirmation.outbox_item(&after.user_id, stripe_id, now));
        }
        Transition::Canceled => {
            let ended = EmailContext::from(SubscriptionExpiredContext { plan: before.tier, ended_at: snapshot.canceled_at.unwrap_or(now) });
            items.push(ended.outbox_item(&after.user_id, &format!("ended-{stripe_id}"), now));
        }
        Transition::TierChanged { from, to } => {
            let changed = EmailContext::from(PlanChangedContext { previous_plan: *from, new_plan: *to, effective_date: now });
            items.push(changed.outbox_item(&after.user_id, &format!("{stripe_id}-{to}-v{}", after.version), now));
        }
        _ => {}
    }
    items
}

/// E-mails an event causes by itself, decided on the current (re-fetched) state.
fn event_notifications(
    event: &StripeEvent,
    current: &Subscription,
    snapshot: &StripeSnapshot,
    invoice: Option<&InvoiceSnapshot>,
    now: DateTime<Utc>,
) -> Vec<OutboxItem> {
    let user = &current.user_id;
    match (event.event_type.as_str(), invoice) {
        ("invoice.paid" | "invoice.payment_succeeded", Some(inv)) if inv.status == "paid" && inv.amount_paid.amount > 0 => {
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
        ("invoice.payment_failed" | "invoice.payment_action_required", Some(inv)) if inv.status == "open" => {
            let action = event.event_type == "invoice.payment_action_required";
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
            let dedupe = if action { format!("{}-action", inv.id) } else { format!("{}-attempt-{}", inv.id, inv.attempt_count) };
            vec![failed.outbox_item(user, &dedupe, now)]
        }
        ("customer.subscription.trial_will_end", _) if snapshot.status == SubscriptionStatus::Trial => {
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
