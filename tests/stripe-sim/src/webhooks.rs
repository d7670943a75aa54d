//! Signed webhook delivery, like Stripe's: one background task per endpoint sends
//! that endpoint's events in event order, each as a JSON POST with a
//! `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>` header,
//! retried with backoff on a non-2xx answer or a connection error.
//!
//! The signature timestamp is always the machine's wall clock, never a test clock's
//! frozen time: receivers check it against their own clock with a tolerance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{ChaosConfig, WebhookRetry};
use crate::state::WebhookEndpoint;
use crate::time::wall_now;

/// The outcome of one event's delivery to one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// The endpoint answered 2xx.
    Delivered,
    /// Every attempt failed.
    Failed,
}

/// A finished delivery (successful or given up), in completion order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub endpoint_id: String,
    pub url: String,
    pub event_id: String,
    pub event_type: String,
    pub attempts: u32,
    pub status: DeliveryStatus,
    /// The HTTP status of the last attempt, if the endpoint answered at all.
    pub http_status: Option<u16>,
    /// The connection error of the last attempt, if any.
    pub error: Option<String>,
    /// True for an extra copy sent by chaos mode.
    pub duplicate: bool,
}

/// `t=<timestamp>,v1=<hex hmac>` for `payload` signed with `secret` at `timestamp`.
/// A comma-separated `secret` list gives one `v1=` per secret, as Stripe sends while
/// an endpoint's secret is being rotated.
pub fn signature_header(secret: &str, timestamp: i64, payload: &str) -> String {
    let mut header = format!("t={timestamp}");
    for s in secret.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        header.push_str(",v1=");
        header.push_str(&sign(s, timestamp, payload));
    }
    header
}

fn sign(secret: &str, timestamp: i64, payload: &str) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

struct Job {
    endpoint_id: String,
    url: String,
    secret: String,
    event_id: String,
    event_type: String,
    body: Arc<str>,
    /// Completed after the first delivery attempt (for `webhooks_before_response`).
    ack: Mutex<Option<oneshot::Sender<()>>>,
}

struct Queue {
    tx: mpsc::UnboundedSender<Job>,
    task: JoinHandle<()>,
}

struct Shared {
    retry: WebhookRetry,
    client: reqwest::Client,
    /// Deliveries queued or in flight; `wait_idle` waits for zero.
    pending: watch::Sender<usize>,
    records: Mutex<Vec<DeliveryRecord>>,
}

/// Owns the per-endpoint delivery tasks.
pub struct Dispatcher {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    default_chaos: Option<ChaosConfig>,
    queues: Mutex<HashMap<String, Queue>>,
    spawned: Mutex<u64>,
}

impl Dispatcher {
    pub fn new(runtime: tokio::runtime::Handle, retry: WebhookRetry, default_chaos: Option<ChaosConfig>) -> Dispatcher {
        let client = reqwest::Client::builder()
            // Receivers are local; an HTTP(S)_PROXY in the environment must not capture them.
            .no_proxy()
            .timeout(retry.timeout)
            .user_agent("Stripe/1.0 (+https://stripe.com/docs/webhooks)")
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let (pending, _) = watch::channel(0usize);
        Dispatcher {
            shared: Arc::new(Shared { retry, client, pending, records: Mutex::new(Vec::new()) }),
            runtime,
            default_chaos,
            queues: Mutex::new(HashMap::new()),
            spawned: Mutex::new(0),
        }
    }

