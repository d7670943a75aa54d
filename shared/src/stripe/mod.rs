//! The Stripe adapter: [`StripeBilling`] implements [`crate::billing::BillingGateway`]
//! with async-stripe against the API version async-stripe pins.
//!
//! - Every call that creates or changes something carries an idempotency key derived
//!   from the caller's [`crate::billing::IdempotencyKey`] (`<key>:<step>`), and keeps it
//!   across the bounded retries ([`RetryPolicy`]: 429, 5xx, connection errors and
//!   timeouts; never other 4xx), so Stripe acts at most once per logical step.
//! - Every call is logged at `info` with operation, method, outcome, HTTP status,
//!   latency and, when Stripe's error names it, the request id; never the secret key,
//!   customer details or card data.
//! - Calls go over one pooled HTTPS client (`transport`): async-stripe's own opens a new
//!   connection per call.
//! - `STRIPE_API_BASE` points the client at stripe-sim for local runs and tests.

mod client;
mod config;
mod convert;
mod errors;
mod retry;
mod transport;

pub use client::StripeBilling;
pub use config::StripeConfig;
pub use retry::RetryPolicy;
