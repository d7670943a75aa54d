//! The DynamoDB store: one table, single-table design.
//!
//! # Key schema
//!
//! | item | `pk` | `sk` | notes |
//! | --- | --- | --- | --- |
//! | user profile | `USER#<user_id>` | `PROFILE` | |
//! | current subscription | `USER#<user_id>` | `SUBSCRIPTION` | `version` guards every write; `exp_pk`/`exp_sk` while live |
//! | history entry | `USER#<user_id>` | `HISTORY#<at, RFC 3339 ms>#<version, 10 digits>` | `Query` backwards = newest first |
//! | Stripe customer → user | `STRIPE_CUSTOMER#<cus_…>` | `MAP` | |
//! | Stripe subscription → user | `STRIPE_SUBSCRIPTION#<sub_…>` | `MAP` | |
//! | Stripe event ledger | `STRIPE_EVENT#<evt_…>` | `LEDGER` | `expires_at` (TTL) after 30 days |
//! | outbox item | `OUTBOX#<id>` | `OUTBOX` | `pend_pk`/`pend_sk` while pending |
//!
//! ## Why mapping items, not a GSI, for Stripe ids
//! A webhook for a subscription can arrive milliseconds after the admin call that
//! created it. A GSI is eventually consistent; a mapping item written in the same
//! transaction as the subscription is read back with a strongly consistent `GetItem`,
//! and its condition (`attribute_not_exists(pk) OR user_id = :u`) makes it impossible
//! to point one Stripe customer at two users.
//!
//! ## Global secondary indexes (both sparse, both `ALL` projections)
//! - `gsi_expiry` (`exp_pk`, `exp_sk`): only live subscriptions (active, trial, past_due)
//!   with an end date carry these attributes. `exp_pk` is `EXP#<shard>` with the shard a
//!   hash of the user id over [`EXPIRY_SHARDS`] partitions, so a million subscriptions
//!   spread over many partition keys instead of one hot key; `exp_sk` is
//!   `<end date>#<user_id>`. A window query is one `Query` per shard on a key range, so
//!   it reads only the items due — never a `Scan`.
//! - `gsi_pending` (`pend_pk`, `pend_sk`): only pending outbox items, `OUTBOX#<shard>` and
//!   `<next attempt at>#<id>`; the delivery sweep queries what is due now.

mod dynamo;
mod error;
mod items;
pub mod keys;

pub use dynamo::{Change, DynamoStore, ExpiryCursor, ExpiryPage, ExpiryRange, LedgerEntry, PendingPage, StripeMapping, SubscriptionWrite};
pub use error::StoreError;

/// An error and its sources on one line. The AWS SDK's own `Display` is terse
/// ("service error"); the chain says what actually happened.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
