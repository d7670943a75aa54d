//! The `stripe-webhook` function: `POST /stripe/webhook`.
//!
//! [`signature`] verifies, [`envelope`] decodes, [`processor`] applies, [`http`] answers.

pub mod config;
pub mod envelope;
pub mod http;
pub mod processor;
pub mod signature;
