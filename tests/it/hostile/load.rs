//! Load: a bounded burst of signed webhook deliveries (every event of N subscriptions made
//! in stripe-sim, with duplicates, shuffled) from 8 concurrent senders on loopback against
//! the webhook served over HTTP. A sender redelivers on any 5xx, as Stripe does (moto
//! answers concurrent `TransactWriteItems` with an occasional 500). At the end every event
//! is in the ledger once and the outbox holds exactly the notifications, and every user
//! exactly the record, of a sequential crash-free delivery of the same events.
//!
//! Size: 20 subscriptions (~180 events, ~350 deliveries) normally: what fits ~40 s on moto with two
//! cores (moto deep-copies the table per transaction); 200 under `TORTURE=1` (`super::scaled`).

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use futures::StreamExt;
use harness::{sim::Sim, webhook, TestEnv};
use serde_json::Value;
use shared::{
    config::AwsClients,
    domain::{Subscription, UserId},
    store::{Change, StripeMapping},
};
use stripe_webhook::signature::sign_header;

const SECRET: &str = "whsec_load_tests";
const SENDERS: usize = 8;

/// The webhook as the function builds it, over `aws`.
fn webhook_for(env: &TestEnv, aws: &AwsClients, sim: &Sim) -> axum::Router {
    stripe_webhook::app(&webhook::config(env, sim.stripe_config(), &[SECRET]), aws).expect("stripe-webhook builds")
}

/// The webhook's AWS clients: the env's, whose DynamoDB requests reach moto one at a time
/// (`harness::proxy::Proxy::serial`: moto is not isolated, real DynamoDB is), while the
/// handlers themselves run concurrently and race on reads, ledger conditions and version
/// guards. `HOSTILE_LOAD_DIRECT=1` goes straight to moto instead (and then moto loses writes).
async fn serialised_aws(env: &TestEnv) -> AwsClients {
    if std::env::var("HOSTILE_LOAD_DIRECT").as_deref() == Ok("1") {
        return AwsClients::with_ses(&env.moto.sdk_config().await, &env.ses_config);
    }
    env.aws_clients()
}

async fn seed(env: &TestEnv, people: &[(UserId, String)]) {
    for (user, customer) in people {
        harness::jobs::put_profile(env, user).await;
        env.store
            .commit(Change { user_id: Some(user.clone()), mappings: vec![StripeMapping::Customer(customer.clone())], ..Change::default() })
            .await
            .unwrap();
    }
}

