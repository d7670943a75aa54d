//! Conversions between domain records and DynamoDB items.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Serialize};

use super::{keys, StoreError};
use crate::domain::{HistoryEntry, OutboxItem, OutboxPayload, OutboxState, Subscription, UserId, UserProfile};

pub type Item = HashMap<String, AttributeValue>;

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn to_item<T: Serialize>(value: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value).map_err(|e| StoreError::Corrupt(format!("serialise: {e}")))
}

pub fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn with_keys(mut item: Item, pk: String, sk: &str, entity: &str) -> Item {
    item.insert("pk".into(), s(pk));
    item.insert("sk".into(), s(sk));
    item.insert("entity".into(), s(entity));
    item
}

pub fn profile(profile: &UserProfile) -> Result<Item, StoreError> {
    Ok(with_keys(to_item(profile)?, keys::user_pk(&profile.user_id), keys::PROFILE_SK, "profile"))
}

pub fn subscription(sub: &Subscription) -> Result<Item, StoreError> {
    let mut item = with_keys(to_item(sub)?, keys::user_pk(&sub.user_id), keys::SUBSCRIPTION_SK, "subscription");
    // Only live subscriptions with an end are in the (sparse) expiry index.
    if let (true, Some(end)) = (sub.status.is_live(), sub.end_date) {
        let (pk, sk) = keys::expiry_keys(&sub.user_id, end);
        item.insert("exp_pk".into(), s(pk));
        item.insert("exp_sk".into(), s(sk));
    }
    Ok(item)
}

pub fn history(entry: &HistoryEntry) -> Result<Item, StoreError> {
    let sk = keys::history_sk(entry.at, entry.version);
    Ok(with_keys(to_item(entry)?, keys::user_pk(&entry.user_id), &sk, "history"))
}

/// The user's operation item; `lease_ms` (epoch milliseconds) is what the conditions compare.
pub fn operation(op: &crate::store::Operation) -> Result<Item, StoreError> {
    let mut item = with_keys(to_item(op)?, keys::user_pk(&op.user_id), keys::OPERATION_SK, "operation");
    item.insert("lease_ms".into(), AttributeValue::N(op.lease_until.timestamp_millis().to_string()));
    Ok(item)
}

pub fn mapping(pk: String, user_id: &str) -> Item {
    let mut item = with_keys(Item::new(), pk, keys::MAP_SK, "stripe_mapping");
    item.insert("user_id".into(), s(user_id));
    item
}

pub fn ledger(event_id: &str, event_type: &str, received_at: DateTime<Utc>) -> Item {
    let mut item = with_keys(Item::new(), keys::event_pk(event_id), keys::LEDGER_SK, "stripe_event");
    item.insert("event_type".into(), s(event_type));
    item.insert("received_at".into(), s(keys::timestamp(received_at)));
    item.insert("expires_at".into(), epoch_after(received_at, keys::LEDGER_TTL_DAYS));
    item
}

/// The outbox payload is kept as one JSON string, which round-trips it exactly whatever
/// its shape; one this deploy cannot read is written back as it was read.
pub fn outbox(item: &OutboxItem) -> Result<Item, StoreError> {
    let payload = match &item.payload {
        OutboxPayload::Unreadable { raw, .. } => raw.clone(),
        payload => serde_json::to_string(payload).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    };
    let mut out = with_keys(Item::new(), keys::outbox_pk(&item.id), keys::OUTBOX_SK, "outbox");
    out.insert("id".into(), s(&item.id));
    out.insert("payload".into(), s(payload));
    out.insert("state".into(), to_attr(&item.state)?);
    out.insert("attempts".into(), AttributeValue::N(item.attempts.to_string()));
    out.insert("created_at".into(), s(keys::timestamp(item.created_at)));
    out.insert("next_attempt_at".into(), s(keys::timestamp(item.next_attempt_at)));
    if let Some(err) = &item.last_error {
        out.insert("last_error".into(), s(err));
    }
    if let Some(id) = &item.delivery_id {
        out.insert("delivery_id".into(), s(id));
    }
    if let Some(at) = item.sent_at {
        out.insert("sent_at".into(), s(keys::timestamp(at)));
    }
    if item.state == OutboxState::Pending {
        let (pk, sk) = keys::pending_keys(&item.id, item.next_attempt_at);
        out.insert("pend_pk".into(), s(pk));
        out.insert("pend_sk".into(), s(sk));
    } else {
        // Delivery is over: the table's TTL removes the item after the retention, counted
        // from the send or the last attempt (an erased item's is its stop).
        let last = item.sent_at.unwrap_or(item.next_attempt_at);
        out.insert("expires_at".into(), epoch_after(last, keys::OUTBOX_RETENTION_DAYS));
    }
    Ok(out)
}

