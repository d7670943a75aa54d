//! `PUT /users/{user_id}/subscription`: create (paid, granted or free), replace an ended
//! subscription, or change the tier of the live one (prorated at Stripe).
//!
//! # Creating at Stripe: one operation per user at a time
//! A create is the one change that can leave money behind: Stripe creates (and charges)
//! the subscription before the local commit names it. So before its first Stripe call it
//! opens the user's [`Operation`] (one conditional write): a second create while one is in
//! flight is `409 operation_in_progress`, whoever sends it under another key. The id is
//! derived from the `Idempotency-Key` header when there is one, so a retry (or a duplicate)
//! of the same request *is* the same operation: it may continue at once, and its Stripe
//! calls replay under the same keys — even a create still on its way to Stripe from the
//! attempt that timed out. The id derives the subscription's idempotency key and is stored
//! in its `metadata.operation_id`; the commit that records the subscription closes the operation
//! in the same transaction. An operation still open after its lease (longer than the
//! function can run) belongs to a process that died between Stripe and the commit: the
//! next create takes it over, looks up what it created (a strongly consistent list of the
//! customer's subscriptions), records it, and only then decides what the new request means.
//! The customer is created with the card in one request, under a key of its own (the
//! user, the details and the card sent), so retries converge on one customer, and
//! recorded on the profile at once, before anything is charged: every later operation
//! uses it and never asks Stripe's search, which lags creation. A new paid subscription
//! costs two Stripe requests (customer with card, subscription charged within the
//! create); for a recorded customer, two as well (attach the card, subscription).
//!
//! An erasure (see [`super::erase`]) holds the same operation: a create re-reads the
//! profile once it holds the operation, so it never creates for a user being erased.

use sha2::{Digest, Sha256};
use tracing::instrument;

use super::{
    already_applied, cause, changed, source_label,
    terms::{idempotency_key, paid_term_end, request_fingerprint, trial_end},
    unchanged, AdminError, AdminService, BillingStep, Caller, Changed, Committed, Outcome,
};
use crate::{
    billing::{BillingError, CreatedSubscription, CustomerDetails, IdempotencyKey, NewSubscription, NewSubscriptionKind, Proration},
    domain::{
        Billing, HistoryChange, HistoryEntry, StripeCustomerId, StripeSubscriptionId, Subscription, SubscriptionRequest,
        SubscriptionSource, SubscriptionStatus, SubscriptionUpdate, Tier, UserId, UserProfile,
    },
    metrics,
    store::{Change, Operation, StoreError},
    usecase::sync::Cause,
};

impl AdminService {
    /// Creates, replaces an ended one, or changes tier.
    #[instrument(skip_all, fields(user_id = %user, actor = %caller.actor))]
    pub async fn put_subscription(&self, user: UserId, update: SubscriptionUpdate, caller: &Caller) -> Result<Changed, AdminError> {
        let request = update.validate()?;
        let profile = self.live_profile(&user).await?;
        let current = self.store.subscription(&user).await?;
        if !creates_at_stripe(current.as_ref(), &request) {
            return self.dispatch(&profile, current, request, caller, None).await;
        }
        let (op_id, dangling) = self.begin_operation(&user, caller).await?;
        let (result, settled) = self.under_operation(&profile, request, caller, &op_id, dangling).await;
        if settled == Settled::Open {
            // Stripe may have created the subscription: the operation stays open for the
            // next request (or the webhook) to find it.
            tracing::warn!(op_id, "operation left open: its outcome at Stripe is not known");
        } else if settled == Settled::Close {
            self.close_quietly(&user, &op_id).await;
        }
        result
    }

    /// Closes an operation that ended without a commit closing it. A failure is harmless:
    /// the operation is taken over once its lease runs out.
    async fn close_quietly(&self, user: &UserId, op_id: &str) {
        if let Err(err) = self.store.close_operation(user, op_id).await {
            tracing::warn!(op_id, error = %err, "could not close the operation");
        }
    }

