//! Reading a user's profile (with its address's delivery state), subscription and history.

use tracing::instrument;

use super::{AdminError, AdminService};
use crate::domain::{HistoryEntry, Subscription, UserId, UserProfile};

impl AdminService {
    /// The user's profile (an erased user has none).
    #[instrument(skip_all, fields(user_id = %user))]
    pub async fn profile(&self, user: UserId) -> Result<UserProfile, AdminError> {
        self.store.profile(&user).await?.ok_or(AdminError::UserNotFound(user))
    }

    /// The user's current subscription record.
    #[instrument(skip_all, fields(user_id = %user))]
    pub async fn subscription(&self, user: UserId) -> Result<Subscription, AdminError> {
        match self.store.subscription(&user).await? {
            Some(sub) => Ok(sub),
            None => Err(self.not_found(&user).await),
        }
    }

    /// The user's subscription history, newest first, at most `limit` entries.
    #[instrument(skip_all, fields(user_id = %user, limit))]
    pub async fn history(&self, user: UserId, limit: i32) -> Result<Vec<HistoryEntry>, AdminError> {
        let entries = self.store.history(&user, limit).await?;
        if entries.is_empty() && self.store.profile(&user).await?.is_none() {
            return Err(AdminError::UserNotFound(user));
        }
        Ok(entries)
    }
}
