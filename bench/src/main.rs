//! `make bench`: the three Rust functions measured side by side with the Python stack they
//! replace, in one run, and written to `BENCHMARKS.md`. Benchmarks, not tests: nothing here
//! fails a build; every figure is printed with its target and ✅/❌.
//!
//! Set-up (release builds, the Python venv, the arm64 package build) is done by
//! `bench/run.sh` before this binary runs; this binary starts and stops its own servers
//! (moto server, a counting proxy in front of it, stripe-sim, a Lambda Runtime API), all on
//! free loopback ports.

mod runtime;
mod tls;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use admin_api::apigw::{self, admin_claims};
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use harness::{admin::AdminApi, Moto, TestEnv};
use serde_json::{json, Value};
use shared::{
    config::Secret,
    domain::{Subscription, SubscriptionStatus, UserId},
    store::keys,
};
use stripe_webhook::signature;

use harness::counting::{CountingProxy, Units};

use crate::runtime::RuntimeApi;

const FUNCTIONS: [&str; 3] = ["admin-api", "stripe-webhook", "expiry-jobs"];
const WEBHOOK_SECRET: &str = "whsec_x";
const PYTHON_STACK: &str = "stripe, boto3, fastapi, fastapi_mail, celery, redis, jinja2";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

// ---------------------------------------------------------------------------------------
// Report

struct Row {
    measure: String,
    rust: String,
    python: String,
    ratio: String,
    target: String,
    ok: Option<bool>,
}

impl Row {
    fn mark(&self) -> &'static str {
        match self.ok {
            Some(true) => "✅",
            Some(false) => "❌",
            None => "—",
        }
    }
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    sections: Vec<(String, String)>,
    notes: Vec<String>,
}

impl Report {
    fn row(
        &mut self,
        measure: impl Into<String>,
        rust: impl Into<String>,
        python: impl Into<String>,
        ratio: impl Into<String>,
        target: impl Into<String>,
        ok: Option<bool>,
    ) {
        let row = Row { measure: measure.into(), rust: rust.into(), python: python.into(), ratio: ratio.into(), target: target.into(), ok };
        println!(
            "  {} {} | rust {} | python/ref {} | ratio {} | target {}",
            row.mark(),
            row.measure,
            row.rust,
            row.python,
            row.ratio,
            row.target
        );
        self.rows.push(row);
    }

