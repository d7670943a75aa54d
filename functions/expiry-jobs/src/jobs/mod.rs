//! The jobs, and what they share: walking the expiry index within a budget, retrying an
//! item after a concurrent change. What is done to each item is the library's
//! [`shared::usecase::lifecycle`].

mod catch_up;
mod deliver;
mod lifecycle;

use std::{collections::HashMap, future::Future};

use futures::{stream, StreamExt};
use shared::{
    domain::Subscription,
    store::{keys, ExpiryCursor, ExpiryRange, StoreError},
    usecase::lifecycle::LifecycleError,
};

use crate::{budget::Budget, input::JobName, summary::Counts, Jobs};

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Everything due was handled.
    Done,
    /// The budget ran out; resume at this index position (`None`: the step keeps no
    /// position, e.g. the outbox sweep, which simply starts again).
    Stopped(Option<ExpiryCursor>),
}

/// How often one item is re-read and re-evaluated after losing a race to a concurrent write.
const MAX_ATTEMPTS: u32 = 3;

impl Jobs {
    /// Runs `job`'s `item` on every live subscription in `range` from `start`, within the
    /// budget, re-reading and retrying an item that loses a race (see [`Self::walk`] and
    /// [`Self::with_retry`]).
    pub(crate) async fn each<F, Fut>(
        &self,
        job: JobName,
        range: ExpiryRange,
        start: Option<ExpiryCursor>,
        budget: &Budget,
        counts: &mut Counts,
        item: F,
    ) -> Result<Progress, StoreError>
    where
        F: Fn(Subscription) -> Fut,
        Fut: Future<Output = Result<Counts, LifecycleError>>,
    {
        self.walk(range, start, budget, counts, |sub| self.with_retry(sub, job, &item)).await
    }

    /// Pages through the live subscriptions in `range`, from `start`, handing each to
    /// `handle` (at most `concurrency` at once, results taken in index order). Stops
    /// starting items when the budget is spent and returns where to resume: just after the
    /// last handled item.
    pub(crate) async fn walk<F, Fut>(
        &self,
        range: ExpiryRange,
        start: Option<ExpiryCursor>,
        budget: &Budget,
        counts: &mut Counts,
        handle: F,
    ) -> Result<Progress, StoreError>
    where
        F: Fn(Subscription) -> Fut,
        Fut: Future<Output = Counts>,
    {
        let mut cursor = start;
        loop {
            if budget.exhausted() {
                return Ok(Progress::Stopped(Some(cursor.unwrap_or_else(index_start))));
            }
            // Full pages even when the item budget is nearly spent: the stop then falls
            // inside a page, exactly as a deadline stop does, and resumes after the last item.
            let page_size = i32::try_from(self.settings.page_size).unwrap_or(i32::MAX).max(1);
            let page = self.store.expiring(range, cursor.clone(), page_size).await?;
            counts.items_read += page.scanned;

            let mut last_done: Option<Subscription> = None;
            let mut stopped = false;
            {
                // `take` runs in the `map` closure, i.e. in index order as items are pulled,
                // so the handled items are always a prefix of the page.
                let mut results = stream::iter(page.subscriptions)
                    .map(|sub| {
                        let work = budget.take().then(|| handle(sub.clone()));
                        async move {
                            match work {
                                Some(work) => (sub, Some(work.await)),
                                None => (sub, None),
                            }
                        }
                    })
                    .buffered(self.settings.concurrency);
                while let Some((sub, outcome)) = results.next().await {
                    match outcome {
                        Some(item_counts) => {
                            *counts += item_counts;
                            last_done = Some(sub);
                        }
                        None => {
                            stopped = true;
                            break;
                        }
                    }
                }
            }
            if stopped {
                let resume = last_done.as_ref().and_then(cursor_after).or(cursor).unwrap_or_else(index_start);
                return Ok(Progress::Stopped(Some(resume)));
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(Progress::Done),
            }
        }
    }

