//! The API's request and response bodies (schemas in `openapi.yaml`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::{
    billing::PaymentAction,
    domain::{
        AccessPolicy, DeliveryState, Erasure, HistoryEntry, OutboxItem, OutboxPayload, OutboxState, Subscription, SubscriptionSource,
        SubscriptionStatus, Tier, UndeliverableReason, UserProfile,
    },
    store::UserRecords,
    usecase::admin::{Changed, ErasureReport},
};

pub use shared::usecase::admin::{ErasureOutcome, Outcome};

/// `GET /users/{user_id}/subscription`, and the `subscription` of every change response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionResponse {
    pub id: String,
    pub user_id: String,
    pub tier: Tier,
    pub status: SubscriptionStatus,
    pub start_date: DateTime<Utc>,
    pub end_date: Option<DateTime<Utc>>,
    pub auto_renew: bool,
    pub stripe_subscription_id: Option<String>,
    /// Whole days until `end_date`, rounded up; `null` without an end.
    pub days_remaining: Option<i64>,
    pub cancel_at_period_end: bool,
    /// Whether the user can use `tier` right now (the shared access rule).
    pub has_access: bool,
    /// The tier the user can use right now: `tier`, or `free` without access.
    pub effective_tier: Tier,
    /// `paid` (Stripe-billed), `granted` (admin trial/comp, no card) or `free`.
    pub source: SubscriptionSource,
    pub stripe_customer_id: Option<String>,
    pub canceled_at: Option<DateTime<Utc>>,
    pub next_billing_date: Option<DateTime<Utc>>,
    pub comment: Option<String>,
    pub version: u64,
    pub updated_at: DateTime<Utc>,
}

impl SubscriptionResponse {
    pub fn of(sub: &Subscription, now: DateTime<Utc>, policy: &AccessPolicy) -> Self {
        Self {
            id: sub.id.clone(),
            user_id: sub.user_id.to_string(),
            tier: sub.tier,
            status: sub.status,
            start_date: sub.start_date,
            end_date: sub.end_date,
            auto_renew: sub.auto_renew,
            stripe_subscription_id: sub.stripe_subscription_id.as_ref().map(ToString::to_string),
            days_remaining: sub.days_remaining(now),
            cancel_at_period_end: sub.cancel_at_period_end,
            has_access: policy.grants_access(sub, now),
            effective_tier: policy.effective_tier(sub, now),
            source: sub.source,
            stripe_customer_id: sub.stripe_customer_id.as_ref().map(ToString::to_string),
            canceled_at: sub.canceled_at,
            next_billing_date: sub.next_billing_date,
            comment: sub.comment.clone(),
            version: sub.version,
            updated_at: sub.updated_at,
        }
    }
}

/// What the customer must do to complete an `incomplete` subscription's first payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentActionResponse {
    /// Stripe's payment state, e.g. `requires_payment_method` (card failed: a new card
    /// is needed) or `requires_action` (3-D Secure authentication is needed).
    pub status: String,
    pub invoice_id: String,
    /// Stripe's hosted invoice page, where the customer can pay or authenticate.
    pub hosted_invoice_url: Option<String>,
    pub message: Option<String>,
}

impl From<PaymentAction> for PaymentActionResponse {
    fn from(action: PaymentAction) -> Self {
        Self {
            status: action.status,
            invoice_id: action.invoice_id,
            hosted_invoice_url: action.hosted_invoice_url,
            message: action.message,
        }
    }
}

/// The answer of `PUT .../subscription`, `.../cancel` and `.../reactivate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionChange {
    pub outcome: Outcome,
    /// One sentence for the admin, e.g. why nothing changed.
    pub message: String,
    pub subscription: SubscriptionResponse,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_action: Option<PaymentActionResponse>,
}

impl SubscriptionChange {
    pub fn of(change: Changed, now: DateTime<Utc>, policy: &AccessPolicy) -> Self {
        Self {
            outcome: change.outcome,
            message: change.message,
            subscription: SubscriptionResponse::of(&change.subscription, now, policy),
            payment_action: change.payment_action.map(PaymentActionResponse::from),
        }
    }
}

/// The body of `POST .../cancel` (optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Cancel now (no further access) instead of at the end of the period.
    #[serde(default)]
    pub immediately: bool,
}

