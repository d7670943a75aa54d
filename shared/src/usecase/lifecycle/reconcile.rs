//! Repairing one live local subscription that drifted from Stripe (a webhook that never
//! arrived, or was dropped after Stripe's retries ran out): compared with Stripe's current
//! snapshot, a difference is committed through the one sync path (history `Synced`, the
//! notifications of what changed), guarded by the version read.

use chrono::{DateTime, Utc};
use tracing::instrument;

use super::{sync_change, Lifecycle, LifecycleError};
use crate::{billing::BillingError, domain::Subscription};

/// What reconciling one subscription found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciled {
    /// Not live, or not billed through Stripe: nothing to compare.
    NotBilled,
    /// Stripe does not know the live subscription the record names: left as it is (its
    /// expiry ends it at its period end); worth an operator's look.
    UnknownAtStripe,
    /// The record already says what Stripe says.
    InLine,
    /// The difference was committed.
    Repaired,
}

impl Lifecycle {
    #[instrument(skip_all, fields(user_id = %sub.user_id, subscription_id = %sub.id))]
    pub async fn reconcile(&self, sub: &Subscription, now: DateTime<Utc>, actor: &str) -> Result<Reconciled, LifecycleError> {
        let Some(stripe_id) = sub.stripe_subscription_id.as_ref().filter(|_| sub.status.is_live()) else {
            return Ok(Reconciled::NotBilled);
        };
        let snapshot = match self.billing.subscription(stripe_id).await {
            Ok(snapshot) => snapshot,
            Err(BillingError::NotFound(what)) => {
                tracing::warn!(stripe_subscription_id = %stripe_id, what, "stripe does not know this live subscription");
                return Ok(Reconciled::UnknownAtStripe);
            }
            Err(error) => return Err(error.into()),
        };
        let Some((next, change)) = sync_change(sub, &snapshot, now, actor) else { return Ok(Reconciled::InLine) };
        self.store.commit(change).await?;
        tracing::info!(
            from_status = %sub.status, to_status = %next.status,
            from_tier = %sub.tier, to_tier = %next.tier,
            from_end = ?sub.end_date, to_end = ?next.end_date,
            "drift from stripe repaired"
        );
        Ok(Reconciled::Repaired)
    }
}