    /// The create, holding the user's operation `op_id`: first finishes the `dangling` one
    /// it took over, then re-reads the record (another request may have committed just
    /// before the operation opened) and does what the request means now.
    async fn under_operation(
        &self,
        profile: &UserProfile,
        request: SubscriptionRequest,
        caller: &Caller,
        op_id: &str,
        dangling: Option<Operation>,
    ) -> (Result<Changed, AdminError>, Settled) {
        // An erasure may have run between the first read and the operation: once it has
        // started, the profile reads as absent and nothing is created for the user.
        if let Err(err) = self.live_profile(&profile.user_id).await {
            return (Err(err), Settled::Close);
        }
        if let Some(dangling) = dangling {
            if let Err(err) = self.recover(profile, &dangling).await {
                return (Err(err), Settled::Open);
            }
        }
        let current = match self.store.subscription(&profile.user_id).await {
            Ok(current) => current,
            Err(err) => return (Err(err.into()), Settled::Close),
        };
        if !creates_at_stripe(current.as_ref(), &request) {
            return (self.dispatch(profile, current, request, caller, None).await, Settled::Close);
        }
        match self.dispatch(profile, current, request, caller, Some(op_id)).await {
            Ok(changed) => (Ok(changed), Settled::Done),
            // Stripe did not answer, or the commit did not: the subscription may exist.
            Err(err @ (AdminError::OutcomeUnknown(_) | AdminError::StoreUnavailable(_))) => (Err(err), Settled::Open),
            Err(err) => (Err(err), Settled::Close),
        }
    }

    async fn dispatch(
        &self,
        profile: &UserProfile,
        current: Option<Subscription>,
        request: SubscriptionRequest,
        caller: &Caller,
        op_id: Option<&str>,
    ) -> Result<Changed, AdminError> {
        match (current, op_id) {
            (Some(cur), _) if !cur.status.is_terminal() && cur.source != SubscriptionSource::Free => {
                self.change_existing(cur, request, caller).await
            }
            (Some(cur), _) if !cur.status.is_terminal() && request.tier == Tier::Free => {
                Ok(unchanged(&cur, "The user is already on the free tier; nothing was changed."))
            }
            (previous, op_id) => self.create(profile, previous, request, caller, op_id).await,
        }
    }

