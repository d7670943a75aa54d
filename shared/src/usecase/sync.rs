//! The one way Stripe's state of a subscription becomes local state: the record, its
//! history entry, and every notification (e-mail and domain event) the change causes.
//!
//! The admin API (after its own Stripe call), the webhook (after re-fetching the object an
//! event names) and the jobs (the replay and sweep, expire-lapsed) all plan their write here, so
//! whichever of them applies a change first queues the same items under the same ids and
//! the others find nothing left to do.
//!
//! # Invariants
//! - **Notifications follow the transition, not the path.** Each item's id is derived
//!   from the subscription and the record version the transition creates (the version
//!   read plus one, whoever reads it), never from who applies it; the outbox drops an id
//!   it already holds, so one transition queues one e-mail however many paths see it.
//! - **A new record only for a live subscription.** Stripe's subscription becomes the
//!   user's record when the user has none, or only an ended or free one; a snapshot of any
//!   other subscription while a different one is live is [`Sync::NotCurrent`].
//! - **A created record tells only what starts it**: its activation (confirmation and
//!   `SubscriptionActivated`), never a "tier change" from the placeholder or a "scheduled
//!   cancellation" of a fixed term chosen at creation.

use chrono::{DateTime, Utc};

use crate::{
    domain::mail::{
        CancellationConfirmedContext, EmailContext, PlanChangedContext, SubscriptionConfirmationContext, SubscriptionExpiredContext,
    },
    domain::{
        HistoryChange, HistoryEntry, OutboxItem, StripeSnapshot, Subscription, SubscriptionSource, SubscriptionStatus, Tier, Transition,
        UserId,
    },
    store::{Change, StripeMapping},
};

/// Who applies a snapshot, and what they know that Stripe's state does not say.
#[derive(Debug, Clone)]
pub struct Cause<'a> {
    /// The history entry's actor (`admin:<sub>`, `stripe`, `job:<name>`).
    pub actor: &'a str,
    /// The history entry's kind when the caller knows what it did (an admin's cancel, a
    /// job's sync); otherwise it follows from the first transition.
    pub change: Option<HistoryChange>,
    /// For a record this sync creates: the one the creating request prepared (local id,
    /// source, requested tier, comment). Without it a placeholder is built from the snapshot.
    pub seed: Option<&'a Subscription>,
    /// The admin's comment for the record and its history entry, replacing the old one.
    pub comment: Option<&'a str>,
}

impl<'a> Cause<'a> {
    /// Stripe's own events: the change is whatever the transition was.
    pub fn stripe() -> Self {
        Self { actor: "stripe", change: None, seed: None, comment: None }
    }

    /// A caller that knows what it did.
    pub fn by(actor: &'a str, change: HistoryChange) -> Self {
        Self { actor, change: Some(change), seed: None, comment: None }
    }

    pub fn with_seed(mut self, seed: &'a Subscription) -> Self {
        self.seed = Some(seed);
        self
    }
}

/// The write a snapshot asks for.
#[derive(Debug, Clone)]
pub struct Applied {
    pub next: Subscription,
    /// The version it replaces (`None`: the user has no record yet).
    pub expected_version: Option<u64>,
    pub history: HistoryEntry,
    /// E-mails and domain events of the transitions.
    pub outbox: Vec<OutboxItem>,
}

impl Applied {
    /// The one transaction this write is: record (version-guarded), history, outbox, and
    /// the Stripe ids that point at the user from now on.
    pub fn change(&self) -> Change {
        let mut change =
            Change::subscription(self.next.clone(), self.expected_version, self.history.clone()).with_outbox(self.outbox.clone());
        if let Some(id) = &self.next.stripe_subscription_id {
            change = change.with_mappings([StripeMapping::Subscription(id.to_string())]);
        }
        if let Some(id) = &self.next.stripe_customer_id {
            change = change.with_mappings([StripeMapping::Customer(id.to_string())]);
        }
        change
    }
}

/// What a snapshot means for the user's record.
#[derive(Debug, Clone)]
pub enum Sync {
    /// The record already says what Stripe says.
    InLine,
    /// The snapshot is about a subscription other than the user's current one (an old
    /// one, or an ended one that never became the record): nothing to write.
    NotCurrent,
    Apply(Box<Applied>),
}