/// The user's reference to an outbox item about them (see [`keys::OUTBOX_REF_PREFIX`]);
/// it holds the id only and expires after its item can have.
pub fn outbox_ref(user: &UserId, item: &OutboxItem) -> Item {
    let mut out = with_keys(Item::new(), keys::user_pk(user), &keys::outbox_ref_sk(&item.id), "outbox_ref");
    out.insert("outbox_id".into(), s(&item.id));
    out.insert("expires_at".into(), epoch_after(item.created_at, keys::OUTBOX_REF_TTL_DAYS));
    out
}

/// A TTL value: epoch seconds `days` after `at`.
fn epoch_after(at: DateTime<Utc>, days: i64) -> AttributeValue {
    AttributeValue::N((at.timestamp() + days * 86_400).to_string())
}

pub fn outbox_from(item: &Item) -> Result<OutboxItem, StoreError> {
    let text = |name: &str| -> Result<&str, StoreError> {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
            .ok_or_else(|| StoreError::Corrupt(format!("outbox item without {name}")))
    };
    let time = |name: &str| -> Result<DateTime<Utc>, StoreError> {
        DateTime::parse_from_rfc3339(text(name)?).map(|t| t.with_timezone(&Utc)).map_err(|e| StoreError::Corrupt(e.to_string()))
    };
    Ok(OutboxItem {
        id: text("id")?.to_owned(),
        payload: payload_from(text("payload")?),
        state: serde_json::from_value(serde_json::Value::String(text("state")?.to_owned()))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        attempts: item.get("attempts").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or(0),
        created_at: time("created_at")?,
        next_attempt_at: time("next_attempt_at")?,
        last_error: text("last_error").ok().map(str::to_owned),
        delivery_id: text("delivery_id").ok().map(str::to_owned),
        sent_at: time("sent_at").ok(),
    })
}

/// A payload that does not parse (another deploy's, or damaged) is one item's problem,
/// not the page's: it comes back as [`OutboxPayload::Unreadable`], which delivery fails
/// for good, instead of an error that would stop every sweep at the same item.
fn payload_from(raw: &str) -> OutboxPayload {
    serde_json::from_str(raw).unwrap_or_else(|e| OutboxPayload::Unreadable { raw: raw.to_owned(), why: e.to_string() })
}

pub fn to_attr<T: Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::domain::EmailContext;

    fn expires_at(item: &Item) -> Option<i64> {
        item.get("expires_at").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok())
    }

    #[test]
    fn outbox_items_expire_only_once_delivery_is_over() {
        let user = UserId::parse("u1").unwrap();
        let now = Utc::now();
        let mut item = EmailContext::samples().remove(0).outbox_item(&user, "x", now);
        let pending = outbox(&item).unwrap();
        assert_eq!(expires_at(&pending), None, "a pending item never expires");
        assert!(pending.contains_key("pend_pk"));

        let sent_at = now + Duration::minutes(3);
        item.state = OutboxState::Sent;
        item.sent_at = Some(sent_at);
        let sent = outbox(&item).unwrap();
        assert_eq!(expires_at(&sent), Some(sent_at.timestamp() + keys::OUTBOX_RETENTION_DAYS * 86_400));
        assert!(!sent.contains_key("pend_pk"));

        let reference = outbox_ref(&user, &item);
        assert_eq!(expires_at(&reference), Some(now.timestamp() + keys::OUTBOX_REF_TTL_DAYS * 86_400));
    }
}
