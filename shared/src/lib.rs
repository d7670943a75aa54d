//! The LogiScore subscription backend's library: every Lambda function is a thin
//! `main.rs` over this crate.
//!
//! - [`domain`]: the pure model (no I/O, no clock reads; time is passed in).
//! - [`store`]: the single-table DynamoDB store, with its transactional outbox.
//! - [`email`]: notification templates, rendering and SES delivery.
//! - [`config`]: typed configuration read once at start-up.
//! - [`telemetry`]: JSON logs for CloudWatch.

pub mod billing;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod email;
pub mod events;
pub mod metrics;
pub mod store;
pub mod stripe;
pub mod telemetry;
