//! Pacing e-mail sends to the SES account's maximum send rate, shared by every sender.
//!
//! SES throttles an account above its `MaxSendRate` (1 per second in the sandbox). The
//! senders are several: overlapping `deliver-pending` runs (a long 06:00 run and the next
//! schedule), and the admin API and webhook delivering right after their commits. A limit
//! kept in one process's memory would let each of them send at the full rate.
//!
//! # Design: one counter per wall-clock second, in the table
//! Before each send a sender claims a slot of the current second: a conditional
//! `UpdateItem` on `SEND_SLOT#<epoch second>` that adds 1 to `used` only while
//! `used < rate` ([`SendSlots`], implemented over [`crate::store::Store::claim_send_slot`]).
//! When the second is full the sender waits for the next one and claims again. However
//! many senders there are, at most `rate` sends start in any one second. The items expire
//! by TTL a day later.
//!
//! Capping the jobs' concurrency at one was the alternative; it does not cover the other
//! functions' immediate sends, and a stuck run would block delivery altogether.
//!
//! # Failure
//! - A sender that cannot get a slot within [`Pacer::max_wait`] gives up: the item is
//!   retried later with the outbox's backoff, as a throttled send would be.
//! - If the table cannot be reached the claim is skipped (only the local spacing applies):
//!   pacing must not stop delivery, and SES's own throttling is then caught as transient.
//!
//! The decisions are made on a [`Ticker`] (time and sleeping as a port), so they are tested
//! with a fake clock.

use std::time::Duration;

use async_trait::async_trait;

use crate::store::StoreError;

/// Claims one send slot of a second.
#[async_trait]
pub trait SendSlots: Send + Sync {
    /// Takes one of the `rate` slots of the epoch second `second`; `false` when all are taken.
    async fn claim(&self, second: i64, rate: u32) -> Result<bool, StoreError>;
}

/// "Now" in epoch milliseconds, and waiting.
#[async_trait]
pub trait Ticker: Send + Sync {
    fn now_ms(&self) -> i64;
    async fn sleep_until_ms(&self, at_ms: i64);
}

/// The system clock and tokio's timer.
pub struct SystemTicker;

#[async_trait]
impl Ticker for SystemTicker {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
    async fn sleep_until_ms(&self, at_ms: i64) {
        let wait = at_ms.saturating_sub(self.now_ms()).max(0);
        tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
    }
}

/// No slot could be had in time: the caller retries the send later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no SES send slot within {0:?}: the shared send rate is used up")]
pub struct NoSlot(pub Duration);

/// Waits for a shared send slot at `rate` per second.
pub struct Pacer<'a> {
    pub slots: &'a dyn SendSlots,
    pub ticker: &'a dyn Ticker,
    pub rate: u32,
    /// How long one send may wait for a slot before it is left for a later run.
    pub max_wait: Duration,
}

impl Pacer<'_> {
    /// Returns the epoch second whose slot was claimed (`None`: the table was unreachable,
    /// the claim skipped), or [`NoSlot`].
    pub async fn acquire(&self) -> Result<Option<i64>, NoSlot> {
        let started = self.ticker.now_ms();
        let give_up = started.saturating_add(i64::try_from(self.max_wait.as_millis()).unwrap_or(i64::MAX));
        let rate = self.rate.max(1);
        loop {
            let now = self.ticker.now_ms();
            let second = now.div_euclid(1000);
            match self.slots.claim(second, rate).await {
                Ok(true) => return Ok(Some(second)),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "send slot not claimed (table unavailable); sending on local pacing only");
                    return Ok(None);
                }
            }
            let next = (second + 1) * 1000;
            if next > give_up {
                return Err(NoSlot(self.max_wait));
            }
            self.ticker.sleep_until_ms(next).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        sync::{
            atomic::{AtomicI64, Ordering},
            Mutex,
        },
    };

    use super::*;

    /// The table's slot counters, in memory.
    #[derive(Default)]
    struct Slots {
        used: Mutex<HashMap<i64, u32>>,
        down: bool,
    }

    #[async_trait]
    impl SendSlots for Slots {
        async fn claim(&self, second: i64, rate: u32) -> Result<bool, StoreError> {
            if self.down {
                return Err(StoreError::Unavailable("down".into()));
            }
            let mut used = self.used.lock().unwrap();
            let n = used.entry(second).or_default();
            if *n < rate {
                *n += 1;
                Ok(true)
            } else {
                Ok(false)
            }
        }
    }

    /// A clock that moves only when someone sleeps.
    struct FakeTicker(AtomicI64);

    #[async_trait]
    impl Ticker for FakeTicker {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
        async fn sleep_until_ms(&self, at_ms: i64) {
            self.0.fetch_max(at_ms, Ordering::SeqCst);
        }
    }

    fn pacer<'a>(slots: &'a Slots, ticker: &'a FakeTicker, rate: u32) -> Pacer<'a> {
        Pacer { slots, ticker, rate, max_wait: Duration::from_secs(60) }
    }

    #[tokio::test]
    async fn n_sends_at_rate_r_span_at_least_n_over_r_seconds() {
        let slots = Slots::default();
        let ticker = FakeTicker(AtomicI64::new(10_000));
        let p = pacer(&slots, &ticker, 3);
        let mut seconds = Vec::new();
        for _ in 0..10 {
            seconds.push(p.acquire().await.unwrap().unwrap());
        }
        // At most 3 in any wall-clock second (a window, not an even spacing: within one
        // process the outbox also spaces sends by 1/rate).
        assert_eq!(seconds, [10, 10, 10, 11, 11, 11, 12, 12, 12, 13]);
        // 10 sends at 3/s: the last starts ≥ (10 - 1) / 3 s after the first.
        assert!(ticker.now_ms() - 10_000 >= 9_000 / 3, "{}", ticker.now_ms());
    }

    #[tokio::test]
    async fn two_senders_share_one_rate() {
        let slots = Slots::default();
        let ticker = FakeTicker(AtomicI64::new(0));
        let (a, b) = (pacer(&slots, &ticker, 2), pacer(&slots, &ticker, 2));
        let mut per_second: HashMap<i64, u32> = HashMap::new();
        for _ in 0..6 {
            for p in [&a, &b] {
                *per_second.entry(p.acquire().await.unwrap().unwrap()).or_default() += 1;
            }
        }
        assert!(per_second.values().all(|n| *n <= 2), "{per_second:?}");
        assert_eq!(per_second.len(), 6, "12 sends at 2/s between them take 6 seconds, not 3: {per_second:?}");
    }

    #[tokio::test]
    async fn a_full_rate_gives_up_after_the_wait_and_an_unreachable_table_does_not_block() {
        let slots = Slots::default();
        let ticker = FakeTicker(AtomicI64::new(0));
        let p = Pacer { slots: &slots, ticker: &ticker, rate: 1, max_wait: Duration::from_millis(500) };
        assert_eq!(p.acquire().await, Ok(Some(0)));
        assert_eq!(p.acquire().await, Err(NoSlot(Duration::from_millis(500))), "second 0 is taken, second 1 is past the wait");
        assert_eq!(ticker.now_ms(), 0, "gave up without sleeping past the wait");
        let down = Slots { down: true, ..Slots::default() };
        assert_eq!(pacer(&down, &ticker, 1).acquire().await, Ok(None));
    }
}
