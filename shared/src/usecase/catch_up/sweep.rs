//! The full sweep: every Stripe subscription, 100 per page, each owner's record brought in
//! line with it.
//!
//! Position (`JOB#sweep-stripe`): the pass in progress — when it started, the last
//! subscription it handled, and its running counts — and when the last pass finished.
//! Stripe lists newest first; a subscription created during a pass sits in front of the
//! list and is left to the webhook (and the next pass). A pass ends when the list does.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::instrument;

use super::{CatchUp, CatchUpError};
use crate::usecase::stripe_event::Reconciliation;

/// What a pass found, so far (kept with the position, so a pass spread over many runs
/// reports its whole).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepReport {
    /// Pages of subscriptions read in this run (Stripe list calls).
    pub pages: u64,
    /// Subscriptions looked at, in the whole pass.
    pub seen: u64,
    /// Records brought in line with Stripe.
    pub repaired: u64,
    /// Of those, subscriptions no record named before (adopted).
    pub adopted: u64,
    /// Second live subscriptions of one user, left for an operator.
    pub conflicting: u64,
    /// Subscriptions no user of ours owns.
    pub foreign: u64,
    /// Subscriptions whose state could not be read (prices this service does not sell).
    pub unreadable: u64,
    /// The pass reached the end of the list.
    pub finished: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Position {
    last_finished: Option<i64>,
    pass: Option<Pass>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pass {
    started_at: i64,
    starting_after: Option<String>,
    found: SweepReport,
}

/// The full sweep.
pub struct Sweep {
    up: CatchUp,
}

impl Sweep {
    /// The name its position is kept under (the job that runs it).
    pub const JOB: &'static str = "sweep-stripe";
    /// The history actor of what it repairs.
    pub const ACTOR: &'static str = "job:sweep-stripe";

    pub fn new(up: CatchUp) -> Self {
        Self { up }
    }

    /// Continues the pass in progress (or starts one) while `take()` grants another
    /// subscription; saves its position after every page and when it stops. The report's
    /// counts are the whole pass's; `pages` is this run's.
    #[instrument(skip_all, fields(now = %now))]
    pub async fn run(&self, now: DateTime<Utc>, take: &(dyn Fn() -> bool + Send + Sync)) -> Result<SweepReport, CatchUpError> {
        let mut position: Position = self.up.load(Self::JOB).await?.unwrap_or_default();
        let mut pass =
            position.pass.take().unwrap_or(Pass { started_at: now.timestamp(), starting_after: None, found: SweepReport::default() });
        pass.found.pages = 0;
        loop {
            let page = self.up.billing.all_subscriptions(pass.starting_after.as_deref()).await?;
            pass.found.pages += 1;
            for listed in page.items {
                if !take() {
                    let found = pass.found;
                    self.up.save(Self::JOB, &Position { pass: Some(pass), ..position }).await?;
                    return Ok(found);
                }
                match &listed.snapshot {
                    Err(why) => {
                        pass.found.unreadable += 1;
                        tracing::warn!(stripe_subscription_id = %listed.id, why, "subscription not readable as ours; skipped");
                    }
                    Ok(snapshot) => match self.up.processor.apply_snapshot(snapshot, Self::ACTOR).await {
                        Ok(Reconciliation::Foreign) => pass.found.foreign += 1,
                        Ok(Reconciliation::InLine) => {}
                        Ok(Reconciliation::Repaired { adopted }) => {
                            pass.found.repaired += 1;
                            pass.found.adopted += u64::from(adopted);
                        }
                        Ok(Reconciliation::Conflicting) => pass.found.conflicting += 1,
                        Err(error) => {
                            self.up.save(Self::JOB, &Position { pass: Some(pass), ..position }).await?;
                            return Err(error.into());
                        }
                    },
                }
                pass.found.seen += 1;
                pass.starting_after = Some(listed.id);
            }
            if !page.has_more {
                break;
            }
            self.up.save(Self::JOB, &Position { pass: Some(pass.clone()), ..position.clone() }).await?;
        }
        let found = SweepReport { finished: true, ..pass.found };
        self.up.save(Self::JOB, &Position { last_finished: Some(now.timestamp()), pass: None }).await?;
        tracing::info!(?found, started_at = pass.started_at, "stripe sweep finished");
        Ok(found)
    }
}
