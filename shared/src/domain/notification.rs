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
    /// Stopped before it was sent because its user was erased: never delivered.
    Erased,
    /// Not sent because SES reported the recipient's address undeliverable (a permanent
    /// bounce or a complaint): never retried.
    Suppressed,
}

impl OutboxState {
    /// Whether delivery is over for good (sent, refused, parked or stopped): such an item
    /// is never attempted again and expires after the outbox retention.
    pub fn is_terminal(self) -> bool {
        self != Self::Pending
    }
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

    /// The user the item is about: the recipient of an e-mail, the subject of an event.
    pub fn user_id(&self) -> Option<&UserId> {
        match &self.payload {
            OutboxPayload::Email { user_id, .. } => Some(user_id),
            OutboxPayload::Event { event } => Some(&event.user_id),
            OutboxPayload::Unreadable { .. } => None,
        }
    }

    /// The item once its user is erased (at `now`): an e-mail's facts lose what identifies
    /// the person ([`EmailContext::anonymised`]) and a still pending e-mail is stopped for
    /// good. Events carry no personal data (ids, tier, status, dates) and stay as they are:
    /// a pending one is still published, so other services learn that access ended.
    pub fn erased(self, now: DateTime<Utc>) -> Self {
        if self.state == OutboxState::Erased {
            return self;
        }
        match self.payload {
            OutboxPayload::Email { user_id, context } => {
                let stop = self.state == OutboxState::Pending;
                Self {
                    payload: OutboxPayload::Email { user_id, context: context.anonymised() },
                    state: if stop { OutboxState::Erased } else { self.state },
                    // A stopped item's retention runs from its stop.
                    next_attempt_at: if stop { now } else { self.next_attempt_at },
                    // SES's refusals can quote the address, so an earlier error goes too.
                    last_error: if stop {
                        Some("stopped: the user was erased before it was sent".into())
                    } else {
                        self.last_error.map(|_| "redacted when the user was erased".into())
                    },
                    ..self
                }
            }
            _ => self,
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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn user() -> UserId {
        UserId::parse("u1").unwrap()
    }

    #[test]
    fn erasing_stops_a_pending_email_and_drops_its_personal_facts() {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        for context in EmailContext::samples() {
            let pending = context.outbox_item(&user(), "in_1", at);
            let erased = pending.clone().erased(at + chrono::Duration::hours(1));
            assert_eq!(erased.state, OutboxState::Erased, "{:?}", context.kind());
            assert_eq!(erased.next_attempt_at, at + chrono::Duration::hours(1));
            let OutboxPayload::Email { context: kept, .. } = &erased.payload else { panic!("still an e-mail") };
            let facts = kept.to_value();
            assert!(facts.get("hosted_invoice_url").is_none_or(|v| v.is_null()), "{facts}");
            assert!(facts.get("failure_reason").is_none_or(|v| v.is_null()), "{facts}");
            // What the financial record keeps stays.
            assert_eq!(facts.get("amount"), context.to_value().get("amount"));
            // Erasing again changes nothing (a retried erasure writes nothing new).
            assert_eq!(erased.clone().erased(at + chrono::Duration::hours(2)), erased);
        }
    }

    #[test]
    fn erasing_keeps_a_sent_email_sent_and_events_as_they_are() {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let mut sent = EmailContext::samples().remove(1).outbox_item(&user(), "in_1", at);
        sent.state = OutboxState::Sent;
        sent.last_error = Some("ses: address a@b.co throttled".into());
        let erased = sent.clone().erased(at);
        assert_eq!(erased.state, OutboxState::Sent);
        assert!(!erased.last_error.unwrap().contains("a@b.co"));
        let sub = crate::domain::Subscription {
            id: "s1".into(),
            user_id: user(),
            tier: crate::domain::Tier::Premium,
            status: crate::domain::SubscriptionStatus::Canceled,
            source: crate::domain::SubscriptionSource::Paid,
            start_date: at,
            end_date: None,
            auto_renew: false,
            cancel_at_period_end: false,
            canceled_at: Some(at),
            stripe_customer_id: None,
            stripe_subscription_id: None,
            last_billing_date: None,
            next_billing_date: None,
            comment: None,
            version: 1,
            updated_at: at,
        };
        let event = OutboxItem::event(DomainEvent::of(crate::domain::DomainEventKind::SubscriptionCanceled, &sub, "x", at), at);
        assert_eq!(event.user_id(), Some(&user()));
        assert_eq!(event.clone().erased(at), event);
    }
}
