//! A counting HTTP proxy in front of moto server: every AWS request is counted by its
//! `X-Amz-Target` (DynamoDB, EventBridge, SQS: `DynamoDB_20120810.GetItem`, …) or, for
//! REST protocols (SES v2), by `METHOD /path`, then forwarded unchanged.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
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
    *counter.counts.lock().expect("lock").entry(key).or_default() += 1;
    let url = format!("{}{}", counter.upstream, parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
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
    }

    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counter.counts.lock().expect("lock").clone()
    }
}
