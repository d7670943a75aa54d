//! "Now", as a port: the domain never reads the clock, and every use case asks its
//! [`Clock`] instead of calling `Utc::now()`, so a test (or a job replaying a day) decides
//! what time it is.

use std::sync::Arc;

use chrono::{DateTime, Utc};

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

/// Any `Fn() -> DateTime<Utc>` is a clock (a test's fixed or stepping time).
impl<F> Clock for F
where
    F: Fn() -> DateTime<Utc> + Send + Sync,
{
    fn now(&self) -> DateTime<Utc> {
        self()
    }
}

/// The wall clock, shared.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// The time as one run sees it: it starts at the run's own "now" (the schedule's time, or a
/// replayed day) and advances with the wall clock from there. Leases taken during a run are
/// measured on it, so an item claimed a minute into a run stays hidden for a full lease
/// after that claim, whatever time the run started at.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    start: DateTime<Utc>,
    started: std::time::Instant,
}

impl RunClock {
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        Self { start, started: std::time::Instant::now() }
    }
}

impl Clock for RunClock {
    fn now(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::from_std(self.started.elapsed()).unwrap_or_default()
    }
}
