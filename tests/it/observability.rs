//! Observability of the real binaries: `admin-api`, `stripe-webhook` and `expiry-jobs`,
//! built by cargo and run as Lambda runs them — under a minimal Lambda Runtime API served
//! here on loopback (`AWS_LAMBDA_RUNTIME_API`), with Lambda's JSON log format switched on
//! (`AWS_LAMBDA_LOG_FORMAT=JSON`, `AWS_LAMBDA_LOG_LEVEL=INFO`), against moto server and
//! stripe-sim. Their stdout/stderr is captured (`target/test-logs/observability-*.log`) and
//! checked: EMF documents (namespace, metric names, units, bounded dimensions), JSON log
//! lines with the fields on-call searches by, and no secret anywhere.
//!
//! One flow feeds all the tests (it runs once, whichever test asks first):
//! 1. admin-api: PUT profile, PUT subscription (premium, card), GET subscription;
//! 2. stripe-webhook: a signed `invoice.paid` for that subscription's first invoice, and a
//!    delivery with a bad signature;
//! 3. expiry-jobs: `{"job": "deliver-pending"}` (sends the receipt the webhook queued).

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{Path, State},
    http::{HeaderMap, HeaderValue},
    routing::{get, post},
    Router,
};
use chrono::Utc;
use serde_json::{json, Value};
use stripe_webhook::signature::sign_header;
use tokio::sync::OnceCell;

/// Distinctive secrets: any trace of them (or of their prefixes) in a log is a leak.
const STRIPE_KEY_SUFFIX: &str = "obsvKEY9f3b2c1d0e";
const WEBHOOK_SECRET: &str = "whsec_obsvSECRET7a6b5c4d3e";
const NAMESPACE: &str = "LogiScore/Subscriptions";

/// What one function printed.
struct Run {
    name: &'static str,
    stdout: String,
    stderr: String,
    /// The invocation results (`response` or `error` body), in order.
    results: Vec<(String, Value)>,
}

struct Runs {
    stripe_key: String,
    raw_webhook_body: String,
    admin: Run,
    webhook: Run,
    jobs: Run,
}

impl Runs {
    fn all(&self) -> [&Run; 3] {
        [&self.admin, &self.webhook, &self.jobs]
    }
}

static RUNS: OnceCell<Runs> = OnceCell::const_new();

async fn runs() -> &'static Runs {
    RUNS.get_or_init(flow).await
}

// ------------------------------------------------------------------ a Lambda Runtime API

#[derive(Default)]
struct RuntimeState {
    queue: VecDeque<(String, Value)>,
    results: HashMap<String, (String, Value)>,
    init_error: Option<Value>,
}

type Shared = Arc<Mutex<RuntimeState>>;

async fn next(State(state): State<Shared>) -> (HeaderMap, String) {
    loop {
        let item = state.lock().unwrap().queue.pop_front();
        if let Some((id, payload)) = item {
            let mut headers = HeaderMap::new();
            headers.insert("lambda-runtime-aws-request-id", HeaderValue::from_str(&id).unwrap());
            let deadline = Utc::now().timestamp_millis() + 300_000;
            headers.insert("lambda-runtime-deadline-ms", HeaderValue::from_str(&deadline.to_string()).unwrap());
            headers.insert(
                "lambda-runtime-invoked-function-arn",
                HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:observability"),
            );
            headers.insert("lambda-runtime-trace-id", HeaderValue::from_static("Root=1-00000000-000000000000000000000000;Sampled=0"));
            headers.insert("content-type", HeaderValue::from_static("application/json"));
            return (headers, payload.to_string());
        }
        // Lambda holds `next` open until there is work; so does this.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()))
}

async fn response(State(state): State<Shared>, Path(id): Path<String>, body: String) {
    state.lock().unwrap().results.insert(id, ("response".into(), parse(&body)));
}

async fn error(State(state): State<Shared>, Path(id): Path<String>, body: String) {
    state.lock().unwrap().results.insert(id, ("error".into(), parse(&body)));
}

async fn init_error(State(state): State<Shared>, body: String) {
    state.lock().unwrap().init_error = Some(parse(&body));
}

/// Serves the Runtime API on a loopback port with `events` queued, returning its address.
async fn runtime_api(events: Vec<Value>) -> (SocketAddr, Shared, Vec<String>) {
    let ids: Vec<String> = events.iter().map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let state: Shared = Arc::new(Mutex::new(RuntimeState { queue: ids.iter().cloned().zip(events).collect(), ..RuntimeState::default() }));
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind runtime api");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, state, ids)
}

// ------------------------------------------------------------------ running the binaries

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| harness::workspace_root().join("target"))
}

