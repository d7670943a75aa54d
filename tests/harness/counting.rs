//! A counting HTTP proxy in front of moto server: every AWS request is counted by its
//! `X-Amz-Target` (DynamoDB, EventBridge, SQS: `DynamoDB_20120810.GetItem`, …) or, for
//! REST protocols (SES v2), by `METHOD /path`, then forwarded unchanged.
//!
//! DynamoDB requests are forwarded one at a time. moto server (5.2.5) is not safe for
//! concurrent writes: `TransactWriteItems` deep-copies the table while other threads insert
//! into it (`RuntimeError: dictionary changed size during iteration` → HTTP 500), and restores
//! that copy when a condition fails, erasing writes made meanwhile. Real DynamoDB has neither
//! problem; without this the jobs' concurrent item handling (4 at once) fails at random in big
//! tables and the figures measure moto, not our code. It costs wall time, not round trips.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::StatusCode,
    response::Response,
    Router,
};

pub struct Counter {
    upstream: String,
    client: reqwest::Client,
    counts: Mutex<BTreeMap<String, u64>>,
    /// Time spent upstream (moto answering, not waiting for the DynamoDB turn), by the same key.
    upstream_time: Mutex<BTreeMap<String, Duration>>,
    dynamodb: tokio::sync::Mutex<()>,
}

pub struct CountingProxy {
    pub url: String,
    counter: Arc<Counter>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const SKIP: &[&str] = &["host", "content-length", "connection", "transfer-encoding", "keep-alive"];

async fn forward(State(counter): State<Arc<Counter>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let key = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{} {}", parts.method, parts.uri.path()));
    *counter.counts.lock().expect("lock").entry(key.clone()).or_default() += 1;
    let _one_at_a_time = if key.starts_with("DynamoDB_") { Some(counter.dynamodb.lock().await) } else { None };
    let url = format!("{}{}", counter.upstream, parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let started = Instant::now();
    let mut builder = counter.client.request(parts.method.clone(), url).body(bytes);
    for (name, value) in &parts.headers {
        if !SKIP.contains(&name.as_str()) {
            builder = builder.header(name, value);
        }
    }
    match builder.send().await {
        Ok(upstream) => {
            let status = upstream.status();
            let headers = upstream.headers().clone();
            let body = upstream.bytes().await.unwrap_or_default();
            *counter.upstream_time.lock().expect("lock").entry(key).or_default() += started.elapsed();
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            for (name, value) in &headers {
                if !SKIP.contains(&name.as_str()) {
                    response.headers_mut().append(name, value.clone());
                }
            }
            response
        }
        Err(e) => {
            let mut response = Response::new(Body::from(format!("proxy: {e}")));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}

impl CountingProxy {
    pub async fn start(upstream: &str) -> CountingProxy {
        let counter = Arc::new(Counter {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder().pool_max_idle_per_host(16).build().expect("client"),
            counts: Mutex::new(BTreeMap::new()),
            upstream_time: Mutex::new(BTreeMap::new()),
            dynamodb: tokio::sync::Mutex::new(()),
        });
        let app = Router::new().fallback(forward).with_state(counter.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        CountingProxy { url: format!("http://{addr}"), counter, task }
    }

    pub fn reset(&self) {
        self.counter.counts.lock().expect("lock").clear();
        self.counter.upstream_time.lock().expect("lock").clear();
    }

    /// Requests and total upstream time of every key starting with `prefix` since the last reset.
    pub fn totals(&self, prefix: &str) -> (u64, Duration) {
        let calls = self.counter.counts.lock().expect("lock").iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v).sum();
        let time = self.counter.upstream_time.lock().expect("lock").iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| *v).sum();
        (calls, time)
    }

    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counter.counts.lock().expect("lock").clone()
    }
}
