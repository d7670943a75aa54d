//! The admin use cases. Handlers are thin: they extract, call one method here, and
//! turn the result into a response.
//!
//! Every change follows the same order: read the local state, make the Stripe calls
//! (each with an idempotency key), then write everything the change causes in ONE
//! DynamoDB transaction (subscription with its version check, history, outbox, Stripe
//! id mappings), then try to deliver the outbox. A failure before the commit changes
//! nothing locally.
//!
//! # Idempotency
//! Every mutating Stripe call carries an [`IdempotencyKey`]:
//! - with an `Idempotency-Key` header: `admin:<operation>:<user>:key:<header>`; the caller
//!   declares two requests to be the same, whatever happened in between;
//! - without: `admin:<operation>:<user>:<sha256(canonical request | subscription id@version)>`.
//!   The local version is part of it so that the *same body sent again later* (cancel,
//!   reactivate, cancel) is a new operation at Stripe, while a retry of a request whose
//!   local commit never happened (same version) replays exactly the same Stripe calls.
//!
//! A retry after a request *was* committed finds the work done (same tier, cancel already
//! scheduled, …) and answers `200` with outcome `unchanged` and the current state. A
//! version conflict on commit (a concurrent retry, or a webhook that recorded the same
//! Stripe object first) re-reads the record: if it already says what this request did,
//! the answer is that state (`unchanged`), not an error; otherwise `409 concurrent_change`.

use std::sync::Arc;

use chrono::{DateTime, Months, Utc};
use sha2::{Digest, Sha256};
use shared::{
    billing::{
        BillingError, BillingGateway, CreatedSubscription, CustomerDetails, IdempotencyKey, NewSubscription, NewSubscriptionKind, Proration,
    },
    clock::Clock,
    delivery::Deliver,
    domain::{
        AccessPolicy, Billing, HistoryChange, HistoryEntry, OutboxItem, ProfileUpdate, StripeSnapshot, StripeSubscriptionId, Subscription,
        SubscriptionRequest, SubscriptionSource, SubscriptionStatus, SubscriptionUpdate, Tier, Transition, UserId, UserProfile,
    },
    email::{CancellationConfirmedContext, EmailContext, PlanChangedContext, SubscriptionConfirmationContext},
    store::{Change, Store, StoreError, StripeMapping},
};
use tracing::instrument;

use crate::{
    caller::Caller,
    dto::{HistoryResponse, Outcome, PaymentActionResponse, ProfileResponse, SubscriptionChange, SubscriptionResponse},
    metrics,
    problem::{ApiError, BillingStep},
};

pub const HISTORY_DEFAULT_LIMIT: i32 = 20;
pub const HISTORY_MAX_LIMIT: i32 = 100;

pub struct AdminService {
    store: Arc<dyn Store>,
    billing: Arc<dyn BillingGateway>,
    deliver: Arc<dyn Deliver>,
    clock: Arc<dyn Clock>,
    access: AccessPolicy,
}

/// What a commit ended as.
enum Committed {
    /// This request's change is stored.
    Written,
    /// A conflicting writer had already stored the same outcome (a retry or a webhook).
    AlreadyApplied(Box<Subscription>),
}

