//! Decoding a Stripe event — a webhook's body, or one listed by the Events API — into the
//! use case's [`StripeEvent`]: its id, its kind, and the typed ids of the objects it is
//! about. Only ids are taken from the payload; state is always re-fetched from Stripe,
//! because a payload may be older than what is stored.

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use super::{EventKind, StripeEvent, Subject};
use crate::domain::{StripeCustomerId, StripeInvoiceId, StripeSubscriptionId, UserId};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("body is not a Stripe event: {0}")]
    NotAnEvent(String),
    #[error("event {event_id} ({event_type}) lacks {what}")]
    MissingField { event_id: String, event_type: String, what: &'static str },
}

#[derive(Debug, Deserialize)]
struct RawEvent {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    livemode: bool,
    data: RawData,
}

#[derive(Debug, Deserialize)]
struct RawData {
    object: Value,
}

/// An id field that may be a plain string or an expanded object with an `id`.
fn id_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(map) => map.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// The subscription an invoice belongs to: Stripe's newer shape keeps it under
/// `parent.subscription_details.subscription`, the older one at the top level.
fn invoice_subscription(invoice: &Value) -> Option<String> {
    id_of(invoice.pointer("/parent/subscription_details/subscription")).or_else(|| id_of(invoice.get("subscription")))
}

/// A webhook's body.
pub fn decode(body: &[u8]) -> Result<StripeEvent, DecodeError> {
    serde_json::from_slice(body).map_err(|e| DecodeError::NotAnEvent(e.to_string())).and_then(typed)
}

/// An event as the Events API lists it.
pub fn decode_value(event: Value) -> Result<StripeEvent, DecodeError> {
    serde_json::from_value(event).map_err(|e| DecodeError::NotAnEvent(e.to_string())).and_then(typed)
}

fn typed(raw: RawEvent) -> Result<StripeEvent, DecodeError> {
    let object = &raw.data.object;
    let missing = |what| DecodeError::MissingField { event_id: raw.id.clone(), event_type: raw.event_type.clone(), what };
    let customer = || id_of(object.get("customer")).and_then(|id| StripeCustomerId::parse(&id).ok());
    let subject = if raw.event_type.starts_with("customer.subscription.") {
        let id = id_of(object.get("id")).ok_or_else(|| missing("data.object.id"))?;
        match StripeSubscriptionId::parse(&id) {
            Ok(id) => Subject::Subscription { id, customer: customer() },
            Err(_) => Subject::Other,
        }
    } else if raw.event_type.starts_with("invoice.") {
        let id = id_of(object.get("id")).ok_or_else(|| missing("data.object.id"))?;
        let subscription = invoice_subscription(object).map(|s| StripeSubscriptionId::parse(&s));
        match (StripeInvoiceId::parse(&id), subscription.transpose()) {
            (Ok(id), Ok(subscription)) => Subject::Invoice { id, subscription, customer: customer() },
            _ => Subject::Other,
        }
    } else if raw.event_type == "checkout.session.completed" {
        Subject::CheckoutSession {
            subscription: id_of(object.get("subscription")).and_then(|s| StripeSubscriptionId::parse(&s).ok()),
            customer: customer(),
            user_hint: object
                .get("client_reference_id")
                .and_then(Value::as_str)
                .or_else(|| object.pointer("/metadata/user_id").and_then(Value::as_str))
                .and_then(|hint| UserId::parse(hint).ok()),
        }
    } else {
        Subject::Other
    };
    Ok(StripeEvent { id: raw.id, kind: EventKind::parse(&raw.event_type), livemode: raw.livemode, subject })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(event_type: &str, object: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"id": "evt_1", "object": "event", "type": event_type, "data": {"object": object}})).unwrap()
    }

    #[test]
    fn finds_the_subscription_of_both_invoice_shapes() {
        let new_shape = event(
            "invoice.paid",
            json!({"id": "in_1", "customer": "cus_1", "parent": {"subscription_details": {"subscription": "sub_new"}}}),
        );
        let old_shape = event("invoice.paid", json!({"id": "in_1", "customer": "cus_1", "subscription": "sub_old"}));
        let expanded = event("invoice.paid", json!({"id": "in_1", "subscription": {"id": "sub_exp", "object": "subscription"}}));
        let sub = |b: &[u8]| match decode(b).unwrap().subject {
            Subject::Invoice { subscription, .. } => subscription,
            other => panic!("{other:?}"),
        };
        let id = |s: &str| Some(StripeSubscriptionId::parse(s).unwrap());
        assert_eq!(sub(&new_shape), id("sub_new"));
        assert_eq!(sub(&old_shape), id("sub_old"));
        assert_eq!(sub(&expanded), id("sub_exp"));
    }

    #[test]
    fn subscription_events_need_an_object_id() {
        assert!(matches!(decode(&event("customer.subscription.updated", json!({}))), Err(DecodeError::MissingField { .. })));
        let ok = decode(&event("customer.subscription.updated", json!({"id": "sub_1", "customer": "cus_1"}))).unwrap();
        let (id, customer) = (StripeSubscriptionId::parse("sub_1").unwrap(), StripeCustomerId::parse("cus_1").ok());
        assert_eq!(ok.subject, Subject::Subscription { id, customer });
        assert_eq!(ok.kind, EventKind::SubscriptionUpdated);
    }

    #[test]
    fn unknown_types_decode_as_other_and_garbage_is_an_error() {
        assert_eq!(decode(&event("payout.paid", json!({"id": "po_1"}))).unwrap().subject, Subject::Other);
        assert!(matches!(decode(b"not json"), Err(DecodeError::NotAnEvent(_))));
        assert!(matches!(decode(br#"{"id": "evt_1"}"#), Err(DecodeError::NotAnEvent(_))));
    }
}