struct Deps<'a> {
    env: &'a harness::TestEnv,
    sim: &'a harness::sim::Sim,
    /// `STRIPE_SECRET_ARN`, `STRIPE_WEBHOOK_SECRET_ARN`: the secrets in moto's Secrets Manager.
    secrets: BTreeMap<String, String>,
}

/// Runs binary `name` under the Runtime API until every one of `events` has a result.
async fn run_function(name: &'static str, deps: &Deps<'_>, events: Vec<Value>) -> Run {
    let count = events.len();
    let (addr, state, ids) = runtime_api(events).await;
    let logs = harness::workspace_root().join("target/test-logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    let out_path = logs.join(format!("observability-{name}.log"));
    let err_path = logs.join(format!("observability-{name}.stderr.log"));
    let stripe = deps.sim.stripe_config();
    let mut command = std::process::Command::new(target_dir().join("debug").join(name));
    command
        .current_dir(harness::workspace_root())
        .env_remove("RUST_LOG")
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", format!("logiscore-{name}-test"))
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/logiscore-{name}-test"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/03/01/[$LATEST]observability")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_LAMBDA_LOG_LEVEL", "INFO")
        .env("TABLE_NAME", &deps.env.table)
        .env("EVENT_BUS_NAME", &deps.env.bus)
        .env("ADMIN_GROUP", "admin")
        // The Stripe key and the signing secret are in Secrets Manager; only their ARNs here.
        .env_remove("STRIPE_SECRET_KEY")
        .env_remove("STRIPE_WEBHOOK_SECRET")
        .envs(&deps.secrets)
        .env("JOB_CONTINUATION_BUS_NAME", &deps.env.bus)
        .env("STRIPE_API_BASE", deps.sim.handle.base_url())
        .env("STRIPE_PRICE_PREMIUM", &stripe.price_premium)
        .env("STRIPE_PRICE_ENTERPRISE", &stripe.price_enterprise)
        .env("MAIL_FROM", harness::env::MAIL_FROM)
        .env("APP_BASE_URL", "https://app.logiscore.test")
        .env("SES_SEND_RATE", "50")
        .env("AWS_ENDPOINT_URL", deps.env.moto.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    // Nothing secret is in the function's environment, only where to find it.
    for (var, value) in command.get_envs() {
        let value = value.map(|v| v.to_string_lossy().into_owned()).unwrap_or_default();
        assert!(!value.contains(STRIPE_KEY_SUFFIX) && !value.contains(WEBHOOK_SECRET), "{name}: {var:?} holds a secret's value");
    }
    let mut child = harness::process::ChildGuard::spawn(command).unwrap_or_else(|e| panic!("start {name}: {e}"));
    let done = harness::eventually(Duration::from_secs(120), || {
        let state = state.clone();
        async move {
            let s = state.lock().unwrap();
            s.results.len() == count || s.init_error.is_some()
        }
    })
    .await;
    let exited = child.try_wait().ok().flatten();
    child.kill();
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let state = state.lock().unwrap();
    assert!(state.init_error.is_none(), "{name} failed its init: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", state.init_error);
    assert!(done, "{name} did not answer {count} invocations (exited: {exited:?})\nstdout:\n{stdout}\nstderr:\n{stderr}");
    let results = ids.iter().map(|id| state.results.get(id).cloned().expect("result")).collect();
    Run { name, stdout, stderr, results }
}

fn admin_event(name: &str) -> Value {
    let path = harness::workspace_root().join("events/admin").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("event file")).expect("event JSON")
}

/// An API Gateway HTTP API (v2) request for `POST /stripe/webhook`.
fn webhook_request(body: &str, signature: &str) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "POST /stripe/webhook",
        "rawPath": "/stripe/webhook",
        "rawQueryString": "",
        "headers": {"content-type": "application/json; charset=utf-8", "stripe-signature": signature, "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "webhookapi",
            "domainName": "webhookapi.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "webhookapi",
            "http": {"method": "POST", "path": "/stripe/webhook", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "Stripe/1.0"},
            "requestId": format!("obsv-{}", uuid::Uuid::new_v4().simple()),
            "routeKey": "POST /stripe/webhook",
            "stage": "$default",
            "time": "01/Mar/2026:12:00:00 +0000",
            "timeEpoch": 1772366400000i64
        },
        "isBase64Encoded": false,
        "body": body
    })
}