impl AdminService {
    pub fn new(store: Arc<dyn Store>, billing: Arc<dyn BillingGateway>, deliver: Arc<dyn Deliver>, clock: Arc<dyn Clock>) -> Self {
        Self { store, billing, deliver, clock, access: AccessPolicy::default() }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn view(&self, sub: &Subscription) -> SubscriptionResponse {
        SubscriptionResponse::of(sub, self.clock.now(), &self.access)
    }

    /// `PUT /users/{user_id}`: returns the stored profile and whether it is new. When
    /// the user already has a Stripe customer and the address or name changed, Stripe
    /// is updated first (its receipts and invoices go to that address).
    #[instrument(skip_all, fields(user_id = %user))]
    pub async fn put_profile(&self, user: UserId, update: ProfileUpdate) -> Result<(ProfileResponse, bool), ApiError> {
        let profile = update.validate(user.clone(), self.clock.now())?;
        let previous = self.store.profile(&user).await?;
        if let Some(previous) = &previous {
            if previous.email != profile.email || previous.full_name != profile.full_name {
                self.sync_customer(previous, &profile).await?;
            }
        }
        self.store.put_profile(&profile).await?;
        metrics::count("ProfilesUpserted", &[]);
        Ok((ProfileResponse::from(&profile), previous.is_none()))
    }

    async fn sync_customer(&self, previous: &UserProfile, profile: &UserProfile) -> Result<(), ApiError> {
        let Some(customer) = self.store.subscription(&profile.user_id).await?.and_then(|s| s.stripe_customer_id) else {
            return Ok(());
        };
        // Keyed by the profile version it replaces, so A→B, B→A, A→B are three updates.
        let request =
            format!("{}|{}|{}", previous.updated_at.timestamp_micros(), profile.email, profile.full_name.as_deref().unwrap_or_default());
        let key = idempotency_key("profile.put", &profile.user_id, None, &request, None);
        let details =
            CustomerDetails { user_id: profile.user_id.clone(), email: profile.email.to_string(), name: profile.full_name.clone() };
        self.billing.update_customer(&customer, &details, &key).await.map_err(|e| ApiError::from_billing(e, BillingStep::Customer))
    }

    /// `GET /users/{user_id}/subscription`.
    #[instrument(skip_all, fields(user_id = %user))]
    pub async fn subscription(&self, user: UserId) -> Result<SubscriptionResponse, ApiError> {
        match self.store.subscription(&user).await? {
            Some(sub) => Ok(self.view(&sub)),
            None => Err(self.not_found(&user).await),
        }
    }

    /// `GET /users/{user_id}/subscription/history`, newest first.
    #[instrument(skip_all, fields(user_id = %user, limit))]
    pub async fn history(&self, user: UserId, limit: i32) -> Result<HistoryResponse, ApiError> {
        let entries = self.store.history(&user, limit).await?;
        if entries.is_empty() && self.store.profile(&user).await?.is_none() {
            return Err(ApiError::UserNotFound(user.to_string()));
        }
        Ok(HistoryResponse { user_id: user.to_string(), entries })
    }

    /// `PUT /users/{user_id}/subscription`: create, replace an ended one, or change tier.
    #[instrument(skip_all, fields(user_id = %user, admin = %caller.admin.subject))]
    pub async fn put_subscription(
        &self,
        user: UserId,
        update: SubscriptionUpdate,
        caller: &Caller,
    ) -> Result<SubscriptionChange, ApiError> {
        let request = update.validate()?;
        let profile = self.store.profile(&user).await?.ok_or_else(|| ApiError::UserNotFound(user.to_string()))?;
        let current = self.store.subscription(&user).await?;
        match current {
            Some(cur) if !cur.status.is_terminal() && cur.source != SubscriptionSource::Free => {
                self.change_existing(cur, request, caller).await
            }
            Some(cur) if !cur.status.is_terminal() && request.tier == Tier::Free => {
                Ok(self.unchanged(&cur, "The user is already on the free tier; nothing was changed."))
            }
            previous => self.create(&profile, previous, request, caller).await,
        }
    }

    async fn create(
        &self,
        profile: &UserProfile,
        previous: Option<Subscription>,
        request: SubscriptionRequest,
        caller: &Caller,
    ) -> Result<SubscriptionChange, ApiError> {
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
            let history = HistoryEntry::record(previous.as_ref(), &next, HistoryChange::Created, caller.admin.actor(), now);
            let change = Change::subscription(next.clone(), expected_version, history);
            let applied = |s: &Subscription| s.source == SubscriptionSource::Free && !s.status.is_terminal();
            if let Committed::AlreadyApplied(current) = self.commit(change, user, applied).await? {
                return Ok(self.already_applied(&current));
            }
            metrics::count("SubscriptionsCreated", &[("Tier", next.tier.as_str())]);
            return Ok(self.changed(Outcome::Created, &next, "The user is on the free tier.".into(), None));
        }

        // The term is anchored to the hour (see `term_end`), and so is the key: a retry
        // within the hour replays the same Stripe calls with identical parameters.
        let fingerprint = format!("{}|anchor={}", request_fingerprint(&request), term_anchor(now).timestamp());
        let key = self.key("subscription.put", user, caller, &fingerprint, previous.as_ref());
        let details = CustomerDetails { user_id: user.clone(), email: profile.email.to_string(), name: profile.full_name.clone() };
        let customer = self.billing.ensure_customer(&details, &key).await.map_err(|e| ApiError::from_billing(e, BillingStep::Customer))?;
        let kind = match &request.billing {
            Billing::Paid { payment_method_id } => {
                let payment_method = self
                    .billing
                    .attach_default_payment_method(&customer, payment_method_id, &key)
                    .await
                    .map_err(|e| self.declined(e, request.tier))?;
                let cancel_at = if request.auto_renew { None } else { Some(term_end(now, request.duration_months)?) };
                NewSubscriptionKind::Paid { payment_method, cancel_at }
            }
            Billing::Granted => NewSubscriptionKind::Granted { trial_end: trial_end(now, request.duration_months)? },
        };
        let new = NewSubscription { customer: customer.clone(), user_id: user.clone(), tier: request.tier, kind };
        let CreatedSubscription { snapshot, payment_action } =
            self.billing.create_subscription(&new, &key).await.map_err(|e| self.declined(e, request.tier))?;

        let next = apply(&seed, &snapshot, request.tier, now);
        if next.status.is_terminal() {
            return Err(ApiError::BadGateway(format!("stripe created subscription {} already {}", snapshot.subscription_id, next.status)));
        }
        let stripe_id = snapshot.subscription_id.to_string();
        let history = HistoryEntry::record(previous.as_ref(), &next, HistoryChange::Created, caller.admin.actor(), now);
        let active = matches!(next.status, SubscriptionStatus::Active | SubscriptionStatus::Trial);
        let outbox = if active {
            let confirmation = EmailContext::from(SubscriptionConfirmationContext {
                plan: next.tier,
                period_end: next.end_date,
                auto_renew: next.auto_renew,
            });
            vec![confirmation.outbox_item(user, &stripe_id, now)]
                .into_iter()
                .chain(Transition::Activated.domain_event(&next, now).map(|e| OutboxItem::event(e, now)))
                .collect()
        } else {
            // Not active yet: the confirmation and the activation event follow when the
            // payment completes (the webhook sees the subscription become active).
            Vec::new()
        };
        let change = Change::subscription(next.clone(), expected_version, history)
            .with_outbox(outbox.clone())
            .with_mappings([StripeMapping::Customer(customer.to_string()), StripeMapping::Subscription(stripe_id.clone())]);
        let same = |s: &Subscription| s.stripe_subscription_id.as_ref().is_some_and(|id| id.as_str() == stripe_id);
        if let Committed::AlreadyApplied(current) = self.commit(change, user, same).await? {
            return Ok(self.already_applied(&current));
        }
        self.deliver(&outbox).await;

        let tier = next.tier.as_str();
        if active {
            metrics::count("SubscriptionsCreated", &[("Tier", tier), ("Source", source_label(next.source))]);
            let message = match next.source {
                SubscriptionSource::Granted => format!("Granted {} until the trial ends; no card is charged.", next.tier.display_name()),
                _ => format!("Subscribed to {}.", next.tier.display_name()),
            };
            Ok(self.changed(Outcome::Created, &next, message, None))
        } else {
            metrics::count("SubscriptionsIncomplete", &[("Tier", tier)]);
            let action = payment_action.map(PaymentActionResponse::from);
            let message = "The subscription was created but its first payment did not complete; it grants no access until the customer completes the payment (see payment_action).".into();
            Ok(self.changed(Outcome::PaymentRequired, &next, message, action))
        }
    }