    /// Runs `attempt` on `sub`; when it loses a race to a concurrent write (a webhook, an
    /// admin), re-reads the subscription and tries again with what is there now. Other
    /// errors are counted and logged, and the item is left for the next run.
    pub(crate) async fn with_retry<F, Fut>(&self, sub: Subscription, job: JobName, attempt: F) -> Counts
    where
        F: Fn(Subscription) -> Fut,
        Fut: Future<Output = Result<Counts, LifecycleError>>,
    {
        let mut counts = Counts::default();
        let mut current = sub;
        for n in 1..=MAX_ATTEMPTS {
            match attempt(current.clone()).await {
                Ok(done) => {
                    counts += done;
                    return counts;
                }
                Err(error) if error.is_conflict() && n < MAX_ATTEMPTS => {
                    counts.conflicts += 1;
                    tracing::info!(job = job.as_str(), user_id = %current.user_id, %error, "subscription changed concurrently; re-reading");
                    match self.store.subscription(&current.user_id).await {
                        Ok(Some(fresh)) => current = fresh,
                        Ok(None) => return counts,
                        Err(error) => {
                            counts.errors += 1;
                            tracing::warn!(job = job.as_str(), user_id = %current.user_id, %error, "could not re-read the subscription; left for the next run");
                            return counts;
                        }
                    }
                }
                Err(error) => {
                    counts.errors += 1;
                    tracing::warn!(job = job.as_str(), user_id = %current.user_id, subscription_id = %current.id, %error, "item not handled; left for the next run");
                    return counts;
                }
            }
        }
        counts
    }
}

/// The position before the first entry of the index.
fn index_start() -> ExpiryCursor {
    ExpiryCursor { shard: 0, after: None }
}

/// The index position just after `sub` as it was read (its expiry-index key plus the
/// table key, which is what DynamoDB's `ExclusiveStartKey` for a GSI needs).
pub(crate) fn cursor_after(sub: &Subscription) -> Option<ExpiryCursor> {
    let end = sub.end_date?;
    let (exp_pk, exp_sk) = keys::expiry_keys(&sub.user_id, end);
    let shard = exp_pk.strip_prefix("EXP#")?.parse().ok()?;
    let after = HashMap::from([
        ("exp_pk".to_owned(), exp_pk),
        ("exp_sk".to_owned(), exp_sk),
        ("pk".to_owned(), keys::user_pk(&sub.user_id)),
        ("sk".to_owned(), keys::SUBSCRIPTION_SK.to_owned()),
    ]);
    Some(ExpiryCursor { shard, after: Some(after) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use shared::domain::{StripeCustomerId, StripeSubscriptionId, SubscriptionSource, SubscriptionStatus, Tier, UserId};

    fn sub() -> Subscription {
        let end = Utc.with_ymd_and_hms(2026, 3, 12, 0, 0, 0).single().unwrap_or_default();
        Subscription {
            id: "s1".into(),
            user_id: UserId::parse("u1").unwrap(),
            tier: Tier::Premium,
            status: SubscriptionStatus::Active,
            source: SubscriptionSource::Paid,
            start_date: end - chrono::Duration::days(30),
            end_date: Some(end),
            auto_renew: true,
            cancel_at_period_end: false,
            canceled_at: None,
            stripe_customer_id: Some(StripeCustomerId::parse("cus_1").unwrap()),
            stripe_subscription_id: Some(StripeSubscriptionId::parse("sub_1").unwrap()),
            last_billing_date: None,
            next_billing_date: Some(end),
            comment: None,
            version: 4,
            updated_at: end,
        }
    }

    #[test]
    fn cursor_after_is_the_index_key_of_the_item() {
        let s = sub();
        let cursor = cursor_after(&s).unwrap();
        let after = cursor.after.unwrap();
        let (pk, sk) = keys::expiry_keys(&s.user_id, s.end_date.unwrap());
        assert_eq!(cursor.shard.to_string(), pk.trim_start_matches("EXP#"));
        assert_eq!((after["exp_pk"].as_str(), after["exp_sk"].as_str()), (pk.as_str(), sk.as_str()));
        assert_eq!(after["pk"], "USER#u1");
        assert_eq!(after["sk"], "SUBSCRIPTION");
    }
}
