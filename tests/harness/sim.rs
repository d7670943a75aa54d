//! stripe-sim, the project's local Stripe, started in-process on a free loopback port.

use std::time::Duration;

use serde_json::Value;
use shared::{
    config::Secret,
    stripe::{StripeBilling, StripeConfig},
};
pub use stripe_sim::SimHandle;

pub struct Sim {
    pub handle: SimHandle,
    http: reqwest::Client,
}

impl Sim {
    /// A sim with the LogiScore prices seeded.
    pub async fn start() -> Sim {
        Self::start_with(stripe_sim::SimConfig { seed_prices: true, ..stripe_sim::SimConfig::default() }).await
    }

    pub async fn start_with(config: stripe_sim::SimConfig) -> Sim {
        let handle = stripe_sim::start(config).await.expect("start stripe-sim");
        Sim { handle, http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http client") }
    }

    pub fn stripe_config(&self) -> StripeConfig {
        StripeConfig {
            secret_key: Secret::new(self.handle.secret_key()),
            api_base: Some(self.handle.base_url().to_owned()),
            price_premium: stripe_sim::PREMIUM_MONTHLY.to_owned(),
            price_enterprise: stripe_sim::ENTERPRISE_MONTHLY.to_owned(),
            retry: Default::default(),
        }
    }

    /// The project's real Stripe client, pointed at this sim.
    pub fn billing(&self) -> StripeBilling {
        StripeBilling::new(self.stripe_config()).expect("stripe client")
    }

    /// A raw form POST to the sim's API (for what the app itself never does, e.g. clocks).
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Value {
        self.send(reqwest::Method::POST, path, form).await
    }

    /// A raw DELETE, as the Dashboard or another integration would cancel a subscription.
    pub async fn delete(&self, path: &str) -> Value {
        self.send(reqwest::Method::DELETE, path, &[]).await
    }

    async fn send(&self, method: reqwest::Method, path: &str, form: &[(&str, &str)]) -> Value {
        let (status, body) = self.request(method.clone(), path, form).await;
        assert!(status.is_success(), "{method} {path} -> {status}: {body}");
        body
    }

    /// A POST whose refusal is the point: its status and body, whatever they are.
    pub async fn post_answer(&self, path: &str, form: &[(&str, &str)]) -> (reqwest::StatusCode, Value) {
        self.request(reqwest::Method::POST, path, form).await
    }

    async fn request(&self, method: reqwest::Method, path: &str, form: &[(&str, &str)]) -> (reqwest::StatusCode, Value) {
        let response = self
            .http
            .request(method, format!("{}{path}", self.handle.base_url()))
            .bearer_auth(self.handle.secret_key())
            .form(form)
            .send()
            .await
            .expect("sim request");
        let status = response.status();
        (status, response.json().await.expect("sim JSON"))
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.handle.base_url()))
            .bearer_auth(self.handle.secret_key())
            .send()
            .await
            .expect("sim request")
            .json()
            .await
            .expect("sim JSON")
    }

    /// A test clock frozen at `unix`.
    pub async fn clock(&self, unix: i64) -> String {
        let clock = self.post("/v1/test_helpers/test_clocks", &[("frozen_time", &unix.to_string())]).await;
        clock["id"].as_str().expect("clock id").to_owned()
    }

    pub async fn advance(&self, clock: &str, unix: i64) {
        self.post(&format!("/v1/test_helpers/test_clocks/{clock}/advance"), &[("frozen_time", &unix.to_string())]).await;
        let timeout = Duration::from_secs(30);
        assert!(
            self.handle.wait_idle(timeout).await,
            "advancing clock {clock}: {} webhook deliveries still queued or in flight after {timeout:?}",
            self.handle.pending_deliveries()
        );
    }

    /// Every event the sim emitted, oldest first.
    pub async fn events(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(id) => format!("/v1/events?limit=100&starting_after={id}"),
                None => "/v1/events?limit=100".to_owned(),
            };
            let page = self.get(&path).await;
            let data = page["data"].as_array().cloned().unwrap_or_default();
            after = data.last().and_then(|e| e["id"].as_str()).map(str::to_owned);
            all.extend(data);
            if !page["has_more"].as_bool().unwrap_or(false) || after.is_none() {
                break;
            }
        }
        all.reverse();
        all
    }

    /// The emitted events about subscriptions and invoices (what the webhook acts on), oldest first.
    pub async fn subscription_events(&self) -> Vec<Value> {
        self.events()
            .await
            .into_iter()
            .filter(|e| {
                let t = e["type"].as_str().unwrap_or_default();
                t.starts_with("customer.subscription.") || t.starts_with("invoice.")
            })
            .collect()
    }
}