    async fn change_existing(
        &self,
        cur: Subscription,
        request: SubscriptionRequest,
        caller: &Caller,
    ) -> Result<SubscriptionChange, ApiError> {
        let wanted_source = match request.billing {
            Billing::Paid { .. } => SubscriptionSource::Paid,
            Billing::Granted => SubscriptionSource::Granted,
        };
        if !request.tier.is_paid_plan() {
            return Err(ApiError::conflict(
                "downgrade_to_free",
                "A Stripe subscription cannot be changed to the free tier. Cancel it instead (POST .../subscription/cancel).",
            ));
        }
        if cur.status == SubscriptionStatus::Incomplete {
            if cur.tier == request.tier {
                return Ok(
                    self.unchanged(&cur, "The subscription already exists and is waiting for its first payment; nothing was changed.")
                );
            }
            return Err(ApiError::conflict(
                "payment_pending",
                "The subscription's first payment has not completed. Cancel it immediately before creating another one.",
            ));
        }
        if cur.source != wanted_source {
            return Err(ApiError::conflict(
                "billing_change_unsupported",
                format!(
                    "The current subscription is {}; switching between paid and granted is not a tier change. Cancel it immediately, then create the new one.",
                    source_label(cur.source)
                ),
            ));
        }
        if cur.tier == request.tier {
            return Ok(self.unchanged(&cur, &format!("The user is already on {}; nothing was changed.", cur.tier.display_name())));
        }
        if !cur.status.is_live() {
            return Err(ApiError::conflict(
                "not_changeable",
                format!("A subscription that is {} cannot change tier; cancel it and create a new one.", cur.status),
            ));
        }
        let stripe_id = stripe_subscription(&cur)?;
        let now = self.clock.now();
        let key = self.key("subscription.put", &cur.user_id, caller, &request_fingerprint(&request), Some(&cur));
        let snapshot = match self.billing.change_tier(&stripe_id, request.tier, Proration::CreateProrations, &key).await {
            Ok(snapshot) => snapshot,
            Err(e) => return Err(self.subscription_refused(e, &stripe_id, &cur).await),
        };
        let mut next = apply(&cur, &snapshot, request.tier, now);
        if request.comment.is_some() {
            next.comment = request.comment.clone();
        }
        let history = HistoryEntry::record(Some(&cur), &next, HistoryChange::TierChanged, caller.admin.actor(), now);
        let discriminator = format!("{stripe_id}:v{}", next.version);
        let email = EmailContext::from(PlanChangedContext { previous_plan: cur.tier, new_plan: next.tier, effective_date: now });
        let outbox = std::iter::once(email.outbox_item(&cur.user_id, &discriminator, now))
            .chain(Transition::TierChanged { from: cur.tier, to: next.tier }.domain_event(&next, now).map(|e| OutboxItem::event(e, now)))
            .collect::<Vec<_>>();
        let change = Change::subscription(next.clone(), Some(cur.version), history).with_outbox(outbox.clone());
        let tier = request.tier;
        let same = move |s: &Subscription| s.stripe_subscription_id.as_ref() == Some(&stripe_id) && s.tier == tier;
        if let Committed::AlreadyApplied(current) = self.commit(change, &cur.user_id, same).await? {
            return Ok(self.already_applied(&current));
        }
        self.deliver(&outbox).await;
        metrics::count("TierChanges", &[("Tier", next.tier.as_str())]);
        let message = format!(
            "Changed from {} to {}; the difference is prorated on the next invoice.",
            cur.tier.display_name(),
            next.tier.display_name()
        );
        Ok(self.changed(Outcome::TierChanged, &next, message, None))
    }

