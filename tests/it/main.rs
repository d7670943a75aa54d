//! The one integration-test binary: every module talks to real protocol servers
//! (moto server, stripe-sim) over 127.0.0.1, never to in-code fakes.

mod admin_api;
mod catch_up;
mod cold_start;
mod delivery;
mod email;
mod erasure;
mod fixtures;
mod hostile;
mod jobs;
mod local_stack;
mod mail_feedback;
mod observability;
mod secrets;
mod store;
mod stripe_client;
mod template;
mod timing;
mod webhook;
