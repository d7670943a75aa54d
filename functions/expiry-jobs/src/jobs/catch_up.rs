//! `reconcile` and `sweep-stripe`: the library's catch-ups with Stripe
//! ([`shared::usecase::catch_up`]) within the run's budget. Their positions live in the
//! table, so a run that stops early hands a bare continuation to the next invocation,
//! which resumes from the saved position.
//!
//! Stripe not answering is counted as an error of the run, as an item Stripe could not
//! answer for is in the other jobs, and the step ends: its position is saved, and the next
//! run (the replay is hourly) resumes there. Anything else fails the run.

use chrono::{DateTime, Utc};
use shared::usecase::{catch_up::CatchUpError, stripe_event::ProcessError};

use super::Progress;
use crate::{budget::Budget, summary::Counts, JobError, Jobs};

/// `Ok(None)` for a catch-up that stopped because Stripe did not answer.
fn unless_stripe_down<T>(result: Result<T, CatchUpError>, counts: &mut Counts) -> Result<Option<T>, JobError> {
    match result {
        Ok(report) => Ok(Some(report)),
        Err(
            error @ (CatchUpError::Billing(shared::billing::BillingError::Unavailable(_))
            | CatchUpError::Process(ProcessError::StripeUnavailable(_))),
        ) => {
            counts.errors += 1;
            tracing::warn!(%error, "stripe did not answer; the next run resumes from the saved position");
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}

impl Jobs {
    /// The missed-event replay.
    pub(crate) async fn replay_events(&self, now: DateTime<Utc>, budget: &Budget, counts: &mut Counts) -> Result<Progress, JobError> {
        let Some(report) = unless_stripe_down(self.replay.run(now, &|| budget.take()).await, counts)? else { return Ok(Progress::Done) };
        counts.events_listed += report.listed;
        counts.events_replayed += report.replayed;
        counts.errors += report.undecodable;
        tracing::info!(?report, "missed-event replay");
        Ok(if report.finished { Progress::Done } else { Progress::Stopped(None) })
    }

    /// The full sweep; the counts are the whole pass's so far.
    pub(crate) async fn sweep_stripe(&self, now: DateTime<Utc>, budget: &Budget, counts: &mut Counts) -> Result<Progress, JobError> {
        let Some(report) = unless_stripe_down(self.sweep.run(now, &|| budget.take()).await, counts)? else { return Ok(Progress::Done) };
        counts.swept += report.seen;
        counts.sweep_repaired += report.repaired;
        counts.orphans_adopted += report.adopted;
        counts.orphans_flagged += report.conflicting;
        counts.errors += report.unreadable;
        tracing::info!(?report, "stripe sweep");
        Ok(if report.finished { Progress::Done } else { Progress::Stopped(None) })
    }
}