    /// `POST /users/{user_id}/subscription/cancel`.
    #[instrument(skip_all, fields(user_id = %user, admin = %caller.admin.subject, immediately))]
    pub async fn cancel(&self, user: UserId, immediately: bool, caller: &Caller) -> Result<SubscriptionChange, ApiError> {
        let cur = self.cancellable(&user).await?;
        let stripe_id = stripe_subscription(&cur)?;
        if !immediately {
            if cur.status == SubscriptionStatus::Incomplete {
                return Err(ApiError::conflict(
                    "cancel_immediately",
                    "An incomplete subscription has no paid period to run out; cancel it with {\"immediately\": true}.",
                ));
            }
            if cur.cancel_at_period_end {
                return Ok(self.unchanged(&cur, "A cancellation at the end of the period is already scheduled; nothing was changed."));
            }
        }
        let now = self.clock.now();
        let fingerprint = if immediately { "immediately" } else { "at_period_end" };
        let key = self.key("subscription.cancel", &user, caller, fingerprint, Some(&cur));
        let answer = if immediately {
            self.billing.cancel_now(&stripe_id, &key).await
        } else {
            self.billing.set_cancel_at_period_end(&stripe_id, true, &key).await
        };
        let snapshot = match answer {
            Ok(snapshot) => snapshot,
            Err(e) => return Err(self.subscription_refused(e, &stripe_id, &cur).await),
        };
        let next = apply(&cur, &snapshot, cur.tier, now);

        let (change_kind, outcome, access_until, dedupe) = if immediately {
            (HistoryChange::Canceled, Outcome::Canceled, now, format!("{stripe_id}:immediate"))
        } else {
            (
                HistoryChange::CancelScheduled,
                Outcome::CancelScheduled,
                next.end_date.unwrap_or(now),
                format!("{stripe_id}:period_end:v{}", next.version),
            )
        };
        let history = HistoryEntry::record(Some(&cur), &next, change_kind, caller.admin.actor(), now);
        let email = EmailContext::from(CancellationConfirmedContext { plan: cur.tier, access_until, immediate: immediately });
        let mut outbox = vec![email.outbox_item(&user, &dedupe, now)];
        if immediately {
            outbox.extend(Transition::Canceled.domain_event(&next, now).map(|e| OutboxItem::event(e, now)));
        }
        let change = Change::subscription(next.clone(), Some(cur.version), history).with_outbox(outbox.clone());
        let same = move |s: &Subscription| {
            s.stripe_subscription_id.as_ref() == Some(&stripe_id)
                && if immediately { s.status == SubscriptionStatus::Canceled } else { s.cancel_at_period_end }
        };
        if let Committed::AlreadyApplied(current) = self.commit(change, &user, same).await? {
            return Ok(self.already_applied(&current));
        }
        self.deliver(&outbox).await;
        let (metric, message) = if immediately {
            ("SubscriptionsCanceled", "Canceled now; access has ended.".to_owned())
        } else {
            (
                "CancellationsScheduled",
                format!("Cancels at the end of the period ({}); access continues until then.", access_until.format("%Y-%m-%d")),
            )
        };
        metrics::count(metric, &[("Tier", next.tier.as_str())]);
        Ok(self.changed(outcome, &next, message, None))
    }

