//! The transactional outbox: every e-mail and domain event a state change causes is
//! written as an item in the same transaction as the change, under a deterministic
//! id per *logical* notification, so a retried or duplicated cause cannot queue it twice.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{DomainEvent, EmailContext, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    SubscriptionConfirmation,
    PaymentReceipt,
    PaymentFailed,
    ExpiryWarning,
    RenewalReminder,
    SubscriptionExpired,
    TrialEnding,
    PlanChanged,
    CancellationConfirmed,
}

impl NotificationKind {
    pub const ALL: [NotificationKind; 9] = [
        Self::SubscriptionConfirmation,
        Self::PaymentReceipt,
        Self::PaymentFailed,
        Self::ExpiryWarning,
        Self::RenewalReminder,
        Self::SubscriptionExpired,
        Self::TrialEnding,
        Self::PlanChanged,
        Self::CancellationConfirmed,
    ];

    /// The template name under `templates/emails/` and the SES message tag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SubscriptionConfirmation => "subscription_confirmation",
            Self::PaymentReceipt => "payment_receipt",
            Self::PaymentFailed => "payment_failed",
            Self::ExpiryWarning => "expiry_warning",
            Self::RenewalReminder => "renewal_reminder",
            Self::SubscriptionExpired => "subscription_expired",
            Self::TrialEnding => "trial_ending",
            Self::PlanChanged => "plan_changed",
            Self::CancellationConfirmed => "cancellation_confirmed",
        }
    }
}

/// What an outbox item delivers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutboxPayload {
    /// An e-mail to the user; the address is looked up at send time. `context` holds
    /// the notification's kind and its own facts (plan, amounts, dates) for the template,
    /// stored beside `user_id` as `kind` and `context`.
    Email {
        user_id: UserId,
        #[serde(flatten)]
        context: EmailContext,
    },
    /// A domain event for the EventBridge bus.
    Event { event: DomainEvent },
    /// A stored payload this deploy cannot read (written by another version, or damaged):
    /// kept verbatim so a rewrite of the item loses nothing, and never delivered. Only
    /// the store makes these, when it reads one; it is not a serialised form.
    #[serde(skip)]
    Unreadable { raw: String, why: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxState {
    Pending,
    Sent,
    /// Refused for good (e.g. SES rejected the address): not retried.
    Failed,
    /// Failed transiently too many times: parked for an operator.
    DeadLettered,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxItem {
    /// Deterministic per logical notification, e.g. `email:payment_receipt:in_123`.
    pub id: String,
    pub payload: OutboxPayload,
    pub state: OutboxState,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    /// When the next delivery attempt is due (drives the pending index).
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    /// The SES message id or EventBridge event id once delivered.
    pub delivery_id: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
}

impl OutboxItem {
    pub fn email(user_id: &UserId, dedupe: &str, context: EmailContext, now: DateTime<Utc>) -> Self {
        Self::pending(
            format!("email:{}:{dedupe}", context.kind().as_str()),
            OutboxPayload::Email { user_id: user_id.clone(), context },
            now,
        )
    }

    pub fn event(event: DomainEvent, now: DateTime<Utc>) -> Self {
        Self::pending(format!("event:{}", event.id), OutboxPayload::Event { event }, now)
    }

    fn pending(id: String, payload: OutboxPayload, now: DateTime<Utc>) -> Self {
        Self {
            id,
            payload,
            state: OutboxState::Pending,
            attempts: 0,
            created_at: now,
            next_attempt_at: now,
            last_error: None,
            delivery_id: None,
            sent_at: None,
        }
    }

    pub fn kind_label(&self) -> &'static str {
        match &self.payload {
            OutboxPayload::Email { context, .. } => context.kind().as_str(),
            OutboxPayload::Event { .. } => "domain_event",
            OutboxPayload::Unreadable { .. } => "unreadable",
        }
    }
}
