//! Cancelling a subscription (now, or at the end of the period) and withdrawing a
//! scheduled cancellation.

use tracing::instrument;

use super::{
    already_applied, cause, changed, subscribe::stripe_subscription, unchanged, AdminError, AdminService, Caller, Changed, Committed,
    Outcome,
};
use crate::{
    domain::{HistoryChange, Subscription, SubscriptionSource, SubscriptionStatus, UserId},
    metrics,
};

impl AdminService {
    /// Cancels now (`immediately`: access ends) or at the end of the paid period.
    #[instrument(skip_all, fields(user_id = %user, actor = %caller.actor, immediately))]
    pub async fn cancel(&self, user: UserId, immediately: bool, caller: &Caller) -> Result<Changed, AdminError> {
        let cur = self.cancellable(&user).await?;
        let stripe_id = stripe_subscription(&cur)?;
        if !immediately {
            if cur.status == SubscriptionStatus::Incomplete {
                return Err(AdminError::conflict(
                    "cancel_immediately",
                    "An incomplete subscription has no paid period to run out; cancel it with {\"immediately\": true}.",
                ));
            }
            if cur.cancel_at_period_end {
                return Ok(unchanged(&cur, "A cancellation at the end of the period is already scheduled; nothing was changed."));
            }
        }
        let fingerprint = if immediately { "immediately" } else { "at_period_end" };
        let key = self.key("subscription.cancel", &user, caller, fingerprint, Some(&cur));
        let answer = if immediately {
            self.billing.cancel_now(&stripe_id, &key).await
        } else {
            self.billing.set_cancel_at_period_end(&stripe_id, true, &key).await
        };
        let snapshot = match answer {
            Ok(snapshot) => snapshot,
            Err(e) => return Err(self.subscription_refused(e, &stripe_id, &cur).await),
        };
        let (change, outcome) = if immediately {
            (HistoryChange::Canceled, Outcome::Canceled)
        } else {
            (HistoryChange::CancelScheduled, Outcome::CancelScheduled)
        };
        let same = move |s: &Subscription| {
            s.stripe_subscription_id.as_ref() == Some(&stripe_id)
                && if immediately { s.status == SubscriptionStatus::Canceled } else { s.cancel_at_period_end }
        };
        let Some(applied) = self.plan(&user, Some(&cur), &snapshot, cur.tier, cause(caller, change))? else {
            return Ok(already_applied(&cur));
        };
        let next = applied.next.clone();
        if let Committed::AlreadyApplied(current) = self.commit(applied.change(), &user, same).await? {
            return Ok(already_applied(&current));
        }
        self.deliver(&applied.outbox).await;
        let (metric, message) = if immediately {
            ("SubscriptionsCanceled", "Canceled now; access has ended.".to_owned())
        } else {
            let access_until = next.end_date.unwrap_or_else(|| self.clock.now());
            (
                "CancellationsScheduled",
                format!("Cancels at the end of the period ({}); access continues until then.", access_until.format("%Y-%m-%d")),
            )
        };
        metrics::count(metric, &[("Tier", next.tier.as_str())]);
        Ok(changed(outcome, &next, message, None))
    }

    /// Withdraws a scheduled cancellation.
    #[instrument(skip_all, fields(user_id = %user, actor = %caller.actor))]
    pub async fn reactivate(&self, user: UserId, caller: &Caller) -> Result<Changed, AdminError> {
        let cur = self.cancellable(&user).await?;
        // A scheduled cancellation, or a paid fixed term (it ends instead of renewing).
        let fixed_term = cur.source == SubscriptionSource::Paid && !cur.auto_renew;
        if !cur.cancel_at_period_end && !fixed_term {
            return Err(AdminError::conflict("no_pending_cancellation", "The subscription has no scheduled cancellation to undo."));
        }
        let stripe_id = stripe_subscription(&cur)?;
        let key = self.key("subscription.reactivate", &user, caller, "reactivate", Some(&cur));
        let snapshot = match self.billing.set_cancel_at_period_end(&stripe_id, false, &key).await {
            Ok(snapshot) => snapshot,
            Err(e) => return Err(self.subscription_refused(e, &stripe_id, &cur).await),
        };
        if snapshot.cancel_at_period_end || snapshot.cancel_at.is_some() {
            // Stripe still ends it: the end is the fixed term (`cancel_at`) chosen at creation
            // with auto_renew false, which is not a cancellation that can be withdrawn.
            return Err(AdminError::conflict(
                "fixed_term",
                "Stripe kept the subscription's fixed end date (auto_renew false), so it still ends then. Read it again; create a renewing subscription after it ends if this persists.",
            ));
        }
        let same = move |s: &Subscription| {
            s.stripe_subscription_id.as_ref() == Some(&stripe_id) && !s.cancel_at_period_end && !s.status.is_terminal()
        };
        let Some(applied) = self.plan(&user, Some(&cur), &snapshot, cur.tier, cause(caller, HistoryChange::Reactivated))? else {
            return Ok(already_applied(&cur));
        };
        let next = applied.next.clone();
        if let Committed::AlreadyApplied(current) = self.commit(applied.change(), &user, same).await? {
            return Ok(already_applied(&current));
        }
        self.deliver(&applied.outbox).await;
        metrics::count("Reactivations", &[("Tier", next.tier.as_str())]);
        Ok(changed(Outcome::Reactivated, &next, "The scheduled cancellation was withdrawn.".into(), None))
    }

    /// The user's subscription, when it can still be cancelled or reactivated.
    async fn cancellable(&self, user: &UserId) -> Result<Subscription, AdminError> {
        let Some(cur) = self.store.subscription(user).await? else {
            return Err(self.not_found(user).await);
        };
        if cur.status.is_terminal() {
            return Err(AdminError::conflict("already_ended", format!("The subscription has already ended ({}).", cur.status)));
        }
        if cur.source == SubscriptionSource::Free {
            return Err(AdminError::conflict("nothing_to_cancel", "The user is on the free tier; there is no subscription to cancel."));
        }
        Ok(cur)
    }
}
