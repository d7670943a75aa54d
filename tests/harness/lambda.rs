//! A function binary run the way Lambda runs it: its own process, talking to its own
//! loopback Lambda Runtime API, which hands it exactly one invocation. Several of them
//! side by side are several Lambda instances (one request each), which is what
//! `cargo lambda watch` cannot show: it serialises.
//!
//! The runtime answers the process's first `GET …/invocation/next` only when the test
//! opens the [`Gate`] (so K processes can be released together), and never answers a
//! second one (an instance waiting for work). The function's response or error is kept.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{
    extract::{Path, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use serde_json::Value;
use tokio::sync::watch;

use crate::process::ChildGuard;

/// Opens every runtime created with it at once.
#[derive(Clone)]
pub struct Gate(watch::Sender<bool>);

impl Gate {
    pub fn new() -> Self {
        Self(watch::channel(false).0)
    }

    pub fn open(&self) {
        let _ = self.0.send(true);
    }
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

struct Runtime {
    event: Value,
    gate: watch::Receiver<bool>,
    polls: AtomicU32,
    answer: Mutex<Option<Value>>,
    answered: tokio::sync::Notify,
}

/// One function process and its Runtime API.
pub struct Instance {
    runtime: Arc<Runtime>,
    child: ChildGuard,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Builds the three function binaries, once per test process (cargo releases its lock
/// while tests run, so this does not deadlock with the `cargo test` that started us).
pub fn build_functions() {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "admin-api", "-p", "stripe-webhook", "-p", "expiry-jobs", "--bins"])
            .current_dir(crate::workspace_root())
            .status()
            .expect("cargo build the function binaries");
        assert!(status.success(), "cargo build of admin-api, stripe-webhook, expiry-jobs failed");
    });
}

/// The binary `name` of the workspace, as `cargo test --workspace` builds it.
/// Everything a function binary reads from its environment but its secrets (see
/// [`crate::secrets::stripe_vars`]): the test's table and bus, Stripe at `stripe_base`,
/// AWS at `aws_endpoint`.
pub fn function_env(env: &crate::TestEnv, stripe_base: &str, aws_endpoint: &str) -> BTreeMap<String, String> {
    [
        ("TABLE_NAME", env.table.as_str()),
        ("EVENT_BUS_NAME", env.bus.as_str()),
        ("JOB_CONTINUATION_BUS_NAME", env.bus.as_str()),
        ("ADMIN_GROUP", "admin"),
        ("STRIPE_API_BASE", stripe_base),
        ("STRIPE_PRICE_PREMIUM", stripe_sim::PREMIUM_MONTHLY),
        ("STRIPE_PRICE_ENTERPRISE", stripe_sim::ENTERPRISE_MONTHLY),
        ("MAIL_FROM", crate::env::MAIL_FROM),
        ("APP_BASE_URL", "https://app.logiscore.test"),
        ("AWS_ENDPOINT_URL", aws_endpoint),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A `customer.subscription.updated` event (Stripe's sample) for a subscription nobody
/// knows, with a fresh event id: a function asks Stripe about it, is told 404, and
/// ledgers it as ignored.
pub fn unknown_subscription_updated(tag: &str) -> String {
    let path = crate::workspace_root().join("events/stripe/customer.subscription.updated.json");
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("the sample event")).expect("JSON");
    event["id"] = serde_json::json!(format!("evt_{tag}{}", uuid::Uuid::new_v4().simple()));
    event["data"]["object"]["id"] = serde_json::json!(format!("sub_{tag}_unknown"));
    event.to_string()
}

/// The API Gateway event of a webhook delivery of `body` signed with `signature`.
pub fn webhook_delivery(body: &str, signature: &str) -> Value {
    let mut event = admin_api::apigw::event("POST", "/stripe/webhook", None, None, None, &[("stripe-signature", signature)]);
    event["body"] = serde_json::json!(body);
    event
}

pub fn binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| crate::workspace_root().join("target"), PathBuf::from);
    let path = target.join("debug").join(name);
    assert!(path.exists(), "{} is not built: run `cargo build -p {name}` (make test builds it)", path.display());
    path
}

impl Instance {
    /// Starts `binary` with `env` (plus the Lambda variables) to serve `event` once the gate opens.
    pub async fn start(binary: &std::path::Path, env: &BTreeMap<String, String>, event: Value, gate: &Gate) -> Instance {
        let runtime = Arc::new(Runtime {
            event,
            gate: gate.0.subscribe(),
            polls: AtomicU32::new(0),
            answer: Mutex::new(None),
            answered: tokio::sync::Notify::new(),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(runtime.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind runtime api");
        let addr = listener.local_addr().expect("runtime addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let mut command = Command::new(binary);
        command
            .envs(env)
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", binary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/test")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = ChildGuard::spawn(command).expect("start the function process");
        Instance { runtime, child, server }
    }

    /// Waits until the process asked for its invocation (it is initialised).
    pub async fn ready(&self, within: Duration) {
        let started = std::time::Instant::now();
        while self.runtime.polls.load(Ordering::SeqCst) == 0 {
            assert!(started.elapsed() < within, "the function did not poll its runtime within {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The function's answer (its response document, or `{"error": …}`), once it came.
    pub async fn answer(&self, within: Duration) -> Value {
        let waited = tokio::time::timeout(within, async {
            loop {
                let notified = self.runtime.answered.notified();
                if let Some(answer) = self.runtime.answer.lock().expect("answer lock").clone() {
                    return answer;
                }
                notified.await;
            }
        })
        .await;
        waited.unwrap_or_else(|_| panic!("the function did not answer within {within:?}"))
    }

    /// SIGKILL, as Lambda does to an instance at its timeout or on a host failure.
    pub fn kill(&mut self) {
        self.child.kill();
    }
}

async fn next(State(runtime): State<Arc<Runtime>>) -> Response {
    if runtime.polls.fetch_add(1, Ordering::SeqCst) > 0 {
        // One invocation per instance: a second poll waits for ever.
        std::future::pending::<()>().await;
    }
    let mut gate = runtime.gate.clone();
    let _ = gate.wait_for(|open| *open).await;
    let deadline = chrono::Utc::now().timestamp_millis() + 20_000;
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", "req-1".to_owned()),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        ("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:000000000000:function:test".to_owned()),
        ("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned()),
        ("content-type", "application/json".to_owned()),
    ] {
        headers.insert(name, value.parse().expect("a valid header"));
    }
    (headers, runtime.event.to_string()).into_response()
}

fn keep(runtime: &Runtime, answer: Value) -> &'static str {
    *runtime.answer.lock().expect("answer lock") = Some(answer);
    runtime.answered.notify_waiters();
    ""
}

async fn response(State(runtime): State<Arc<Runtime>>, Path(_id): Path<String>, body: String) -> (axum::http::StatusCode, &'static str) {
    let answer = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (axum::http::StatusCode::ACCEPTED, keep(&runtime, answer))
}

async fn error(State(runtime): State<Arc<Runtime>>, Path(_id): Path<String>, body: String) -> (axum::http::StatusCode, &'static str) {
    (axum::http::StatusCode::ACCEPTED, keep(&runtime, serde_json::json!({ "error": body })))
}

async fn init_error(State(runtime): State<Arc<Runtime>>, body: String) -> (axum::http::StatusCode, &'static str) {
    (axum::http::StatusCode::ACCEPTED, keep(&runtime, serde_json::json!({ "init_error": body })))
}
