use thiserror::Error;

/// What can go wrong talking to the table. Callers map `Conflict`/`DuplicateEvent`
/// to domain outcomes and `Unavailable` to "try again later" (HTTP 503, a Stripe retry,
/// a failed job run); `Corrupt` means an item this code cannot read.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The subscription changed since it was read (optimistic version check failed),
    /// or a mapping points at another user.
    #[error("conflicting concurrent change: {0}")]
    Conflict(String),
    /// The Stripe event id is already in the ledger.
    #[error("stripe event already processed")]
    DuplicateEvent,
    /// DynamoDB did not answer in time or answered with a server or throttling error.
    #[error("dynamodb unavailable: {0}")]
    Unavailable(String),
    #[error("unreadable item: {0}")]
    Corrupt(String),
}