/// The whole flow, once.
async fn flow() -> Runs {
    harness::lambda::build_functions();
    let env = harness::TestEnv::new().await;
    let stripe_key = format!("sk_test_{STRIPE_KEY_SUFFIX}");
    let sim = harness::sim::Sim::start_with(stripe_sim::SimConfig {
        seed_prices: true,
        secret_key: stripe_key.clone(),
        ..stripe_sim::SimConfig::default()
    })
    .await;
    let secrets = harness::secrets::stripe_vars(&env, &stripe_key, Some(WEBHOOK_SECRET)).await;
    let deps = Deps { env: &env, sim: &sim, secrets };

    let admin = run_function(
        "admin-api",
        &deps,
        vec![admin_event("put-profile"), admin_event("put-subscription"), admin_event("get-subscription")],
    )
    .await;
    let statuses: Vec<u64> = admin.results.iter().map(|(_, r)| r["statusCode"].as_u64().unwrap_or(0)).collect();
    assert!(statuses[0] == 200 || statuses[0] == 201, "put-profile: {:?}", admin.results[0]);
    assert_eq!(statuses[1..], [201, 200], "{:?}", admin.results);
    let created: Value = serde_json::from_str(admin.results[1].1["body"].as_str().unwrap_or("null")).unwrap();
    let subscription_id = created["subscription"]["stripe_subscription_id"].as_str().expect("stripe subscription id").to_owned();

    // The subscription's first invoice, as Stripe holds it, wrapped in a signed event.
    let subscription = sim.get(&format!("/v1/subscriptions/{subscription_id}")).await;
    let invoice_id = subscription["latest_invoice"].as_str().expect("latest invoice").to_owned();
    let invoice = sim.get(&format!("/v1/invoices/{invoice_id}")).await;
    let event = json!({
        "id": format!("evt_obsv{}", uuid::Uuid::new_v4().simple()),
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": Utc::now().timestamp(),
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": "invoice.paid",
        "data": {"object": invoice}
    });
    let raw_webhook_body = event.to_string();
    let signature = sign_header(raw_webhook_body.as_bytes(), WEBHOOK_SECRET, Utc::now().timestamp());
    let forged = sign_header(raw_webhook_body.as_bytes(), "whsec_not_the_secret", Utc::now().timestamp());
    let webhook = run_function(
        "stripe-webhook",
        &deps,
        vec![webhook_request(&raw_webhook_body, &signature), webhook_request(&raw_webhook_body, &forged)],
    )
    .await;
    let answers: Vec<u64> = webhook.results.iter().map(|(_, r)| r["statusCode"].as_u64().unwrap_or(0)).collect();
    assert_eq!(answers, [200, 400], "{:?}", webhook.results);
    let processed: Value = serde_json::from_str(webhook.results[0].1["body"].as_str().unwrap_or("null")).unwrap();
    assert_eq!(processed["outcome"], "applied", "{processed}");

    let jobs = run_function("expiry-jobs", &deps, vec![json!({"job": "deliver-pending"})]).await;
    assert_eq!(jobs.results[0].0, "response", "{:?}", jobs.results);
    assert!(jobs.results[0].1["delivered"].as_u64().unwrap_or(0) >= 1, "{:?}", jobs.results);

    Runs { stripe_key, raw_webhook_body, admin, webhook, jobs }
}

// ------------------------------------------------------------------ reading the output

/// The EMF documents among `output`'s lines.
fn emf(output: &str) -> Vec<Value> {
    output.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v.get("_aws").is_some()).collect()
}

/// The tracing (log) lines among `output`'s lines.
fn log_lines(output: &str) -> Vec<Value> {
    output.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v.get("_aws").is_none()).collect()
}

/// The spans a log line was written in, outermost first.
fn spans(line: &Value) -> Vec<Value> {
    line["spans"].as_array().cloned().unwrap_or_default()
}

