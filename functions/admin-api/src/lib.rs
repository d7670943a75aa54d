//! The LogiScore admin subscription API: an axum [`Router`](axum::Router) served by
//! `lambda_http` behind an API Gateway HTTP API with a JWT authorizer.
//!
//! - [`routes`]: the routes (documented in `openapi.yaml`, which a test holds to the
//!   route table), thin handlers and the request-scope/auth middleware.
//! - [`auth`]: the admin-group rule on the authorizer's claims; [`caller`]: who asks.
//! - [`state`]: what every request shares.
//! - the use cases themselves live in the library ([`shared::usecase::admin`]); this crate
//!   is their HTTP edge.
//! - [`problem`]: every error as one enum, answered as RFC 9457 problem+json.
//! - [`setup`]: configuration and clients → the ready router (for `main` and the tests).
//! - `apigw` (feature `test-support`): API Gateway v2 events, to drive the router as Lambda
//!   does (tests, the bench).

#[cfg(feature = "test-support")]
pub mod apigw;
pub mod auth;
pub mod caller;
pub mod config;
pub mod dto;
pub mod extract;
pub mod problem;
pub mod routes;
pub mod setup;
pub mod state;

pub use config::Config;
pub use routes::{route_of, router, AppState, RouteSpec, ROUTES};
pub use setup::{app, build};
pub use shared::usecase::admin::AdminService;
