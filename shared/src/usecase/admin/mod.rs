//! The admin use cases: profiles, and a user's subscription — create (paid, granted or
//! free), change tier, cancel, reactivate, read, history — and a user's erasure and export. The admin API's handlers extract
//! the request, call one method here, and render the result or the [`AdminError`].
//!
//! Every change follows the same order: read the local state, make the Stripe calls
//! (each with an idempotency key, see [`terms`]), plan the write with the one Stripe-sync
//! path ([`crate::usecase::sync`]), commit it in ONE DynamoDB transaction (subscription
//! with its version check, history, outbox, Stripe id mappings), then try to deliver the
//! outbox. A failure before the commit writes nothing locally.
//!
//! A retry after a request *was* committed finds the work done (same tier, cancel already
//! scheduled, …) and answers [`Outcome::Unchanged`] with the current state. A version
//! conflict on commit (a concurrent retry, or a webhook that recorded the same Stripe
//! object first) re-reads the record: if it already says what this request did, the
//! answer is that state (`Unchanged`), not an error; otherwise `concurrent_change`.

mod cancel;
mod erase;
mod error;
mod profile;
mod read;
mod subscribe;
pub mod terms;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use erase::{ErasureOutcome, ErasureReport};
pub use error::{AdminError, BillingStep};

use crate::{
    billing::{BillingGateway, PaymentAction},
    clock::Clock,
    delivery::Deliver,
    domain::{AccessPolicy, HistoryChange, OutboxItem, StripeSnapshot, Subscription, SubscriptionSource, Tier, UserId},
    store::{Change, Store, StoreError},
    usecase::sync::{self, Applied, Cause, Sync},
};

pub const HISTORY_DEFAULT_LIMIT: i32 = 20;
pub const HISTORY_MAX_LIMIT: i32 = 100;

/// Who asks: the history actor of the change (`admin:<sub>`) and the `Idempotency-Key`
/// they sent, if any.
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: String,
    pub idempotency_key: Option<String>,
}

/// What a mutating subscription call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A new subscription is active (paid) or in its trial (granted), or a free record was written.
    Created,
    /// A subscription was created at Stripe but its first payment needs the customer
    /// (see `payment_action`); it grants no access until paid.
    PaymentRequired,
    TierChanged,
    /// Nothing to do: the subscription already is what was asked (also the answer to a
    /// retried request that had already been applied).
    Unchanged,
    CancelScheduled,
    Canceled,
    Reactivated,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::PaymentRequired => "payment_required",
            Self::TierChanged => "tier_changed",
            Self::Unchanged => "unchanged",
            Self::CancelScheduled => "cancel_scheduled",
            Self::Canceled => "canceled",
            Self::Reactivated => "reactivated",
        }
    }
}

/// The result of a mutating subscription call.
#[derive(Debug, Clone)]
pub struct Changed {
    pub outcome: Outcome,
    /// One sentence for the admin, e.g. why nothing changed.
    pub message: String,
    pub subscription: Subscription,
    pub payment_action: Option<PaymentAction>,
}

pub struct AdminService {
    store: Arc<dyn Store>,
    billing: Arc<dyn BillingGateway>,
    deliver: Arc<dyn Deliver>,
    clock: Arc<dyn Clock>,
    access: AccessPolicy,
    /// How long an open operation is presumed alive (see [`subscribe`]).
    operation_lease: chrono::Duration,
}

/// Longer than the admin function's timeout (20 s): past it, its process is gone.
pub const DEFAULT_OPERATION_LEASE: std::time::Duration = std::time::Duration::from_secs(60);

/// What a commit ended as.
enum Committed {
    /// This request's change is stored.
    Written,
    /// A conflicting writer had already stored the same outcome (a retry or a webhook).
    AlreadyApplied(Box<Subscription>),
}

impl AdminService {
    pub fn new(store: Arc<dyn Store>, billing: Arc<dyn BillingGateway>, deliver: Arc<dyn Deliver>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            billing,
            deliver,
            clock,
            access: AccessPolicy::default(),
            operation_lease: chrono::Duration::seconds(DEFAULT_OPERATION_LEASE.as_secs() as i64),
        }
    }

    /// With `lease` as the time an open operation is presumed alive.
    pub fn with_operation_lease(mut self, lease: std::time::Duration) -> Self {
        self.operation_lease = chrono::Duration::from_std(lease).unwrap_or(self.operation_lease);
        self
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The access rule the answers' `has_access`/`effective_tier` follow.
    pub fn access(&self) -> &AccessPolicy {
        &self.access
    }

    /// Plans the write Stripe's answer `snapshot` causes on `local`. When the snapshot
    /// names no tier of ours, `tier` (the requested one) stands. `None` when the record
    /// already says it all.
    fn plan(
        &self,
        user: &UserId,
        local: Option<&Subscription>,
        snapshot: &StripeSnapshot,
        tier: Tier,
        cause: Cause<'_>,
    ) -> Result<Option<Applied>, AdminError> {
        let mut snapshot = snapshot.clone();
        snapshot.tier = snapshot.tier.or(Some(tier));
        match sync::plan(user, local, &snapshot, self.clock.now(), &cause) {
            Sync::Apply(applied) => Ok(Some(*applied)),
            Sync::InLine => Ok(None),
            Sync::NotCurrent => Err(AdminError::BadGateway(format!(
                "stripe answered with subscription {} ({}), which cannot become the user's record",
                snapshot.subscription_id, snapshot.status
            ))),
        }
    }

    async fn commit(&self, change: Change, user: &UserId, applied: impl Fn(&Subscription) -> bool) -> Result<Committed, AdminError> {
        match self.store.commit(change).await {
            Ok(()) => Ok(Committed::Written),
            Err(StoreError::Conflict(reason)) => {
                tracing::warn!(%reason, "commit conflicted; re-reading the subscription");
                match self.store.subscription(user).await? {
                    Some(current) if applied(&current) => Ok(Committed::AlreadyApplied(Box::new(current))),
                    _ => Err(AdminError::conflict(
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

    /// 404 for a user without a profile, else for a user without a subscription.
    async fn not_found(&self, user: &UserId) -> AdminError {
        match self.store.profile(user).await {
            Ok(Some(_)) => AdminError::SubscriptionNotFound(user.clone()),
            Ok(None) => AdminError::UserNotFound(user.clone()),
            Err(err) => err.into(),
        }
    }
}

fn changed(outcome: Outcome, sub: &Subscription, message: String, payment_action: Option<PaymentAction>) -> Changed {
    Changed { outcome, message, subscription: sub.clone(), payment_action }
}

fn unchanged(sub: &Subscription, message: &str) -> Changed {
    changed(Outcome::Unchanged, sub, message.to_owned(), None)
}

fn already_applied(sub: &Subscription) -> Changed {
    unchanged(sub, "This change had already been recorded (a retried or concurrent request); this is the current state.")
}

fn source_label(source: SubscriptionSource) -> &'static str {
    match source {
        SubscriptionSource::Paid => "paid",
        SubscriptionSource::Granted => "granted",
        SubscriptionSource::Free => "free",
    }
}

/// The history cause of a change this caller makes.
fn cause(caller: &Caller, change: HistoryChange) -> Cause<'_> {
    Cause::by(&caller.actor, change)
}