/// `PUT /users/{user_id}` answers with the stored profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileResponse {
    pub user_id: String,
    pub email: String,
    pub full_name: Option<String>,
    pub username: Option<String>,
    pub user_type: Option<String>,
    pub updated_at: DateTime<Utc>,
    /// Whether mail goes to `email`, from SES's bounce and complaint feedback.
    pub delivery: DeliveryState,
    /// Why `email` is undeliverable (`bounce`: permanent bounce, `complaint`), and since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undeliverable_reason: Option<UndeliverableReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undeliverable_since: Option<DateTime<Utc>>,
    /// The last delivery to `email` SES reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivered_at: Option<DateTime<Utc>>,
}

impl From<&UserProfile> for ProfileResponse {
    fn from(p: &UserProfile) -> Self {
        Self {
            user_id: p.user_id.to_string(),
            email: p.email.to_string(),
            full_name: p.full_name.clone(),
            username: p.username.clone(),
            user_type: p.user_type.clone(),
            updated_at: p.updated_at,
            delivery: p.delivery_state(),
            undeliverable_reason: p.undeliverable().map(|mark| mark.reason),
            undeliverable_since: p.undeliverable().map(|mark| mark.at),
            last_delivered_at: p.last_delivery().map(|d| d.at),
        }
    }
}

/// `GET /users/{user_id}/subscription/history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryResponse {
    pub user_id: String,
    /// Newest first.
    pub entries: Vec<HistoryEntry>,
}

/// The answer of `DELETE /users/{user_id}`, the first time and every time after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureResponse {
    pub user_id: String,
    /// `erased` by this request, or `already_erased` (nothing was changed).
    pub outcome: ErasureOutcome,
    pub erasure_started_at: DateTime<Utc>,
    pub erased_at: Option<DateTime<Utc>>,
    /// Stripe subscriptions this request cancelled.
    pub subscriptions_canceled: u32,
    /// Whether this request deleted a Stripe customer.
    pub stripe_customer_deleted: bool,
    /// Queued e-mails this request stopped before they were sent.
    pub mails_stopped: u32,
}

impl ErasureResponse {
    pub fn of(user_id: String, report: &ErasureReport) -> Self {
        Self {
            user_id,
            outcome: report.outcome,
            erasure_started_at: report.erasure.started_at,
            erased_at: report.erasure.finished_at,
            subscriptions_canceled: report.subscriptions_canceled,
            stripe_customer_deleted: report.customer_deleted,
            mails_stopped: report.mails_stopped,
        }
    }
}

/// `GET /users/{user_id}/export`: everything the service holds about the user, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportResponse {
    pub user_id: String,
    pub exported_at: DateTime<Utc>,
    /// `null` unless the user is (being) erased.
    pub erasure: Option<Erasure>,
    /// `null` once erased.
    pub profile: Option<ProfileResponse>,
    pub stripe_customer_id: Option<String>,
    /// The stored record, every field.
    pub subscription: Option<Subscription>,
    /// Newest first, all of it.
    pub history: Vec<HistoryEntry>,
    /// The e-mails and domain events about the user still kept (see the outbox retention).
    pub outbox: Vec<OutboxExport>,
}

impl ExportResponse {
    pub fn of(user_id: String, records: UserRecords, now: DateTime<Utc>) -> Self {
        Self {
            user_id,
            exported_at: now,
            erasure: records.erasure,
            profile: records.profile.as_ref().map(ProfileResponse::from),
            stripe_customer_id: records.stripe_customer_id.map(|c| c.to_string()),
            subscription: records.subscription,
            history: records.history,
            outbox: records.outbox.iter().map(OutboxExport::from).collect(),
        }
    }
}

/// One outbox item in an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxExport {
    pub id: String,
    /// The notification kind (`payment_receipt`, …) or `domain_event`.
    pub kind: String,
    pub state: OutboxState,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// As stored: `{"type": "email", "kind", "context", "user_id"}` or `{"type": "event", "event"}`;
    /// one this deploy cannot read is `{"type": "unreadable", "raw"}`.
    pub payload: serde_json::Value,
}

impl From<&OutboxItem> for OutboxExport {
    fn from(item: &OutboxItem) -> Self {
        let payload = match &item.payload {
            OutboxPayload::Unreadable { raw, .. } => serde_json::json!({"type": "unreadable", "raw": raw}),
            // The readable payloads are typed data and always serialise.
            payload => serde_json::to_value(payload).unwrap_or_default(),
        };
        Self {
            id: item.id.clone(),
            kind: item.kind_label().to_owned(),
            state: item.state,
            attempts: item.attempts,
            created_at: item.created_at,
            sent_at: item.sent_at,
            last_error: item.last_error.clone(),
            payload,
        }
    }
}