/// Plans how Stripe's `snapshot` changes `user`'s record `local` (as read, with its version).
pub fn plan(user: &UserId, local: Option<&Subscription>, snapshot: &StripeSnapshot, now: DateTime<Utc>, cause: &Cause<'_>) -> Sync {
    let same = |s: &Subscription| s.stripe_subscription_id.as_ref() == Some(&snapshot.subscription_id);
    let (base, created) = match local {
        Some(l) if same(l) => (l.clone(), false),
        // A different subscription is live locally: this one is old news.
        Some(l) if l.status.is_live() && l.stripe_subscription_id.is_some() => return Sync::NotCurrent,
        // Nothing current (none yet, ended, or the free tier): only a live subscription replaces it.
        _ if snapshot.status.is_terminal() => return Sync::NotCurrent,
        _ => (fresh(user, local, snapshot, now, cause.seed), true),
    };
    let Some((mut next, mut transitions)) = base.apply_stripe(snapshot, now) else {
        return Sync::InLine;
    };
    if let Some(comment) = cause.comment {
        next.comment = Some(comment.to_owned());
    }
    if created {
        transitions.retain(|t| matches!(t, Transition::Activated | Transition::PaymentFailed | Transition::Paused));
        next.start_date = snapshot.current_period_start.min(now);
    }
    let change = cause.change.unwrap_or(if created {
        HistoryChange::Created
    } else {
        transitions.first().map(history_change).unwrap_or(HistoryChange::Synced)
    });
    let before = if created { local } else { Some(&base) };
    let history = HistoryEntry::record(before, &next, change, cause.actor, now);
    let outbox = transitions.iter().flat_map(|t| notifications(t, &base, &next, snapshot, created, now)).collect();
    Sync::Apply(Box::new(Applied { next, expected_version: local.map(|l| l.version), history, outbox }))
}

/// The record a Stripe subscription is applied onto when no local record names it yet:
/// the creating request's seed, or (an event that beat that request's commit, a
/// Checkout subscription) a placeholder from the snapshot. The version continues the
/// replaced record's so the write stays guarded.
fn fresh(
    user: &UserId,
    replaced: Option<&Subscription>,
    snapshot: &StripeSnapshot,
    now: DateTime<Utc>,
    seed: Option<&Subscription>,
) -> Subscription {
    let version = replaced.map_or(0, |r| r.version);
    if let Some(seed) = seed {
        return Subscription { version, ..seed.clone() };
    }
    Subscription {
        // The Stripe id as the record id tells a record an event made from one the admin
        // API's seed made (a uuid): the admin's late commit adds its facts to the former.
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

/// The domain event and the e-mail one transition causes, under ids that depend only on
/// the subscription and the versions involved (see the module docs).
fn notifications(
    transition: &Transition,
    before: &Subscription,
    after: &Subscription,
    snapshot: &StripeSnapshot,
    created: bool,
    now: DateTime<Utc>,
) -> Vec<OutboxItem> {
    let stripe_id = snapshot.subscription_id.as_str();
    let user = &after.user_id;
    let mut items: Vec<OutboxItem> = transition.domain_event(after, now).map(|e| OutboxItem::event(e, now)).into_iter().collect();
    let email = match transition {
        // The subscription starts: created active, or its first payment completed.
        Transition::Activated if created || before.status == SubscriptionStatus::Incomplete => Some((
            EmailContext::from(SubscriptionConfirmationContext {
                plan: after.tier,
                period_end: after.end_date,
                auto_renew: after.auto_renew,
            }),
            stripe_id.to_owned(),
        )),
        Transition::Canceled => {
            // Ended before the time it was paid (or granted) for, without a scheduled end:
            // someone cancelled it now. Anything else ran out (period end, failed payments,
            // a first invoice never paid).
            let cut_short = snapshot.status == SubscriptionStatus::Canceled
                && !before.cancel_at_period_end
                && before.end_date.is_some_and(|end| now < end);
            Some(if cut_short {
                let context =
                    CancellationConfirmedContext { plan: before.tier, access_until: snapshot.canceled_at.unwrap_or(now), immediate: true };
                (EmailContext::from(context), format!("{stripe_id}:immediate"))
            } else {
                let context = SubscriptionExpiredContext { plan: before.tier, ended_at: snapshot.canceled_at.unwrap_or(now) };
                (EmailContext::from(context), format!("ended-{stripe_id}"))
            })
        }
        Transition::CancelScheduled => Some((
            EmailContext::from(CancellationConfirmedContext {
                plan: before.tier,
                access_until: after.end_date.unwrap_or(now),
                immediate: false,
            }),
            format!("{stripe_id}:period_end:v{}", after.version),
        )),
        Transition::TierChanged { from, to } => Some((
            EmailContext::from(PlanChangedContext { previous_plan: *from, new_plan: *to, effective_date: now }),
            format!("{stripe_id}:v{}", after.version),
        )),
        _ => None,
    };
    items.extend(email.map(|(context, dedupe)| context.outbox_item(user, &dedupe, now)));
    items
}
