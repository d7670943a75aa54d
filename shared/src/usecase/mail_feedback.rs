//! SES's feedback on sent mail: bounces, complaints, rejections and deliveries, as the
//! configuration set's EventBridge destination delivers them (`source` `aws.ses`).
//!
//! # What it does
//! - A **permanent** bounce or a **complaint** marks the recipient's address undeliverable
//!   on the user's profile ([`crate::domain::Undeliverable`]); from then on delivery
//!   suppresses every e-mail to that address (queued or later). A transient or undetermined
//!   bounce marks nothing: SES retried it itself and the next mail may well arrive.
//! - A delivery is recorded on the profile (`last_delivery`).
//! - A rejection (SES refused to send, e.g. a virus) is about the message, not the address:
//!   counted only.
//!
//! # Invariants
//! - Only an event with `source` `aws.ses` and one of [`DETAIL_TYPES`] (and the matching
//!   `detail.eventType`) is accepted; anything else is refused with a [`FeedbackError`]
//!   before anything is read or written. (EventBridge does not let an account put events
//!   with an `aws.` source, so the source check also keeps forged events out.)
//! - The user is named by the message's `user` tag (hex of the user id, set by
//!   [`crate::email::SesMailer`]); the feedback is recorded only while that user's profile
//!   still has the reported address, so a bounce of an old address never marks a new one.
//! - Idempotent: the first mark of an address wins and a delivery is recorded once per
//!   event id, so EventBridge redelivering an event changes nothing the second time.
//! - Never panics: every field is read as optional JSON.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tracing::instrument;

use crate::{
    domain::{Delivered, EmailAddress, Undeliverable, UndeliverableReason, UserId},
    metrics::Metrics,
    store::{AddressFeedback, Store, StoreError},
};

/// The `source` of SES's events on EventBridge.
pub const SES_SOURCE: &str = "aws.ses";

/// The `detail-type`s of the SES events handled (those the configuration set sends here).
pub const DETAIL_TYPES: [&str; 4] = ["Email Bounced", "Email Complaint Received", "Email Rejected", "Email Delivered"];

/// The message tag naming the user a message went to (hex of the user id: tag values allow
/// only `[A-Za-z0-9_-]`, user ids more).
pub const USER_TAG: &str = "user";

/// Encodes a user id as a tag value.
pub fn user_tag_value(user: &UserId) -> String {
    hex::encode(user.as_str())
}

/// Why an event was refused. Nothing was read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedbackError {
    #[error("events from source `{0}` are not SES feedback (expected aws.ses)")]
    UntrustedSource(String),
    #[error(
        "SES event type `{0}` is not handled (expected one of: Email Bounced, Email Complaint Received, Email Rejected, Email Delivered)"
    )]
    UnknownDetailType(String),
    #[error("the SES event is malformed: {0}")]
    Malformed(&'static str),
}

/// The kind of feedback an event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackKind {
    PermanentBounce,
    /// Transient or undetermined: SES retried; nothing is marked.
    SoftBounce,
    Complaint,
    Reject,
    Delivery,
}

impl FeedbackKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::PermanentBounce => "PermanentBounce",
            Self::SoftBounce => "SoftBounce",
            Self::Complaint => "Complaint",
            Self::Reject => "Reject",
            Self::Delivery => "Delivery",
        }
    }
}

/// One accepted SES event, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackEvent {
    /// The EventBridge event id.
    pub event_id: String,
    pub kind: FeedbackKind,
    /// When SES observed it (the detail's own timestamp, else the envelope's).
    pub at: DateTime<Utc>,
    /// The user the message went to, from its `user` tag; `None` for mail not sent by us.
    pub user: Option<UserId>,
    /// The recipients concerned (bounced, complained, delivered); those that do not parse
    /// as addresses are left out.
    pub recipients: Vec<EmailAddress>,
}

