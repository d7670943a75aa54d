//! The missed-event replay: Stripe's event log since the last run, every event the ledger
//! does not know handled as a delivered webhook would be.
//!
//! Position (`JOB#reconcile`): `covered_until`, the instant up to which every event has
//! been handled, and the pass in progress, if any (its lower bound, the instant it
//! started, and the last event it handled). A pass lists newest first from `from =
//! covered_until − overlap` (the overlap absorbs clock skew between Stripe and us, and
//! events Stripe records a little late); when it reaches the end, `covered_until` becomes
//! the instant it started. Events that arrive during a pass sit in front of the list,
//! after the start: the next pass covers them. The first pass ever reaches back
//! `first_lookback` (by default all Stripe keeps, 30 days).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use tracing::instrument;

use super::{CatchUp, CatchUpError};
use crate::{
    billing::EventQuery,
    usecase::stripe_event::{decode_value, EventKind, Outcome},
};

/// Stripe lists events of the last 30 days.
const EVENT_RETENTION: Duration = Duration::days(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplaySettings {
    /// How far each pass reaches back before the previous one's start.
    pub overlap: Duration,
    /// How far the very first pass reaches back (capped at Stripe's 30 days).
    pub first_lookback: Duration,
}

impl Default for ReplaySettings {
    fn default() -> Self {
        Self { overlap: Duration::minutes(10), first_lookback: EVENT_RETENTION }
    }
}

/// What one run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Pages of the event log read (Stripe list calls).
    pub pages: u64,
    /// Events looked at.
    pub listed: u64,
    /// Of those, events the ledger did not know: handled now (they had been missed).
    pub replayed: u64,
    /// Of those, events already handled (delivered, or replayed before).
    pub already_handled: u64,
    /// Events that do not decode (recorded in the log, skipped).
    pub undecodable: u64,
    /// The pass reached the end of the log: the position moved forward.
    pub finished: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Position {
    covered_until: Option<i64>,
    pass: Option<Pass>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pass {
    from: i64,
    started_at: i64,
    starting_after: Option<String>,
}

/// The missed-event replay.
pub struct Replay {
    up: CatchUp,
    settings: ReplaySettings,
}

impl Replay {
    /// The name its position is kept under (the job that runs it).
    pub const JOB: &'static str = "reconcile";

    pub fn new(up: CatchUp, settings: ReplaySettings) -> Self {
        Self { up, settings }
    }

    /// Replays as of `now` while `take()` grants another event; saves its position after
    /// every page and when it stops, so the next run resumes.
    #[instrument(skip_all, fields(now = %now))]
    pub async fn run(&self, now: DateTime<Utc>, take: &(dyn Fn() -> bool + Send + Sync)) -> Result<ReplayReport, CatchUpError> {
        let mut report = ReplayReport::default();
        let mut position: Position = self.up.load(Self::JOB).await?.unwrap_or_default();
        let oldest = (now - EVENT_RETENTION).timestamp();
        let mut pass = position.pass.take().unwrap_or_else(|| {
            let from = match position.covered_until {
                Some(covered) => covered - self.settings.overlap.num_seconds(),
                None => (now - self.settings.first_lookback.min(EVENT_RETENTION)).timestamp(),
            };
            Pass { from: from.max(oldest), started_at: now.timestamp(), starting_after: None }
        });
        let types: Vec<String> = EventKind::KNOWN.iter().map(|k| k.as_str().to_owned()).collect();
        loop {
            let query = EventQuery { types: types.clone(), created_gte: pass.from, starting_after: pass.starting_after.clone() };
            let page = self.up.billing.events(&query).await?;
            report.pages += 1;
            for listed in page.items {
                if !take() {
                    self.up.save(Self::JOB, &Position { pass: Some(pass), ..position }).await?;
                    return Ok(report);
                }
                report.listed += 1;
                match decode_value(listed.body) {
                    Err(error) => {
                        report.undecodable += 1;
                        tracing::warn!(event_id = %listed.id, %error, "listed event does not decode; skipped");
                    }
                    Ok(event) => match self.up.processor.process(&event).await {
                        Ok(Outcome::Duplicate) => report.already_handled += 1,
                        Ok(outcome) => {
                            report.replayed += 1;
                            tracing::info!(event_id = %event.id, event_type = event.kind.as_str(), outcome = outcome.as_str(), "missed event replayed");
                        }
                        Err(error) => {
                            // Resume at this event next time: nothing after it is skipped.
                            self.up.save(Self::JOB, &Position { pass: Some(pass), ..position }).await?;
                            return Err(error.into());
                        }
                    },
                }
                pass.starting_after = Some(listed.id);
            }
            if !page.has_more {
                break;
            }
            self.up.save(Self::JOB, &Position { pass: Some(pass.clone()), ..position.clone() }).await?;
        }
        self.up.save(Self::JOB, &Position { covered_until: Some(pass.started_at), pass: None }).await?;
        report.finished = true;
        Ok(report)
    }
}
