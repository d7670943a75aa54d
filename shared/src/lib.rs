//! The LogiScore subscription backend's library: every Lambda function is a thin
//! `main.rs` over this crate.
//!
//! - [`domain`]: the pure model (no I/O, no clock reads; time is passed in).
//! - [`usecase`]: the use cases over the ports below (admin operations, Stripe events, the
//!   one Stripe-sync path).
//! - [`store`]: the [`store::Store`] port, its write model, and the single-table DynamoDB
//!   adapter with its transactional outbox.
//! - [`billing`]: the Stripe port ([`billing::BillingGateway`]); [`stripe`] implements it
//!   with async-stripe.
//! - [`clock`]: "now" as a port; [`backoff`]: the one retry schedule.
//! - [`delivery`]: sending outbox items (e-mail, domain events) and recording the outcome.
//! - [`email`]: notification templates, rendering and SES delivery.
//! - [`events`]: publishing domain events to EventBridge.
//! - [`config`]: typed configuration read once at start-up; [`secrets`]: the secrets it
//!   names, read from Secrets Manager.
//! - [`metrics`]: CloudWatch Embedded Metric Format lines.
//! - [`problem`]: the problem+json body of every HTTP edge.
//! - [`telemetry`]: JSON logs for CloudWatch; [`warm`]: connections opened during init.

pub mod backoff;
pub mod billing;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod email;
pub mod events;
pub mod metrics;
pub mod problem;
pub mod secrets;
pub mod store;
pub mod stripe;
pub mod telemetry;
pub mod usecase;
pub mod warm;
