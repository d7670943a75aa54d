//! Opening a function's connections during init, so its first request does not pay them.
//!
//! A fresh instance has no connection to DynamoDB or Stripe: the first call to each pays
//! TCP and a TLS handshake (and the TLS stack's first use), which on Lambda is most of a
//! cold request's time. `main` opens them once, between reading its configuration and
//! asking the Runtime API for work; the clients keep the connections in their pools for
//! the requests that follow.
//!
//! Invariants:
//! - **Same pool.** Each target is the very client the handlers use (a clone shares the
//!   pool), never one built for the purpose, or the connection would be opened in vain.
//! - **Read-only.** Each target makes one read with no side effect: no write, no
//!   idempotency key, nothing a later request could see.
//! - **Best effort and bounded.** The targets run at once, and all of them together get at
//!   most the budget; one that fails or is slow is logged and left for the first request
//!   to open. Warming never fails an init: the configuration was checked before it.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;

/// How long `main` waits for all its connections together. In-region, DynamoDB opens in
/// tens of milliseconds and Stripe in about a hundred; past a second something is wrong,
/// and the first request may as well try for itself.
pub const INIT_BUDGET: Duration = Duration::from_secs(1);

/// A client whose connection can be opened ahead of use.
#[async_trait]
pub trait Warm: Send + Sync {
    /// One read with no side effect, through the client's own connection pool. An error
    /// names what went wrong (never a secret); the connection may still be open.
    async fn warm(&self) -> Result<(), String>;
}

/// What became of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The read was answered: the connection is open and pooled.
    Open,
    /// The read failed (the text says why).
    Failed(String),
    /// The budget ran out first.
    TimedOut,
}

#[derive(Debug, Clone)]
pub struct Opened {
    pub name: &'static str,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

/// The targets of one function, by name (`dynamodb`, `stripe`, `ses`).
#[derive(Default, Clone)]
pub struct Connections {
    targets: Vec<(&'static str, Arc<dyn Warm>)>,
}

impl Connections {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, name: &'static str, target: Arc<dyn Warm>) -> Self {
        self.targets.push((name, target));
        self
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.targets.iter().map(|(name, _)| *name).collect()
    }

    /// Opens every target at once, within `budget` for all of them, and logs each outcome.
    pub async fn open(&self, budget: Duration) -> Vec<Opened> {
        // tokio's clock, which tests can pause.
        let started = tokio::time::Instant::now();
        let deadline = started + budget;
        let all = self.targets.iter().map(|(name, target)| async move {
            let outcome = match tokio::time::timeout_at(deadline, target.warm()).await {
                Ok(Ok(())) => Outcome::Open,
                Ok(Err(why)) => Outcome::Failed(why),
                Err(_) => Outcome::TimedOut,
            };
            Opened { name, outcome, elapsed: started.elapsed() }
        });
        let opened = futures::future::join_all(all).await;
        for o in &opened {
            let latency_ms = u64::try_from(o.elapsed.as_millis()).unwrap_or(u64::MAX);
            match &o.outcome {
                Outcome::Open => tracing::info!(connection = o.name, latency_ms, "connection opened during init"),
                Outcome::Failed(why) => {
                    tracing::warn!(connection = o.name, latency_ms, error = %why, "connection not opened during init; the first request opens it")
                }
                Outcome::TimedOut => {
                    tracing::warn!(
                        connection = o.name,
                        latency_ms,
                        "connection not opened within the init budget; the first request opens it"
                    )
                }
            }
        }
        opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct After(Duration, Result<(), String>);

    #[async_trait]
    impl Warm for After {
        async fn warm(&self) -> Result<(), String> {
            tokio::time::sleep(self.0).await;
            self.1.clone()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn targets_open_at_once_and_the_budget_bounds_them_all() {
        let connections = Connections::new()
            .with("fast", Arc::new(After(Duration::from_millis(300), Ok(()))))
            .with("refused", Arc::new(After(Duration::from_millis(500), Err("connection refused".into()))))
            .with("hung", Arc::new(After(Duration::from_secs(3600), Ok(()))));
        let started = tokio::time::Instant::now();
        let opened = connections.open(Duration::from_secs(1)).await;
        // Concurrent: the whole call takes the budget, not the sum of the targets' times.
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        let outcomes: Vec<_> = opened.iter().map(|o| (o.name, o.outcome.clone())).collect();
        assert_eq!(
            outcomes,
            vec![("fast", Outcome::Open), ("refused", Outcome::Failed("connection refused".into())), ("hung", Outcome::TimedOut)]
        );
        assert_eq!(opened[0].elapsed, Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_to_open_returns_at_once() {
        let started = tokio::time::Instant::now();
        assert!(Connections::new().open(INIT_BUDGET).await.is_empty());
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
