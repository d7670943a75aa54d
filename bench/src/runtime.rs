//! A minimal Lambda Runtime API on loopback: enough of
//! <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html> for one function
//! process to start, ask for work, handle the invocations it is given (in order) and ask again.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use tokio::sync::watch;

#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// When the first `GET …/invocation/next` arrived.
    pub first_next: Option<Instant>,
    /// How many `next` requests arrived (n + 1 = the n invocations were handled and the process asked again).
    pub nexts: u32,
    /// `("response" | "error" | "init-error", body)` posted by the function for the first invocation.
    pub result: Option<(String, String)>,
    /// When each invocation was handed out and when its answer came.
    pub handed: Vec<Instant>,
    pub answered: Vec<Instant>,
}

/// Run before invocation `n` is handed out (the bench queues the work it needs).
pub type BeforeEach = Arc<dyn Fn(usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync>;

struct Inner {
    events: Vec<String>,
    before_each: Option<BeforeEach>,
    seen: watch::Sender<Seen>,
    delivered: Mutex<usize>,
}

pub struct RuntimeApi {
    pub addr: SocketAddr,
    pub seen: watch::Receiver<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn next(State(inner): State<Arc<Inner>>) -> Response {
    let now = Instant::now();
    inner.seen.send_modify(|s| {
        s.first_next.get_or_insert(now);
        s.nexts += 1;
    });
    let next_event = {
        let mut delivered = inner.delivered.lock().expect("lock");
        let event = inner.events.get(*delivered).cloned().map(|e| (*delivered, e));
        *delivered += 1;
        event
    };
    let Some((index, event)) = next_event else {
        // No (more) work: hold the long poll, as Lambda does, until the process is stopped.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return StatusCode::GATEWAY_TIMEOUT.into_response();
    };
    if let Some(before) = &inner.before_each {
        before(index).await;
    }
    inner.seen.send_modify(|s| s.handed.push(Instant::now()));
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() + 900_000;
    let mut headers = HeaderMap::new();
    headers.insert("lambda-runtime-aws-request-id", format!("bench-{index:04}").parse().expect("header"));
    headers.insert("lambda-runtime-deadline-ms", deadline.to_string().parse().expect("header"));
    headers.insert("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:123456789012:function:bench".parse().expect("header"));
    headers.insert("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000;Sampled=0".parse().expect("header"));
    headers.insert("content-type", "application/json".parse().expect("header"));
    (StatusCode::OK, headers, event).into_response()
}

fn record(inner: &Inner, kind: &str, body: Bytes) -> Response {
    let body = String::from_utf8_lossy(&body).into_owned();
    let now = Instant::now();
    inner.seen.send_modify(|s| {
        s.answered.push(now);
        s.result.get_or_insert((kind.to_owned(), body));
    });
    (StatusCode::ACCEPTED, "{\"status\":\"OK\"}").into_response()
}

async fn response(State(inner): State<Arc<Inner>>, Path(_id): Path<String>, body: Bytes) -> Response {
    record(&inner, "response", body)
}

async fn error(State(inner): State<Arc<Inner>>, Path(_id): Path<String>, body: Bytes) -> Response {
    record(&inner, "error", body)
}

async fn init_error(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    record(&inner, "init-error", body)
}

impl RuntimeApi {
    /// Serves on a free loopback port; `events` are handed out in order, one per `next`.
    pub async fn start(events: Vec<String>, before_each: Option<BeforeEach>) -> RuntimeApi {
        let (tx, rx) = watch::channel(Seen::default());
        let inner = Arc::new(Inner { events, before_each, seen: tx, delivered: Mutex::new(0) });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(inner);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind runtime api");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        RuntimeApi { addr, seen: rx, task }
    }

    /// Waits until `done` holds for what was seen, or `timeout`.
    pub async fn wait_for(&mut self, timeout: Duration, done: impl Fn(&Seen) -> bool) -> Option<Seen> {
        let result = tokio::time::timeout(timeout, self.seen.wait_for(|s| done(s))).await;
        match result {
            Ok(Ok(seen)) => Some(seen.clone()),
            _ => None,
        }
    }
}