impl FeedbackEvent {
    /// Checks and parses an EventBridge event from SES.
    pub fn parse(event: &Value) -> Result<Self, FeedbackError> {
        let text = |v: &Value, field: &str| v.get(field).and_then(Value::as_str).map(str::to_owned);
        let source = text(event, "source").unwrap_or_default();
        if source != SES_SOURCE {
            return Err(FeedbackError::UntrustedSource(source));
        }
        let detail_type = text(event, "detail-type").unwrap_or_default();
        let (expected_event_type, section, recipients_field) = match detail_type.as_str() {
            "Email Bounced" => ("Bounce", "bounce", "bouncedRecipients"),
            "Email Complaint Received" => ("Complaint", "complaint", "complainedRecipients"),
            "Email Rejected" => ("Reject", "reject", ""),
            "Email Delivered" => ("Delivery", "delivery", "recipients"),
            _ => return Err(FeedbackError::UnknownDetailType(detail_type)),
        };
        let event_id = text(event, "id").filter(|id| !id.is_empty()).ok_or(FeedbackError::Malformed("no event `id`"))?;
        let detail = event.get("detail").filter(|d| d.is_object()).ok_or(FeedbackError::Malformed("no `detail` object"))?;
        if text(detail, "eventType").as_deref() != Some(expected_event_type) {
            return Err(FeedbackError::Malformed("`detail.eventType` does not match the `detail-type`"));
        }
        let mail = detail.get("mail").filter(|m| m.is_object()).ok_or(FeedbackError::Malformed("no `detail.mail` object"))?;
        let body = detail.get(section).filter(|b| b.is_object());
        if body.is_none() && section != "reject" {
            return Err(FeedbackError::Malformed("no section for the event type in `detail`"));
        }
        let kind = match expected_event_type {
            "Bounce" => match body.and_then(|b| text(b, "bounceType")).as_deref() {
                Some("Permanent") => FeedbackKind::PermanentBounce,
                _ => FeedbackKind::SoftBounce,
            },
            "Complaint" => FeedbackKind::Complaint,
            "Reject" => FeedbackKind::Reject,
            _ => FeedbackKind::Delivery,
        };
        let time = |raw: Option<String>| raw.and_then(|t| DateTime::parse_from_rfc3339(&t).ok()).map(|t| t.with_timezone(&Utc));
        let at = time(body.and_then(|b| text(b, "timestamp")))
            .or_else(|| time(text(event, "time")))
            .ok_or(FeedbackError::Malformed("no timestamp in the event"))?;
        let recipients = body
            .and_then(|b| b.get(recipients_field))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().or_else(|| r.get("emailAddress").and_then(Value::as_str)))
            .filter_map(|raw| EmailAddress::parse(raw).ok())
            .collect();
        let user = mail
            .get("tags")
            .and_then(|tags| tags.get(USER_TAG))
            .and_then(Value::as_array)
            .and_then(|values| values.first())
            .and_then(Value::as_str)
            .and_then(|encoded| hex::decode(encoded).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|raw| UserId::parse(&raw).ok());
        Ok(Self { event_id, kind, at, user, recipients })
    }

    /// What to record for `address`, if anything.
    fn feedback_for(&self, address: &EmailAddress) -> Option<AddressFeedback> {
        let mark = |reason| Undeliverable { address: address.clone(), reason, at: self.at, event_id: self.event_id.clone() };
        match self.kind {
            FeedbackKind::PermanentBounce => Some(AddressFeedback::Undeliverable(mark(UndeliverableReason::Bounce))),
            FeedbackKind::Complaint => Some(AddressFeedback::Undeliverable(mark(UndeliverableReason::Complaint))),
            FeedbackKind::Delivery => {
                Some(AddressFeedback::Delivered(Delivered { address: address.clone(), at: self.at, event_id: self.event_id.clone() }))
            }
            FeedbackKind::SoftBounce | FeedbackKind::Reject => None,
        }
    }
}

/// What handling one event did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedbackReport {
    pub event_id: String,
    pub kind: FeedbackKind,
    /// Recipients whose profile changed (marked undeliverable, delivery recorded).
    pub recorded: u32,
    /// Recipients left as they were (already recorded, address changed, no such user, or
    /// nothing to record for this kind).
    pub unchanged: u32,
}

/// Applies SES feedback to the profiles.
#[derive(Clone)]
pub struct MailFeedback {
    store: Arc<dyn Store>,
}

