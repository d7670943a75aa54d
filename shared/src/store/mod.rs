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
//! | outbox item | `OUTBOX#<id>` | `OUTBOX` | `pend_pk`/`pend_sk` while pending; `expires_at` (TTL) 30 days after delivery ends |
//! | outbox reference | `USER#<user_id>` | `OUTBOX#<id>` | per item about the user, same transaction; `expires_at` (TTL) |
//! | SES send slots of one second | `SEND_SLOT#<epoch second>` | `SLOT` | `used` counter (see `delivery::pacing`); `expires_at` (TTL) a day later |
//!
//! An erased user's profile item stays as a tombstone: `erasure_started_at` (and
//! `erased_at` when finished), the Stripe customer id, no e-mail and no names.
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

//!
//! # The port
//! [`Store`] is what every function needs from the table; the use cases and the function
//! crates hold an `Arc<dyn Store>`, and [`DynamoStore`] is its one implementation. The
//! write model ([`Change`] and its parts) lives in [`model`], outside the adapter.

mod dynamo;
mod error;
mod items;
pub mod keys;
mod model;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{Erasure, HistoryEntry, OutboxItem, StripeCustomerId, Subscription, UserId, UserProfile};

pub use dynamo::DynamoStore;
pub use error::StoreError;
pub use model::{
    AddressFeedback, Change, Erased, EventContext, ExpiryCursor, ExpiryPage, ExpiryRange, LedgerEntry, Operation, PendingPage,
    StripeMapping, SubscriptionWrite, UserRecords,
};

/// Every read and write the functions make of the subscription table. Reads are strongly
/// consistent unless they go through an index (`expiring`, `pending_outbox`).
#[async_trait]
pub trait Store: Send + Sync {
    /// The user's profile; `None` also once their erasure has started.
    async fn profile(&self, user: &UserId) -> Result<Option<UserProfile>, StoreError>;
    /// Creates or replaces the profile's own fields; the recorded Stripe customer stays.
    /// [`StoreError::Conflict`] when the user is (being) erased.
    async fn put_profile(&self, profile: &UserProfile) -> Result<(), StoreError>;
    /// A job's persisted position (what it is, is the job's: JSON, say), if it has one.
    async fn cursor(&self, job: &str) -> Result<Option<String>, StoreError>;
    /// Replaces a job's persisted position.
    async fn put_cursor(&self, job: &str, position: &str) -> Result<(), StoreError>;
    /// The user's erasure, if one has started.
    async fn erasure(&self, user: &UserId) -> Result<Option<Erasure>, StoreError>;
    /// Starts the user's erasure at `at` (a retry keeps the first start): from then on
    /// [`Store::profile`] reads `None` and [`Store::put_profile`] is refused. Returns the
    /// erasure as stored; [`StoreError::Conflict`] when the user has no profile.
    async fn begin_erasure(&self, user: &UserId, at: DateTime<Utc>) -> Result<Erasure, StoreError>;
    /// Removes the personal data held about a user whose erasure has started: the
    /// profile's e-mail and names, the comments on the subscription and its history, the
    /// personal facts of e-mail outbox items (pending ones are stopped for good); keeps
    /// ids, tiers, statuses, amounts and dates. Then marks the erasure finished. Every step
    /// is idempotent, so after a crash the next call finishes the job.
    async fn erase_user(&self, user: &UserId, at: DateTime<Utc>) -> Result<Erased, StoreError>;
    /// Everything held about the user (see [`UserRecords`]).
    async fn user_records(&self, user: &UserId) -> Result<UserRecords, StoreError>;
    /// Records the user's Stripe customer on their profile (which must exist).
    async fn set_customer(&self, user: &UserId, customer: &StripeCustomerId) -> Result<(), StoreError>;
    /// The user's current subscription record.
    async fn subscription(&self, user: &UserId) -> Result<Option<Subscription>, StoreError>;
    /// Whether `event_id` (when given) is in the ledger already, and the user each mapping
    /// names, in one round trip: what an arriving event needs before Stripe is asked.
    async fn event_context(&self, event_id: Option<&str>, mappings: &[StripeMapping]) -> Result<EventContext, StoreError>;
    /// The user a Stripe customer or subscription belongs to ([`Store::event_context`] for one mapping).
    async fn user_for(&self, mapping: &StripeMapping) -> Result<Option<UserId>, StoreError> {
        Ok(self.event_context(None, std::slice::from_ref(mapping)).await?.owners.pop().flatten())
    }
    /// Whether a Stripe event id is in the ledger already ([`Store::event_context`] for the ledger alone).
    async fn event_seen(&self, event_id: &str) -> Result<bool, StoreError> {
        Ok(self.event_context(Some(event_id), &[]).await?.seen)
    }
    async fn outbox_item(&self, id: &str) -> Result<Option<OutboxItem>, StoreError>;
    /// The user's history, newest first, at most `limit` entries.
    async fn history(&self, user: &UserId, limit: i32) -> Result<Vec<HistoryEntry>, StoreError>;
    /// Commits a [`Change`] atomically: all of it or nothing. An outbox item that already
    /// exists (the same logical notification queued by an earlier cause) is dropped and the
    /// rest committed, so a notification is queued once however many causes it has.
    /// [`StoreError::Conflict`] when the subscription's version moved, [`StoreError::DuplicateEvent`]
    /// when the Stripe event is in the ledger already.
    async fn commit(&self, change: Change) -> Result<(), StoreError>;
    /// Opens `op` for its user, unless another open operation's lease is still running
    /// ([`StoreError::Conflict`]); the same operation (same id: a retry) may open again.
    /// Returns the other open operation it replaced, if any: one whose process died before
    /// closing it, for the caller to finish.
    async fn begin_operation(&self, op: &Operation) -> Result<Option<Operation>, StoreError>;
    /// Closes the user's operation `op_id` (a no-op if another request took it over).
    async fn close_operation(&self, user: &UserId, op_id: &str) -> Result<(), StoreError>;
    /// One page of live subscriptions whose end date is in `range`, from `cursor`.
    async fn expiring(&self, range: ExpiryRange, cursor: Option<ExpiryCursor>, page_size: i32) -> Result<ExpiryPage, StoreError>;
    /// Pending outbox items due at `now`, at most `limit`.
    async fn pending_outbox(&self, now: DateTime<Utc>, limit: i32) -> Result<PendingPage, StoreError>;
    /// Records SES's feedback about `user`'s address on their profile, only while the profile
    /// still has that address and is not erased. `false` when nothing changed: the same
    /// event again, an address already marked undeliverable, an address the user no longer
    /// has, no profile.
    async fn record_address_feedback(&self, user: &UserId, feedback: &AddressFeedback) -> Result<bool, StoreError>;
    /// Takes one of the `rate` SES send slots of the epoch second `second` (the shared send
    /// rate, see [`crate::delivery::pacing`]); `false` when all are taken.
    async fn claim_send_slot(&self, second: i64, rate: u32) -> Result<bool, StoreError>;
    /// Records a delivery attempt's outcome, only if the item is still pending with
    /// `seen_attempts` attempts; `false` when another worker got there first.
    async fn update_outbox(&self, item: &OutboxItem, seen_attempts: u32) -> Result<bool, StoreError>;
}

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