/// `(metric, unit, dimensions)` of every metric in `docs`, dimensions as `name=value`.
fn catalogue(docs: &[Value]) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    for doc in docs {
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        let dims: Vec<String> = directive["Dimensions"][0]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                let d = d.as_str().unwrap();
                format!("{d}={}", doc[d].as_str().unwrap_or("?"))
            })
            .collect();
        for m in directive["Metrics"].as_array().into_iter().flatten() {
            out.push((m["Name"].as_str().unwrap().to_owned(), m["Unit"].as_str().unwrap().to_owned(), dims.clone()));
        }
    }
    out
}

fn has(cat: &[(String, String, Vec<String>)], metric: &str, unit: &str, dims: &[&str]) -> bool {
    cat.iter().any(|(m, u, d)| m == metric && u == unit && d.len() == dims.len() && dims.iter().all(|x| d.contains(&x.to_string())))
}

fn value(docs: &[Value], metric: &str, dims: &[(&str, &str)]) -> f64 {
    docs.iter()
        .filter(|d| d.get(metric).is_some() && dims.iter().all(|(k, v)| d[*k] == *v))
        .map(|d| d[metric].as_f64().unwrap_or(0.0))
        .sum()
}

// ------------------------------------------------------------------ the tests

/// Every EMF document any binary printed is well-formed: one directive in our namespace,
/// each declared dimension and metric present at the top level, units from the known set,
/// and no dimension that could carry a user or Stripe id.
#[tokio::test]
async fn every_emf_document_is_well_formed_and_bounded() {
    let runs = runs().await;
    for run in runs.all() {
        let docs = emf(&run.stdout);
        assert!(!docs.is_empty(), "{}: no EMF on stdout", run.name);
        assert!(emf(&run.stderr).is_empty(), "{}: EMF on stderr is never turned into metrics", run.name);
        for doc in &docs {
            let directives = doc["_aws"]["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics");
            assert_eq!(directives.len(), 1, "{doc}");
            assert_eq!(directives[0]["Namespace"], NAMESPACE, "{doc}");
            assert!(doc["_aws"]["Timestamp"].as_i64().is_some_and(|t| t > 1_700_000_000_000), "{doc}");
            for set in directives[0]["Dimensions"].as_array().expect("Dimensions") {
                for dim in set.as_array().expect("a dimension set") {
                    let dim = dim.as_str().expect("dimension name");
                    assert!(
                        ["Tier", "Source", "Kind", "EventType", "Outcome", "Job", "Operation"].contains(&dim),
                        "unbounded dimension {dim}: {doc}"
                    );
                    let v = doc[dim].as_str().unwrap_or_else(|| panic!("dimension {dim} has no string value: {doc}"));
                    assert!(!v.is_empty() && v.len() <= 64, "{doc}");
                    for id_prefix in ["user-", "cus_", "sub_", "in_", "evt_", "pm_", "pi_"] {
                        assert!(!v.starts_with(id_prefix), "an id as a dimension value: {doc}");
                    }
                }
            }
            for m in directives[0]["Metrics"].as_array().expect("Metrics") {
                let name = m["Name"].as_str().expect("metric name");
                assert!(["Count", "Milliseconds"].contains(&m["Unit"].as_str().unwrap_or("")), "{doc}");
                assert!(doc[name].as_f64().is_some_and(|v| v >= 0.0), "metric {name} has no value: {doc}");
            }
        }
    }
}

/// admin-api: the subscription it created by tier and source, its Stripe and DynamoDB calls
/// (count and latency by operation and outcome), and the confirmation e-mail it sent.
#[tokio::test]
async fn admin_api_emits_business_and_dependency_metrics() {
    let runs = runs().await;
    let docs = emf(&runs.admin.stdout);
    let cat = catalogue(&docs);
    assert!(has(&cat, "SubscriptionsCreated", "Count", &["Tier=premium", "Source=paid"]), "{cat:#?}");
    assert_eq!(value(&docs, "SubscriptionsCreated", &[("Tier", "premium")]), 1.0);
    assert!(has(&cat, "ProfilesUpserted", "Count", &[]), "{cat:#?}");
    assert!(has(&cat, "StripeCalls", "Count", &["Operation=create_subscription", "Outcome=ok"]), "{cat:#?}");
    assert!(has(&cat, "StripeLatency", "Milliseconds", &["Operation=create_subscription", "Outcome=ok"]), "{cat:#?}");
    assert!(has(&cat, "DynamoCalls", "Count", &["Operation=TransactWriteItems", "Outcome=ok"]), "{cat:#?}");
    assert!(has(&cat, "DynamoLatency", "Milliseconds", &["Operation=GetItem", "Outcome=ok"]), "{cat:#?}");
    assert!(has(&cat, "EmailsSent", "Count", &["Kind=subscription_confirmation"]), "{cat:#?}");
    assert!(has(&cat, "DomainEventsPublished", "Count", &[]), "{cat:#?}");
}

