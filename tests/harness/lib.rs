//! Shared helpers for the integration tests: real protocol servers on loopback.
//!
//! - [`Moto`]: a moto server (DynamoDB, SES v2, EventBridge, SQS) on a free port.
//! - [`TestEnv`]: a fresh table (created from `template.yaml`), SES identity, event bus
//!   and an SQS queue that receives every event on the bus, unique to one test.
//! - [`secrets`]: the Stripe secrets in moto's Secrets Manager, named to a function by ARN.
//! - [`mail::MailSink`]: what one test sent through SES, read without asking moto for the
//!   state of every test.
//! - [`tcp::Forwarder`]: counts the TCP connections a client opens (pool reuse);
//!   [`counting::CountingProxy`]: counts AWS requests by operation, keeping connections alive.

pub mod admin;
pub mod counting;
pub mod env;
pub mod jobs;
pub mod lambda;
pub mod mail;
pub mod moto;
pub mod process;
pub mod proxy;
pub mod records;
pub mod secrets;
pub mod serve;
pub mod sim;
pub mod tcp;
pub mod template;
pub mod webhook;

pub use env::TestEnv;
pub use moto::Moto;

use std::path::PathBuf;

/// The workspace root (the directory holding `template.yaml`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// A free TCP port on 127.0.0.1 (bound and released; the window for a clash is tiny).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("bind 127.0.0.1:0")
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