/// Every outbox id (a `Vec`, so a duplicate would show) and the normalised records.
async fn state(env: &TestEnv, people: &[(UserId, String)]) -> (Vec<String>, Vec<Option<Subscription>>) {
    let mut ids: Vec<String> = env.outbox_items().await.into_iter().map(|(id, _)| id).collect();
    ids.sort();
    let mut records = Vec::new();
    for (user, _) in people {
        records.push(crate::fixtures::normalised(env.store.subscription(user).await.unwrap()));
    }
    (ids, records)
}

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    redelivered: AtomicU64,
    first: AtomicU64,
    duplicate: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_burst_with_duplicates_applies_each_event_once() {
    let started = Instant::now();
    let subscriptions = super::scaled(20, 10) as usize;
    let sim = Sim::start().await;

    // N paying subscriptions at Stripe (no endpoint registered: events are only recorded).
    let people: Vec<(UserId, String)> = futures::stream::iter(0..subscriptions)
        .map(|i| {
            let sim = &sim;
            async move {
                let user = UserId::parse(&format!("load-{i}")).unwrap();
                let customer =
                    sim.post("/v1/customers", &[("email", &format!("{user}@example.com")), ("metadata[user_id]", user.as_str())]).await;
                let customer = customer["id"].as_str().unwrap().to_owned();
                let pm = sim.post("/v1/payment_methods/pm_card_visa/attach", &[("customer", &customer)]).await["id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                sim.post(
                    "/v1/subscriptions",
                    &[("customer", &customer), ("items[0][price]", stripe_sim::PREMIUM_MONTHLY), ("default_payment_method", &pm)],
                )
                .await;
                (user, customer)
            }
        })
        .buffered(8)
        .collect()
        .await;
    let events = sim.events().await;
    let distinct: BTreeSet<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(distinct.len(), events.len());
    assert!(events.len() >= subscriptions * 4, "{} events for {subscriptions} subscriptions", events.len());
    let setup = started.elapsed();

    // Baseline: each event once, in order, one at a time, on its own table.
    let base_env = TestEnv::new().await;
    seed(&base_env, &people).await;
    let base = webhook_for(&base_env, &base_env.aws_clients(), &sim);
    for e in &events {
        let body = serde_json::to_vec(e).unwrap();
        loop {
            let request = webhook::request(body.clone(), Some(sign_header(&body, SECRET, Utc::now().timestamp())));
            let status = webhook::call(&base, request).await.status;
            if status == 200 {
                break;
            }
            assert!(status >= 500, "baseline {}: {status}", e["id"]);
        }
    }
    let expected = state(&base_env, &people).await;
    assert!(expected.1.iter().all(Option::is_some), "baseline left a user without a record");
    assert!(expected.0.len() >= subscriptions * 2, "baseline queued {} notifications", expected.0.len());
    let baseline_time = started.elapsed() - setup;

    // The burst: every event 1–4 times (about half of them more than once), shuffled.
    let mut rng = super::Rng(super::seed());
    let mut plan: Vec<usize> = Vec::new();
    for i in 0..events.len() {
        let times = if rng.below(2) == 0 { 1 } else { 2 + rng.below(3) as usize };
        plan.extend(std::iter::repeat_n(i, times));
    }
    for i in (1..plan.len()).rev() {
        plan.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let deliveries = plan.len();
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(events.iter().map(|e| serde_json::to_vec(e).unwrap()).collect());
    let queue = Arc::new(Mutex::new(plan.into_iter().collect::<VecDeque<usize>>()));

    let env = TestEnv::new().await;
    seed(&env, &people).await;
    let aws = serialised_aws(&env).await;
    let server = webhook::serve(webhook_for(&env, &aws, &sim)).await;
    let tally = Arc::new(Tally::default());
    let http = reqwest::Client::builder().pool_max_idle_per_host(SENDERS).build().unwrap();
    let burst = Instant::now();
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (queue, bodies, tally, http, url) = (queue.clone(), bodies.clone(), tally.clone(), http.clone(), server.url.clone());
            tokio::spawn(async move {
                loop {
                    let Some(i) = queue.lock().unwrap().pop_front() else {
                        return;
                    };
                    let body = &bodies[i];
                    for attempt in 0.. {
                        let response = http
                            .post(&url)
                            .header("content-type", "application/json")
                            .header("Stripe-Signature", sign_header(body, SECRET, Utc::now().timestamp()))
                            .body(body.clone())
                            .send()
                            .await
                            .expect("loopback delivery");
                        let status = response.status().as_u16();
                        tally.sent.fetch_add(1, Ordering::Relaxed);
                        let reply: Value = response.json().await.unwrap_or(Value::Null);
                        if status == 200 {
                            let outcome = reply["outcome"].as_str().unwrap_or_default();
                            let counter = if outcome == "duplicate" { &tally.duplicate } else { &tally.first };
                            counter.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        assert!(status >= 500, "delivery answered {status}: {reply}");
                        assert!(attempt < 30, "still {status} after 30 redeliveries: {reply}");
                        tally.redelivered.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10 + 10 * attempt.min(10))).await;
                    }
                }
            })
        })
        .collect();
    for s in senders {
        s.await.expect("sender");
    }
    let burst_time = burst.elapsed();

    let ledger = env.count_items("STRIPE_EVENT#").await as usize;
    let got = state(&env, &people).await;
    let first = tally.first.load(Ordering::SeqCst) as usize;
    let duplicate = tally.duplicate.load(Ordering::SeqCst) as usize;
    let redelivered = tally.redelivered.load(Ordering::SeqCst);
    assert_eq!(first + duplicate, deliveries, "every delivery was finally acknowledged");
    if ledger != events.len() {
        let mut missing = Vec::new();
        for e in &events {
            let id = e["id"].as_str().unwrap();
            if !env.store.event_seen(id).await.unwrap() {
                missing.push(format!("{id} ({})", e["type"]));
            }
        }
        panic!("{ledger} ledger items for {} distinct events; missing: {missing:?}", events.len());
    }
    // Each event is processed (applied/unchanged/ignored) once; every other 200 is a
    // duplicate. (A 5xx whose transaction moto had committed makes the redelivery a
    // duplicate, so fewer first-time answers are possible only with redeliveries.)
    assert!(first <= events.len(), "{first} first-time answers for {} events: an event applied twice", events.len());
    assert!(first + redelivered as usize >= events.len(), "{first} first-time answers for {} events", events.len());
    let mut seen = BTreeMap::new();
    for id in &got.0 {
        *seen.entry(id).or_insert(0) += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "duplicated outbox ids");
    assert_eq!(got.0, expected.0, "the outbox differs from the sequential delivery's");
    assert_eq!(got.1, expected.1, "a record differs from the sequential delivery's");

    super::report(&format!(
        "hostile load: {subscriptions} subscriptions, {} events, {deliveries} deliveries ({} duplicates) from {SENDERS} senders in {:.1} s \
         ({:.0}/s); {redelivered} redelivered after 5xx; {} notifications queued once; setup {:.1} s, sequential baseline {:.1} s",
        events.len(),
        deliveries - events.len(),
        burst_time.as_secs_f64(),
        deliveries as f64 / burst_time.as_secs_f64(),
        got.0.len(),
        setup.as_secs_f64(),
        baseline_time.as_secs_f64(),
    ));
    super::finish("webhook load burst", deliveries as u64, redelivered, 0);
}
