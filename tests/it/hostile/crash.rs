//! Crashes: the function process is SIGKILLed at seeded points of a webhook delivery
//! sequence or of a job run, then restarted and the work redelivered / rerun. The final
//! local state and the notifications queued (and, for the job, the e-mail sent after a
//! later `deliver-pending`) must be what a crash-free run produces.
//!
//! The "function process" is this test binary re-executed as a worker: the `#[ignore]`d
//! test `hostile::crash::worker` does nothing unless `HOSTILE_CRASH_WORKER=1`, in which
//! case it reads its job from the environment (moto endpoint, table, bus, stripe-sim URL,
//! the events to deliver or the job to run), does it against the parent's moto server and
//! stripe-sim over loopback, and exits. The parent kills it once the table shows `k` of
//! its writes (plus a seeded jitter, so the kill lands inside an event or item, not only
//! between them), restarts it to do the whole thing again, and compares.

use super::Rng;
use crate::fixtures::{created, granted};
use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use expiry_jobs::{JobName, JobSettings};
use harness::{process::ChildGuard, sim::Sim, Moto, TestEnv};
use serde_json::Value;
use shared::{
    config::Secret,
    domain::{HistoryChange, Subscription, UserId},
    store::{Change, StripeMapping},
    stripe::StripeConfig,
};
use stripe_webhook::signature::sign_header;

const SECRET: &str = "whsec_crash_tests";
const WORKER: &str = "hostile::crash::worker";
const DAY: i64 = 86_400;
const MONTH: i64 = 31 * DAY;

// ---------------------------------------------------------------------------------------
// The worker (child process side).
// ---------------------------------------------------------------------------------------

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("crash worker: {name} not set"))
}

/// The re-executed "function process". Ignored, and a no-op without `HOSTILE_CRASH_WORKER=1`.
#[test]
#[ignore = "run by the crash tests as a child process"]
fn worker() {
    if std::env::var("HOSTILE_CRASH_WORKER").as_deref() != Ok("1") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        // MOTO_ENDPOINT is set: this is the parent's server, not a new one; SES goes
        // through the parent's mail sink, so the parent sees what the worker sent.
        let moto = Moto::shared().await;
        let env = TestEnv::attach(
            moto,
            var("HOSTILE_CRASH_TABLE"),
            var("HOSTILE_CRASH_BUS"),
            var("HOSTILE_CRASH_QUEUE"),
            &var("HOSTILE_CRASH_SES"),
        )
        .await;
        match var("HOSTILE_CRASH_MODE").as_str() {
            "webhook" => {
                let stripe = StripeConfig {
                    secret_key: Secret::new(var("HOSTILE_CRASH_SIM_KEY")),
                    api_base: Some(var("HOSTILE_CRASH_SIM_URL")),
                    price_premium: stripe_sim::PREMIUM_MONTHLY.to_owned(),
                    price_enterprise: stripe_sim::ENTERPRISE_MONTHLY.to_owned(),
                    retry: Default::default(),
                };
                let events: Vec<Value> = serde_json::from_slice(&std::fs::read(var("HOSTILE_CRASH_EVENTS")).unwrap()).unwrap();
                let webhook = harness::webhook::app(&env, stripe, &[SECRET]);
                for event in &events {
                    deliver(&webhook, event).await;
                }
            }
            "job" => {
                let now: DateTime<Utc> = var("HOSTILE_CRASH_TIME").parse().expect("time");
                // A Stripe that answers (with nothing to replay): `daily` ends with the replay.
                let sim = harness::sim::Sim::start().await;
                let jobs = harness::jobs::jobs(&env, sim.stripe_config(), job_settings());
                let job: JobName = serde_json::from_value(Value::String(var("HOSTILE_CRASH_JOB"))).expect("job name");
                let summary = harness::jobs::run(&jobs, job, now).await;
                assert_eq!(summary.counts.errors, 0, "{summary:?}");
            }
            other => panic!("crash worker: unknown mode {other}"),
        }
    });
}

