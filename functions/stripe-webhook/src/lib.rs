//! The `stripe-webhook` function: `POST /stripe/webhook`, the HTTP edge of
//! [`shared::usecase::stripe_event`].
//!
//! [`extract`] verifies ([`signature`]) and decodes
//! ([`shared::usecase::stripe_event::decode`]) a delivery into a typed event, [`routes`] hands it to the use case and answers, [`error`] renders every refusal
//! as problem+json; [`setup`] builds it from configuration and clients, for `main` and the
//! tests alike.

pub mod config;
pub mod error;
pub mod extract;
pub mod routes;
pub mod setup;
pub mod signature;

pub use routes::{router, Webhook, WEBHOOK_PATH};
pub use setup::{app, build};
