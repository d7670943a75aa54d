//! `DELETE /users/{user_id}` (erasure) and `GET /users/{user_id}/export` (access): the two
//! answers to a data-protection request.
//!
//! # Erasure: in an order a crash and a retry finish
//! 1. The user's [`Operation`] is opened under an id derived from the user alone, so a
//!    retried erasure *is* the same operation and continues at once, while a subscribe in
//!    flight makes it `409 operation_in_progress` and no subscribe starts while it runs.
//! 2. The erasure is started on the profile item, which becomes the user's tombstone.
//!    From then on the profile reads as absent: no e-mail can go to the user (delivery
//!    reads the address at send time and finds none), no subscription is created for them
//!    (a subscribe re-reads the profile once it holds the operation), and
//!    `PUT /users/{user_id}` is `410 user_erased`. The user id is retired for good: a
//!    returning person gets a new id from the identity system.
//! 3. Stripe: the recorded subscription, if still live, is cancelled now (which voids its
//!    open invoices), and so is one a dead subscribe created and never recorded; then the
//!    customer is deleted. Every key derives from the user and the object, so a retry
//!    replays the same calls; both calls are idempotent at Stripe as well.
//! 4. Locally: the cancellation is recorded (history, and the `SubscriptionCanceled`
//!    domain event other services revoke access on; no e-mail), then the personal data is
//!    removed item by item ([`Store::erase_user`](crate::store::Store::erase_user)) and the
//!    erasure marked finished; the operation is closed.
//!
//! A failure from step 2 on is [`AdminError::ErasureUnfinished`]: the erasure may have
//! started, and a DELETE again continues it. A DELETE of a finished erasure changes
//! nothing and answers [`ErasureOutcome::AlreadyErased`].
//!
//! # What stays
//! The user id, the Stripe customer and subscription ids and their mapping items, the
//! subscription record and its history without comments, and the outbox items with their
//! facts anonymised (plans, amounts, dates, invoice numbers) until their retention ends
//! ([`crate::store::keys::OUTBOX_RETENTION_DAYS`]). Stripe keeps its invoices of the
//! deleted customer.

use sha2::{Digest, Sha256};
use tracing::instrument;

use super::{cause, subscribe::stripe_subscription, AdminError, AdminService, BillingStep, Caller, Committed};
use crate::{
    billing::IdempotencyKey,
    domain::{
        Erasure, HistoryChange, OutboxPayload, StripeCustomerId, StripeSnapshot, Subscription, SubscriptionSource, UserId, UserProfile,
    },
    metrics,
    store::{Operation, StoreError, UserRecords},
};

/// What a DELETE did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErasureOutcome {
    /// This request finished the erasure (possibly one an earlier request had begun).
    Erased,
    /// The user had been erased already; nothing was changed.
    AlreadyErased,
}

/// The result of [`AdminService::erase`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureReport {
    pub outcome: ErasureOutcome,
    pub erasure: Erasure,
    /// Stripe subscriptions cancelled by this request.
    pub subscriptions_canceled: u32,
    /// Whether the user had a Stripe customer, now deleted.
    pub customer_deleted: bool,
    /// Queued e-mails stopped before they were sent.
    pub mails_stopped: u32,
}

impl AdminService {
    /// Erases the user (see the module docs). `404` for a user never known here.
    #[instrument(skip_all, fields(user_id = %user, actor = %caller.actor))]
    pub async fn erase(&self, user: UserId, caller: &Caller) -> Result<ErasureReport, AdminError> {
        let records = self.store.user_records(&user).await?;
        if let Some(erasure) = records.erasure.filter(|e| e.finished_at.is_some()) {
            return Ok(ErasureReport {
                outcome: ErasureOutcome::AlreadyErased,
                erasure,
                subscriptions_canceled: 0,
                customer_deleted: false,
                mails_stopped: 0,
            });
        }
        if records.profile.is_none() && records.erasure.is_none() {
            return Err(AdminError::UserNotFound(user));
        }
        let now = self.clock.now();
        let op = Operation {
            user_id: user.clone(),
            op_id: erasure_operation_id(&user),
            started_at: now,
            lease_until: now + self.operation_lease,
            open: true,
        };
        let dangling = match self.store.begin_operation(&op).await {
            Ok(dangling) => dangling,
            Err(StoreError::Conflict(_)) => {
                metrics::count("OperationsInProgress", &[]);
                return Err(AdminError::conflict(
                    "operation_in_progress",
                    "A change to this user's subscription is in progress. Retry the DELETE in a few seconds: it is finished first.",
                ));
            }
            Err(err) => return Err(err.into()),
        };
        // From here the erasure may have started; the operation stays open on failure, so
        // the retry continues at once and nothing else starts meanwhile.
        let report = self.erase_holding(&user, dangling.as_ref(), caller).await.map_err(|err| match err {
            AdminError::UserNotFound(_) => err,
            other => AdminError::ErasureUnfinished(Box::new(other)),
        })?;
        if let Err(error) = self.store.close_operation(&user, &op.op_id).await {
            tracing::warn!(%error, "could not close the erasure's operation; its lease runs out");
        }
        metrics::count("UsersErased", &[]);
        Ok(report)
    }