    /// `POST /users/{user_id}/subscription/reactivate`: withdraws a scheduled cancellation.
    #[instrument(skip_all, fields(user_id = %user, admin = %caller.admin.subject))]
    pub async fn reactivate(&self, user: UserId, caller: &Caller) -> Result<SubscriptionChange, ApiError> {
        let cur = self.cancellable(&user).await?;
        if !cur.cancel_at_period_end {
            return Err(ApiError::conflict("no_pending_cancellation", "The subscription has no scheduled cancellation to undo."));
        }
        let stripe_id = stripe_subscription(&cur)?;
        let now = self.clock.now();
        let key = self.key("subscription.reactivate", &user, caller, "reactivate", Some(&cur));
        let snapshot = match self.billing.set_cancel_at_period_end(&stripe_id, false, &key).await {
            Ok(snapshot) => snapshot,
            Err(e) => return Err(self.subscription_refused(e, &stripe_id, &cur).await),
        };
        let next = apply(&cur, &snapshot, cur.tier, now);
        if next.cancel_at_period_end {
            // Stripe still ends it: the end is the fixed term (`cancel_at`) chosen at creation
            // with auto_renew false, which is not a cancellation that can be withdrawn.
            return Err(ApiError::conflict(
                "fixed_term",
                "The subscription ends on the fixed date chosen when it was created (auto_renew false); there is no cancellation to withdraw. Create a renewing subscription after it ends instead.",
            ));
        }
        let history = HistoryEntry::record(Some(&cur), &next, HistoryChange::Reactivated, caller.admin.actor(), now);
        let change = Change::subscription(next.clone(), Some(cur.version), history);
        let same = move |s: &Subscription| {
            s.stripe_subscription_id.as_ref() == Some(&stripe_id) && !s.cancel_at_period_end && !s.status.is_terminal()
        };
        if let Committed::AlreadyApplied(current) = self.commit(change, &user, same).await? {
            return Ok(self.already_applied(&current));
        }
        metrics::count("Reactivations", &[("Tier", next.tier.as_str())]);
        Ok(self.changed(Outcome::Reactivated, &next, "The scheduled cancellation was withdrawn.".into(), None))
    }

