//! How much work one invocation may still start: the Lambda deadline less a safety
//! margin, and optionally a number of items.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime},
};

use tokio::time::Instant;

/// Shared by every step of a run. [`Budget::take`] is called once per item *before* the
/// item is started, in index order, so once it says no it says no to every later item:
/// the items handled are always a prefix of what was read, and the continuation resumes
/// right after the last one.
/// The budget when the runtime's deadline is unusable (see [`Budget::until`]).
const FALLBACK: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Budget {
    /// When to stop starting work (`None`: no deadline, e.g. a local run).
    stop_at: Option<Instant>,
    max_items: Option<u64>,
    used: AtomicU64,
}

impl Budget {
    /// No limit at all.
    pub fn unlimited() -> Self {
        Self { stop_at: None, max_items: None, used: AtomicU64::new(0) }
    }

    /// Stops starting work `margin` before `deadline` (a Lambda context's deadline). The
    /// margin is capped at a third of the time left, so a function configured with a short
    /// timeout still gets work done (and continues) rather than failing every run.
    pub fn until(deadline: SystemTime, margin: Duration) -> Self {
        let remaining = match deadline.duration_since(SystemTime::now()) {
            Ok(remaining) if !remaining.is_zero() => remaining,
            // Lambda always gives a future deadline; local emulators may not (cargo lambda
            // watch can hand one that has passed while it compiled). Run for a bounded
            // while rather than refusing all work.
            _ => {
                tracing::warn!(fallback_secs = FALLBACK.as_secs(), "invocation deadline is not in the future; using a fallback budget");
                FALLBACK
            }
        };
        let margin = margin.min(remaining / 3);
        Self { stop_at: Some(Instant::now() + remaining.saturating_sub(margin)), max_items: None, used: AtomicU64::new(0) }
    }

    /// Stops after `remaining` from now (for tests and tools).
    pub fn for_duration(remaining: Duration) -> Self {
        Self { stop_at: Some(Instant::now() + remaining), max_items: None, used: AtomicU64::new(0) }
    }

    /// Also stops after `max` items.
    pub fn with_max_items(mut self, max: Option<u64>) -> Self {
        self.max_items = max;
        self
    }

    /// Claims one item; `false` when the budget is spent (the item must not be started).
    pub fn take(&self) -> bool {
        if self.out_of_time() {
            return false;
        }
        match self.max_items {
            None => {
                self.used.fetch_add(1, Ordering::SeqCst);
                true
            }
            Some(max) => self.used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| (used < max).then_some(used + 1)).is_ok(),
        }
    }

    /// Claims up to `n` items at once; returns how many were granted (0 when spent).
    pub fn take_up_to(&self, n: u64) -> u64 {
        let mut granted = 0;
        while granted < n && self.take() {
            granted += 1;
        }
        granted
    }

    /// Returns `n` claimed items that turned out not to be needed (e.g. a batch that found
    /// fewer items due than it claimed).
    pub fn give_back(&self, n: u64) {
        let _ = self.used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| Some(used.saturating_sub(n)));
    }

    /// Whether nothing more may be started.
    pub fn exhausted(&self) -> bool {
        self.out_of_time() || self.max_items.is_some_and(|max| self.used.load(Ordering::SeqCst) >= max)
    }

    /// Items claimed so far.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    /// How many items may still be started, if the budget counts items.
    pub fn items_left(&self) -> Option<u64> {
        self.max_items.map(|max| max.saturating_sub(self.used()))
    }

    fn out_of_time(&self) -> bool {
        self.stop_at.is_some_and(|at| Instant::now() >= at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_past_deadline_falls_back_to_a_bounded_budget() {
        let budget = Budget::until(SystemTime::now() - Duration::from_secs(5), Duration::from_secs(20));
        assert!(budget.take(), "work can start");
        let stop = budget.stop_at.expect("bounded");
        assert!(stop <= Instant::now() + FALLBACK);
    }

    #[test]
    fn item_budget_is_exact() {
        let budget = Budget::unlimited().with_max_items(Some(2));
        assert!(budget.take() && budget.take());
        assert!(!budget.take());
        assert!(budget.exhausted());
        assert_eq!((budget.used(), budget.items_left()), (2, Some(0)));
        budget.give_back(1);
        assert_eq!(budget.take_up_to(5), 1);
    }

    #[test]
    fn deadlines_leave_a_safety_margin() {
        // A short timeout keeps two thirds of itself for work.
        let budget = Budget::until(SystemTime::now() + Duration::from_secs(15), Duration::from_secs(20));
        assert!(!budget.exhausted());
        let budget = Budget::until(SystemTime::now() + Duration::from_secs(60), Duration::from_secs(10));
        assert!(!budget.exhausted() && budget.take());
        assert!(!Budget::unlimited().exhausted());
    }
}