    async fn erase_holding(&self, user: &UserId, dangling: Option<&Operation>, caller: &Caller) -> Result<ErasureReport, AdminError> {
        self.store.begin_erasure(user, self.clock.now()).await.map_err(|err| match err {
            StoreError::Conflict(_) => AdminError::UserNotFound(user.clone()),
            other => other.into(),
        })?;
        // Read again under the operation: a subscribe may have committed since the first read.
        let records = self.store.user_records(user).await?;
        let recorded = records.subscription.as_ref().filter(|s| !s.status.is_terminal() && s.source != SubscriptionSource::Free);
        let customer = records.stripe_customer_id.clone().or_else(|| records.subscription.as_ref()?.stripe_customer_id.clone());

        let mut subscriptions_canceled = 0;
        if let Some(cur) = recorded {
            let stripe_id = stripe_subscription(cur)?;
            let snapshot = self
                .billing
                .cancel_now(&stripe_id, &erasure_key(user, stripe_id.as_str()))
                .await
                .map_err(|e| AdminError::from_billing(e, BillingStep::Subscription))?;
            subscriptions_canceled += 1;
            self.record_cancellation(cur, &snapshot, caller).await?;
        }
        if let (Some(dangling), Some(customer)) = (dangling, &customer) {
            subscriptions_canceled += self.cancel_unrecorded(user, customer, dangling, recorded).await?;
        }
        if let Some(customer) = &customer {
            self.billing
                .delete_customer(customer, &erasure_key(user, "customer"))
                .await
                .map_err(|e| AdminError::from_billing(e, BillingStep::Customer))?;
        }

        let erased = self.store.erase_user(user, self.clock.now()).await?;
        let erasure = self.store.erasure(user).await?.ok_or_else(|| AdminError::Internal("the finished erasure is not stored".into()))?;
        if erased.mails_stopped > 0 {
            metrics::count("EmailsStoppedByErasure", &[]);
        }
        tracing::info!(comments = erased.comments, outbox_items = erased.outbox_items, mails_stopped = erased.mails_stopped, "user erased");
        Ok(ErasureReport {
            outcome: ErasureOutcome::Erased,
            erasure,
            subscriptions_canceled,
            customer_deleted: customer.is_some(),
            mails_stopped: erased.mails_stopped,
        })
    }

    /// Records the cancellation Stripe answered with, as an admin cancel would, but
    /// without its e-mail (the address is going). A record another writer moved first is
    /// left to them: the webhook records the same cancellation from Stripe's event.
    async fn record_cancellation(&self, cur: &Subscription, snapshot: &StripeSnapshot, caller: &Caller) -> Result<(), AdminError> {
        let Some(applied) = self.plan(&cur.user_id, Some(cur), snapshot, cur.tier, cause(caller, HistoryChange::Canceled))? else {
            return Ok(());
        };
        let mut change = applied.change();
        change.outbox.retain(|item| matches!(item.payload, OutboxPayload::Event { .. }));
        let outbox = change.outbox.clone();
        let stripe_id = snapshot.subscription_id.clone();
        let same = move |s: &Subscription| s.stripe_subscription_id.as_ref() == Some(&stripe_id) && s.status.is_terminal();
        match self.commit(change, &cur.user_id, same).await {
            Ok(Committed::Written) => self.deliver(&outbox).await,
            Ok(Committed::AlreadyApplied(_)) => {}
            Err(AdminError::Conflict { .. }) => tracing::warn!("the record moved meanwhile; the webhook records the cancellation"),
            Err(err) => return Err(err),
        }
        Ok(())
    }

    /// Cancels what the dead subscribe `dangling` created at Stripe and no record names.
    async fn cancel_unrecorded(
        &self,
        user: &UserId,
        customer: &StripeCustomerId,
        dangling: &Operation,
        recorded: Option<&Subscription>,
    ) -> Result<u32, AdminError> {
        let found = self
            .billing
            .subscription_of_operation(customer, &dangling.op_id)
            .await
            .map_err(|e| AdminError::from_billing(e, BillingStep::Subscription))?;
        let Some(snapshot) = found else { return Ok(0) };
        let recorded_id = recorded.and_then(|s| s.stripe_subscription_id.as_ref());
        if snapshot.status.is_terminal() || recorded_id == Some(&snapshot.subscription_id) {
            return Ok(0);
        }
        tracing::warn!(stripe.subscription_id = %snapshot.subscription_id, "cancelling a subscription a dead subscribe left unrecorded");
        self.billing
            .cancel_now(&snapshot.subscription_id, &erasure_key(user, snapshot.subscription_id.as_str()))
            .await
            .map_err(|e| AdminError::from_billing(e, BillingStep::Subscription))?;
        Ok(1)
    }

    /// Everything held about the user; `404` when nothing is. An erased user's export shows
    /// what the erasure kept.
    #[instrument(skip_all, fields(user_id = %user))]
    pub async fn export(&self, user: UserId) -> Result<UserRecords, AdminError> {
        let records = self.store.user_records(&user).await?;
        if records.is_empty() {
            return Err(AdminError::UserNotFound(user));
        }
        Ok(records)
    }

    /// The user's profile for a change; an erased user is `410`, an unknown one `404`.
    pub(super) async fn live_profile(&self, user: &UserId) -> Result<UserProfile, AdminError> {
        match self.store.profile(user).await? {
            Some(profile) => Ok(profile),
            None if self.store.erasure(user).await?.is_some() => Err(AdminError::UserErased(user.clone())),
            None => Err(AdminError::UserNotFound(user.clone())),
        }
    }
}

/// The erasure's operation id: the user's alone, so every attempt is the same operation.
fn erasure_operation_id(user: &UserId) -> String {
    format!("erase-{}", hex::encode(&Sha256::digest(user.as_str().as_bytes())[..16]))
}

/// The key of one Stripe call of the user's erasure, the same on every attempt.
fn erasure_key(user: &UserId, object: &str) -> IdempotencyKey {
    IdempotencyKey::new(format!("admin:erase:{user}:{object}"))
}
