//! A counting HTTP proxy in front of moto server: every AWS request is counted by its
//! `X-Amz-Target` (DynamoDB, EventBridge, SQS: `DynamoDB_20120810.GetItem`, …) or, for
//! REST protocols (SES v2), by `METHOD /path`, then forwarded unchanged. `make bench`
//! counts round trips with it.
//!
//! It keeps its clients' connections alive, as AWS does, where moto server answers every
//! request with `Connection: close`: behind it, a client's connection pool works as it
//! would in AWS, which is what a test of connection reuse needs.
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
    /// DynamoDB request units, estimated from each request ([`estimated_units`]).
    units: Mutex<Units>,
    dynamodb: tokio::sync::Mutex<()>,
}

/// Read and write request units (on-demand billing's measure).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Units {
    pub read: f64,
    pub write: f64,
}

/// The request units a DynamoDB request consumes, from the request alone, for items of at
/// most 4 KB read and 1 KB written (this project's are well under): a strongly consistent
/// read of an item is 1 RRU, an eventually consistent one (any index query) 0.5, a
/// write 1 WRU, and inside a transaction each item costs twice. A read of an item that
/// does not exist costs the same as one that does. A query page is counted as one item
/// read (small pages); a bigger one would cost more.
pub fn estimated_units(operation: &str, body: &[u8]) -> Units {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let read = |consistent: bool| if consistent { 1.0 } else { 0.5 };
    let consistent = json["ConsistentRead"].as_bool().unwrap_or(false);
    match operation {
        "GetItem" | "Query" | "Scan" => Units { read: read(consistent), write: 0.0 },
        "BatchGetItem" => Units {
            read: json["RequestItems"]
                .as_object()
                .map(|tables| {
                    tables
                        .values()
                        .map(|t| t["Keys"].as_array().map_or(0, Vec::len) as f64 * read(t["ConsistentRead"].as_bool().unwrap_or(false)))
                        .sum()
                })
                .unwrap_or(0.0),
            write: 0.0,
        },
        "TransactGetItems" => Units { read: 2.0 * json["TransactItems"].as_array().map_or(0, Vec::len) as f64, write: 0.0 },
        "PutItem" | "UpdateItem" | "DeleteItem" => Units { read: 0.0, write: 1.0 },
        "BatchWriteItem" => Units {
            read: 0.0,
            write: json["RequestItems"]
                .as_object()
                .map(|t| t.values().map(|r| r.as_array().map_or(0, Vec::len)).sum::<usize>())
                .unwrap_or(0) as f64,
        },
        "TransactWriteItems" => Units { read: 0.0, write: 2.0 * json["TransactItems"].as_array().map_or(0, Vec::len) as f64 },
        _ => Units::default(),
    }
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
    if let Some(operation) = key.strip_prefix("DynamoDB_20120810.") {
        let units = estimated_units(operation, &bytes);
        let mut total = counter.units.lock().expect("lock");
        total.read += units.read;
        total.write += units.write;
    }
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
            units: Mutex::new(Units::default()),
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
        *self.counter.units.lock().expect("lock") = Units::default();
    }

    /// DynamoDB request units since the last reset, estimated ([`estimated_units`]).
    pub fn units(&self) -> Units {
        *self.counter.units.lock().expect("lock")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_units_follow_consistency_batches_and_transactions() {
        let get = br#"{"TableName":"t","Key":{},"ConsistentRead":true}"#;
        assert_eq!(estimated_units("GetItem", get), Units { read: 1.0, write: 0.0 });
        assert_eq!(estimated_units("Query", br#"{"IndexName":"gsi"}"#), Units { read: 0.5, write: 0.0 });
        let batch = br#"{"RequestItems":{"t":{"Keys":[{},{},{}],"ConsistentRead":true}}}"#;
        assert_eq!(estimated_units("BatchGetItem", batch), Units { read: 3.0, write: 0.0 });
        let transaction = br#"{"TransactItems":[{"Put":{}},{"Update":{}}]}"#;
        assert_eq!(estimated_units("TransactWriteItems", transaction), Units { read: 0.0, write: 4.0 });
        assert_eq!(estimated_units("DescribeTable", b"{}"), Units::default());
    }
}