impl MailFeedback {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Parses and applies one EventBridge event. A refused event changes nothing; a store
    /// failure fails the call, and EventBridge's retry applies it again (idempotently).
    #[instrument(skip_all, fields(event_id))]
    pub async fn handle(&self, event: &Value) -> Result<FeedbackReport, HandleError> {
        let event = FeedbackEvent::parse(event)?;
        tracing::Span::current().record("event_id", event.event_id.as_str());
        Metrics::new().dimension("Type", event.kind.as_str()).count("SesFeedback", 1).emit();
        let mut report = FeedbackReport { event_id: event.event_id.clone(), kind: event.kind, recorded: 0, unchanged: 0 };
        for address in &event.recipients {
            let recorded = match (&event.user, event.feedback_for(address)) {
                (Some(user), Some(feedback)) => self.store.record_address_feedback(user, &feedback).await?,
                _ => false,
            };
            if recorded {
                report.recorded += 1;
                if matches!(event.kind, FeedbackKind::PermanentBounce | FeedbackKind::Complaint) {
                    Metrics::new().dimension("Reason", event.kind.as_str()).count("AddressesMarkedUndeliverable", 1).emit();
                }
            } else {
                report.unchanged += 1;
            }
        }
        if event.user.is_none() {
            tracing::warn!(kind = ?event.kind, "SES event for a message without our user tag; nothing recorded");
        }
        tracing::info!(kind = ?event.kind, recorded = report.recorded, unchanged = report.unchanged, "SES feedback handled");
        Ok(report)
    }
}

/// Why handling an event failed.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Refused before anything was read or written.
    #[error(transparent)]
    Refused(#[from] FeedbackError),
    #[error("the table could not be written: {0}")]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bounce(bounce_type: &str) -> Value {
        json!({"version": "0", "id": "evt-1", "detail-type": "Email Bounced", "source": "aws.ses", "account": "1",
            "time": "2026-03-10T06:01:00Z", "region": "us-east-1", "resources": [],
            "detail": {"eventType": "Bounce",
                "bounce": {"bounceType": bounce_type, "bounceSubType": "General", "timestamp": "2026-03-10T06:00:30Z",
                    "bouncedRecipients": [{"emailAddress": "Ann@Example.com"}, {"emailAddress": "not an address"}]},
                "mail": {"messageId": "m1", "tags": {"user": [user_tag_value(&UserId::parse("u:1@x").unwrap())]}}}})
    }

    #[test]
    fn a_permanent_bounce_parses_with_its_user_and_recipients() {
        let event = FeedbackEvent::parse(&bounce("Permanent")).unwrap();
        assert_eq!(event.kind, FeedbackKind::PermanentBounce);
        assert_eq!(event.user.as_ref().map(UserId::as_str), Some("u:1@x"), "the tag round-trips a user id with : and @");
        assert_eq!(event.recipients, vec![EmailAddress::parse("Ann@example.com").unwrap()]);
        assert_eq!(event.at.to_rfc3339(), "2026-03-10T06:00:30+00:00");
        assert!(matches!(event.feedback_for(&event.recipients[0]), Some(AddressFeedback::Undeliverable(_))));
    }

    #[test]
    fn soft_bounces_and_rejects_mark_nothing() {
        for kind in ["Transient", "Undetermined", "Whatever"] {
            let event = FeedbackEvent::parse(&bounce(kind)).unwrap();
            assert_eq!(event.kind, FeedbackKind::SoftBounce, "{kind}");
            assert_eq!(event.feedback_for(&event.recipients[0]), None);
        }
    }

    #[test]
    fn anything_but_ses_feedback_is_refused() {
        let mut forged = bounce("Permanent");
        forged["source"] = json!("logiscore.subscriptions");
        assert_eq!(FeedbackEvent::parse(&forged), Err(FeedbackError::UntrustedSource("logiscore.subscriptions".into())));
        let mut opened = bounce("Permanent");
        opened["detail-type"] = json!("Email Opened");
        assert!(matches!(FeedbackEvent::parse(&opened), Err(FeedbackError::UnknownDetailType(_))));
        let mut mismatched = bounce("Permanent");
        mismatched["detail"]["eventType"] = json!("Delivery");
        assert!(matches!(FeedbackEvent::parse(&mismatched), Err(FeedbackError::Malformed(_))));
        for broken in [json!(null), json!([]), json!({"source": "aws.ses", "detail-type": "Email Bounced"}), json!("x")] {
            assert!(FeedbackEvent::parse(&broken).is_err(), "{broken}");
        }
    }

    #[test]
    fn every_sample_event_parses_as_described() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/ses");
        let expect = [
            ("bounce-permanent.json", FeedbackKind::PermanentBounce),
            ("bounce-transient.json", FeedbackKind::SoftBounce),
            ("complaint.json", FeedbackKind::Complaint),
            ("delivery.json", FeedbackKind::Delivery),
            ("reject.json", FeedbackKind::Reject),
        ];
        for (file, kind) in expect {
            let value: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
            let event = FeedbackEvent::parse(&value).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(event.kind, kind, "{file}");
            assert_eq!(event.user.as_ref().map(UserId::as_str), Some("user_123"), "{file}");
        }
    }
}