    /// Stripe refused a change to the user's existing subscription. When that is because the
    /// subscription is no longer what the local record says — ended at Stripe by a request
    /// running at the same time, the Dashboard, or a fixed term whose webhook has not arrived
    /// yet — it is a conflict to re-read and retry (409 `changed_at_stripe`), not a failure of
    /// the provider (502). Nothing is written here: the webhook (or `reconcile`) brings the
    /// record up to date from Stripe's events, in order.
    async fn subscription_refused(&self, err: BillingError, id: &StripeSubscriptionId, cur: &Subscription) -> ApiError {
        let mapped = ApiError::from_billing(err.clone(), BillingStep::Subscription);
        if !matches!(err, BillingError::InvalidRequest { .. }) || matches!(mapped, ApiError::Conflict { .. }) {
            return mapped;
        }
        match self.billing.subscription(id).await {
            Ok(at_stripe) if at_stripe.status != cur.status => {
                tracing::warn!(local = %cur.status, stripe = %at_stripe.status, "stripe refused a change: the local record is behind stripe");
                metrics::count("StaleSubscriptionConflicts", &[]);
                ApiError::conflict(
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

    /// The user's subscription, when it can still be cancelled or reactivated.
    async fn cancellable(&self, user: &UserId) -> Result<Subscription, ApiError> {
        let Some(cur) = self.store.subscription(user).await? else {
            return Err(self.not_found(user).await);
        };
        if cur.status.is_terminal() {
            return Err(ApiError::conflict("already_ended", format!("The subscription has already ended ({}).", cur.status)));
        }
        if cur.source == SubscriptionSource::Free {
            return Err(ApiError::conflict("nothing_to_cancel", "The user is on the free tier; there is no subscription to cancel."));
        }
        Ok(cur)
    }

    /// 404 for a user without a profile, else for a user without a subscription.
    async fn not_found(&self, user: &UserId) -> ApiError {
        match self.store.profile(user).await {
            Ok(Some(_)) => ApiError::SubscriptionNotFound(user.to_string()),
            Ok(None) => ApiError::UserNotFound(user.to_string()),
            Err(err) => err.into(),
        }
    }

    async fn commit(&self, change: Change, user: &UserId, applied: impl Fn(&Subscription) -> bool) -> Result<Committed, ApiError> {
        match self.store.commit(change).await {
            Ok(()) => Ok(Committed::Written),
            Err(StoreError::Conflict(reason)) => {
                tracing::warn!(%reason, "commit conflicted; re-reading the subscription");
                match self.store.subscription(user).await? {
                    Some(current) if applied(&current) => Ok(Committed::AlreadyApplied(Box::new(current))),
                    _ => Err(ApiError::conflict(
                        "concurrent_change",
                        "The subscription changed while this request ran. Read it again and retry.",
                    )),
                }
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn deliver(&self, outbox: &[OutboxItem]) {
        if outbox.is_empty() {
            return;
        }
        let report = self.deliver.deliver(outbox).await;
        tracing::info!(sent = report.sent, retry_later = report.retry_later, failed = report.failed, "outbox delivery attempted");
    }

    /// A declined card is worth a metric; every billing error maps as usual.
    fn declined(&self, err: BillingError, tier: Tier) -> ApiError {
        let mapped = ApiError::from_billing(err, BillingStep::PaymentMethod);
        if matches!(mapped, ApiError::CardDeclined { .. }) {
            metrics::count("CardDeclines", &[("Tier", tier.as_str())]);
        }
        mapped
    }

    fn key(&self, operation: &str, user: &UserId, caller: &Caller, request: &str, state: Option<&Subscription>) -> IdempotencyKey {
        idempotency_key(operation, user, caller.idempotency_key.as_deref(), request, state)
    }

    fn changed(
        &self,
        outcome: Outcome,
        sub: &Subscription,
        message: String,
        payment_action: Option<PaymentActionResponse>,
    ) -> SubscriptionChange {
        SubscriptionChange { outcome, message, subscription: self.view(sub), payment_action }
    }

    fn unchanged(&self, sub: &Subscription, message: &str) -> SubscriptionChange {
        self.changed(Outcome::Unchanged, sub, message.to_owned(), None)
    }

    fn already_applied(&self, sub: &Subscription) -> SubscriptionChange {
        self.unchanged(sub, "This change had already been recorded (a retried or concurrent request); this is the current state.")
    }
}

/// The key for one operation's Stripe calls (see the module docs).
pub fn idempotency_key(
    operation: &str,
    user: &UserId,
    header: Option<&str>,
    request: &str,
    state: Option<&Subscription>,
) -> IdempotencyKey {
    match header {
        Some(header) => IdempotencyKey::new(format!("admin:{operation}:{user}:key:{header}")),
        None => {
            let state = state.map_or_else(|| "none".to_owned(), |s| format!("{}@{}", s.id, s.version));
            let digest = hex::encode(Sha256::digest(format!("{request}|{state}").as_bytes()));
            IdempotencyKey::new(format!("admin:{operation}:{user}:{}", &digest[..32]))
        }
    }
}

/// The validated request in one canonical line (independent of JSON formatting and key order).
fn request_fingerprint(request: &SubscriptionRequest) -> String {
    let billing = match &request.billing {
        Billing::Paid { payment_method_id } => format!("paid:{payment_method_id}"),
        Billing::Granted => "granted".to_owned(),
    };
    format!(
        "tier={};months={};billing={billing};auto_renew={};comment={}",
        request.tier,
        request.duration_months,
        request.auto_renew,
        request.comment.as_deref().unwrap_or_default()
    )
}

/// The record after Stripe's answer. When the snapshot names no tier of ours, the
/// requested tier stands; when nothing differs, the version still moves (it is a write).
fn apply(before: &Subscription, snapshot: &StripeSnapshot, tier: Tier, now: DateTime<Utc>) -> Subscription {
    let mut next = match before.apply_stripe(snapshot, now) {
        Some((next, _)) => next,
        None => Subscription { version: before.version + 1, updated_at: now, ..before.clone() },
    };
    if snapshot.tier.is_none() {
        next.tier = tier;
    }
    next
}

fn stripe_subscription(sub: &Subscription) -> Result<shared::domain::StripeSubscriptionId, ApiError> {
    sub.stripe_subscription_id.clone().ok_or_else(|| {
        ApiError::Internal(format!("subscription {} of {} is {} without a Stripe id", sub.id, sub.user_id, source_label(sub.source)))
    })
}

/// The start of a fixed term (granted trial, non-renewing paid subscription): `now`
/// rounded up to the next full hour. Stripe rejects an idempotency key replayed with
/// different parameters, so a term computed from the exact `now` would turn every retry
/// into an error; anchored to the hour, retries within the hour send the same
/// `trial_end`/`cancel_at`, and the customer gets up to an hour more, never less.
fn term_anchor(now: DateTime<Utc>) -> DateTime<Utc> {
    let secs = now.timestamp();
    let rounded = secs.div_euclid(3600) * 3600 + if secs.rem_euclid(3600) == 0 && now.timestamp_subsec_nanos() == 0 { 0 } else { 3600 };
    DateTime::from_timestamp(rounded, 0).unwrap_or(now)
}

/// When a fixed term of `months` starting now ends.
fn term_end(now: DateTime<Utc>, months: u32) -> Result<DateTime<Utc>, ApiError> {
    let anchor = term_anchor(now);
    anchor.checked_add_months(Months::new(months)).ok_or_else(|| ApiError::Internal(format!("{anchor} + {months} months overflows")))
}

/// Stripe refuses a `trial_end` more than 730 days ahead.
const STRIPE_MAX_TRIAL_DAYS: i64 = 730;

/// When a granted trial of `months` ends: the fixed term, but never past Stripe's limit
/// (24 months from the next full hour can be 731 days and an hour). The cap is anchored
/// to the hour too, so a retry within the hour sends the same value.
fn trial_end(now: DateTime<Utc>, months: u32) -> Result<DateTime<Utc>, ApiError> {
    let limit = term_anchor(now) + chrono::Duration::days(STRIPE_MAX_TRIAL_DAYS) - chrono::Duration::hours(1);
    Ok(term_end(now, months)?.min(limit))
}

fn source_label(source: SubscriptionSource) -> &'static str {
    match source {
        SubscriptionSource::Paid => "paid",
        SubscriptionSource::Granted => "granted",
        SubscriptionSource::Free => "free",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserId {
        UserId::parse("u-1").unwrap()
    }

    #[test]
    fn granted_trials_stay_within_stripes_limit() {
        use chrono::TimeZone;
        // 24 months from the next hour crosses a leap day: 731 days, over Stripe's 730.
        let now = Utc.with_ymd_and_hms(2027, 3, 1, 10, 30, 0).unwrap();
        let end = trial_end(now, 24).unwrap();
        assert!(end <= now + chrono::Duration::days(STRIPE_MAX_TRIAL_DAYS), "{end}");
        assert_eq!(trial_end(now + chrono::Duration::minutes(20), 24).unwrap(), end, "stable within the hour");
        // Shorter trials are the full term.
        assert_eq!(trial_end(now, 3).unwrap(), term_end(now, 3).unwrap());
    }

    #[test]
    fn header_keys_ignore_body_and_state() {
        let a = idempotency_key("subscription.put", &user(), Some("abc"), "tier=premium", None);
        let b = idempotency_key("subscription.put", &user(), Some("abc"), "tier=enterprise", None);
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "admin:subscription.put:u-1:key:abc");
        assert_ne!(a, idempotency_key("subscription.cancel", &user(), Some("abc"), "", None));
        assert_ne!(a, idempotency_key("subscription.put", &UserId::parse("u-2").unwrap(), Some("abc"), "", None));
    }

    #[test]
    fn body_keys_follow_body_and_local_version() {
        let mut sub = crate::service::tests::sample();
        let first = idempotency_key("subscription.cancel", &user(), None, "at_period_end", Some(&sub));
        assert_eq!(first, idempotency_key("subscription.cancel", &user(), None, "at_period_end", Some(&sub)));
        assert_ne!(first, idempotency_key("subscription.cancel", &user(), None, "immediately", Some(&sub)));
        sub.version += 1;
        assert_ne!(first, idempotency_key("subscription.cancel", &user(), None, "at_period_end", Some(&sub)));
        assert!(first.as_str().len() <= 200);
    }

    #[test]
    fn long_headers_are_hashed_to_fit_stripe() {
        let key = idempotency_key("subscription.put", &user(), Some(&"k".repeat(255)), "", None);
        assert!(key.as_str().len() <= 255);
    }

    #[test]
    fn terms_are_anchored_to_the_next_hour() {
        use chrono::TimeZone;
        let at = |h, m, s| Utc.with_ymd_and_hms(2026, 1, 31, h, m, s).unwrap();
        assert_eq!(term_anchor(at(10, 0, 0)), at(10, 0, 0));
        assert_eq!(term_anchor(at(10, 0, 1)), at(11, 0, 0));
        assert_eq!(term_anchor(at(10, 59, 59)), at(11, 0, 0));
        assert_eq!(term_anchor(at(23, 30, 0)), Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap());
        // Month arithmetic clamps to the month's end (Jan 31 + 1 month = Feb 28).
        assert_eq!(term_end(at(9, 15, 0), 1).unwrap(), Utc.with_ymd_and_hms(2026, 2, 28, 10, 0, 0).unwrap());
    }

    pub(crate) fn sample() -> Subscription {
        let now = Utc::now();
        Subscription {
            id: "s-1".into(),
            user_id: user(),
            tier: Tier::Premium,
            status: SubscriptionStatus::Active,
            source: SubscriptionSource::Paid,
            start_date: now,
            end_date: Some(now + chrono::Duration::days(30)),
            auto_renew: true,
            cancel_at_period_end: false,
            canceled_at: None,
            stripe_customer_id: None,
            stripe_subscription_id: None,
            last_billing_date: None,
            next_billing_date: None,
            comment: None,
            version: 1,
            updated_at: now,
        }
    }
}
