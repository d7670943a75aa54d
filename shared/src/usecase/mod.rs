//! The application's use cases, over the library's ports ([`crate::store::Store`],
//! [`crate::billing::BillingGateway`], [`crate::delivery::Deliver`], [`crate::clock::Clock`]).
//! The function crates keep only their edge: parsing events, routing, extracting, and
//! mapping these use cases' errors onto HTTP answers or job results.
//!
//! - [`sync`]: the one path from Stripe's state of a subscription to the local record,
//!   its history and its notifications — used by every other use case here and by the jobs.
//! - [`admin`]: what the admin API does (profiles; create, change, cancel, reactivate, read).
//! - [`stripe_event`]: applying one verified Stripe event.
//! - [`catch_up`]: the missed-event replay and the full Stripe sweep.
//! - [`lifecycle`]: the scheduled rules for one subscription: warn before an end, expire after it.

pub mod admin;
pub mod catch_up;
pub mod lifecycle;
pub mod mail_feedback;
pub mod stripe_event;
pub mod sync;