/// stripe-webhook: events by type and outcome (the rejection alarm's series included), the
/// payment the event reported (dimensionless, as the failure-rate alarm reads it), and the
/// one Stripe re-fetch and the reads it made.
#[tokio::test]
async fn stripe_webhook_emits_events_payments_and_stripe_calls() {
    let runs = runs().await;
    let docs = emf(&runs.webhook.stdout);
    let cat = catalogue(&docs);
    assert!(has(&cat, "WebhookEvents", "Count", &["EventType=invoice.paid", "Outcome=applied"]), "{cat:#?}");
    assert!(has(&cat, "WebhookEvents", "Count", &["EventType=rejected", "Outcome=rejected"]), "{cat:#?}");
    assert!(has(&cat, "PaymentsSucceeded", "Count", &[]), "{cat:#?}");
    assert_eq!(value(&docs, "PaymentsSucceeded", &[]), 1.0);
    assert_eq!(value(&docs, "PaymentsFailed", &[]), 0.0);
    assert!(has(&cat, "StripeCalls", "Count", &["Operation=retrieve_invoice", "Outcome=ok"]), "{cat:#?}");
    assert!(has(&cat, "StripeLatency", "Milliseconds", &["Operation=retrieve_invoice", "Outcome=ok"]), "{cat:#?}");
    // The invoice came with its subscription: no second Stripe read.
    assert!(!has(&cat, "StripeCalls", "Count", &["Operation=retrieve_subscription", "Outcome=ok"]), "{cat:#?}");
    assert!(has(&cat, "DynamoCalls", "Count", &["Operation=BatchGetItem", "Outcome=ok"]), "{cat:#?}");
    assert!(has(&cat, "DynamoCalls", "Count", &["Operation=TransactWriteItems", "Outcome=ok"]), "{cat:#?}");
}

/// expiry-jobs: the run's items and duration under `Job`, `JobRuns` = 1 for the finished run
/// (the "no successful run" alarm's series), and the receipt e-mail it delivered.
#[tokio::test]
async fn expiry_jobs_emit_run_metrics_with_job_runs() {
    let runs = runs().await;
    let docs = emf(&runs.jobs.stdout);
    let cat = catalogue(&docs);
    assert!(has(&cat, "JobRuns", "Count", &["Job=deliver-pending"]), "{cat:#?}");
    assert_eq!(value(&docs, "JobRuns", &[("Job", "deliver-pending")]), 1.0);
    assert!(has(&cat, "DurationMs", "Milliseconds", &["Job=deliver-pending"]), "{cat:#?}");
    assert!(has(&cat, "ItemsRead", "Count", &["Job=deliver-pending"]), "{cat:#?}");
    assert!(value(&docs, "Delivered", &[("Job", "deliver-pending")]) >= 1.0, "{cat:#?}");
    assert!(has(&cat, "EmailsSent", "Count", &["Kind=payment_receipt"]), "{cat:#?}");
}

