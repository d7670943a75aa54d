//! The one exponential backoff every retry loop uses (Stripe calls, SES sends within a
//! delivery, the outbox's schedule across runs): `base × factor^(attempt-1)`, capped, and
//! optionally spread with "equal jitter" — half the step is kept so a retry is never
//! immediate, the other half is random so many callers failing together do not come back
//! in lock-step.

use std::time::Duration;

use rand::Rng;

/// An exponential schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure.
    pub base: Duration,
    /// Each further wait is this many times the previous one (at least 1).
    pub factor: u32,
    /// No wait is longer than this.
    pub max: Duration,
}

impl Backoff {
    /// The full step after failed attempt number `attempt` (1-based).
    pub fn step(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1);
        self.base.saturating_mul(self.factor.max(1).saturating_pow(exponent)).min(self.max)
    }

    /// The step with equal jitter, for `jitter` in `[0, 1]` (clamped): within `[step/2, step]`.
    pub fn jittered(&self, attempt: u32, jitter: f64) -> Duration {
        let step = self.step(attempt);
        step / 2 + step.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }

    /// The step with fresh random jitter.
    pub fn random(&self, attempt: u32) -> Duration {
        self.jittered(attempt, rand::thread_rng().gen::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_multiply_and_cap() {
        let b = Backoff { base: Duration::from_secs(60), factor: 2, max: Duration::from_secs(6 * 3600) };
        assert_eq!(b.step(1), Duration::from_secs(60));
        assert_eq!(b.step(2), Duration::from_secs(120));
        assert_eq!(b.step(4), Duration::from_secs(480));
        assert_eq!(b.step(30), Duration::from_secs(6 * 3600), "capped, no overflow");
        assert_eq!(b.step(0), b.step(1));
    }

    #[test]
    fn jitter_keeps_half_the_step_and_never_exceeds_it() {
        let b = Backoff { base: Duration::from_millis(200), factor: 4, max: Duration::MAX };
        for attempt in 1..=6 {
            let step = b.step(attempt);
            for jitter in [-1.0, 0.0, 0.25, 0.5, 0.999, 2.0] {
                let d = b.jittered(attempt, jitter);
                assert!(d >= step / 2 && d <= step, "attempt {attempt} jitter {jitter}: {d:?}");
            }
            let d = b.random(attempt);
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d:?}");
        }
        assert_eq!(b.jittered(1, 0.0), Duration::from_millis(100));
    }
}