    fn table(&self) -> String {
        let mut out =
            String::from("| measure | Rust | Python / reference | ratio | target | |\n| --- | ---: | ---: | ---: | --- | :---: |\n");
        for r in &self.rows {
            let _ = writeln!(out, "| {} | {} | {} | {} | {} | {} |", r.measure, r.rust, r.python, r.ratio, r.target, r.mark());
        }
        out
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[v.len() / 2]
}

// ---------------------------------------------------------------------------------------
// Machine

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc =
        Command::new("rustc").arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default();
    let python = Command::new(python_bin())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "- nproc: {cpus}\n- CPU: {model}\n- memory: {:.1} GiB\n- kernel: Linux {}\n- {rustc}; {python} (`bench/.venv-python`)\n",
        mem_kb as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

fn root() -> PathBuf {
    harness::workspace_root()
}

fn python_bin() -> PathBuf {
    std::env::var("BENCH_PYTHON").map(PathBuf::from).unwrap_or_else(|_| root().join("bench/.venv-python/bin/python"))
}

fn logs_dir() -> PathBuf {
    let dir = root().join("target/bench");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

// ---------------------------------------------------------------------------------------
// Function processes under the bench's Runtime API

#[derive(Clone)]
struct Spec {
    label: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

struct Launched {
    /// Just before exec.
    started: Instant,
    /// exec → first `GET /runtime/invocation/next`.
    init: Duration,
    /// exec → the first invocation's answer (when one was given).
    cold: Option<Duration>,
    /// Handed out → answered, for each invocation after the first.
    warm: Vec<Duration>,
    /// Max RSS (`VmHWM`), kB, once every invocation was handled (if any was given).
    hwm_kb: Option<u64>,
    /// What the function posted back for the first invocation.
    result: Option<(String, String)>,
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok())
}

/// Runs `spec` under the bench's Runtime API until it has handled `events` (in order) and
/// asked for more, or, given none, until it first asks for work.
async fn launch(spec: &Spec, events: Vec<String>) -> Result<Launched, String> {
    launch_with(spec, events, None).await
}

async fn launch_with(spec: &Spec, events: Vec<String>, before_each: Option<runtime::BeforeEach>) -> Result<Launched, String> {
    let count = events.len() as u32;
    let mut api = RuntimeApi::start(events, before_each).await;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs_dir().join(format!("{}.log", spec.label.replace([' ', '/'], "_"))))
        .map_err(|e| e.to_string())?;
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    let started = Instant::now();
    let mut child = command.spawn().map_err(|e| format!("{}: {e}", spec.program.display()))?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(90);
    let outcome = loop {
        let seen = api
            .wait_for(Duration::from_millis(50), |s| {
                if count > 0 {
                    s.nexts > count || s.result.as_ref().is_some_and(|r| r.0 == "init-error")
                } else {
                    s.first_next.is_some()
                }
            })
            .await;
        if let Some(seen) = seen {
            let hwm = if count > 0 { vm_hwm_kb(pid) } else { None };
            break Ok(Launched {
                started,
                init: seen.first_next.map(|t| t - started).unwrap_or_default(),
                cold: seen.answered.first().map(|t| *t - started),
                warm: seen.handed.iter().zip(&seen.answered).skip(1).map(|(h, a)| *a - *h).collect(),
                hwm_kb: hwm,
                result: seen.result.clone(),
            });
        }
        if let Ok(Some(status)) = child.try_wait() {
            break Err(format!("{} exited early ({status}); see target/bench/*.log", spec.label));
        }
        if Instant::now() > deadline {
            break Err(format!("{} did not get there within 90 s", spec.label));
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

struct Stack {
    moto: Moto,
    proxy: CountingProxy,
    api: AdminApi,
    /// `STRIPE_SECRET_ARN`, `STRIPE_WEBHOOK_SECRET_ARN`: the Rust functions read their
    /// secrets from (moto's) Secrets Manager at init, as in AWS.
    secrets: std::collections::BTreeMap<String, String>,
}

fn function_env(stack: &Stack, name: &str) -> Vec<(String, String)> {
    let env = &stack.api.env;
    let sim = &stack.api.sim;
    [
        ("TABLE_NAME", env.table.as_str()),
        ("EVENT_BUS_NAME", env.bus.as_str()),
        ("STRIPE_API_BASE", sim.handle.base_url()),
        ("JOB_CONTINUATION_BUS_NAME", env.bus.as_str()),
        ("STRIPE_PRICE_PREMIUM", stripe_sim::PREMIUM_MONTHLY),
        ("STRIPE_PRICE_ENTERPRISE", stripe_sim::ENTERPRISE_MONTHLY),
        ("MAIL_FROM", harness::env::MAIL_FROM),
        ("APP_BASE_URL", "https://app.logiscore.test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_ENDPOINT_URL", stack.moto.endpoint()),
        ("AWS_LAMBDA_FUNCTION_NAME", name),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[$LATEST]bench"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", &format!("/aws/lambda/{name}")),
        ("PYTHONDONTWRITEBYTECODE", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain(stack.secrets.clone())
    .collect()
}

fn rust_spec(stack: &Stack, name: &str) -> Spec {
    Spec { label: format!("rust {name}"), program: root().join("target/release").join(name), args: vec![], env: function_env(stack, name) }
}

fn python_spec(stack: &Stack, name: &str) -> Spec {
    let mut env = function_env(stack, name);
    env.push(("BENCH_MODE".into(), name.into()));
    // The reference implementation takes its secret from the environment.
    env.push(("STRIPE_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into()));
    Spec {
        label: format!("python {name}"),
        program: python_bin(),
        args: vec![root().join("bench/python/function.py").display().to_string()],
        env,
    }
}

// ---------------------------------------------------------------------------------------
// 1. Cold start

async fn cold_start(report: &mut Report, stack: &Stack) {
    println!("\n[1/6] cold start: exec → first GET /2018-06-01/runtime/invocation/next");
    let runs = env_or("BENCH_COLD_RUNS", 11);
    let python = python_spec(stack, "stripe-webhook");
    // One unmeasured run each, so both sides start from a warm page cache (and .pyc files).
    let _ = launch(&python, vec![]).await;
    let mut py = Vec::new();
    for _ in 0..runs {
        match launch(&python, vec![]).await {
            Ok(l) => py.push(l.init),
            Err(e) => report.notes.push(format!("python cold start: {e}")),
        }
    }
    let py_med = median(py.clone());
    let mut detail = String::from("| function | runs | median | min | max |\n| --- | ---: | ---: | ---: | ---: |\n");
    let _ = writeln!(
        detail,
        "| Python (imports {PYTHON_STACK}) | {} | {} | {} | {} |",
        py.len(),
        ms(py_med),
        ms(py.iter().min().copied().unwrap_or_default()),
        ms(py.iter().max().copied().unwrap_or_default())
    );
    for name in FUNCTIONS {
        let spec = rust_spec(stack, name);
        let _ = launch(&spec, vec![]).await;
        let mut times = Vec::new();
        for _ in 0..runs {
            match launch(&spec, vec![]).await {
                Ok(l) => times.push(l.init),
                Err(e) => report.notes.push(format!("{name} cold start: {e}")),
            }
        }
        if times.is_empty() {
            report.row(format!("cold start `{name}` (median of {runs})"), "failed", ms(py_med), "—", "≥ 30×", Some(false));
            continue;
        }
        let med = median(times.clone());
        let ratio = py_med.as_secs_f64() / med.as_secs_f64().max(1e-9);
        let _ = writeln!(
            detail,
            "| `{name}` (Rust, release) | {} | {} | {} | {} |",
            times.len(),
            ms(med),
            ms(*times.iter().min().unwrap()),
            ms(*times.iter().max().unwrap())
        );
        report.row(
            format!("cold start `{name}` (median of {})", times.len()),
            ms(med),
            ms(py_med),
            format!("{ratio:.0}×"),
            "≥ 30× faster",
            Some(ratio >= 30.0),
        );
    }
    report.sections.push(("1. Cold start (exec → first `invocation/next`)".into(), detail));
}

// ---------------------------------------------------------------------------------------
// 8. Cold request over TLS, the empty runtime, and cost

/// `spec` pointed at the TLS terminators, trusting the bench CA (and the platform's roots).
fn over_tls(mut spec: Spec, tls: &tls::Terminators, stripe_key: &str) -> Spec {
    let python = spec.label.starts_with("python");
    spec.env.retain(|(k, _)| k != "AWS_ENDPOINT_URL" && k != "STRIPE_API_BASE");
    spec.env.push(("AWS_ENDPOINT_URL".into(), tls.aws_url()));
    spec.env.push(("STRIPE_API_BASE".into(), tls.stripe_url()));
    spec.env.push(("SSL_CERT_FILE".into(), tls.ca_bundle.display().to_string()));
    // moto has no SES GetAccount, so both stacks fall back to this rate; the Rust sender also
    // spaces its sends by 1/rate within a process, which back-to-back invocations would hit.
    spec.env.push(("SES_SEND_RATE".into(), "1000".into()));
    if python {
        spec.env.push(("AWS_CA_BUNDLE".into(), tls.ca_bundle.display().to_string()));
        // The reference implementation takes its key from the environment.
        spec.env.push(("STRIPE_SECRET_KEY".into(), stripe_key.to_owned()));
    }
    spec
}

/// One pending e-mail for `user`, due now: what each `deliver-pending` invocation sends.
async fn queue_mail(store: std::sync::Arc<dyn shared::store::Store>, user: UserId, tag: String) {
    use shared::domain::{EmailContext, TrialEndingContext};
    let now = Utc::now();
    let email = EmailContext::from(TrialEndingContext {
        plan: shared::domain::Tier::Premium,
        days_remaining: 3,
        trial_end: now + ChronoDuration::days(3),
        has_payment_method: false,
    })
    .outbox_item(&user, &tag, now - ChronoDuration::seconds(1));
    let change = shared::store::Change { user_id: Some(user), outbox: vec![email], ..Default::default() };
    if let Err(e) = store.commit(change).await {
        eprintln!("bench: could not queue a mail: {e}");
    }
}

/// What one stack's runs of one function measured.
struct ColdRuns {
    init: Vec<Duration>,
    /// exec → its first connection to AWS or Stripe (the init's local work).
    local_init: Vec<Duration>,
    cold: Vec<Duration>,
    warm: Vec<Duration>,
    hwm_kb: Vec<u64>,
    answers: Vec<String>,
    units_per_request: Units,
    aws_per_request: f64,
    stripe_per_request: f64,
}

/// The smallest Lambda memory setting for a peak RSS: 1.5× the peak (headroom for a bigger
/// request or a GC), rounded up to 64 MB, at least Lambda's 128 MB minimum.
fn lambda_memory_mb(peak_kb: u64) -> u64 {
    let wanted = (peak_kb as f64 / 1024.0 * 1.5 / 64.0).ceil() as u64 * 64;
    wanted.max(128)
}

/// AWS Lambda, arm64, us-east-1, on-demand, first pricing tier, as published on the AWS
/// Lambda pricing page (read 2026-12-01): per GB-second and per request.
const LAMBDA_ARM64_GB_SECOND_USD: f64 = 0.000_013_333_4;
const LAMBDA_REQUEST_USD: f64 = 0.000_000_2;
/// DynamoDB on-demand, us-east-1, per request unit (published prices, read 2026-12-01).
const DDB_RRU_USD: f64 = 0.125 / 1e6;
const DDB_WRU_USD: f64 = 0.625 / 1e6;

async fn cold_request(report: &mut Report, stack: &Stack, user: &str, invoice_paid: &Value) {
    println!("\n[8/8] cold request over TLS: exec → first answer, the empty runtime, and cost");
    let runs = env_or("BENCH_COLD_RUNS", 11);
    let warm_requests = env_or("BENCH_WARM_REQUESTS", 10);
    let tls = match tls::start(&stack.proxy.url, stack.api.sim.handle.base_url(), &logs_dir().join("tls")).await {
        Ok(t) => t,
        Err(e) => {
            report.notes.push(format!("cold request: no TLS terminators ({e}); section skipped"));
            return;
        }
    };
    let stripe_key = stack.api.sim.handle.secret_key().to_owned();

    // The floor: an empty lambda_runtime binary, same profile, same machine, same run.
    let empty = Spec {
        label: "rust empty-runtime".into(),
        program: root().join("target/release/empty-runtime"),
        args: vec![],
        env: function_env(stack, "empty-runtime"),
    };
    let _ = launch(&empty, vec![]).await;
    let mut floor = Vec::new();
    for _ in 0..runs {
        match launch(&empty, vec![]).await {
            Ok(l) => floor.push(l.init),
            Err(e) => report.notes.push(format!("empty runtime: {e}")),
        }
    }
    let floor = median(floor);

    let mut detail = String::from(
        "| function | stack | runs | init (exec → first `next`) | of which before the first connection | cold request (exec → first answer) | of which the first request | warm request (median of runs × warm) | peak RSS | answer |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    let _ = writeln!(detail, "| empty `lambda_runtime` binary | Rust | {runs} | {} | — | — | — | — | — | — |", ms(floor));
    let mut cost = String::from(
        "| function (per 1 M requests) | stack | Lambda memory | billed ms (warm median) | Lambda GB-s | Lambda USD (GB-s + requests) | DynamoDB RRU / WRU (estimated) | DynamoDB USD | other AWS requests | Stripe calls |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let user_id = UserId::parse(user).expect("bench user id");
    for name in FUNCTIONS {
        let mut measured: Vec<(&str, ColdRuns)> = Vec::new();
        for (stack_name, base) in [("Rust", rust_spec(stack, name)), ("Python", python_spec(stack, name))] {
            let spec = over_tls(base, &tls, &stripe_key);
            let mut out = ColdRuns {
                init: vec![],
                local_init: vec![],
                cold: vec![],
                warm: vec![],
                hwm_kb: vec![],
                answers: vec![],
                units_per_request: Default::default(),
                aws_per_request: 0.0,
                stripe_per_request: 0.0,
            };
            let (mut invocations, mut units, mut aws_requests, mut stripe_requests) = (0u64, Units::default(), 0u64, 0u64);
            // One unmeasured run: page cache, .pyc files.
            for run in 0..=runs {
                let events: Vec<String> = (0..=warm_requests)
                    .map(|i| match name {
                        "admin-api" => {
                            apigw::event("GET", &format!("/users/{user}/subscription"), None, Some(admin_claims("bench-admin")), None, &[])
                                .to_string()
                        }
                        "stripe-webhook" => {
                            let mut fresh = invoice_paid.clone();
                            fresh["id"] = json!(format!("evt_bench_cold_{stack_name}_{run}_{i}_{}", Utc::now().timestamp_micros()));
                            signed_webhook_event(&fresh).to_string()
                        }
                        _ => json!({"job": "deliver-pending"}).to_string(),
                    })
                    .collect();
                let before: Option<runtime::BeforeEach> = (name == "expiry-jobs").then(|| {
                    let store = stack.api.env.store.clone();
                    let user = user_id.clone();
                    let tag = format!("cold-{stack_name}-{run}-{}", Utc::now().timestamp_micros());
                    std::sync::Arc::new(move |i: usize| {
                        let (store, user, tag) = (store.clone(), user.clone(), format!("{tag}-{i}"));
                        Box::pin(queue_mail(store, user, tag)) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
                    }) as runtime::BeforeEach
                });
                reset(stack);
                let launched = launch_with(&spec, events, before).await;
                let trips = Trips::take(stack);
                match launched {
                    Ok(l) if run > 0 => {
                        out.init.push(l.init);
                        let first_connection = [tls.aws.first_accepted_after(l.started), tls.stripe.first_accepted_after(l.started)]
                            .into_iter()
                            .flatten()
                            .min();
                        // A process that connects only for its first request (the Python stack) did all of its init locally.
                        out.local_init.push(first_connection.map(|t| t - l.started).filter(|d| *d < l.init).unwrap_or(l.init));
                        out.cold.extend(l.cold);
                        out.warm.extend(l.warm.iter().copied());
                        out.hwm_kb.extend(l.hwm_kb);
                        if let Some((kind, body)) = &l.result {
                            out.answers.push(format!("{kind}: {}", summarize(body)));
                        }
                        // Everything the process asked of the servers, init included, per invocation.
                        invocations += warm_requests as u64 + 1;
                        let u = stack.proxy.units();
                        units.read += u.read;
                        units.write += u.write;
                        aws_requests += trips.ddb.values().sum::<u64>() + trips.other_aws.values().sum::<u64>();
                        stripe_requests += trips.stripe_total();
                    }
                    Ok(_) => {}
                    Err(e) => report.notes.push(format!("cold request {stack_name} {name}: {e}")),
                }
            }
            if invocations > 0 {
                let n = invocations as f64;
                out.units_per_request = Units { read: units.read / n, write: units.write / n };
                out.aws_per_request = aws_requests as f64 / n;
                out.stripe_per_request = stripe_requests as f64 / n;
            }
            measured.push((stack_name, out));
        }
        let [(_, rust), (_, python)] = &measured[..] else { continue };
        for (stack_name, m) in &measured {
            let answer = m.answers.first().cloned().unwrap_or_else(|| "none".into()).replace('|', "\\|");
            let (init, cold) = (median(m.init.clone()), median(m.cold.clone()));
            let _ = writeln!(
                detail,
                "| `{name}` | {stack_name} | {} | {} | {} | {} | {} | {} | {} | {answer} |",
                m.cold.len(),
                ms(init),
                ms(median(m.local_init.clone())),
                ms(cold),
                ms(cold.saturating_sub(init)),
                ms(median(m.warm.clone())),
                m.hwm_kb.iter().max().map(|k| mib(*k)).unwrap_or("—".into()),
            );
        }
        let (r_cold, p_cold) = (median(rust.cold.clone()), median(python.cold.clone()));
        if rust.cold.is_empty() || python.cold.is_empty() {
            report.row(format!("cold request `{name}` over TLS"), "failed", "failed", "—", "≥ 10× faster", Some(false));
        } else {
            let ratio = p_cold.as_secs_f64() / r_cold.as_secs_f64().max(1e-9);
            report.row(
                format!("cold request `{name}` over TLS (exec → first answer, median of {})", rust.cold.len()),
                ms(r_cold),
                ms(p_cold),
                format!("{ratio:.0}×"),
                "≥ 10× faster",
                Some(ratio >= 10.0),
            );
        }
        let (r_init, r_local) = (median(rust.init.clone()), median(rust.local_init.clone()));
        let floor_s = floor.as_secs_f64().max(1e-9);
        report.row(
            format!("init `{name}` ÷ empty `lambda_runtime` binary (exec → first `next`, with its Secrets Manager read and warm-up)"),
            ms(r_init),
            format!("{} (empty)", ms(floor)),
            format!("{:.1}×", r_init.as_secs_f64() / floor_s),
            "≤ 2× the empty binary",
            Some(r_init.as_secs_f64() / floor_s <= 2.0),
        );
        report.row(
            format!("init `{name}` before its first connection ÷ empty binary (the init's local work)"),
            ms(r_local),
            format!("{} (empty)", ms(floor)),
            format!("{:.1}×", r_local.as_secs_f64() / floor_s),
            "≤ 2× the empty binary",
            Some(r_local.as_secs_f64() / floor_s <= 2.0),
        );
        for (stack_name, m) in &measured {
            let Some(peak) = m.hwm_kb.iter().max().copied() else { continue };
            let memory = lambda_memory_mb(peak);
            let billed_ms = median(m.warm.clone()).as_secs_f64() * 1000.0;
            let billed_ms = billed_ms.ceil().max(1.0);
            let gb_s = billed_ms / 1000.0 * memory as f64 / 1024.0 * 1e6;
            let lambda_usd = gb_s * LAMBDA_ARM64_GB_SECOND_USD + 1e6 * LAMBDA_REQUEST_USD;
            let u = m.units_per_request;
            let ddb_usd = 1e6 * (u.read * DDB_RRU_USD + u.write * DDB_WRU_USD);
            let _ = writeln!(
                cost,
                "| `{name}` | {stack_name} | {memory} MB | {billed_ms:.0} | {gb_s:.0} | {lambda_usd:.2} | {:.2} M / {:.2} M | {ddb_usd:.2} | {:.2} M | {:.2} M |",
                u.read,
                u.write,
                m.aws_per_request,
                m.stripe_per_request,
            );
        }
    }
    report
        .sections
        .push(("8. Cold request over TLS, and the physical limit (TLS terminators with a CA made for the run)".to_owned(), detail));
    report.sections.push(("8b. Cost per million requests (from the measured warm durations and peak RSS)".into(), cost));
}

// ---------------------------------------------------------------------------------------
// 2. Webhook CPU

fn rust_webhook_cpu(payload: &[u8], iterations: usize) -> Duration {
    let secrets = vec![Secret::new(WEBHOOK_SECRET)];
    let now = Utc::now().timestamp();
    let header = signature::sign_header(payload, WEBHOOK_SECRET, now);
    // The route table: event type → handler index (what `processor` matches on).
    let routes: std::collections::HashMap<&str, usize> = [
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.paid",
        "invoice.payment_failed",
        "checkout.session.completed",
    ]
    .into_iter()
    .enumerate()
    .map(|(i, t)| (t, i))
    .collect();
    let mut hits = [0u64; 7];
    let mut run = |n: usize| {
        for _ in 0..n {
            let body = std::hint::black_box(payload);
            signature::verify(body, Some(&header), &secrets, now, 300).expect("valid signature");
            let event = shared::usecase::stripe_event::decode(body).expect("decodes");
            let route = routes.get(event.kind.as_str()).copied().unwrap_or(6);
            hits[route] += 1;
            std::hint::black_box(&event);
        }
    };
    run(iterations / 10);
    let started = Instant::now();
    run(iterations);
    let elapsed = started.elapsed();
    assert!(hits[1] > 0, "routed to customer.subscription.updated");
    elapsed / iterations as u32
}

/// A `customer.subscription.updated` event exactly as stripe-sim delivered it (compact JSON, the
/// body the webhook verifies): the bench's own trialing subscription, then a metadata change.
async fn sim_subscription_updated(sim: &harness::sim::Sim) -> Result<Vec<u8>, String> {
    let customer = sim.post("/v1/customers", &[("email", "cpu-bench@example.com")]).await;
    let customer = customer["id"].as_str().ok_or("sim: no customer id")?.to_owned();
    let price = sim.handle.seed_prices().premium_monthly;
    let sub = sim.post("/v1/subscriptions", &[("customer", &customer), ("items[0][price]", &price), ("trial_period_days", "14")]).await;
    let sub = sub["id"].as_str().ok_or("sim: no subscription id")?.to_owned();
    sim.post(&format!("/v1/subscriptions/{sub}"), &[("metadata[plan_note]", "cpu-bench")]).await;
    let event = sim
        .events()
        .await
        .into_iter()
        .rev()
        .find(|e| e["type"] == "customer.subscription.updated" && e["data"]["object"]["id"] == sub.as_str())
        .ok_or("sim emitted no customer.subscription.updated")?;
    // The sim signs and sends `serde_json::to_string(event)`: compact, like Stripe's API bodies.
    serde_json::to_vec(&event).map_err(|e| e.to_string())
}

async fn webhook_cpu(report: &mut Report, stack: &Stack) {
    println!("\n[2/6] webhook CPU: verify + parse + route one customer.subscription.updated event");
    let fixture = root().join("events/stripe/customer.subscription.updated.json");
    let mut payloads = Vec::new();
    match sim_subscription_updated(&stack.api.sim).await {
        Ok(body) => {
            let path = root().join("target/bench/customer.subscription.updated.sim.json");
            match std::fs::write(&path, &body) {
                Ok(()) => payloads.push(("as stripe-sim delivers it, compact", path)),
                Err(e) => report.notes.push(format!("webhook CPU: cannot write the sim's event: {e}")),
            }
        }
        Err(e) => report.notes.push(format!("webhook CPU: no event from stripe-sim ({e}); only the fixture is measured")),
    }
    payloads.push(("Stripe's sample, pretty-printed", fixture));
    let iterations = env_or("BENCH_CPU_ITERATIONS", 100_000);
    let py_iterations = env_or("BENCH_PY_CPU_ITERATIONS", 20_000);
    for (label, path) in payloads {
        let payload = match std::fs::read(&path) {
            Ok(p) => p,
            Err(e) => {
                report.notes.push(format!("webhook CPU: cannot read {}: {e}", path.display()));
                continue;
            }
        };
        let rust = rust_webhook_cpu(&payload, iterations);
        let output = Command::new(python_bin())
            .arg(root().join("bench/python/webhook_cpu.py"))
            .arg(&path)
            .arg(WEBHOOK_SECRET)
            .arg(py_iterations.to_string())
            .output();
        let py = match output {
            Ok(o) if o.status.success() => serde_json::from_slice::<Value>(&o.stdout).ok().and_then(|v| v["per_event_ns"].as_f64()),
            Ok(o) => {
                report.notes.push(format!("python webhook CPU failed: {}", String::from_utf8_lossy(&o.stderr)));
                None
            }
            Err(e) => {
                report.notes.push(format!("python webhook CPU failed: {e}"));
                None
            }
        };
        let rust_ns = rust.as_nanos() as f64;
        let (py_text, ratio_text, ok) = match py {
            Some(p) => (format!("{:.1} µs", p / 1000.0), format!("{:.0}×", p / rust_ns), Some(p / rust_ns >= 20.0)),
            None => ("failed".into(), "—".into(), Some(false)),
        };
        report.row(
            format!("webhook CPU per event ({} B, {label}; Rust ×{iterations}, Python ×{py_iterations})", payload.len()),
            format!("{:.1} µs", rust_ns / 1000.0),
            py_text,
            ratio_text,
            "≥ 20× faster",
            ok,
        );
    }
}

// ---------------------------------------------------------------------------------------
// 3. Peak memory

fn signed_webhook_event(event: &Value) -> Value {
    let body = event.to_string();
    let header = signature::sign_header(body.as_bytes(), WEBHOOK_SECRET, Utc::now().timestamp());
    apigw::event("POST", "/stripe/webhook", None, None, Some(event), &[("stripe-signature", &header)])
}

async fn peak_memory(report: &mut Report, stack: &Stack, user: &str, invoice_paid: &Value) {
    println!("\n[3/6] peak memory (VmHWM) handling one request through the bench's Runtime API");
    let mut detail = String::from(
        "| function | request | Rust VmHWM | Rust answer | Python VmHWM | Python answer |\n| --- | --- | ---: | --- | ---: | --- |\n",
    );
    for (i, name) in FUNCTIONS.iter().enumerate() {
        let (what, event) = match *name {
            "admin-api" => (
                format!("GET /users/{user}/subscription"),
                apigw::event("GET", &format!("/users/{user}/subscription"), None, Some(admin_claims("bench-admin")), None, &[]),
            ),
            "stripe-webhook" => {
                let mut fresh = invoice_paid.clone();
                fresh["id"] = json!(format!("evt_bench_rss_{i}_{}", Utc::now().timestamp_millis()));
                ("signed invoice.paid (new event id)".to_owned(), signed_webhook_event(&fresh))
            }
            _ => ("{\"job\":\"deliver-pending\"}".to_owned(), json!({"job": "deliver-pending"})),
        };
        // Python gets its own event id so it is not a duplicate either.
        let mut py_event = event.clone();
        if *name == "stripe-webhook" {
            let mut fresh = invoice_paid.clone();
            fresh["id"] = json!(format!("evt_bench_rss_py_{}", Utc::now().timestamp_millis()));
            py_event = signed_webhook_event(&fresh);
        }
        let rust = launch(&rust_spec(stack, name), vec![event.to_string()]).await;
        let python = launch(&python_spec(stack, name), vec![py_event.to_string()]).await;
        let answer = |l: &Result<Launched, String>| match l {
            Ok(l) => l.result.as_ref().map(|(k, b)| format!("{k}: {}", summarize(b))).unwrap_or_else(|| "none".into()),
            Err(e) => e.clone(),
        };
        let kb = |l: &Result<Launched, String>| l.as_ref().ok().and_then(|l| l.hwm_kb);
        let (r, p) = (kb(&rust), kb(&python));
        let _ = writeln!(
            detail,
            "| `{name}` | {what} | {} | {} | {} | {} |",
            r.map(mib).unwrap_or("—".into()),
            answer(&rust).replace('|', "\\|"),
            p.map(mib).unwrap_or("—".into()),
            answer(&python).replace('|', "\\|")
        );
        match (r, p) {
            (Some(r), Some(p)) => {
                let ratio = r as f64 / p as f64;
                report.row(
                    format!("peak memory `{name}` (one request)"),
                    mib(r),
                    mib(p),
                    format!("{:.2} (1/{:.0})", ratio, 1.0 / ratio),
                    "≤ ¼ of Python",
                    Some(ratio <= 0.25),
                )
            }
            _ => report.row(
                format!("peak memory `{name}` (one request)"),
                r.map(mib).unwrap_or("failed".into()),
                p.map(mib).unwrap_or("failed".into()),
                "—",
                "≤ ¼ of Python",
                Some(false),
            ),
        }
    }
    report.sections.push(("3. Peak memory (VmHWM after one handled request)".into(), detail));
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

fn summarize(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()));
    let text = if let Some(code) = v.get("statusCode") {
        format!("HTTP {code}")
    } else if v.get("job").is_some() {
        format!("job {} items_read {}", v["job"], v["counts"]["items_read"])
    } else {
        let s = v.to_string();
        s.chars().take(80).collect()
    };
    text
}

// ---------------------------------------------------------------------------------------
// 4. Round trips

#[derive(Default, Clone)]
struct Trips {
    ddb: BTreeMap<String, u64>,
    other_aws: BTreeMap<String, u64>,
    stripe: BTreeMap<String, u64>,
}

const DDB_READS: &[&str] = &["GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"];

impl Trips {
    fn take(stack: &Stack) -> Trips {
        let mut t = Trips::default();
        for (k, v) in stack.proxy.counts() {
            match k.strip_prefix("DynamoDB_20120810.") {
                Some(op) => {
                    t.ddb.insert(op.to_owned(), v);
                }
                None => {
                    t.other_aws.insert(k, v);
                }
            }
        }
        t.stripe = stack.api.sim.handle.request_counts().into_iter().filter(|(_, v)| *v > 0).collect();
        t
    }
    fn reads(&self) -> u64 {
        self.ddb.iter().filter(|(k, _)| DDB_READS.contains(&k.as_str())).map(|(_, v)| v).sum()
    }
    fn writes(&self) -> u64 {
        self.ddb.iter().filter(|(k, _)| !DDB_READS.contains(&k.as_str()) && k.as_str() != "DescribeTable").map(|(_, v)| v).sum()
    }
    fn op(&self, name: &str) -> u64 {
        self.ddb.get(name).copied().unwrap_or(0)
    }
    fn stripe_total(&self) -> u64 {
        self.stripe.values().sum()
    }
}

fn fmt_map(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "—".into();
    }
    m.iter().map(|(k, v)| format!("{k} ×{v}")).collect::<Vec<_>>().join(", ")
}

fn reset(stack: &Stack) {
    stack.proxy.reset();
    stack.api.sim.handle.reset_request_counts();
}

/// Design minimum per operation: (max DynamoDB reads, exact TransactWriteItems, max other DynamoDB writes, max Stripe requests).
struct Minimum {
    reads: u64,
    transactions: u64,
    other_writes: u64,
    stripe: Option<u64>,
    why: &'static str,
}

fn webhook_request(payload: &[u8]) -> axum::extract::Request {
    let header = signature::sign_header(payload, WEBHOOK_SECRET, Utc::now().timestamp());
    harness::webhook::request(payload.to_vec(), Some(header))
}

/// Returns the `invoice.paid` event used (for the memory section).
async fn round_trips(report: &mut Report, stack: &Stack, user: &str) -> Value {
    println!("\n[4/6] round trips per operation, counted at moto (proxy, X-Amz-Target) and stripe-sim (request_counts)");
    let api = &stack.api;
    let mut detail = String::from(
        "| operation | answer | DynamoDB (by X-Amz-Target) | other AWS | Stripe (stripe-sim routes) | design minimum | |\n| --- | --- | --- | --- | --- | --- | :---: |\n",
    );
    let mut record = |report: &mut Report, name: &str, answer: String, t: &Trips, min: Option<Minimum>| {
        let (ok, min_text) = match &min {
            Some(m) => {
                let ok = t.reads() <= m.reads
                    && t.op("TransactWriteItems") == m.transactions
                    && t.writes() - t.op("TransactWriteItems") <= m.other_writes
                    && m.stripe.is_none_or(|s| t.stripe_total() <= s);
                let stripe = m.stripe.map(|s| format!(", Stripe ≤ {s}")).unwrap_or_default();
                let bound = |v: u64| if v == u64::MAX { "any".to_owned() } else { v.to_string() };
                (
                    Some(ok),
                    format!(
                        "reads ≤ {}, TransactWriteItems = {}, other writes ≤ {}{stripe} ({})",
                        bound(m.reads),
                        m.transactions,
                        bound(m.other_writes),
                        m.why
                    ),
                )
            }
            None => (None, "—".into()),
        };
        let mark = match ok {
            Some(true) => "✅",
            Some(false) => "❌",
            None => "—",
        };
        let _ = writeln!(
            detail,
            "| {name} | {answer} | {} | {} | {} | {min_text} | {mark} |",
            fmt_map(&t.ddb),
            fmt_map(&t.other_aws),
            fmt_map(&t.stripe)
        );
        report.row(
            format!("round trips: {name}"),
            format!("DDB {}R/{}W (TWI {}), Stripe {}", t.reads(), t.writes(), t.op("TransactWriteItems"), t.stripe_total()),
            "—",
            "—",
            min.as_ref()
                .map(|m| {
                    let reads = if m.reads == u64::MAX { String::new() } else { format!("R ≤ {}, ", m.reads) };
                    let stripe = m.stripe.map(|s| format!(", Stripe ≤ {s}")).unwrap_or_default();
                    format!("{reads}TWI = {}{stripe}", m.transactions)
                })
                .unwrap_or("(info)".into()),
            ok,
        );
    };

    // Admin calls, through the real router (tower oneshot), against moto and stripe-sim.
    let admin_ops: Vec<(&str, String, Option<Value>, Option<Minimum>)> = vec![
        ("PUT", format!("/users/{user}"), Some(json!({"email": format!("{user}@example.com"), "full_name": "Bench User"})), None),
        (
            "PUT",
            format!("/users/{user}/subscription"),
            Some(
                json!({"tier": "premium", "duration_months": 1, "is_paid": true, "auto_renew": true, "payment_method_id": "pm_card_visa", "comment": "bench"}),
            ),
            Some(Minimum {
                reads: u64::MAX,
                transactions: 1,
                other_writes: u64::MAX,
                stripe: Some(2),
                why: "a new customer created with its card, then the subscription, charged within the create; one transaction",
            }),
        ),
        (
            "GET",
            format!("/users/{user}/subscription"),
            None,
            Some(Minimum { reads: 1, transactions: 0, other_writes: 0, stripe: Some(0), why: "one GetItem" }),
        ),
        ("POST", format!("/users/{user}/subscription/cancel"), Some(json!({})), None),
        ("POST", format!("/users/{user}/subscription/reactivate"), Some(json!({})), None),
        (
            "GET",
            format!("/users/{user}/subscription/history"),
            None,
            Some(Minimum { reads: 1, transactions: 0, other_writes: 0, stripe: Some(0), why: "one Query" }),
        ),
    ];
    for (method, path, body, min) in admin_ops {
        reset(stack);
        let answer = api.call(method, &path, body).await;
        // Outbox delivery may continue after the answer; let it settle before counting.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t = Trips::take(stack);
        let min = min.or_else(|| {
            (method != "GET" && path.contains("/subscription")).then_some(Minimum {
                reads: u64::MAX,
                transactions: 1,
                other_writes: u64::MAX,
                stripe: None,
                why: "the state change is one transaction",
            })
        });
        record(report, &format!("admin `{method} {}`", path.replace(user, "{id}")), format!("HTTP {}", answer.status.as_u16()), &t, min);
    }

    // The webhook: real handler, events stripe-sim emitted for the subscription created above.
    let events = api.sim.events().await;
    let sub_id = api.call("GET", &format!("/users/{user}/subscription"), None).await.body["stripe_subscription_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let about = |e: &Value| {
        let o = &e["data"]["object"];
        o["id"] == json!(sub_id)
            || o["subscription"] == json!(sub_id)
            || o["parent"]["subscription_details"]["subscription"] == json!(sub_id)
    };
    let invoice_paid = events.iter().rev().find(|e| e["type"] == "invoice.paid" && about(e)).cloned();
    let sub_updated = events.iter().rev().find(|e| e["type"] == "customer.subscription.updated" && about(e)).cloned();
    let webhook = harness::webhook::app(&api.env, api.sim.stripe_config(), &[WEBHOOK_SECRET]);
    // Design minimum: the ledger and the owner's mappings in one read, then the record;
    // one Stripe read (the invoice with its subscription expanded); one transaction.
    let first = Minimum {
        reads: 2,
        transactions: 1,
        other_writes: 0,
        stripe: Some(1),
        why: "ledger + mappings (one BatchGetItem), subscription; one Stripe read; one write",
    };
    let Some(invoice_paid) = invoice_paid else {
        report.notes.push(format!("stripe-sim emitted no invoice.paid for {sub_id}; webhook round trips not measured"));
        report.sections.push(("4. Round trips".into(), detail));
        return json!({});
    };
    let mut cases: Vec<(String, Value, Minimum)> = vec![
        ("webhook `invoice.paid` (first delivery)".into(), invoice_paid.clone(), first),
        (
            "webhook `invoice.paid` (duplicate delivery)".into(),
            invoice_paid.clone(),
            Minimum { reads: 1, transactions: 0, other_writes: 0, stripe: Some(0), why: "the ledger check only" },
        ),
    ];
    if let Some(updated) = sub_updated {
        cases.push((
            "webhook `customer.subscription.updated` (first delivery)".into(),
            updated,
            Minimum { reads: 2, transactions: 1, other_writes: 0, stripe: Some(1), why: "as invoice.paid (the subscription is the read)" },
        ));
    }
    for (name, event, min) in cases {
        let payload = serde_json::to_vec(&event).expect("json");
        reset(stack);
        let reply = harness::webhook::call(&webhook, webhook_request(&payload)).await;
        let outcome = reply.json()["outcome"].as_str().unwrap_or_default().to_owned();
        let t = Trips::take(stack);
        record(report, &name, format!("HTTP {} {outcome}", reply.status), &t, Some(min));
    }
    report.sections.push((
        "4. Round trips (counted at the servers)".into(),
        format!(
            "DynamoDB requests counted by `X-Amz-Target` at a counting proxy in front of moto server; Stripe requests by stripe-sim's `request_counts()`. \
             Admin calls go through `admin_api::router` (tower `oneshot`, API Gateway v2 events as `lambda_http` converts them) and include the \
             inline outbox delivery (SES, EventBridge, outbox updates); the webhook goes through `stripe_webhook::app`'s router the same way.\n\n{detail}"
        ),
    ));
    invoice_paid
}

// ---------------------------------------------------------------------------------------
// 5. Job scaling

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, 6, 0, 0).unwrap()
}

fn granted(user: &UserId, status: SubscriptionStatus, end: DateTime<Utc>) -> Subscription {
    Subscription { status, ..harness::records::granted(user, end) }
}

/// The store's item format for a current subscription (as `shared::store::items::subscription`).
fn subscription_item(sub: &Subscription) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    let mut item: std::collections::HashMap<String, A> = serde_dynamo::to_item(sub).expect("item");
    item.insert("pk".into(), A::S(keys::user_pk(&sub.user_id)));
    item.insert("sk".into(), A::S(keys::SUBSCRIPTION_SK.into()));
    item.insert("entity".into(), A::S("subscription".into()));
    if let (true, Some(end)) = (sub.status.is_live(), sub.end_date) {
        let (pk, sk) = keys::expiry_keys(&sub.user_id, end);
        item.insert("exp_pk".into(), A::S(pk));
        item.insert("exp_sk".into(), A::S(sk));
    }
    item
}

async fn job_scaling(report: &mut Report, stack: &Stack) {
    let sim = &stack.api.sim;
    println!("\n[5/6] job scaling: `daily` with N due subscriptions in tables of 1×, 10×, 100× N");
    let n = env_or("BENCH_JOB_DUE", 20);
    let now = base_time();
    let mut detail = String::from(
        "| table size | due (warn + lapsed) | items read | due work (design minimum) | Δ | DynamoDB requests | moto time per request | daily wall time | outside DynamoDB | summary |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    let mut reads_by_size = Vec::new();
    for factor in [1usize, 10, 100] {
        let env = TestEnv::new().await;
        let total = n * factor;
        let load_started = Instant::now();
        // Due: half end inside the 3-day warning window, half lapsed (ended 3 days ago, still live).
        for i in 0..n {
            let user = UserId::parse(&format!("due-{factor}-{i}")).expect("user id");
            let sub = if i % 2 == 0 {
                granted(&user, SubscriptionStatus::Trial, now + ChronoDuration::days(1) + ChronoDuration::minutes(i as i64))
            } else {
                granted(&user, SubscriptionStatus::Trial, now - ChronoDuration::days(3) + ChronoDuration::minutes(i as i64))
            };
            harness::jobs::put_profile(&env, &user).await;
            env.store.commit(harness::records::created(&sub)).await.expect("commit due subscription");
        }
        // Not due: live and ending months ahead (in the index, outside every window), or no longer live.
        let others: Vec<_> = (0..total - n)
            .map(|i| {
                let user = UserId::parse(&format!("other-{factor}-{i}")).expect("user id");
                let sub = match i % 3 {
                    0 => granted(&user, SubscriptionStatus::Active, now + ChronoDuration::days(60 + (i % 300) as i64)),
                    1 => granted(&user, SubscriptionStatus::Canceled, now - ChronoDuration::days(3)),
                    _ => granted(&user, SubscriptionStatus::Expired, now + ChronoDuration::days(1)),
                };
                aws_sdk_dynamodb::types::WriteRequest::builder()
                    .put_request(
                        aws_sdk_dynamodb::types::PutRequest::builder().set_item(Some(subscription_item(&sub))).build().expect("put"),
                    )
                    .build()
            })
            .collect();
        for chunk in others.chunks(25) {
            let mut pending = chunk.to_vec();
            for _ in 0..10 {
                let out = env.ddb.batch_write_item().request_items(&env.table, pending.clone()).send().await.expect("batch write");
                pending = out.unprocessed_items.and_then(|mut m| m.remove(&env.table)).unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
            }
        }
        let load = load_started.elapsed();
        let jobs = harness::jobs::jobs(&env, sim.stripe_config(), expiry_jobs::JobSettings::default());
        stack.proxy.reset();
        let started = Instant::now();
        let summary = harness::jobs::run(&jobs, expiry_jobs::JobName::Daily, now).await;
        let wall = started.elapsed();
        let (ddb_calls, ddb_time) = stack.proxy.totals("DynamoDB_");
        let per_call = ddb_time / u32::try_from(ddb_calls.max(1)).unwrap_or(u32::MAX);
        let c = summary.counts;
        // What `daily` must read at least: each due subscription once per step that selects it
        // (warnings, expire), plus each outbox item it delivers (reconcile reads Stripe's event log, not the index).
        let due_work = (c.warned + c.reminded + c.already_warned)
            + (c.expired + c.synced + c.deferred)
            + (c.delivered + c.retry_later + c.failed + c.dead_lettered);
        let delta = (c.items_read as f64 - due_work as f64) / due_work.max(1) as f64;
        reads_by_size.push((factor, total, c.items_read, due_work, delta, wall, ddb_calls, per_call, c.errors));
        let _ = writeln!(
            detail,
            "| {total} ({factor}×) | {n} | {} | {due_work} | {:+.1}% | {ddb_calls} | {} | {} | {} | warned {}, expired {}, delivered {}, retry_later {}, errors {} (load {:.1} s) |",
            c.items_read,
            delta * 100.0,
            ms(per_call),
            ms(wall),
            ms(wall.saturating_sub(ddb_time)),
            c.warned,
            c.expired,
            c.delivered,
            c.retry_later,
            c.errors,
            load.as_secs_f64()
        );
    }
    let requests: Vec<u64> = reads_by_size.iter().map(|r| r.6).collect();
    let same_requests = if requests.windows(2).all(|w| w[0] == w[1]) {
        format!(" — {} at every size", requests.first().copied().unwrap_or(0))
    } else {
        format!(" — {requests:?} by size")
    };
    for (factor, total, read, due, delta, wall, calls, per_call, errors) in &reads_by_size {
        report.row(
            format!("`daily` items read, N={n} due in {total} ({factor}×)"),
            format!("{read} read, {calls} DynamoDB requests, {} ({} per request at moto)", ms(*wall), ms(*per_call)),
            format!("{due} due work"),
            format!("{:+.1}%", delta * 100.0),
            "within 5% of due work",
            // An item that failed was read but not handled: the run does not count.
            Some(delta.abs() <= 0.05 && *errors == 0),
        );
    }
    report.sections.push((
        "5. Job scaling (`daily`, `items_read` from the run summary)".into(),
        format!(
            "N due subscriptions (granted, no Stripe id: half ending inside the 3-day warning window, half lapsed past the 24 h grace), \
             plus not-due subscriptions (a third live but ending 60+ days ahead — in the expiry index but outside every window — and two thirds \
             canceled/expired, outside the sparse index), written with `BatchWriteItem` in the store's item format. `daily` runs \
             expiry-warnings, expire-lapsed, deliver-pending (real SES/EventBridge at moto) and reconcile in one invocation. \
             \"Due work\" = warned + expired + outbox items handled (reconcile reads Stripe's event log, not the index, see section 7). \
             DynamoDB requests are counted at the proxy{same_requests}; they are forwarded to moto one at a time \
             (see `bench/src/proxy.rs`: moto's `TransactWriteItems` is not safe under concurrent writes). The wall time still grows \
             with the table because moto's own time per request does (its queries and transactions walk or copy the whole table in \
             Python); DynamoDB's latency does not depend on table size, so on AWS the wall time follows the request count. \
             \"Outside DynamoDB\" is the wall time less the time moto spent answering DynamoDB requests: our code, plus SES and EventBridge calls where they did not overlap one, \
             plus the wait for send slots: deliver-pending paces its mails to the account's SES rate (moto has no `GetAccount`, \
             so the configured `SES_SEND_RATE`, 10 per second), and every send claims its slot with one more DynamoDB request.\n\n{detail}"
        ),
    ));
}

// ---------------------------------------------------------------------------------------
// 7. Reconcile at scale: the missed-event replay and the full sweep

/// A paid subscription at the sim for `name`, made as the admin API's create makes it.
async fn stripe_paid(billing: &shared::stripe::StripeBilling, name: &str) -> String {
    use shared::billing::{BillingGateway, CustomerDetails, IdempotencyKey, NewSubscription, NewSubscriptionKind};
    let user = UserId::parse(name).expect("user id");
    let key = |step: &str| IdempotencyKey::new(format!("bench-{name}-{step}"));
    let details = CustomerDetails { user_id: user.clone(), email: format!("{name}@example.com"), name: None };
    let created = billing.create_customer(&details, Some("pm_card_visa"), &key("customer")).await.expect("customer");
    let (customer, payment_method) = (created.id, created.payment_method.expect("card"));
    let new = NewSubscription {
        customer,
        user_id: user,
        tier: shared::domain::Tier::Premium,
        kind: NewSubscriptionKind::Paid { payment_method, cancel_at: None },
        operation_id: format!("op-{name}"),
    };
    billing.create_subscription(&new, &key("subscription")).await.expect("subscription").snapshot.subscription_id.to_string()
}

async fn reconcile_scaling(report: &mut Report, stack: &Stack) {
    use shared::usecase::{
        catch_up::{CatchUp, Replay, ReplaySettings, Sweep},
        stripe_event::Processor,
    };
    // Sizes as multiples of the smallest (which is the number of changes). 1×, 5×, 25× by
    // default, not 100×: every subscription the first sweep records is one
    // TransactWriteItems, and moto deep-copies the table once per item of each transaction
    // (about 1 s a transaction past 400 subscriptions here), so a 2000-subscription steady
    // state alone would take most of an hour. The request counts, not moto's times, are what carry over to AWS.
    let changes = 20usize;
    let factors: Vec<usize> = std::env::var("BENCH_RECONCILE_FACTORS")
        .ok()
        .map(|v| v.split(',').filter_map(|f| f.trim().parse().ok()).collect())
        .filter(|f: &Vec<usize>| !f.is_empty())
        .unwrap_or_else(|| vec![1, 5, 25]);
    println!("\n[7/7] reconcile at scale: replay and sweep with {factors:?}× {changes} subscriptions, {changes} missed changes");
    let mut detail = String::from(
        "| subscriptions | missed changes | replay: Stripe requests (list + re-fetch) | replay: events handled | replay: DynamoDB requests | replay wall time | sweep: Stripe requests | sweep: DynamoDB requests | sweep wall time | sweep found |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    let mut replay_requests = Vec::new();
    for &factor in &factors {
        let n = changes * factor;
        // Its own Stripe and table: nothing else's events or subscriptions in the lists.
        let sim = harness::sim::Sim::start().await;
        let env = TestEnv::new().await;
        let billing = sim.billing();
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("rec-{factor}-{i}");
            harness::jobs::put_profile(&env, &UserId::parse(&name).expect("user id")).await;
            ids.push(stripe_paid(&billing, &name).await);
        }
        let store = env.store.clone();
        let gateway: std::sync::Arc<dyn shared::billing::BillingGateway> = std::sync::Arc::new(sim.billing());
        let processor =
            std::sync::Arc::new(Processor::new(store.clone(), gateway.clone(), std::sync::Arc::new(shared::clock::SystemClock)));
        let up = CatchUp::new(store.clone(), gateway, processor);
        // Steady state first: one sweep records everything, then the replay's cursor is now.
        let sweep = Sweep::new(up.clone());
        sweep.run(Utc::now(), &|| true).await.expect("first sweep");
        let started_at = Utc::now() + ChronoDuration::seconds(1);
        store
            .put_cursor(Replay::JOB, &format!(r#"{{"covered_until":{},"pass":null}}"#, started_at.timestamp()))
            .await
            .expect("replay position");
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        // The missed changes: cancellations scheduled at Stripe whose webhooks never came.
        for id in ids.iter().take(changes) {
            sim.post(&format!("/v1/subscriptions/{id}"), &[("cancel_at_period_end", "true")]).await;
        }
        let replay = Replay::new(up.clone(), ReplaySettings { overlap: ChronoDuration::zero(), ..ReplaySettings::default() });
        let before = sim.handle.request_count();
        stack.proxy.reset();
        let t = Instant::now();
        let replayed = replay.run(Utc::now(), &|| true).await.expect("replay");
        let replay_wall = t.elapsed();
        let replay_stripe = sim.handle.request_count() - before;
        let (replay_ddb, _) = stack.proxy.totals("DynamoDB_");
        replay_requests.push(replay_stripe);

        let before = sim.handle.request_count();
        stack.proxy.reset();
        let t = Instant::now();
        let swept = sweep.run(Utc::now(), &|| true).await.expect("sweep");
        let sweep_wall = t.elapsed();
        let sweep_stripe = sim.handle.request_count() - before;
        let (ddb, _) = stack.proxy.totals("DynamoDB_");
        let _ = writeln!(
            detail,
            "| {n} ({factor}×) | {changes} | {replay_stripe} ({} + {}) | {} replayed of {} listed | {replay_ddb} | {} | {sweep_stripe} (N/100 + 1 = {}) | {ddb} | {} | seen {}, repaired {}, adopted {}, flagged {} |",
            replayed.pages,
            replay_stripe - replayed.pages,
            replayed.replayed,
            replayed.listed,
            ms(replay_wall),
            n / 100 + 1,
            ms(sweep_wall),
            swept.seen,
            swept.repaired,
            swept.adopted,
            swept.conflicting
        );
        report.row(
            format!("sweep Stripe requests, {n} subscriptions"),
            format!("{sweep_stripe} ({})", ms(sweep_wall)),
            format!("≤ {}", n / 100 + 1),
            String::new(),
            "≤ N/100 + 1",
            Some(sweep_stripe <= (n / 100 + 1) as u64),
        );
    }
    let flat = replay_requests.windows(2).all(|w| w[0] == w[1]);
    report.row(
        format!(
            "replay Stripe requests, {changes} missed changes, {}…{} subscriptions",
            changes * factors[0],
            changes * factors[factors.len() - 1]
        ),
        format!("{replay_requests:?}"),
        "flat in N",
        String::new(),
        "flat in the number of subscriptions",
        Some(flat),
    );
    report.sections.push((
        "7. Reconcile at scale (`reconcile` replay and `sweep-stripe`)".into(),
        format!(
            "Per size: N paid subscriptions made at a fresh stripe-sim through the adapter (no webhook endpoint: every event is missed), \
             a first sweep that records them all (steady state), the replay's cursor set to now, then {changes} cancellations scheduled \
             at Stripe whose webhooks never come. The replay (overlap 0 here, so only the changes are in its window) lists the event log \
             and handles each missed event as the webhook would (one re-fetch of the subscription each); the sweep then lists every \
             subscription and compares (the replay has applied the 20 changes already, so it finds all in line: its cost is the \
             listing plus one BatchGetItem and one record read per subscription). Stripe requests are counted at the sim, DynamoDB requests at the proxy (forwarded to moto one \
             at a time). Wall times are moto's and the in-process sim's; they exclude nothing but the set-up.\n\n{detail}"
        ),
    ));
}

// ---------------------------------------------------------------------------------------
// 6. Package size

fn elf_machine(path: &Path) -> Option<&'static str> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return None;
    }
    Some(match u16::from_le_bytes([bytes[18], bytes[19]]) {
        0xB7 => "arm64",
        0x3E => "x86_64",
        _ => "other",
    })
}

fn zip_size(out: &Path, src: &Path, name_in_zip: Option<&str>) -> Result<u64, String> {
    let script = r#"
import os, sys, zipfile
out, src, name = sys.argv[1], sys.argv[2], sys.argv[3]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    if os.path.isdir(src):
        for base, _, files in os.walk(src):
            for f in files:
                p = os.path.join(base, f)
                z.write(p, os.path.relpath(p, src))
    else:
        z.write(src, name)
print(os.path.getsize(out))
"#;
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(out)
        .arg(src)
        .arg(name_in_zip.unwrap_or("bootstrap"))
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    String::from_utf8_lossy(&output.stdout).trim().parse().map_err(|e: std::num::ParseIntError| e.to_string())
}

fn package_size(report: &mut Report) {
    println!("\n[6/6] package size: zipped bootstrap (deflate)");
    let dir = logs_dir().join("zips");
    let _ = std::fs::create_dir_all(&dir);
    let build_note = std::fs::read_to_string(logs_dir().join("lambda-build.status")).unwrap_or_default();
    let site = python_site_packages();
    let py = site.as_ref().and_then(|s| zip_size(&dir.join("python-stack.zip"), s, None).ok());
    let mut detail = String::new();
    for name in FUNCTIONS {
        let lambda = root().join("target/lambda").join(name).join("bootstrap");
        let (path, arch) = match elf_machine(&lambda) {
            Some(arch) => (lambda, arch.to_owned()),
            None => {
                let host = root().join("target/release").join(name);
                let arch = elf_machine(&host).unwrap_or("?").to_owned();
                (host, format!("{arch}, host release build (arm64 build unavailable)"))
            }
        };
        match zip_size(&dir.join(format!("{name}.zip")), &path, None) {
            Ok(size) => {
                let raw = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                let _ = writeln!(
                    detail,
                    "- `{name}`: {} zipped, {} unzipped, {arch}, from `{}`",
                    mb(size),
                    mb(raw),
                    path.strip_prefix(root()).unwrap_or(&path).display()
                );
                let (py_text, ratio) = match py {
                    Some(p) => (mb(p), format!("1/{:.0}", p as f64 / size as f64)),
                    None => ("—".into(), "—".into()),
                };
                report.row(
                    format!("package `{name}` ({arch})"),
                    mb(size),
                    py_text,
                    ratio,
                    "≤ 50 MB zip (Lambda direct upload)",
                    Some(size <= 50_000_000),
                );
            }
            Err(e) => report.row(
                format!("package `{name}`"),
                format!("failed: {}", e.trim().lines().last().unwrap_or_default()),
                "—",
                "—",
                "≤ 50 MB",
                Some(false),
            ),
        }
    }
    if let Some(p) = py {
        let _ =
            writeln!(detail, "- Python stack (site-packages of `bench/.venv-python`, zipped the same way, no application code): {}", mb(p));
    }
    if !build_note.trim().is_empty() {
        let _ = writeln!(detail, "\narm64 build (`cargo lambda build --release --arm64`): {}", build_note.trim());
    }
    report.sections.push(("6. Package size".into(), detail));
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1_000_000.0)
}

fn python_site_packages() -> Option<PathBuf> {
    let out = Command::new(python_bin()).args(["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).output().ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    path.is_dir().then_some(path)
}

// ---------------------------------------------------------------------------------------

fn markdown(report: &Report, machine: &str, started: DateTime<Utc>, elapsed: Duration) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks: the Rust functions against the Python stack they replace\n");
    let _ = writeln!(
        md,
        "Written by `make bench` ({}; the run took {:.0} s). Every figure is measured in the same run, side by side; \
         ratios are Python ÷ Rust for time and Rust ÷ Python for memory. Benchmarks, not tests: nothing here is asserted by `make test`.\n",
        started.format("%Y-%m-%d %H:%M UTC"),
        elapsed.as_secs_f64()
    );
    let _ = writeln!(md, "## Machine\n\n{machine}");
    let _ = writeln!(md, "## Results\n\n{}", report.table());
    if !report.notes.is_empty() {
        let _ = writeln!(md, "### Notes from this run\n");
        for n in &report.notes {
            let _ = writeln!(md, "- {}", n.replace('\n', " "));
        }
        md.push('\n');
    }
    let _ = writeln!(md, "## Details\n");
    for (title, body) in &report.sections {
        let _ = writeln!(md, "### {title}\n\n{body}");
    }
    md.push_str(METHOD);
    md
}

const METHOD: &str = r#"## How each figure is measured

1. **Cold start**: `target/release/{admin-api,stripe-webhook,expiry-jobs}` (release profile: lto, codegen-units = 1, strip) are
   exec'd with the environment their `Config::from_env` and `lambda_runtime` read, and `AWS_LAMBDA_RUNTIME_API` pointing at a
   minimal Lambda Runtime API the bench serves on loopback. The time is from just before `exec` to the arrival of the first
   `GET /2018-06-01/runtime/invocation/next`. The Python function (`bench/python/function.py`) imports the seed's stack
   (`stripe, boto3, fastapi, fastapi_mail, celery, redis, jinja2`) and then polls the same API. One unmeasured warm-up run each
   (page cache, `.pyc`), then the median of the runs.
2. **Webhook CPU**: `stripe_webhook::signature::verify` + `stripe_webhook::envelope::decode` + a route lookup on the type, in a
   loop in the bench binary (opt-level 3, no LTO, unlike the functions' fat LTO), against `stripe.Webhook.construct_event` + a dict dispatch on `type`
   (`bench/python/webhook_cpu.py`), each signed with a fresh timestamp, on two `customer.subscription.updated` bodies: the one
   stripe-sim delivered for a subscription the bench updates (compact JSON, about the ~3–4 KB a real delivery is), and
   `events/stripe/customer.subscription.updated.json` (Stripe's sample object, pretty-printed).
3. **Peak memory**: `VmHWM` from `/proc/<pid>/status` of each process once it has answered one invocation and asked for the
   next, against moto server and stripe-sim (real requests): admin-api `GET /users/{id}/subscription` (API Gateway v2 event),
   stripe-webhook a signed `invoice.paid`, expiry-jobs `{"job":"deliver-pending"}`. The Python process imports the stack and
   handles the equivalent request (boto3 `GetItem` / `construct_event` + dispatch / boto3 `Query` of the pending index).
4. **Round trips**: counted at the servers (a counting proxy in front of moto server, by `X-Amz-Target`; stripe-sim's
   `request_counts()`), driving the real handlers in-process.
5. **Job scaling**: `expiry_jobs::Jobs::run(daily)` over moto server; `items_read` is the run summary's (the index queries'
   `ScannedCount` plus the outbox items swept).
6. **Package size**: `cargo lambda build --release --arm64` (zig from `.venv`), each `bootstrap` zipped with Python's `zipfile`
   (deflate). Falls back to the host's release binaries when the arm64 build is not possible, and says so.
7. **Reconcile at scale**: `shared::usecase::catch_up::{Replay, Sweep}` in-process over moto server and a fresh stripe-sim per
   size; Stripe requests counted at the sim, DynamoDB requests at the proxy. Sizes are multiples of the 20 missed changes
   (`BENCH_RECONCILE_FACTORS`, 1,5,25).

8. **Cold request over TLS**: each function process is exec'd, as in 1, with `AWS_ENDPOINT_URL` and `STRIPE_API_BASE` pointing at
   TLS terminators the bench runs in front of the counting proxy (so moto, with connections kept alive as AWS keeps them) and
   stripe-sim. The bench makes a CA and a certificate for 127.0.0.1 for the run; `SSL_CERT_FILE` (Rust, and stripe-python) and
   `AWS_CA_BUNDLE` (boto3) name a file holding that CA. The AWS SDK loads the platform's roots as well (as in Lambda), the
   Stripe transport adds the CA to its compiled-in roots, and the Python clients load only that file (which favours them).
   Each process gets 1 + `BENCH_WARM_REQUESTS` invocations of real work: admin-api `GET /users/{id}/subscription` of a user
   with a subscription; stripe-webhook a signed `invoice.paid` with a fresh event id each time; expiry-jobs
   `{"job":"deliver-pending"}` with one pending e-mail queued just before each invocation. The Python process
   (`bench/python/function.py`) makes the same round trips (boto3, stripe-python) and reads its keys from the environment;
   the Rust functions read theirs from Secrets Manager at init and open their connections there (`shared::warm`).
   *cold request* is exec → the first answer's arrival; *init* is exec → first `next`; the first request's share is the
   difference. The floor is `bench/empty-runtime` (tokio + `lambda_runtime`, an echo handler, the same release profile):
   exec → first `next`; it gets the functions' environment, of which it reads only the Lambda variables. `SES_SEND_RATE`
   is 1000 for both stacks here (moto has no `GetAccount`), so back-to-back invocations do not wait out the Rust
   sender's 1/rate spacing. What the figures exclude: real network latency (loopback only: TLS handshakes cost CPU here, not
   round trips), moto's and stripe-sim's own time is included and the same for both stacks.
9. **Cost** (section 8b), per million requests of each kind: Lambda memory is the smallest setting that holds 1.5× the
   measured peak RSS, rounded up to 64 MB, at least 128 MB; billed duration is the median warm request, rounded up to the
   millisecond, as Lambda bills; GB-s and USD at arm64 us-east-1 on-demand prices (USD 0.0000133334 per GB-s, USD 0.20 per
   million requests, as published on the AWS Lambda pricing page, read 2026-12-01); DynamoDB request units estimated at
   the counting proxy from each request (`harness::counting::estimated_units`: 1 RRU per strongly consistent item read,
   0.5 eventually consistent, 1 WRU per item written, twice that in a transaction, items under 4 KB / 1 KB) over every
   request a process made, init included, divided by its invocations, at USD 0.125 / 0.625 per million RRU / WRU; other
   AWS requests (SES, EventBridge, Secrets Manager) and Stripe calls counted the same way. Excluded: cold-start shares
   (a custom runtime's init, like these Rust functions', was always billed, a managed runtime's — Python's — since
   2025-08-01; both are in section 8), CloudWatch Logs, data transfer, and the wait
   on real AWS and Stripe, which adds latency × memory to both stacks — the memory column then decides the ratio.

## Rerun

```sh
make bench                       # everything: venvs, release builds, servers on free loopback ports, this file
BENCH_COLD_RUNS=21 make bench    # more cold-start runs (default 11)
```

Knobs (environment): `BENCH_COLD_RUNS` (11), `BENCH_WARM_REQUESTS` (10, per process in section 8), `BENCH_CPU_ITERATIONS` (100000), `BENCH_PY_CPU_ITERATIONS` (20000),
`BENCH_JOB_DUE` (20), `BENCH_RECONCILE_FACTORS` (1,5,25: subscriptions as multiples of the 20 missed changes),
`BENCH_ONLY=jobs,cpu` (only those sections — round-trips, cold-start, cpu, memory, jobs, reconcile,
cold-request, package — reported to `target/bench/BENCHMARKS.partial.md`, leaving this file alone), `BENCH_ARM64=0` (skip the arm64 package build — its first run compiles the whole
dependency tree for aarch64, about 20+ minutes on 2 cores — and size the host binaries instead). Commands `make bench` runs (`bench/run.sh`):

```sh
python3 -m venv bench/.venv-python && bench/.venv-python/bin/pip install -r bench/requirements-python.txt
cargo build --release -p admin-api -p stripe-webhook -p expiry-jobs -p empty-runtime
.venv/bin/cargo-lambda lambda build --release --arm64 -p admin-api -p stripe-webhook -p expiry-jobs   # best effort
CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_TARGET_DIR=target/bench-build cargo build --release -p bench
target/bench-build/release/bench  # starts moto server, the proxy, stripe-sim; writes BENCHMARKS.md
```

Logs of the function processes: `target/bench/*.log`; zips: `target/bench/zips/`.
"#;

/// `BENCH_ONLY=jobs,cpu` runs only those sections (for working on one of them); unset, all.
struct Sections(Option<Vec<String>>);

impl Sections {
    const NAMES: [&'static str; 8] = ["round-trips", "cold-start", "cpu", "memory", "jobs", "reconcile", "cold-request", "package"];

    fn from_env() -> Sections {
        let Ok(raw) = std::env::var("BENCH_ONLY") else { return Sections(None) };
        let picked: Vec<String> = raw.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        for name in &picked {
            assert!(Self::NAMES.contains(&name.as_str()), "BENCH_ONLY: unknown section {name:?}; known: {}", Self::NAMES.join(", "));
        }
        Sections(Some(picked))
    }

    fn has(&self, name: &str) -> bool {
        self.0.as_ref().is_none_or(|picked| picked.iter().any(|p| p == name))
    }

    fn all(&self) -> bool {
        self.0.is_none()
    }
}

/// Warnings and errors of the code the bench drives in-process (handlers, jobs) go to
/// `target/bench/in-process.log`, so a figure that looks off can be explained.
fn log_in_process_warnings() {
    // `bench/run.sh` makes the folder; the binary run on its own may not have it yet, and
    // the reports are written there too.
    let _ = std::fs::create_dir_all(root().join("target/bench"));
    let path = root().join("target/bench/in-process.log");
    let Ok(file) = std::fs::File::create(&path) else { return };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BENCH_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(std::sync::Mutex::new(file)).try_init();
}

#[tokio::main]
async fn main() {
    log_in_process_warnings();
    let started_at = Utc::now();
    let started = Instant::now();
    let machine = machine();
    println!("LogiScore benchmarks\n{machine}");
    let mut report = Report::default();

    // The servers: moto server (own process), a counting proxy in front of it, stripe-sim (in-process).
    let moto = Moto::start().await;
    let proxy = CountingProxy::start(moto.endpoint()).await;
    // The harness's TestEnv uses MOTO_ENDPOINT when set: every SDK call of the bench goes through the proxy.
    // SAFETY: set before any other thread reads the environment.
    std::env::set_var("MOTO_ENDPOINT", &proxy.url);
    let api = AdminApi::start().await;
    let secrets = harness::secrets::stripe_vars(&api.env, api.sim.handle.secret_key(), Some(WEBHOOK_SECRET)).await;
    let stack = Stack { moto, proxy, api, secrets };
    let user = "bench-user-1";

    let only = Sections::from_env();
    // Peak memory replays the invoice the round-trip section created, so it needs that section.
    let invoice_paid = if only.has("round-trips") || only.has("memory") || only.has("cold-request") {
        Some(round_trips(&mut report, &stack, user).await)
    } else {
        None
    };
    if only.has("cold-start") {
        cold_start(&mut report, &stack).await;
    }
    if only.has("cpu") {
        webhook_cpu(&mut report, &stack).await;
    }
    if let (true, Some(invoice_paid)) = (only.has("memory"), &invoice_paid) {
        peak_memory(&mut report, &stack, user, invoice_paid).await;
    }
    // Before the job and reconcile sections: they leave moto with big tables, where its
    // TransactWriteItems (a copy of the table per item) would slow every write measured here.
    if let (true, Some(invoice_paid)) = (only.has("cold-request"), &invoice_paid) {
        cold_request(&mut report, &stack, user, invoice_paid).await;
    }
    if only.has("jobs") {
        job_scaling(&mut report, &stack).await;
    }
    if only.has("reconcile") {
        reconcile_scaling(&mut report, &stack).await;
    }
    if only.has("package") {
        package_size(&mut report);
    }

    let md = markdown(&report, &machine, started_at, started.elapsed());
    if only.all() {
        std::fs::write(root().join("BENCHMARKS.md"), &md).expect("write BENCHMARKS.md");
    } else {
        // A partial run must not replace the full table with a few rows.
        std::fs::write(root().join("target/bench/BENCHMARKS.partial.md"), &md).expect("write partial report");
        println!("BENCH_ONLY set: BENCHMARKS.md left as it was; this run's report is target/bench/BENCHMARKS.partial.md");
    }
    println!("\n{}", report.table());
    for n in &report.notes {
        println!("note: {n}");
    }
    if only.all() {
        println!("written: BENCHMARKS.md");
    }
    stack.moto.stop();
}
