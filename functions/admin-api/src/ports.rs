//! What the service needs from the outside world, as small traits so tests and
//! other deployments can pass their own: the table, and the clock.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use shared::{
    domain::{HistoryEntry, Subscription, UserId, UserProfile},
    store::{Change, DynamoStore, StoreError},
};

/// The part of the DynamoDB store the admin API uses.
#[async_trait]
pub trait AdminStore: Send + Sync {
    async fn profile(&self, user: &UserId) -> Result<Option<UserProfile>, StoreError>;
    async fn put_profile(&self, profile: &UserProfile) -> Result<(), StoreError>;
    async fn subscription(&self, user: &UserId) -> Result<Option<Subscription>, StoreError>;
    /// Newest first, at most `limit`.
    async fn history(&self, user: &UserId, limit: i32) -> Result<Vec<HistoryEntry>, StoreError>;
    /// One atomic transaction (subscription + history + outbox + mappings).
    async fn commit(&self, change: Change) -> Result<(), StoreError>;
}

#[async_trait]
impl AdminStore for DynamoStore {
    async fn profile(&self, user: &UserId) -> Result<Option<UserProfile>, StoreError> {
        DynamoStore::profile(self, user).await
    }
    async fn put_profile(&self, profile: &UserProfile) -> Result<(), StoreError> {
        DynamoStore::put_profile(self, profile).await
    }
    async fn subscription(&self, user: &UserId) -> Result<Option<Subscription>, StoreError> {
        DynamoStore::subscription(self, user).await
    }
    async fn history(&self, user: &UserId, limit: i32) -> Result<Vec<HistoryEntry>, StoreError> {
        DynamoStore::history(self, user, limit).await
    }
    async fn commit(&self, change: Change) -> Result<(), StoreError> {
        DynamoStore::commit(self, change).await
    }
}

/// "Now", injected so tests control time.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

impl<F> Clock for F
where
    F: Fn() -> DateTime<Utc> + Send + Sync,
{
    fn now(&self) -> DateTime<Utc> {
        self()
    }
}
