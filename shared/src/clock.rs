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
