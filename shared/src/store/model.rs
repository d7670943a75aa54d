//! The write model and the read shapes of the [`Store`](super::Store) port: what one
//! state change commits ([`Change`]) and what the paged index reads return. Nothing here
//! knows DynamoDB; the adapter maps it onto items (see the module docs for the keys).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Delivered, Erasure, HistoryEntry, OutboxItem, StripeCustomerId, Subscription, Undeliverable, UserId, UserProfile};

/// The subscription half of a [`Change`].
#[derive(Debug, Clone)]
pub struct SubscriptionWrite {
    pub record: Subscription,
    /// The version the writer read: `None` means "there must be no subscription yet".
    pub expected_version: Option<u64>,
}

/// A Stripe id that must point at this user from now on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StripeMapping {
    Customer(String),
    Subscription(String),
}

/// What an arriving Stripe event needs from the table before Stripe is asked (see
/// [`Store::event_context`](super::Store::event_context)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventContext {
    /// The event id is in the ledger already.
    pub seen: bool,
    /// The user each asked-for mapping names, in the order asked.
    pub owners: Vec<Option<UserId>>,
}

/// The one change in flight for a user (see [`crate::usecase::admin`]): written before
/// the first Stripe call of a subscribe, closed by the commit that records its outcome.
/// An open one whose lease has run out belongs to a process that died between Stripe and
/// the commit; the next request takes it over and finishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub user_id: UserId,
    /// Every Stripe idempotency key of the operation derives from it, and the Stripe
    /// subscription it creates carries it in `metadata.operation_id`.
    pub op_id: String,
    pub started_at: DateTime<Utc>,
    /// Longer than the function can run: past it, the process that opened it is gone.
    pub lease_until: DateTime<Utc>,
    pub open: bool,
}

#[derive(Debug, Clone)]
pub struct LedgerEntry {
    pub event_id: String,
    pub event_type: String,
    pub received_at: DateTime<Utc>,
}

/// Everything one state change writes, committed in a single `TransactWriteItems`:
/// the subscription (guarded by its version), its history, the outbox items it causes,
/// the Stripe event that caused it (guarded by `attribute_not_exists`), and id mappings.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub user_id: Option<UserId>,
    pub subscription: Option<SubscriptionWrite>,
    pub history: Vec<HistoryEntry>,
    pub outbox: Vec<OutboxItem>,
    pub stripe_event: Option<LedgerEntry>,
    pub mappings: Vec<StripeMapping>,
    /// Closes the user's [`Operation`] with this id in the same transaction; the commit
    /// is a [`super::StoreError::Conflict`] if another request took the operation over.
    pub closes_operation: Option<String>,
}

impl Change {
    /// A change that writes `record` over `expected_version` (`None`: there must be no
    /// subscription yet) together with its history entry; outbox items and mappings are
    /// added with the builder methods.
    pub fn subscription(record: Subscription, expected_version: Option<u64>, history: HistoryEntry) -> Self {
        Self {
            user_id: Some(record.user_id.clone()),
            subscription: Some(SubscriptionWrite { record, expected_version }),
            history: vec![history],
            ..Self::default()
        }
    }

    pub fn with_outbox(mut self, items: impl IntoIterator<Item = OutboxItem>) -> Self {
        self.outbox.extend(items);
        self
    }

    pub fn with_mappings(mut self, mappings: impl IntoIterator<Item = StripeMapping>) -> Self {
        self.mappings.extend(mappings);
        self
    }
}

/// Which end dates an expiry query selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryRange {
    /// `from <= end <= to`: subscriptions ending inside a warning window.
    EndingBetween(DateTime<Utc>, DateTime<Utc>),
    /// `end < before`: subscriptions already past their end and still live.
    EndedBefore(DateTime<Utc>),
}

/// Where an expiry query stopped, to continue in the next page or invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryCursor {
    pub shard: u32,
    /// The index key to start after, within `shard`.
    pub after: Option<HashMap<String, String>>,
}

#[derive(Debug, Clone)]
pub struct ExpiryPage {
    pub subscriptions: Vec<Subscription>,
    /// Items DynamoDB read to answer (the sum of the queries' `ScannedCount`).
    pub scanned: u64,
    pub next: Option<ExpiryCursor>,
}

#[derive(Debug, Clone)]
pub struct PendingPage {
    pub items: Vec<OutboxItem>,
    pub scanned: u64,
}

/// Everything the table holds about one user, read strongly consistently: the items under
/// `USER#<user_id>` and the outbox items they reference.
#[derive(Debug, Clone, Default)]
pub struct UserRecords {
    /// `None` once the profile is erased (or never existed).
    pub profile: Option<UserProfile>,
    pub erasure: Option<Erasure>,
    /// The customer recorded on the profile item (kept on the tombstone).
    pub stripe_customer_id: Option<StripeCustomerId>,
    pub subscription: Option<Subscription>,
    /// Newest first, all of it.
    pub history: Vec<HistoryEntry>,
    /// Oldest first; a reference whose item has expired is skipped.
    pub outbox: Vec<OutboxItem>,
    pub operation: Option<Operation>,
}

impl UserRecords {
    /// Whether the table holds nothing at all about the user.
    pub fn is_empty(&self) -> bool {
        self.profile.is_none() && self.erasure.is_none() && self.subscription.is_none() && self.history.is_empty()
    }
}

/// What [`super::Store::erase_user`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    /// Comments removed from the subscription and its history entries.
    pub comments: u32,
    /// Outbox items anonymised.
    pub outbox_items: u32,
    /// Pending e-mails stopped before they were sent.
    pub mails_stopped: u32,
}

/// What SES reported about one address of one user, as the store records it on the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressFeedback {
    /// Stop mailing the address (a permanent bounce or a complaint).
    Undeliverable(Undeliverable),
    /// A message reached the address.
    Delivered(Delivered),
}

impl AddressFeedback {
    pub fn address(&self) -> &crate::domain::EmailAddress {
        match self {
            Self::Undeliverable(mark) => &mark.address,
            Self::Delivered(delivered) => &delivered.address,
        }
    }
}