    /// Opens the user's operation; a running one is `409 operation_in_progress`. Returns
    /// its id and the dangling operation it took over, if any.
    async fn begin_operation(&self, user: &UserId, caller: &Caller) -> Result<(String, Option<Operation>), AdminError> {
        let now = self.clock.now();
        let op_id = match &caller.idempotency_key {
            Some(header) => hex::encode(&Sha256::digest(format!("{user}|{header}").as_bytes())[..16]),
            None => uuid::Uuid::new_v4().to_string(),
        };
        let op = Operation { user_id: user.clone(), op_id, started_at: now, lease_until: now + self.operation_lease, open: true };
        match self.store.begin_operation(&op).await {
            Ok(dangling) => Ok((op.op_id, dangling)),
            Err(StoreError::Conflict(_)) => {
                metrics::count("OperationsInProgress", &[]);
                Err(AdminError::conflict(
                    "operation_in_progress",
                    "Another change to this user's subscription is in progress. Retry in a few seconds: it is finished first.",
                ))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Records what a dead process's operation created at Stripe, if it created anything
    /// that is still live and no record names yet (the webhook may have recorded it first).
    async fn recover(&self, profile: &UserProfile, dangling: &Operation) -> Result<(), AdminError> {
        let user = &profile.user_id;
        tracing::warn!(op_id = %dangling.op_id, started_at = %dangling.started_at, "finishing an operation whose process died");
        metrics::count("OperationsRecovered", &[]);
        let local = self.store.subscription(user).await?;
        let Some(customer) = profile.stripe_customer_id.clone().or_else(|| local.as_ref()?.stripe_customer_id.clone()) else {
            // No customer recorded: the dead process never got as far as a subscription,
            // or (its customer record failed) the subscription's own events, which carry
            // `metadata.user_id`, and the sweep record it.
            tracing::warn!(op_id = %dangling.op_id, "the dead operation recorded no stripe customer; nothing to look up");
            return Ok(());
        };
        let found = self
            .billing
            .subscription_of_operation(&customer, &dangling.op_id)
            .await
            .map_err(|e| AdminError::from_billing(e, BillingStep::Subscription))?;
        let Some(snapshot) = found else { return Ok(()) };
        let cause = Cause::by("admin:recovery", HistoryChange::Created);
        let Ok(Some(applied)) = self.plan(user, local.as_ref(), &snapshot, snapshot.tier.unwrap_or(Tier::Premium), cause) else {
            // Already recorded (by the webhook), or ended, or superseded: nothing to add.
            return Ok(());
        };
        let same = |s: &Subscription| s.stripe_subscription_id.as_ref() == Some(&snapshot.subscription_id);
        self.commit(applied.change(), user, same).await?;
        self.deliver(&applied.outbox).await;
        Ok(())
    }

    async fn create(
        &self,
        profile: &UserProfile,
        previous: Option<Subscription>,
        request: SubscriptionRequest,
        caller: &Caller,
        op_id: Option<&str>,
    ) -> Result<Changed, AdminError> {
        let now = self.clock.now();
        let user = &profile.user_id;
        let seed = Subscription {
            id: uuid::Uuid::new_v4().to_string(),
            user_id: user.clone(),
            tier: request.tier,
            status: SubscriptionStatus::Incomplete,
            source: match (&request.billing, request.tier.is_paid_plan()) {
                (_, false) => SubscriptionSource::Free,
                (Billing::Paid { .. }, true) => SubscriptionSource::Paid,
                (Billing::Granted, true) => SubscriptionSource::Granted,
            },
            start_date: now,
            end_date: None,
            auto_renew: false,
            cancel_at_period_end: false,
            canceled_at: None,
            stripe_customer_id: None,
            stripe_subscription_id: None,
            last_billing_date: None,
            next_billing_date: None,
            comment: request.comment.clone(),
            version: previous.as_ref().map_or(0, |p| p.version),
            updated_at: now,
        };
        let expected_version = previous.as_ref().map(|p| p.version);

        if seed.source == SubscriptionSource::Free {
            // The free tier is local only: no Stripe customer, no subscription, no e-mail.
            let next = Subscription { status: SubscriptionStatus::Active, version: seed.version + 1, ..seed };
            let history = HistoryEntry::record(previous.as_ref(), &next, HistoryChange::Created, caller.actor.as_str(), now);
            let change = Change::subscription(next.clone(), expected_version, history);
            let applied = |s: &Subscription| s.source == SubscriptionSource::Free && !s.status.is_terminal();
            if let Committed::AlreadyApplied(current) = self.commit(change, user, applied).await? {
                return Ok(already_applied(&current));
            }
            metrics::count("SubscriptionsCreated", &[("Tier", next.tier.as_str())]);
            return Ok(changed(Outcome::Created, &next, "The user is on the free tier.".into(), None));
        }

        let op_id = op_id.ok_or_else(|| AdminError::Internal("a Stripe create outside an operation".into()))?;
        let key = IdempotencyKey::new(format!("admin:subscribe:{user}:op:{op_id}"));
        let card = match &request.billing {
            Billing::Paid { payment_method_id } => Some(payment_method_id.as_str()),
            Billing::Granted => None,
        };
        let (customer, attached) = self.customer(profile, previous.as_ref(), card, &key, request.tier).await?;
        let kind = match (&request.billing, attached) {
            (Billing::Paid { .. }, Some(payment_method)) => {
                let cancel_at = if request.auto_renew { None } else { Some(paid_term_end(now, request.duration_months)?) };
                NewSubscriptionKind::Paid { payment_method, cancel_at }
            }
            (Billing::Paid { .. }, None) => return Err(AdminError::Internal("a paid subscribe without its payment method".into())),
            (Billing::Granted, _) => NewSubscriptionKind::Granted { trial_end: trial_end(now, request.duration_months)? },
        };
        let new =
            NewSubscription { customer: customer.clone(), user_id: user.clone(), tier: request.tier, kind, operation_id: op_id.to_owned() };
        let CreatedSubscription { snapshot, payment_action } = self.billing.create_subscription(&new, &key).await.map_err(|e| match e {
            BillingError::Unavailable(why) => AdminError::OutcomeUnknown(why),
            other => declined(other, request.tier),
        })?;

        let stripe_id = snapshot.subscription_id.clone();
        let same = |s: &Subscription| s.stripe_subscription_id.as_ref() == Some(&stripe_id);
        let cause = cause(caller, HistoryChange::Created).with_seed(&seed);
        let applied = match self.plan(user, previous.as_ref(), &snapshot, request.tier, cause) {
            Ok(Some(applied)) => applied,
            Ok(None) => {
                self.close_quietly(user, op_id).await;
                return Ok(already_applied(previous.as_ref().unwrap_or(&seed)));
            }
            Err(_) => {
                return Err(AdminError::BadGateway(format!("stripe created subscription {stripe_id} already {}", snapshot.status)));
            }
        };
        let change = Change { closes_operation: Some(op_id.to_owned()), ..applied.change() };
        let next = match self.commit(change, user, same).await? {
            Committed::Written => {
                self.deliver(&applied.outbox).await;
                applied.next.clone()
            }
            Committed::AlreadyApplied(current) => {
                self.close_quietly(user, op_id).await;
                // Recorded by the webhook (from the metadata, under the Stripe id: see
                // `sync::fresh`) with its notifications: this request's own facts are added.
                // Recorded by a twin of this request (same operation): it is all there.
                if current.id != stripe_id.as_str() {
                    return Ok(already_applied(&current));
                }
                self.add_request_facts(*current, previous.as_ref(), request.comment.clone(), caller).await
            }
        };

        let tier = next.tier.as_str();
        if matches!(next.status, SubscriptionStatus::Active | SubscriptionStatus::Trial) {
            metrics::count("SubscriptionsCreated", &[("Tier", tier), ("Source", source_label(next.source))]);
            let message = match next.source {
                SubscriptionSource::Granted => format!("Granted {} until the trial ends; no card is charged.", next.tier.display_name()),
                _ => format!("Subscribed to {}.", next.tier.display_name()),
            };
            Ok(changed(Outcome::Created, &next, message, None))
        } else {
            // Not active yet: the confirmation and the activation event follow when the
            // payment completes (the webhook sees the subscription become active).
            metrics::count("SubscriptionsIncomplete", &[("Tier", tier)]);
            let message = "The subscription was created but its first payment did not complete; it grants no access until the customer completes the payment (see payment_action).".into();
            Ok(changed(Outcome::PaymentRequired, &next, message, payment_action))
        }
    }

    /// The user's Stripe customer and whether it was already recorded: the one on the
    /// profile (or on the replaced subscription) without a Stripe call, else
    /// [`Self::new_customer`].
    /// The customer to subscribe, with `card` attached when given: one Stripe request
    /// either way. The recorded customer gets the card attached; a user without one gets
    /// a customer created with the card already attached and default.
    async fn customer(
        &self,
        profile: &UserProfile,
        previous: Option<&Subscription>,
        card: Option<&str>,
        key: &IdempotencyKey,
        tier: Tier,
    ) -> Result<(StripeCustomerId, Option<String>), AdminError> {
        let Some(known) = profile.stripe_customer_id.clone().or_else(|| previous.and_then(|p| p.stripe_customer_id.clone())) else {
            return self.new_customer(profile, card, tier).await;
        };
        let Some(card) = card else { return Ok((known, None)) };
        match self.billing.attach_payment_method(&known, card, key).await {
            Ok(attached) => Ok((known, Some(attached))),
            // The recorded customer was deleted at Stripe (the Dashboard): a new one.
            Err(BillingError::NotFound(what)) => {
                tracing::warn!(stripe.customer_id = %known, what, "the recorded stripe customer is gone; making a new one");
                self.new_customer(profile, Some(card), tier).await
            }
            Err(e) => Err(declined(e, tier)),
        }
    }

    /// Creates the user's Stripe customer (with `card`) and records it on the profile
    /// before anything is charged, so no later operation makes a second one. When the
    /// record cannot be written, the customer is still used: a retry within Stripe's
    /// 24 h replays the same creation.
    async fn new_customer(
        &self,
        profile: &UserProfile,
        card: Option<&str>,
        tier: Tier,
    ) -> Result<(StripeCustomerId, Option<String>), AdminError> {
        let created =
            self.billing.create_customer(&customer_details(profile), card, &customer_key(profile, card)).await.map_err(|e| match e {
                BillingError::CardDeclined { .. } => declined(e, tier),
                // A creation names no other object than the card: a missing one is the card.
                BillingError::NotFound(_) if card.is_some() => declined(e, tier),
                other => AdminError::from_billing(other, BillingStep::Customer),
            })?;
        if let Err(error) = self.store.set_customer(&profile.user_id, &created.id).await {
            tracing::warn!(%error, stripe.customer_id = %created.id, "the stripe customer could not be recorded on the profile");
        }
        Ok((created.id, created.payment_method))
    }

    /// A subscription this request created at Stripe but a webhook stored first: the
    /// request's comment goes on the record and its `Created` entry, by the admin, into the
    /// history (the webhook's own entry stays; the notifications were queued by it). Best
    /// effort: when another writer changes the record meanwhile, the current record is
    /// answered without the facts, which only the history would have shown.
    async fn add_request_facts(
        &self,
        current: Subscription,
        previous: Option<&Subscription>,
        comment: Option<String>,
        caller: &Caller,
    ) -> Subscription {
        let now = self.clock.now();
        let next = Subscription {
            comment: comment.or_else(|| current.comment.clone()),
            version: current.version + 1,
            updated_at: now,
            ..current.clone()
        };
        let history = HistoryEntry::record(previous, &next, HistoryChange::Created, caller.actor.as_str(), now);
        match self.store.commit(Change::subscription(next.clone(), Some(current.version), history)).await {
            Ok(()) => next,
            Err(error) => {
                tracing::warn!(%error, "the request's comment and history entry could not be added to the webhook's record");
                current
            }
        }
    }

    async fn change_existing(&self, cur: Subscription, request: SubscriptionRequest, caller: &Caller) -> Result<Changed, AdminError> {
        let wanted_source = match request.billing {
            Billing::Paid { .. } => SubscriptionSource::Paid,
            Billing::Granted => SubscriptionSource::Granted,
        };
        if !request.tier.is_paid_plan() {
            return Err(AdminError::conflict(
                "downgrade_to_free",
                "A Stripe subscription cannot be changed to the free tier. Cancel it instead (POST .../subscription/cancel).",
            ));
        }
        if cur.status == SubscriptionStatus::Incomplete {
            if cur.tier == request.tier {
                return Ok(unchanged(&cur, "The subscription already exists and is waiting for its first payment; nothing was changed."));
            }
            return Err(AdminError::conflict(
                "payment_pending",
                "The subscription's first payment has not completed. Cancel it immediately before creating another one.",
            ));
        }
        if cur.source != wanted_source {
            return Err(AdminError::conflict(
                "billing_change_unsupported",
                format!(
                    "The current subscription is {}; switching between paid and granted is not a tier change. Cancel it immediately, then create the new one.",
                    source_label(cur.source)
                ),
            ));
        }
        if cur.tier == request.tier {
            return Ok(unchanged(&cur, &format!("The user is already on {}; nothing was changed.", cur.tier.display_name())));
        }
        if !cur.status.is_live() {
            return Err(AdminError::conflict(
                "not_changeable",
                format!("A subscription that is {} cannot change tier; cancel it and create a new one.", cur.status),
            ));
        }
        let stripe_id = stripe_subscription(&cur)?;
        let key = self.key("subscription.put", &cur.user_id, caller, &request_fingerprint(&request), Some(&cur));
        let snapshot = match self.billing.change_tier(&stripe_id, request.tier, Proration::CreateProrations, &key).await {
            Ok(snapshot) => snapshot,
            Err(e) => return Err(self.subscription_refused(e, &stripe_id, &cur).await),
        };
        let mut cause = cause(caller, HistoryChange::TierChanged);
        cause.comment = request.comment.as_deref();
        let tier = request.tier;
        let same = move |s: &Subscription| s.stripe_subscription_id.as_ref() == Some(&stripe_id) && s.tier == tier;
        let Some(applied) = self.plan(&cur.user_id, Some(&cur), &snapshot, request.tier, cause)? else {
            return Ok(already_applied(&cur));
        };
        let next = applied.next.clone();
        if let Committed::AlreadyApplied(current) = self.commit(applied.change(), &cur.user_id, same).await? {
            return Ok(already_applied(&current));
        }
        self.deliver(&applied.outbox).await;
        metrics::count("TierChanges", &[("Tier", next.tier.as_str())]);
        let message = format!(
            "Changed from {} to {}; the difference is prorated on the next invoice.",
            cur.tier.display_name(),
            next.tier.display_name()
        );
        Ok(changed(Outcome::TierChanged, &next, message, None))
    }

    /// Stripe refused a change to the user's existing subscription. When that is because the
    /// subscription is no longer what the local record says — ended at Stripe by a request
    /// running at the same time, the Dashboard, or a fixed term whose webhook has not arrived
    /// yet — it is a conflict to re-read and retry (`changed_at_stripe`), not a failure of
    /// the provider. Nothing is written here: the webhook (or `reconcile`) brings the
    /// record up to date from Stripe's events, in order.
    pub(super) async fn subscription_refused(&self, err: BillingError, id: &StripeSubscriptionId, cur: &Subscription) -> AdminError {
        let mapped = AdminError::from_billing(err.clone(), BillingStep::Subscription);
        if !matches!(err, BillingError::InvalidRequest { .. }) || matches!(mapped, AdminError::Conflict { .. }) {
            return mapped;
        }
        match self.billing.subscription(id).await {
            Ok(at_stripe) if at_stripe.status != cur.status => {
                tracing::warn!(local = %cur.status, stripe = %at_stripe.status, "stripe refused a change: the local record is behind stripe");
                metrics::count("StaleSubscriptionConflicts", &[]);
                AdminError::conflict(
                    "changed_at_stripe",
                    format!(
                        "The subscription is {} at Stripe, not {} as recorded here; the record is brought up to date from Stripe's events within moments. Read it again before retrying.",
                        at_stripe.status, cur.status
                    ),
                )
            }
            _ => mapped,
        }
    }

    pub(super) fn key(
        &self,
        operation: &str,
        user: &UserId,
        caller: &Caller,
        request: &str,
        state: Option<&Subscription>,
    ) -> IdempotencyKey {
        idempotency_key(operation, user, caller.idempotency_key.as_deref(), request, state)
    }
}

/// How an operation ended, for what to do with its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// The commit that recorded the outcome closed it.
    Done,
    /// Ended without a Stripe subscription (or with one already recorded): close it.
    Close,
    /// Stripe or the commit did not answer: leave it for the next request to finish.
    Open,
}

/// Whether `request` creates a subscription at Stripe given the user's record: there is
/// no live paid or granted one, and a paid tier is asked for.
fn creates_at_stripe(current: Option<&Subscription>, request: &SubscriptionRequest) -> bool {
    let live =
        current.is_some_and(|cur| !cur.status.is_terminal() && (cur.source != SubscriptionSource::Free || request.tier == Tier::Free));
    !live && request.tier.is_paid_plan()
}

fn customer_details(profile: &UserProfile) -> CustomerDetails {
    CustomerDetails { user_id: profile.user_id.clone(), email: profile.email.to_string(), name: profile.full_name.clone() }
}

/// The customer's creation key: the user and what is sent (details and card), so every
/// operation for the user that sends the same (and every retry) within Stripe's 24 h
/// replays one customer, and a corrected request with another card is not refused as a
/// reused key. Once created, the customer is recorded on the profile and used from there.
fn customer_key(profile: &UserProfile, card: Option<&str>) -> IdempotencyKey {
    let details = format!("{}|{}|{}", profile.email, profile.full_name.as_deref().unwrap_or_default(), card.unwrap_or_default());
    let digest = hex::encode(Sha256::digest(details.as_bytes()));
    IdempotencyKey::new(format!("admin:customer:{}:{}", profile.user_id, &digest[..16]))
}

/// A declined card is worth a metric; every billing error maps as usual.
fn declined(err: BillingError, tier: Tier) -> AdminError {
    let mapped = AdminError::from_billing(err, BillingStep::PaymentMethod);
    if matches!(mapped, AdminError::CardDeclined { .. }) {
        metrics::count("CardDeclines", &[("Tier", tier.as_str())]);
    }
    mapped
}

pub(super) fn stripe_subscription(sub: &Subscription) -> Result<StripeSubscriptionId, AdminError> {
    sub.stripe_subscription_id.clone().ok_or_else(|| {
        AdminError::Internal(format!("subscription {} of {} is {} without a Stripe id", sub.id, sub.user_id, source_label(sub.source)))
    })
}
