//! Helpers shared by the integration tests: a sim on port 0, raw HTTP calls, and a
//! local webhook receiver that verifies signatures — all over real 127.0.0.1 sockets.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use stripe_sim::{SimConfig, SimHandle, WebhookEndpointConfig};

/// 2025-01-01T00:00:00Z, the start of every test clock here.
pub const T0: i64 = 1_735_689_600;
pub const DAY: i64 = 86_400;

pub async fn sim() -> SimHandle {
    sim_with(SimConfig::default()).await
}

pub async fn sim_with(config: SimConfig) -> SimHandle {
    let sim = stripe_sim::start(config).await.expect("sim starts");
    sim.seed_prices();
    sim
}

/// Raw HTTP against the sim, returning status and JSON.
pub struct Api {
    pub base: String,
    pub key: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(sim: &SimHandle) -> Api {
        Api {
            base: sim.base_url().to_string(),
            key: sim.secret_key().to_string(),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.bearer_auth(&self.key).send().await.expect("request reaches the sim");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("JSON body ({e}): {text}")))
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)).form(form)).await
    }

    pub async fn post_idem(&self, path: &str, key: &str, form: &[(&str, &str)]) -> (u16, Value, HeaderMap) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Idempotency-Key", key)
            .bearer_auth(&self.key)
            .form(form)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, resp.json().await.unwrap(), headers)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.http.delete(format!("{}{path}", self.base))).await
    }

    /// POST that must succeed; returns the object.
    pub async fn ok(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let (status, body) = self.post(path, form).await;
        assert_eq!(status, 200, "POST {path} {form:?}: {body}");
        body
    }

    pub async fn fetch(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    pub async fn clock(&self, frozen_time: i64) -> String {
        let c = self.ok("/v1/test_helpers/test_clocks", &[("frozen_time", &frozen_time.to_string())]).await;
        c["id"].as_str().unwrap().to_string()
    }

    pub async fn advance(&self, clock: &str, to: i64) -> Value {
        self.ok(&format!("/v1/test_helpers/test_clocks/{clock}/advance"), &[("frozen_time", &to.to_string())]).await
    }

    /// A customer on `clock`, optionally with a card (test token) as default payment method.
    pub async fn customer(&self, clock: &str, card: Option<&str>) -> String {
        let mut form = vec![("email", "user@example.com"), ("test_clock", clock)];
        if let Some(card) = card {
            form.push(("payment_method", card));
            form.push(("invoice_settings[default_payment_method]", card));
        }
        self.ok("/v1/customers", &form).await["id"].as_str().unwrap().to_string()
    }

    /// Event types, oldest first, optionally only those starting with `prefix`.
    pub async fn event_types(&self) -> Vec<String> {
        let list = self.fetch("/v1/events?limit=100").await;
        let mut v: Vec<String> = list["data"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_string()).collect();
        v.reverse();
        v
    }
}

/// One webhook POST received by [`Receiver`].
#[derive(Debug, Clone)]
pub struct Received {
    pub event: Value,
    pub signature_ok: bool,
    pub signature_time: i64,
}

impl Received {
    pub fn type_(&self) -> &str {
        self.event["type"].as_str().unwrap_or_default()
    }
    pub fn object(&self) -> &Value {
        &self.event["data"]["object"]
    }
}

#[derive(Clone)]
struct ReceiverState {
    secret: Arc<Mutex<String>>,
    received: Arc<Mutex<Vec<Received>>>,
    fail_first: Arc<Mutex<u32>>,
}

/// A tiny webhook endpoint on 127.0.0.1:0 that checks `Stripe-Signature` like a real
/// receiver would (HMAC-SHA256 over `"{t}.{body}"`, constant-time compare via `verify_slice`).
pub struct Receiver {
    pub url: String,
    state: ReceiverState,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn verify(secret: &str, header: &str, body: &[u8]) -> (bool, i64) {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.push(v.to_string()),
            _ => {}
        }
    }
    let Some(t) = t else { return (false, 0) };
    let ok = sigs.iter().any(|sig| {
        let Ok(expected) = hex::decode(sig) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    });
    (ok, t)
}

async fn receive(State(st): State<ReceiverState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    {
        let mut fail = st.fail_first.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    let header = headers.get("stripe-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let secret = st.secret.lock().unwrap().clone();
    let (signature_ok, signature_time) = verify(&secret, header, &body);
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    st.received.lock().unwrap().push(Received { event, signature_ok, signature_time });
    if signature_ok {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = ReceiverState {
            secret: Arc::new(Mutex::new(String::new())),
            received: Arc::new(Mutex::new(Vec::new())),
            fail_first: Arc::new(Mutex::new(0)),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/stripe/webhook", listener.local_addr().unwrap());
        let app = Router::new().route("/stripe/webhook", post(receive)).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, state, task }
    }

    /// Starts a receiver and registers it (all events) with the sim.
    pub async fn registered(sim: &SimHandle) -> Receiver {
        let r = Receiver::start().await;
        let ep = sim.add_webhook_endpoint(WebhookEndpointConfig::new(r.url.clone(), None)).unwrap();
        r.set_secret(&ep.secret);
        r
    }

    pub fn set_secret(&self, secret: &str) {
        *self.state.secret.lock().unwrap() = secret.to_string();
    }

    pub fn fail_next(&self, n: u32) {
        *self.state.fail_first.lock().unwrap() = n;
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn types(&self) -> Vec<String> {
        self.received().iter().map(|r| r.type_().to_string()).collect()
    }

    /// Drops what was received so far.
    pub fn clear(&self) {
        self.state.received.lock().unwrap().clear();
    }
}

pub async fn idle(sim: &SimHandle) {
    assert!(sim.wait_idle(Duration::from_secs(20)).await, "webhook deliveries did not finish");
}

/// Keys of a JSON object, sorted.
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect();
    k.sort();
    k
}

/// Asserts `v` has exactly the fixture's top-level keys (plus `extra`).
pub fn assert_fixture_keys(v: &Value, resource: &str, extra: &[&str]) {
    let mut expected = stripe_sim::fixture_keys(resource);
    assert!(!expected.is_empty(), "no fixture {resource}");
    expected.extend(extra.iter().map(|s| s.to_string()));
    expected.sort();
    assert_eq!(keys(v), expected, "{resource} key set differs from Stripe's fixture");
}
