//! Key formats of the single table (see the module docs of [`crate::store`]).

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use crate::domain::UserId;

pub const GSI_EXPIRY: &str = "gsi_expiry";
pub const GSI_PENDING: &str = "gsi_pending";
/// Partitions of the expiry index. A window query costs one `Query` per shard, so this
/// trades a little fixed overhead per job run for no hot partition at any table size.
pub const EXPIRY_SHARDS: u32 = 8;
pub const PENDING_SHARDS: u32 = 4;
/// How long the event ledger remembers an event id (Stripe retries for 3 days).
pub const LEDGER_TTL_DAYS: i64 = 30;

pub fn user_pk(user: &UserId) -> String {
    format!("USER#{user}")
}
pub const PROFILE_SK: &str = "PROFILE";
pub const SUBSCRIPTION_SK: &str = "SUBSCRIPTION";
pub const HISTORY_PREFIX: &str = "HISTORY#";
pub const MAP_SK: &str = "MAP";
pub const LEDGER_SK: &str = "LEDGER";
pub const OUTBOX_SK: &str = "OUTBOX";
pub const OPERATION_SK: &str = "OPERATION";
/// The key a cold start reads to open its DynamoDB connection ([`crate::warm`]); no item
/// is ever written under it, so the read finds nothing and costs half a read unit.
pub const WARM_UP_KEY: &str = "WARMUP";
/// A user's reference to an outbox item about them, `OUTBOX#<id>` under `USER#<user_id>`:
/// an erasure or an export finds the user's items with one strongly consistent `Query`
/// (the items themselves are keyed by notification, not by user).
pub const OUTBOX_REF_PREFIX: &str = "OUTBOX#";
/// Days an outbox item is kept once its delivery is over (sent, failed, dead-lettered,
/// erased), counted from its last attempt: long enough to answer "did they get the
/// receipt?" and to inspect a failure, short enough not to keep mail history for ever.
pub const OUTBOX_RETENTION_DAYS: i64 = 30;
/// Days a reference outlives its item's creation: the retention plus more than an item
/// can stay pending (five attempts, at most six hours apart).
pub const OUTBOX_REF_TTL_DAYS: i64 = OUTBOX_RETENTION_DAYS + 7;
const _: () = assert!(OUTBOX_REF_TTL_DAYS > OUTBOX_RETENTION_DAYS, "a reference outlives its item");

pub fn history_sk(at: DateTime<Utc>, version: u64) -> String {
    format!("{HISTORY_PREFIX}{}#{version:010}", timestamp(at))
}
pub fn customer_pk(customer: &str) -> String {
    format!("STRIPE_CUSTOMER#{customer}")
}
pub fn stripe_subscription_pk(subscription: &str) -> String {
    format!("STRIPE_SUBSCRIPTION#{subscription}")
}
pub fn event_pk(event_id: &str) -> String {
    format!("STRIPE_EVENT#{event_id}")
}
pub fn outbox_pk(id: &str) -> String {
    format!("OUTBOX#{id}")
}
pub fn outbox_ref_sk(id: &str) -> String {
    format!("{OUTBOX_REF_PREFIX}{id}")
}

/// Fixed-width UTC timestamps sort lexicographically in time order.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn shard_of(value: &str, shards: u32) -> u32 {
    let digest = Sha256::digest(value.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % shards
}

pub fn expiry_pk_for_shard(shard: u32) -> String {
    format!("EXP#{shard}")
}
pub fn expiry_keys(user: &UserId, end: DateTime<Utc>) -> (String, String) {
    (expiry_pk_for_shard(shard_of(user.as_str(), EXPIRY_SHARDS)), format!("{}#{user}", timestamp(end)))
}

pub fn pending_pk_for_shard(shard: u32) -> String {
    format!("OUTBOX#{shard}")
}
pub fn pending_keys(id: &str, due: DateTime<Utc>) -> (String, String) {
    (pending_pk_for_shard(shard_of(id, PENDING_SHARDS)), format!("{}#{id}", timestamp(due)))
}

/// A job's persisted position: one item per job.
pub fn job_pk(job: &str) -> String {
    format!("JOB#{job}")
}
pub const CURSOR_SK: &str = "CURSOR";

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    #[test]
    fn timestamps_sort_in_time_order() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut stamps: Vec<_> = [90, 0, 5, 3600, 86_400 * 400].iter().map(|s| timestamp(t + Duration::seconds(*s))).collect();
        let sorted = {
            let mut s = stamps.clone();
            s.sort();
            s
        };
        stamps.sort_by_key(|s| DateTime::parse_from_rfc3339(s).unwrap());
        assert_eq!(stamps, sorted);
    }

    #[test]
    fn shards_spread_users() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..200 {
            seen.insert(expiry_keys(&UserId::parse(&format!("user-{i}")).unwrap(), Utc::now()).0);
        }
        assert_eq!(seen.len(), EXPIRY_SHARDS as usize);
    }
}
