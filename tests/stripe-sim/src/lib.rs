//! stripe-sim: a local, stateful Stripe API for LogiScore's development and tests
//! (see README.md beside this crate).
//!
//! ```no_run
//! # async fn demo() -> Result<(), stripe_sim::SimError> {
//! let sim = stripe_sim::start(stripe_sim::SimConfig::default()).await?;
//! let client = reqwest::Client::new();
//! let _ = client
//!     .post(format!("{}/v1/customers", sim.base_url()))
//!     .bearer_auth(sim.secret_key())
//!     .form(&[("email", "a@example.com")])
//!     .send()
//!     .await;
//! # Ok(()) }
//! ```

mod billing;
mod clock;
mod config;
mod error;
mod fixtures;
mod form;
mod ids;
mod resources;
mod seed;
mod server;
mod state;
mod time;
mod webhooks;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{ChaosConfig, DunningFinalAction, Fault, SimConfig, WebhookEndpointConfig, WebhookRetry};
pub use error::{ApiError, ErrorType};
pub use fixtures::fixture_keys;
pub use resources::events::API_VERSION;
pub use seed::{SeededPrices, ENTERPRISE_MONTHLY, PREMIUM_MONTHLY};
pub use webhooks::{signature_header, DeliveryRecord, DeliveryStatus};

use server::App;
use state::Sim;
use webhooks::Dispatcher;

/// Why the sim could not start or an in-process call was refused.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("could not bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("invalid webhook endpoint: {0}")]
    InvalidEndpoint(String),
}

/// A registered webhook endpoint and the secret its deliveries are signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredEndpoint {
    pub id: String,
    pub url: String,
    pub secret: String,
}

/// A running sim. Dropping it stops the server and all webhook delivery.
pub struct SimHandle {
    addr: SocketAddr,
    base_url: String,
    secret_key: String,
    app: Arc<App>,
    dispatcher: Arc<Dispatcher>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

/// Binds `config.host:config.port` (port 0 = any free port) and serves the API in a
/// background task of the current tokio runtime.
pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
    let addr = SocketAddr::new(config.host, config.port);
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| SimError::Bind { addr, source })?;
    let addr = listener.local_addr().map_err(|source| SimError::Bind { addr, source })?;
    let base_url = format!("http://{addr}");
    let dispatcher = Arc::new(Dispatcher::new(tokio::runtime::Handle::current(), config.webhook_retry.clone(), config.chaos.clone()));
    let config = Arc::new(config);
    let mut sim = Sim::new(config.clone(), base_url.clone(), dispatcher.clone());
    for endpoint in &config.webhook_endpoints {
        resources::webhook_endpoints::insert(&mut sim, endpoint).map_err(|e| SimError::InvalidEndpoint(e.message))?;
    }
    if config.seed_prices {
        seed::seed_prices(&mut sim);
    }
    let app =
        Arc::new(App { sim: Mutex::new(sim), fault: Mutex::new(None), counts: Mutex::new(BTreeMap::new()), total: AtomicU64::new(0) });
    let (tx, rx) = oneshot::channel::<()>();
    let router = server::router(app.clone());
    let server = tokio::spawn(async move {
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "stripe-sim server stopped");
        }
    });
    tracing::info!(%base_url, "stripe-sim listening");
    Ok(SimHandle { addr, base_url, secret_key: config.secret_key.clone(), app, dispatcher, shutdown: Some(tx), server: Some(server) })
}

impl SimHandle {
    /// `http://127.0.0.1:PORT` (no trailing slash); point `STRIPE_API_BASE` here.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A key the sim accepts (it accepts any `sk_test_…` key).
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// Registers a webhook endpoint without going through the API. Events emitted from
    /// now on are delivered to it.
    pub fn add_webhook_endpoint(&self, endpoint: WebhookEndpointConfig) -> Result<RegisteredEndpoint, SimError> {
        let mut sim = self.app.sim();
        let e = resources::webhook_endpoints::insert(&mut sim, &endpoint).map_err(|e| SimError::InvalidEndpoint(e.message))?;
        Ok(RegisteredEndpoint { id: e.id, url: e.url, secret: e.secret })
    }

    /// Removes an endpoint; deliveries already queued still go out. False if unknown.
    pub fn remove_webhook_endpoint(&self, id: &str) -> bool {
        let removed = self.app.sim().webhook_endpoints.remove(id).is_some();
        self.dispatcher.close_endpoint(id);
        removed
    }

    /// Waits until every queued webhook delivery has finished (delivered or given up).
    /// Returns false on timeout.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        self.dispatcher.wait_idle(timeout).await
    }

    /// Deliveries queued or in flight.
    pub fn pending_deliveries(&self) -> usize {
        self.dispatcher.pending()
    }

    /// Finished deliveries, in completion order.
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.dispatcher.records()
    }

    /// Makes the API answer with a Stripe-shaped error instead of working (`None` heals).
    pub fn set_fault(&self, fault: Option<Fault>) {
        *self.app.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// Requests received (all routes, including rejected ones).
    pub fn request_count(&self) -> u64 {
        self.app.total.load(Ordering::Relaxed)
    }

    /// Requests per route, keyed like `"POST /v1/customers"` or `"GET /v1/customers/{id}"`.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.app.counts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Requests to one route (see [`SimHandle::request_counts`] for the key format).
    pub fn request_count_for(&self, route: &str) -> u64 {
        self.app.counts.lock().unwrap_or_else(|e| e.into_inner()).get(route).copied().unwrap_or(0)
    }

    pub fn reset_request_counts(&self) {
        self.app.total.store(0, Ordering::Relaxed);
        self.app.counts.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Creates the LogiScore catalogue (`price_premium_monthly`, `price_enterprise_monthly`).
    pub fn seed_prices(&self) -> SeededPrices {
        seed::seed_prices(&mut self.app.sim())
    }

    /// Stops accepting connections, waits for the server task, and stops delivery.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
        self.dispatcher.shutdown();
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
        self.dispatcher.shutdown();
    }
}
