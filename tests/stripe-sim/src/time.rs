//! Calendar arithmetic for billing periods, on Unix timestamps (seconds, UTC).
//!
//! Periods are always computed from the billing cycle anchor (`anchor + n intervals`)
//! rather than from the previous period end, so an anchor on the 31st bills on the
//! 30th in short months and on the 31st again afterwards, as Stripe does.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Months, TimeDelta};

/// Seconds since the Unix epoch, from the machine's clock.
pub fn wall_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub const DAY: i64 = 86_400;

/// A price's `recurring[interval]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Day,
    Week,
    Month,
    Year,
}

impl Interval {
    pub fn parse(s: &str) -> Option<Interval> {
        match s {
            "day" => Some(Interval::Day),
            "week" => Some(Interval::Week),
            "month" => Some(Interval::Month),
            "year" => Some(Interval::Year),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
            Interval::Year => "year",
        }
    }
}

/// `ts + n * (count intervals)`, or `None` if the result leaves chrono's range.
pub fn add_intervals(ts: i64, interval: Interval, count: u32, n: u32) -> Option<i64> {
    let steps = count.checked_mul(n)?;
    let start = DateTime::from_timestamp(ts, 0)?;
    let end = match interval {
        Interval::Day => start.checked_add_signed(TimeDelta::try_days(i64::from(steps))?)?,
        Interval::Week => start.checked_add_signed(TimeDelta::try_weeks(i64::from(steps))?)?,
        Interval::Month => start.checked_add_months(Months::new(steps))?,
        Interval::Year => start.checked_add_months(Months::new(steps.checked_mul(12)?))?,
    };
    Some(end.timestamp())
}

/// The first period boundary `anchor + n * interval` (n ≥ 1) strictly after `after`.
pub fn next_period_end(anchor: i64, interval: Interval, count: u32, after: i64) -> Option<i64> {
    // A guess close to the answer keeps this cheap even for far-away times.
    let approx_len = match interval {
        Interval::Day => DAY,
        Interval::Week => 7 * DAY,
        Interval::Month => 28 * DAY,
        Interval::Year => 365 * DAY,
    } * i64::from(count.max(1));
    let mut n = u32::try_from(((after - anchor) / approx_len).saturating_sub(2).max(1)).ok()?;
    for _ in 0..10_000 {
        let end = add_intervals(anchor, interval, count, n)?;
        if end > after {
            // Step back while the previous boundary is also after `after`.
            while n > 1 {
                let prev = add_intervals(anchor, interval, count, n - 1)?;
                if prev > after {
                    n -= 1;
                } else {
                    break;
                }
            }
            return add_intervals(anchor, interval, count, n);
        }
        n = n.checked_add(1)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2025-01-31T12:00:00Z
    const JAN31: i64 = 1_738_324_800;

    #[test]
    fn month_end_anchor_clamps_then_recovers() {
        let feb = add_intervals(JAN31, Interval::Month, 1, 1).unwrap();
        let mar = add_intervals(JAN31, Interval::Month, 1, 2).unwrap();
        assert_eq!(DateTime::from_timestamp(feb, 0).unwrap().to_rfc3339(), "2025-02-28T12:00:00+00:00");
        assert_eq!(DateTime::from_timestamp(mar, 0).unwrap().to_rfc3339(), "2025-03-31T12:00:00+00:00");
    }

    #[test]
    fn next_end_is_strictly_after() {
        let feb = add_intervals(JAN31, Interval::Month, 1, 1).unwrap();
        assert_eq!(next_period_end(JAN31, Interval::Month, 1, JAN31), Some(feb));
        let mar = add_intervals(JAN31, Interval::Month, 1, 2).unwrap();
        assert_eq!(next_period_end(JAN31, Interval::Month, 1, feb), Some(mar));
        let y = next_period_end(JAN31, Interval::Year, 1, JAN31 + 400 * DAY).unwrap();
        assert_eq!(y, add_intervals(JAN31, Interval::Year, 1, 2).unwrap());
        assert_eq!(next_period_end(JAN31, Interval::Week, 2, JAN31 + 1), Some(JAN31 + 14 * DAY));
    }
}
