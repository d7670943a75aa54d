//! The one integration-test binary: every module talks to real protocol servers
//! (moto server, stripe-sim) over 127.0.0.1, never to in-code fakes.

mod delivery;
mod email;
mod fixtures;
mod jobs;
mod local_stack;
mod store;
mod webhook;
mod stripe_client;
mod admin_api;
mod hostile;
mod template;
mod observability;