/// Under Lambda's JSON log format every stdout line is one JSON object; log lines carry a
/// level and an RFC 3339 timestamp (so Lambda's level filter sees their real level), and
/// the fields on-call searches by: request id, user id, Stripe ids, job, outbox id, and for
/// Stripe calls operation, method, path, status and latency; for SES the message id.
#[tokio::test]
async fn logs_are_json_with_the_fields_on_call_searches_by() {
    let runs = runs().await;
    for run in runs.all() {
        for line in run.stdout.lines().filter(|l| !l.trim().is_empty()) {
            assert!(serde_json::from_str::<Value>(line).is_ok_and(|v| v.is_object()), "{}: not a JSON object: {line}", run.name);
        }
        for log in log_lines(&run.stdout) {
            assert!(log["level"].is_string(), "{}: no level: {log}", run.name);
            let ts = log["timestamp"].as_str().unwrap_or_else(|| panic!("{}: no timestamp: {log}", run.name));
            assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{}: timestamp not RFC 3339: {log}", run.name);
        }
    }
    let find =
        |run: &Run, message: &str| -> Vec<Value> { log_lines(&run.stdout).into_iter().filter(|l| l["message"] == message).collect() };

    let served = find(&runs.admin, "request served");
    assert!(served.iter().any(|l| l["span"]["request_id"] == "sample-put-subscription" && l["status"] == 201), "{served:#?}");
    let calls = find(&runs.admin, "stripe call");
    let create = calls.iter().find(|l| l["stripe.op"] == "create_subscription").expect("create_subscription logged");
    assert_eq!(
        (create["http.method"].as_str(), create["http.path"].as_str(), create["http.status"].as_u64()),
        (Some("POST"), Some("/v1/subscriptions"), Some(200)),
        "{create}"
    );
    assert!(create["latency_ms"].is_u64(), "{create}");
    let sent = find(&runs.admin, "e-mail sent");
    assert!(sent.iter().any(|l| l["message_id"].as_str().is_some_and(|m| !m.is_empty()) && l["outcome"] == "sent"), "{sent:#?}");

    // The result line sits in the event's span and the invocation's (Lambda request id).
    let processed = find(&runs.webhook, "webhook processed");
    let line = processed.first().expect("webhook processed logged");
    assert!(line["span"]["event_id"].as_str().is_some_and(|e| e.starts_with("evt_")), "{line}");
    assert_eq!(line["span"]["event_type"], "invoice.paid", "{line}");
    assert_eq!(line["outcome"], "applied", "{line}");
    assert!(spans(line).iter().any(|s| s["requestId"].is_string()), "{line}");
    // Every line of the event's processing carries the Stripe ids and the user it is about.
    let inside: Vec<Value> =
        log_lines(&runs.webhook.stdout).into_iter().filter(|l| spans(l).iter().any(|s| s["name"] == "process")).collect();
    let call = inside
        .iter()
        .find(|l| l["message"] == "stripe call" && l["stripe.op"] == "retrieve_invoice")
        .expect("stripe call inside the event's span");
    let process = spans(call).into_iter().find(|s| s["name"] == "process").unwrap();
    assert!(process["event_id"].as_str().is_some_and(|e| e.starts_with("evt_")), "{call}");
    assert!(process["stripe_invoice_id"].as_str().is_some_and(|e| e.starts_with("in_")), "{call}");
    assert!(process["stripe_subscription_id"].as_str().is_some_and(|e| e.starts_with("sub_")), "{call}");
    assert!(process["stripe_customer_id"].as_str().is_some_and(|e| e.starts_with("cus_")), "{call}");
    assert_eq!(process["user_id"], "user-123", "{call}");
    assert!(!find(&runs.webhook, "webhook rejected").is_empty());

    let summary = find(&runs.jobs, "job run summary");
    assert!(summary.iter().any(|l| l["job"] == "deliver-pending" && l["duration_ms"].is_u64()), "{summary:#?}");
    let delivered = find(&runs.jobs, "delivered");
    assert!(delivered.iter().any(|l| l["span"]["outbox_id"].is_string()), "{delivered:#?}");
}

/// Nothing any binary wrote (stdout or stderr) carries the Stripe secret key, the webhook
/// secret, anything shaped like a Stripe secret, the raw webhook body or an e-mail body.
#[tokio::test]
async fn no_secret_reaches_the_logs() {
    let runs = runs().await;
    for run in runs.all() {
        for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
            for (n, line) in text.lines().enumerate() {
                let at = format!("{} {stream} line {}", run.name, n + 1);
                assert!(!line.contains(&runs.stripe_key), "{at}: the Stripe secret key: {line}");
                assert!(!line.contains(STRIPE_KEY_SUFFIX), "{at}: part of the Stripe secret key: {line}");
                assert!(!line.contains(WEBHOOK_SECRET) && !line.contains("obsvSECRET"), "{at}: the webhook secret: {line}");
                for shape in ["whsec_", "sk_test_", "sk_live_", "rk_live_", "rk_test_"] {
                    assert!(!line.contains(shape), "{at}: a {shape}… string: {line}");
                }
                assert!(!line.contains(&runs.raw_webhook_body), "{at}: the raw webhook body: {line}");
                assert!(!line.contains("\"object\":\"invoice\""), "{at}: a Stripe object dumped: {line}");
                assert!(!line.to_ascii_lowercase().contains("<html"), "{at}: an e-mail body: {line}");
                assert!(!line.contains("4242424242424242"), "{at}: a card number: {line}");
            }
        }
    }
}