    /// Queues `body` (the serialized event) for `endpoint`. Called under the state lock,
    /// so queue order is event order. With `ack`, returns a receiver that completes once
    /// the first delivery attempt has finished (or the delivery was dropped).
    pub fn enqueue(
        &self,
        endpoint: &WebhookEndpoint,
        event_id: &str,
        event_type: &str,
        body: String,
        ack: bool,
    ) -> Option<oneshot::Receiver<()>> {
        let (ack_tx, ack_rx) = if ack {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let job = Job {
            endpoint_id: endpoint.id.clone(),
            url: endpoint.url.clone(),
            secret: endpoint.secret.clone(),
            event_id: event_id.to_string(),
            event_type: event_type.to_string(),
            body: Arc::from(body),
            ack: Mutex::new(ack_tx),
        };
        self.shared.pending.send_modify(|n| *n += 1);
        let mut queues = lock(&self.queues);
        let queue = queues.entry(endpoint.id.clone()).or_insert_with(|| {
            let chaos = endpoint.chaos.clone().or_else(|| self.default_chaos.clone());
            let ordinal = {
                let mut n = lock(&self.spawned);
                *n += 1;
                *n
            };
            let (tx, rx) = mpsc::unbounded_channel();
            let task = self.runtime.spawn(run_endpoint(self.shared.clone(), rx, chaos, ordinal));
            Queue { tx, task }
        });
        if queue.tx.send(job).is_err() {
            // The task is gone (only after shutdown); the delivery will never happen.
            self.shared.pending.send_modify(|n| *n = n.saturating_sub(1));
        }
        ack_rx
    }

    /// Stops queueing for a deleted endpoint; what is already queued is still delivered.
    pub fn close_endpoint(&self, endpoint_id: &str) {
        lock(&self.queues).remove(endpoint_id);
    }

    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.pending.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0)).await.is_ok_and(|r| r.is_ok())
    }

    pub fn pending(&self) -> usize {
        *self.shared.pending.borrow()
    }

    pub fn records(&self) -> Vec<DeliveryRecord> {
        lock(&self.shared.records).clone()
    }

    /// Whether every endpoint `event_id` went to (`endpoints` of them) has it delivered:
    /// Stripe's `delivery_success` (an event still pending, or given up by one endpoint,
    /// is not a success).
    pub fn delivered_everywhere(&self, event_id: &str, endpoints: i64) -> bool {
        let records = lock(&self.shared.records);
        let delivered: std::collections::HashSet<&str> = records
            .iter()
            .filter(|r| r.event_id == event_id && !r.duplicate && r.status == DeliveryStatus::Delivered)
            .map(|r| r.endpoint_id.as_str())
            .collect();
        delivered.len() as i64 >= endpoints
    }

    /// Aborts every delivery task (used when the sim shuts down).
    pub fn shutdown(&self) {
        for (_, q) in lock(&self.queues).drain() {
            q.task.abort();
        }
        self.shared.pending.send_replace(0);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not wedge delivery bookkeeping.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn run_endpoint(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Job>, chaos: Option<ChaosConfig>, ordinal: u64) {
    let mut rng = chaos.as_ref().map(|c| StdRng::seed_from_u64(c.seed.wrapping_add(ordinal)));
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        if let (Some(c), Some(rng)) = (&chaos, rng.as_mut()) {
            // Give a burst of events (one API call emits several) a moment to arrive,
            // so there is something to reorder.
            tokio::time::sleep(Duration::from_millis(5)).await;
            while batch.len() < c.reorder_window.max(1) {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch.shuffle(rng);
        }
        for job in batch {
            let mut duplicate = false;
            if let (Some(c), Some(rng)) = (&chaos, rng.as_mut()) {
                let max_ms = u64::try_from(c.max_delay.as_millis()).unwrap_or(u64::MAX);
                if max_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=max_ms))).await;
                }
                duplicate = rng.gen_bool(c.duplicate_probability.clamp(0.0, 1.0));
            }
            if duplicate {
                shared.pending.send_modify(|n| *n += 1);
            }
            deliver(&shared, &job, false).await;
            if duplicate {
                deliver(&shared, &job, true).await;
            }
        }
    }
}

async fn deliver(shared: &Shared, job: &Job, duplicate: bool) {
    let retry = &shared.retry;
    let max_attempts = retry.max_attempts.max(1);
    let mut backoff = retry.initial_backoff;
    let mut attempts = 0;
    let mut http_status = None;
    let mut error = None;
    let mut status = DeliveryStatus::Failed;
    while attempts < max_attempts {
        if attempts > 0 {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(retry.max_backoff);
        }
        attempts += 1;
        let header = signature_header(&job.secret, wall_now(), &job.body);
        let result = shared
            .client
            .post(&job.url)
            .header("content-type", "application/json; charset=utf-8")
            .header("stripe-signature", header)
            .body(job.body.to_string())
            .send()
            .await;
        match result {
            Ok(resp) => {
                let code = resp.status();
                http_status = Some(code.as_u16());
                error = None;
                if code.is_success() {
                    status = DeliveryStatus::Delivered;
                } else {
                    tracing::debug!(event = %job.event_id, url = %job.url, status = code.as_u16(), attempts, "webhook delivery rejected");
                }
            }
            Err(e) => {
                http_status = None;
                error = Some(e.to_string());
                tracing::debug!(event = %job.event_id, url = %job.url, error = %e, attempts, "webhook delivery failed");
            }
        }
        // The request that caused the event may be waiting for this first attempt.
        if let Some(tx) = lock(&job.ack).take() {
            let _ = tx.send(());
        }
        if status == DeliveryStatus::Delivered {
            break;
        }
    }
    if status == DeliveryStatus::Failed {
        tracing::warn!(event = %job.event_id, r#type = %job.event_type, url = %job.url, attempts, "webhook delivery gave up");
    }
    lock(&shared.records).push(DeliveryRecord {
        endpoint_id: job.endpoint_id.clone(),
        url: job.url.clone(),
        event_id: job.event_id.clone(),
        event_type: job.event_type.clone(),
        attempts,
        status,
        http_status,
        error,
        duplicate,
    });
    shared.pending.send_modify(|n| *n = n.saturating_sub(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_known_hmac() {
        // HMAC-SHA256("whsec_test", "1700000000.{}") computed independently with Python's hmac module.
        let h = signature_header("whsec_test", 1_700_000_000, "{}");
        assert_eq!(h, "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91");
        let rotated = signature_header("whsec_test, whsec_old", 1_700_000_000, "{}");
        assert!(rotated.starts_with(&h));
        assert_eq!(rotated.matches(",v1=").count(), 2);
        assert_ne!(sign("whsec_test", 1_700_000_000, "{}"), sign("whsec_other", 1_700_000_000, "{}"));
    }
}
