//! Builders for domain records used across the integration tests.

use chrono::{DateTime, Duration, TimeZone, Utc};
pub use harness::records::{created, granted, subscription};
use shared::domain::{Subscription, UserId};

pub fn day(n: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap() + Duration::days(n)
}

pub fn user(name: &str) -> UserId {
    UserId::parse(name).expect("valid test user id")
}

/// A record with its run-dependent fields (when it was written, its version) blanked, so
/// two runs that should end in the same state compare equal.
pub fn normalised(mut sub: Option<Subscription>) -> Option<Subscription> {
    if let Some(s) = sub.as_mut() {
        s.updated_at = DateTime::UNIX_EPOCH;
        s.start_date = DateTime::UNIX_EPOCH;
        s.version = 0;
    }
    sub
}
