//! `PUT /users/{user_id}/subscription`: create (paid, granted or free), replace an ended
//! subscription, or change the tier of the live one (prorated at Stripe).

use tracing::instrument;

use super::{
    already_applied, cause, changed, source_label,
    terms::{idempotency_key, paid_term_end, request_fingerprint, term_anchor, trial_end},
    unchanged, AdminError, AdminService, BillingStep, Caller, Changed, Committed, Outcome,
};
use crate::{
    billing::{BillingError, CreatedSubscription, CustomerDetails, IdempotencyKey, NewSubscription, NewSubscriptionKind, Proration},
    domain::{
        Billing, HistoryChange, HistoryEntry, StripeSubscriptionId, Subscription, SubscriptionRequest, SubscriptionSource,
        SubscriptionStatus, SubscriptionUpdate, Tier, UserId, UserProfile,
    },
    metrics,
    store::Change,
};

impl AdminService {
    /// Creates, replaces an ended one, or changes tier.
    #[instrument(skip_all, fields(user_id = %user, actor = %caller.actor))]
    pub async fn put_subscription(&self, user: UserId, update: SubscriptionUpdate, caller: &Caller) -> Result<Changed, AdminError> {
        let request = update.validate()?;
        let profile = self.store.profile(&user).await?.ok_or_else(|| AdminError::UserNotFound(user.clone()))?;
        let current = self.store.subscription(&user).await?;
        match current {
            Some(cur) if !cur.status.is_terminal() && cur.source != SubscriptionSource::Free => {
                self.change_existing(cur, request, caller).await
            }
            Some(cur) if !cur.status.is_terminal() && request.tier == Tier::Free => {
                Ok(unchanged(&cur, "The user is already on the free tier; nothing was changed."))
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

        // The term is anchored to the hour, and so is the key: a retry within the hour
        // replays the same Stripe calls with identical parameters.
        let fingerprint = format!("{}|anchor={}", request_fingerprint(&request), term_anchor(now).timestamp());
        let key = self.key("subscription.put", user, caller, &fingerprint, previous.as_ref());
        let details = CustomerDetails { user_id: user.clone(), email: profile.email.to_string(), name: profile.full_name.clone() };
        let customer =
            self.billing.ensure_customer(&details, &key).await.map_err(|e| AdminError::from_billing(e, BillingStep::Customer))?;
        let kind = match &request.billing {
            Billing::Paid { payment_method_id } => {
                let payment_method = self
                    .billing
                    .attach_default_payment_method(&customer, payment_method_id, &key)
                    .await
                    .map_err(|e| declined(e, request.tier))?;
                let cancel_at = if request.auto_renew { None } else { Some(paid_term_end(now, request.duration_months)?) };
                NewSubscriptionKind::Paid { payment_method, cancel_at }
            }
            Billing::Granted => NewSubscriptionKind::Granted { trial_end: trial_end(now, request.duration_months)? },
        };
        let new = NewSubscription { customer: customer.clone(), user_id: user.clone(), tier: request.tier, kind };
        let CreatedSubscription { snapshot, payment_action } =
            self.billing.create_subscription(&new, &key).await.map_err(|e| declined(e, request.tier))?;

        let stripe_id = snapshot.subscription_id.clone();
        let same = |s: &Subscription| s.stripe_subscription_id.as_ref() == Some(&stripe_id);
        let cause = cause(caller, HistoryChange::Created).with_seed(&seed);
        let applied = match self.plan(user, previous.as_ref(), &snapshot, request.tier, cause) {
            Ok(Some(applied)) => applied,
            Ok(None) => return Ok(already_applied(previous.as_ref().unwrap_or(&seed))),
            Err(_) => {
                return Err(AdminError::BadGateway(format!("stripe created subscription {stripe_id} already {}", snapshot.status)));
            }
        };
        let next = applied.next.clone();
        if let Committed::AlreadyApplied(current) = self.commit(applied.change(), user, same).await? {
            return Ok(already_applied(&current));
        }
        self.deliver(&applied.outbox).await;

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
