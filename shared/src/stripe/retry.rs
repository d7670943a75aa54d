//! The bounded retry around each Stripe call.
//!
//! async-stripe has its own retry strategies, but they either generate a fresh random
//! idempotency key or sleep 1 s, 2 s, 4 s…; we need the caller's key on every attempt
//! and delays that fit a Lambda's budget, so each attempt is sent with
//! `RequestStrategy::Idempotent(key)` (one attempt) and the loop lives here.

use std::time::Duration;

use crate::backoff::Backoff;

/// How hard one Stripe call tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included. At least 1.
    pub max_attempts: u32,
    /// Upper bound of the wait before the second attempt; multiplied by `factor` for each
    /// further one.
    pub base_delay: Duration,
    pub factor: u32,
    /// Per-attempt budget, response body included.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts, waits of at most 200 ms then 800 ms, 5 s per attempt: worst case a
    /// little over 16 s, inside the functions' 30 s timeout.
    fn default() -> Self {
        Self { max_attempts: 3, base_delay: Duration::from_millis(200), factor: 4, attempt_timeout: Duration::from_secs(5) }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (so `attempt` is 1 after the first failure),
    /// given `jitter` in `[0, 1)`: the shared backoff with equal jitter, uncapped (the
    /// attempt count bounds it).
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        Backoff { base: self.base_delay, factor: self.factor, max: Duration::MAX }.jittered(attempt, jitter)
    }

    /// Whether another attempt may follow attempt number `attempt` (1-based).
    pub fn allows_another(&self, attempt: u32) -> bool {
        attempt < self.max_attempts.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_is_200_then_800_ms_at_most() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, 0.0), Duration::from_millis(100));
        assert!(p.delay(1, 0.999) < Duration::from_millis(200));
        assert_eq!(p.delay(2, 0.0), Duration::from_millis(400));
        assert!(p.delay(2, 0.999) < Duration::from_millis(800));
        assert!(p.allows_another(1));
        assert!(p.allows_another(2));
        assert!(!p.allows_another(3));
    }

    #[test]
    fn a_single_attempt_policy_never_retries() {
        let p = RetryPolicy { max_attempts: 1, ..RetryPolicy::default() };
        assert!(!p.allows_another(1));
        let p = RetryPolicy { max_attempts: 0, ..RetryPolicy::default() };
        assert!(!p.allows_another(1));
    }
}
