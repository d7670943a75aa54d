//! The `stripe-webhook` function: `POST /stripe/webhook`.
//!
//! [`signature`] verifies, [`envelope`] decodes, [`processor`] applies, [`http`] answers;
//! [`setup`] builds it from configuration and clients, for `main` and the tests alike.

pub mod config;
pub mod envelope;
pub mod http;
pub mod processor;
pub mod setup;
pub mod signature;

pub use setup::app;