/// One signed delivery through the handler, retried (as Stripe would) on a 5xx.
async fn deliver(webhook: &axum::Router, event: &Value) {
    let body = serde_json::to_vec(event).unwrap();
    for attempt in 0.. {
        let request = harness::webhook::request(body.clone(), Some(sign_header(&body, SECRET, Utc::now().timestamp())));
        let reply = harness::webhook::call(webhook, request).await;
        let status = reply.status;
        if status == 200 {
            return;
        }
        assert!(status >= 500 && attempt < 20, "{}: answered {status}: {}", event["id"], reply.text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One item at a time, as tests/it/jobs.rs does (moto and concurrent transactions).
fn job_settings() -> JobSettings {
    JobSettings { page_size: 25, concurrency: 1, ..JobSettings::default() }
}

// ---------------------------------------------------------------------------------------
// The parent side.
// ---------------------------------------------------------------------------------------

struct Spawn {
    child: ChildGuard,
    log: PathBuf,
}

fn spawn_worker(env: &TestEnv, vars: &[(&str, String)], log: PathBuf) -> Spawn {
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command
        .args(["--ignored", "--exact", WORKER, "--nocapture", "--test-threads=1"])
        .env("HOSTILE_CRASH_WORKER", "1")
        .env("MOTO_ENDPOINT", env.moto.endpoint())
        .env("HOSTILE_CRASH_TABLE", &env.table)
        .env("HOSTILE_CRASH_BUS", &env.bus)
        .env("HOSTILE_CRASH_QUEUE", &env.queue_url)
        .env("HOSTILE_CRASH_SES", env.mail().url())
        .env_remove("TORTURE")
        .env("RUST_LOG", "off")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("worker log"));
    for (k, v) in vars {
        command.env(k, v);
    }
    Spawn { child: ChildGuard::spawn(command).expect("spawn worker"), log }
}

/// Waits for the worker to exit and insists it succeeded.
async fn finish_worker(mut spawn: Spawn, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = spawn.child.try_wait().expect("wait worker") {
            let log = std::fs::read_to_string(&spawn.log).unwrap_or_default();
            assert!(status.success(), "{what}: worker exited {status}:\n{log}");
            return;
        }
        assert!(Instant::now() < deadline, "{what}: worker did not finish in 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the worker until `k` items with `prefix` exist (then `jitter_ms` more) and SIGKILLs
/// it. Returns whether the kill landed (false: the worker finished first).
async fn kill_after(env: &TestEnv, vars: &[(&str, String)], log: PathBuf, prefix: &str, k: i32, jitter_ms: u64) -> bool {
    let mut spawn = spawn_worker(env, vars, log);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if spawn.child.try_wait().expect("wait worker").is_some() {
            return false;
        }
        if env.count_items(prefix).await >= k {
            break;
        }
        assert!(Instant::now() < deadline, "the worker never reached {k} writes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(jitter_ms)).await;
    let finished = spawn.child.try_wait().expect("wait worker").is_some();
    spawn.child.kill(); // SIGKILL
    !finished
}

/// A user mapped to a Stripe customer, with a profile (for e-mails).
async fn seed_user(env: &TestEnv, user: &UserId, customer: &str) {
    harness::jobs::put_profile(env, user).await;
    env.store
        .commit(Change { user_id: Some(user.clone()), mappings: vec![StripeMapping::Customer(customer.to_owned())], ..Change::default() })
        .await
        .unwrap();
}

/// (every outbox item id, each with its state) in the table.
async fn outbox(env: &TestEnv) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (id, state) in env.outbox_items().await {
        assert!(out.insert(id.clone(), state).is_none(), "outbox id {id} twice");
    }
    out
}

/// The user's record with run-dependent fields blanked (as `replay` in webhook.rs does),
/// and the kinds of its history entries, newest first.
async fn final_state(env: &TestEnv, user: &UserId) -> (Option<Subscription>, Vec<HistoryChange>) {
    let local = crate::fixtures::normalised(env.store.subscription(user).await.unwrap());
    let history = env.store.history(user, 50).await.unwrap().into_iter().map(|h| h.change).collect();
    (local, history)
}

type WebhookState = (Vec<(Option<Subscription>, Vec<HistoryChange>)>, BTreeSet<String>, i32);

async fn webhook_state(env: &TestEnv, users: &[UserId]) -> WebhookState {
    let mut states = Vec::new();
    for u in users {
        states.push(final_state(env, u).await);
    }
    (states, outbox(env).await.into_keys().collect(), env.count_items("STRIPE_EVENT#").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_killed_mid_sequence_and_redelivered_ends_like_no_crash() {
    // Stripe's side: three subscriptions on one clock, created and renewed; one of them
    // fails its renewal (past due).
    let sim = Sim::start().await;
    let start = 1_767_225_600;
    let clock = sim.clock(start).await;
    let mut people = Vec::new();
    for (i, card) in ["pm_card_visa", "pm_card_visa", "pm_card_chargeCustomerFail"].iter().enumerate() {
        let user = UserId::parse(&format!("crash-wh-{i}")).unwrap();
        let customer = sim.post("/v1/customers", &[("email", &format!("{user}@example.com")), ("test_clock", &clock)]).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let pm = sim.post("/v1/payment_methods/pm_card_visa/attach", &[("customer", &customer)]).await["id"].as_str().unwrap().to_owned();
        let sub = sim
            .post(
                "/v1/subscriptions",
                &[("customer", &customer), ("items[0][price]", stripe_sim::PREMIUM_MONTHLY), ("default_payment_method", &pm)],
            )
            .await;
        if *card != "pm_card_visa" {
            let failing = sim.post(&format!("/v1/payment_methods/{card}/attach"), &[("customer", &customer)]).await["id"]
                .as_str()
                .unwrap()
                .to_owned();
            sim.post(&format!("/v1/subscriptions/{}", sub["id"].as_str().unwrap()), &[("default_payment_method", &failing)]).await;
        }
        people.push((user, customer));
    }
    sim.advance(&clock, start + MONTH + DAY).await;
    let events: Vec<Value> = sim.subscription_events().await;
    assert!(events.len() >= 12, "the scenario produced {} events", events.len());
    let dir = std::env::temp_dir().join(format!("hostile-crash-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let events_file = dir.join("events.json");
    std::fs::write(&events_file, serde_json::to_vec(&events).unwrap()).unwrap();
    let users: Vec<UserId> = people.iter().map(|(u, _)| u.clone()).collect();
    let vars = vec![
        ("HOSTILE_CRASH_MODE", "webhook".to_owned()),
        ("HOSTILE_CRASH_SIM_URL", sim.handle.base_url().to_owned()),
        ("HOSTILE_CRASH_SIM_KEY", sim.handle.secret_key().to_owned()),
        ("HOSTILE_CRASH_EVENTS", events_file.display().to_string()),
    ];

    // Baseline: the same worker, never killed.
    let base_env = TestEnv::new().await;
    for (u, c) in &people {
        seed_user(&base_env, u, c).await;
    }
    finish_worker(spawn_worker(&base_env, &vars, dir.join("baseline.log")), "baseline").await;
    let expected = webhook_state(&base_env, &users).await;
    assert_eq!(expected.2 as usize, events.len(), "one ledger item per event");
    assert!(expected.0.iter().all(|(s, _)| s.is_some()), "{:?}", expected.0);
    assert!(expected.1.iter().any(|id| id.starts_with("email:payment_receipt:")), "{:?}", expected.1);
    assert!(expected.1.iter().any(|id| id.starts_with("email:payment_failed:")), "{:?}", expected.1);

    // Kill points: after k ledger writes (k from 0 to the end, seeded), plus 0–40 ms.
    let mut rng = Rng(super::seed() ^ 0x9E37_79B9_7F4A_7C15);
    let n = events.len() as u64;
    let points = super::scaled(6, 4);
    let mut kills = 0;
    for p in 0..points {
        // Spread over the sequence: one point in each slice of it.
        let k = (p * n / points + rng.below(n / points)) as i32;
        let jitter = rng.below(40);
        let env = TestEnv::new().await;
        for (u, c) in &people {
            seed_user(&env, u, c).await;
        }
        let killed = kill_after(&env, &vars, dir.join(format!("kill-{p}.log")), "STRIPE_EVENT#", k, jitter).await;
        let at_kill = env.count_items("STRIPE_EVENT#").await;
        if killed {
            kills += 1;
            assert!((at_kill as usize) < events.len(), "point {p}: killed after every event was recorded");
        }
        // Restart and redeliver everything (the ledger makes that safe).
        finish_worker(spawn_worker(&env, &vars, dir.join(format!("rerun-{p}.log"))), &format!("rerun after kill {p}")).await;
        let got = webhook_state(&env, &users).await;
        assert_eq!(got.0, expected.0, "kill point {p} (k={k}, +{jitter} ms, {at_kill} recorded at the kill): final records differ");
        assert_eq!(got.1, expected.1, "kill point {p} (k={k}): outbox differs");
        assert_eq!(got.2, expected.2, "kill point {p} (k={k}): ledger differs");
        super::report(&format!(
            "hostile crash webhook: point {p}: killed={killed} after {at_kill}/{} events (k={k}, +{jitter} ms)",
            events.len()
        ));
    }
    assert!(kills * 2 >= points, "only {kills} of {points} kills landed before the worker finished");
    let _ = std::fs::remove_dir_all(&dir);
    super::finish("webhook killed mid-sequence", points, 0, kills);
}

/// Per-run job fixtures: `due` lapsed subscriptions and `ending` ones in the warning window.
async fn seed_job_run(env: &TestEnv, run: &str, now: DateTime<Utc>, due: usize, ending: usize) -> Vec<UserId> {
    let mut users = Vec::new();
    for i in 0..due + ending {
        let u = UserId::parse(&format!("{run}-{i}")).unwrap();
        harness::jobs::put_profile(env, &u).await;
        let end = if i < due {
            now - chrono::Duration::days(3) - chrono::Duration::hours(i as i64)
        } else {
            now + chrono::Duration::days(2) + chrono::Duration::hours(i as i64)
        };
        let sub = granted(&u, end);
        env.store.commit(created(&sub)).await.unwrap();
        users.push(u);
    }
    users
}

/// What a job run left: records (the run prefix replaced), history kinds, outbox ids and states.
async fn job_state(env: &TestEnv, run: &str, users: &[UserId]) -> (Vec<String>, BTreeMap<String, String>) {
    let mut records = Vec::new();
    for u in users {
        let (record, history) = final_state(env, u).await;
        let record = record.expect("record");
        records.push(format!("{:?}|{:?}|{}|{:?}", record.status, record.tier, record.auto_renew, history).replace(run, "RUN"));
        let version = env.store.subscription(u).await.unwrap().unwrap().version;
        records.push(format!("version {version}"));
    }
    let outbox = outbox(env).await.into_iter().map(|(id, state)| (id.replace(run, "RUN"), state)).collect();
    (records, outbox)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_job_killed_mid_run_and_rerun_ends_like_no_crash() {
    let now: DateTime<Utc> = "2026-03-11T06:00:00Z".parse().unwrap();
    let due = super::scaled(20, 3) as usize;
    let ending = 4;
    // Everything a run writes: history for expiries, outbox items (expired e-mail + event
    // per expiry, a warning per ending one). Kills are placed by counting outbox items.
    let writes = (due * 2 + ending) as u64;
    let dir = std::env::temp_dir().join(format!("hostile-crash-job-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let vars =
        vec![("HOSTILE_CRASH_MODE", "job".to_owned()), ("HOSTILE_CRASH_JOB", "daily".to_owned()), ("HOSTILE_CRASH_TIME", now.to_rfc3339())];
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let later = now + chrono::Duration::hours(1);

    // Baseline: one uninterrupted run, then the later delivery sweep (a no-op here).
    let base_run = format!("cj{tag}-base");
    let base_env = TestEnv::new().await;
    let base_users = seed_job_run(&base_env, &base_run, now, due, ending).await;
    finish_worker(spawn_worker(&base_env, &vars, dir.join("baseline.log")), "baseline job").await;
    let base_jobs = harness::jobs::jobs(&base_env, harness::jobs::unreachable_stripe(), job_settings());
    harness::jobs::run(&base_jobs, JobName::DeliverPending, later).await;
    let expected = job_state(&base_env, &base_run, &base_users).await;
    assert_eq!(expected.1.len() as u64, writes, "{:?}", expected.1);
    assert!(expected.1.values().all(|s| s == "sent"), "{:?}", expected.1);

    let mut rng = Rng(super::seed() ^ 0x9E37_79B9_7F4A_7C15);
    let points = super::scaled(4, 3);
    let mut kills = 0;
    let mut runs = Vec::new();
    for p in 0..points {
        let run = format!("cj{tag}-k{p}");
        let env = TestEnv::new().await;
        let users = seed_job_run(&env, &run, now, due, ending).await;
        // Spread over the run: the first points land while expiring (outbox items being
        // written), the last ones while delivering (no new items: time-based).
        let (k, jitter) = if p + 1 < points {
            ((p * writes / points + rng.below(writes / points)) as i32, rng.below(30))
        } else {
            (writes as i32, rng.below(400))
        };
        let killed = kill_after(&env, &vars, dir.join(format!("kill-{p}.log")), "OUTBOX#", k, jitter).await;
        if killed {
            kills += 1;
        }
        let at_kill = env.count_items("OUTBOX#").await;
        // Restart: the rerun of the same day (same `time`), then the next sweep, after the
        // lease of an item the killed run had claimed.
        finish_worker(spawn_worker(&env, &vars, dir.join(format!("rerun-{p}.log"))), &format!("job rerun after kill {p}")).await;
        let jobs = harness::jobs::jobs(&env, harness::jobs::unreachable_stripe(), job_settings());
        let sweep = harness::jobs::run(&jobs, JobName::DeliverPending, later).await;
        let got = job_state(&env, &run, &users).await;
        assert_eq!(got.0, expected.0, "kill point {p} (k={k}, +{jitter} ms): records differ");
        assert_eq!(got.1, expected.1, "kill point {p} (k={k}, +{jitter} ms): outbox differs");
        super::report(&format!(
            "hostile crash job: point {p}: killed={killed} at {at_kill}/{writes} outbox items (k={k}, +{jitter} ms); later sweep delivered {}",
            sweep.counts.delivered
        ));
        runs.push((run, env.mail().sent()));
    }
    assert!(kills * 2 >= points, "only {kills} of {points} kills landed before the worker finished");

    // E-mail actually sent (accepted by moto's SES, as each run's mail sink saw it), per recipient: the same as the uninterrupted run,
    // i.e. one expiry notice per lapsed user and one warning per ending user. A kill
    // between SES accepting a mail and the outbox recording it resends it after the lease
    // (documented at-least-once); counted and reported, never a lost mail.
    let sent_to = |messages: &[harness::mail::SentMail], run: &str| -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for m in messages {
            for to in m.to.iter().filter(|t| t.starts_with(&format!("{run}-"))) {
                *counts.entry(to.replace(run, "RUN")).or_insert(0) += 1;
            }
        }
        counts
    };
    let expected_mail = sent_to(&base_env.mail().sent(), &base_run);
    assert_eq!(expected_mail.len(), due + ending, "{expected_mail:?}");
    assert!(expected_mail.values().all(|&n| n == 1), "{expected_mail:?}");
    let mut resent = 0;
    for (run, messages) in &runs {
        let got = sent_to(messages, run);
        assert_eq!(got.keys().collect::<Vec<_>>(), expected_mail.keys().collect::<Vec<_>>(), "{run}: recipients differ (lost mail)");
        let extra: usize = got.values().map(|n| n - 1).sum();
        assert!(extra <= 1, "{run}: {extra} resent mails for one kill: {got:?}");
        resent += extra;
    }
    super::report(&format!("hostile crash job: {resent} mail(s) resent after a kill between send and record (at-least-once window)"));
    let _ = std::fs::remove_dir_all(&dir);
    super::finish("daily job killed mid-run", points, 0, kills);
}
