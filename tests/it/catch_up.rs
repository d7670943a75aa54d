//! Catching up with Stripe after webhooks were lost, against moto server and stripe-sim:
//! the missed-event replay (`reconcile`) and the full sweep (`sweep-stripe`). Webhooks are
//! lost for good here the way they are in production: the endpoint is down for all of the
//! sim's delivery attempts.

use std::{collections::BTreeMap, time::Duration};

use chrono::Utc;
use expiry_jobs::{JobName, JobSettings};
use harness::{
    admin::AdminApi,
    jobs::{jobs as jobs_for, run, run_in_slices},
    sim::Sim,
    TestEnv,
};
use serde_json::{json, Value};
use shared::{
    billing::{BillingGateway, CustomerDetails, IdempotencyKey, NewSubscription, NewSubscriptionKind},
    domain::{HistoryChange, SubscriptionStatus, Tier, UserId},
};

/// A sim whose only webhook endpoint is down for every attempt (one attempt, no retry).
async fn sim_losing_webhooks() -> Sim {
    let sim = Sim::start_with(stripe_sim::SimConfig {
        seed_prices: true,
        webhook_retry: stripe_sim::WebhookRetry { max_attempts: 1, ..stripe_sim::WebhookRetry::default() },
        ..stripe_sim::SimConfig::default()
    })
    .await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let url = format!("http://{}/stripe/webhook", closed.local_addr().expect("address"));
    drop(closed);
    sim.handle.add_webhook_endpoint(stripe_sim::WebhookEndpointConfig::new(url, None)).expect("register the dead endpoint");
    sim
}

fn settings() -> JobSettings {
    JobSettings { page_size: 25, concurrency: 1, ..JobSettings::default() }
}

fn paid(pm: &str) -> Value {
    json!({"tier": "premium", "duration_months": 1, "is_paid": true, "auto_renew": true, "payment_method_id": pm})
}

/// Outbox ids by prefix count, over every item in the table.
async fn outbox_counts(api: &AdminApi) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for item in api.table_items().await {
        let entity = item.get("entity").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        if entity != "outbox" {
            continue;
        }
        let id = item.get("id").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let kind = id.splitn(3, ':').take(2).collect::<Vec<_>>().join(":");
        *counts.entry(kind).or_insert(0) += 1;
    }
    counts
}

/// A subscription a dead admin process created at Stripe and never recorded (as its
/// create does: metadata names the user), for a user with a profile.
async fn orphan(api: &AdminApi, name: &str, attempt: u32) -> String {
    api.create_profile(name).await;
    let billing = api.sim.billing();
    let key = |step: &str| IdempotencyKey::new(format!("orphan-{name}-{attempt}-{step}"));
    let user = UserId::parse(name).unwrap();
    let details = CustomerDetails { user_id: user.clone(), email: format!("{name}@example.com"), name: None };
    let created = billing.create_customer(&details, Some("pm_card_visa"), &key("customer")).await.unwrap();
    let (customer, payment_method) = (created.id, created.payment_method.unwrap());
    let new = NewSubscription {
        customer,
        user_id: user,
        tier: Tier::Premium,
        kind: NewSubscriptionKind::Paid { payment_method, cancel_at: None },
        operation_id: format!("op-{name}-{attempt}"),
    };
    billing.create_subscription(&new, &key("subscription")).await.unwrap().snapshot.subscription_id.to_string()
}

/// A paid subscription whose every webhook was lost: the replay records it from the event
/// log, once, with its confirmation and receipt queued once; a second replay finds
/// nothing missed and reads one page.
#[tokio::test]
async fn webhooks_lost_for_good_are_applied_by_the_replay_once() {
    let api = AdminApi::over(TestEnv::new().await, sim_losing_webhooks().await);
    let stripe_id = orphan(&api, "lost-ann", 1).await;
    assert!(api.sim.handle.wait_idle(Duration::from_secs(30)).await);
    assert!(api.sim.handle.deliveries().iter().all(|d| d.status == stripe_sim::DeliveryStatus::Failed), "every delivery failed");
    let user = UserId::parse("lost-ann").unwrap();
    assert!(api.env.store.subscription(&user).await.unwrap().is_none(), "nothing known locally yet");

    let jobs = jobs_for(&api.env, api.sim.stripe_config(), settings());
    let first = run(&jobs, JobName::Reconcile, Utc::now()).await;
    assert!(first.counts.events_replayed > 0 && first.counts.errors == 0, "{first:?}");
    assert_eq!(first.counts.events_replayed, first.counts.events_listed, "every listed event had been missed: {first:?}");
    let local = api.env.store.subscription(&user).await.unwrap().expect("recorded by the replay");
    assert_eq!((local.stripe_subscription_id.map(|s| s.to_string()), local.status), (Some(stripe_id), SubscriptionStatus::Active));
    let counts = outbox_counts(&api).await;
    assert_eq!(counts.get("email:subscription_confirmation"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("email:payment_receipt"), Some(&1), "{counts:?}");

    let lists = api.stripe_calls("GET /v1/events");
    let again = run(&jobs, JobName::Reconcile, Utc::now()).await;
    assert_eq!(again.counts.events_replayed, 0, "{again:?}");
    assert_eq!(api.stripe_calls("GET /v1/events") - lists, 1, "a page of the log since the last run");
    assert_eq!(outbox_counts(&api).await, counts, "nothing queued twice");
    let delivered = run(&jobs, JobName::DeliverPending, Utc::now()).await;
    assert!(delivered.counts.delivered >= 2, "{delivered:?}");
    assert_eq!(api.env.mail_to("lost-ann@example.com").len(), 2, "confirmation and receipt, once each");
}

/// The first payment failed, so the subscription is incomplete and grants nothing; the
/// customer then pays the invoice, and that webhook is lost. The replay activates it.
#[tokio::test]
async fn an_incomplete_subscription_paid_with_its_webhook_lost_is_repaired() {
    let api = AdminApi::over(TestEnv::new().await, sim_losing_webhooks().await);
    api.create_profile("lost-bo").await;
    let answer = api.call("PUT", "/users/lost-bo/subscription", Some(paid("pm_card_chargeCustomerFail"))).await;
    assert_eq!(answer.status.as_u16(), 202, "{}", answer.body);
    let invoice = answer.body["payment_action"]["invoice_id"].as_str().unwrap().to_owned();
    let customer = answer.body["subscription"]["stripe_customer_id"].as_str().unwrap().to_owned();
    let card = api.sim.post("/v1/payment_methods/pm_card_visa/attach", &[("customer", &customer)]).await;
    api.sim.post(&format!("/v1/invoices/{invoice}/pay"), &[("payment_method", card["id"].as_str().unwrap())]).await;
    assert!(api.sim.handle.wait_idle(Duration::from_secs(30)).await);
    let user = UserId::parse("lost-bo").unwrap();
    assert_eq!(api.env.store.subscription(&user).await.unwrap().unwrap().status, SubscriptionStatus::Incomplete, "paid, yet no access");

    let jobs = jobs_for(&api.env, api.sim.stripe_config(), settings());
    let summary = run(&jobs, JobName::Reconcile, Utc::now()).await;
    assert!(summary.counts.events_replayed > 0, "{summary:?}");
    assert_eq!(api.env.store.subscription(&user).await.unwrap().unwrap().status, SubscriptionStatus::Active);
    let counts = outbox_counts(&api).await;
    assert_eq!(counts.get("email:subscription_confirmation"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("email:payment_receipt"), Some(&1), "{counts:?}");
}

/// Subscriptions a lost commit left unnamed (their events long gone from the log, so only
/// the sweep can see them) are adopted; a sweep stopped after k of them resumes where it
/// stopped and finishes, handling each once.
#[tokio::test]
async fn the_sweep_adopts_orphans_and_a_stopped_sweep_resumes_and_finishes() {
    let api = AdminApi::over(TestEnv::new().await, sim_losing_webhooks().await);
    let names: Vec<String> = (0..5).map(|i| format!("orphan-{i}")).collect();
    let mut stripe_ids = Vec::new();
    for name in &names {
        stripe_ids.push(orphan(&api, name, 1).await);
    }
    let jobs = jobs_for(&api.env, api.sim.stripe_config(), settings());
    let runs = run_in_slices(&jobs, JobName::SweepStripe, Utc::now(), 2).await;
    assert_eq!(runs.len(), 3, "5 subscriptions, 2 per run: {runs:#?}");
    assert!(runs[..2].iter().all(|r| r.continued) && !runs[2].continued);
    // The counts are the whole pass's, so the last run's are the total.
    let total = runs[2].counts;
    assert_eq!((total.swept, total.sweep_repaired, total.orphans_adopted, total.orphans_flagged), (5, 5, 5, 0), "{total:?}");
    for (name, stripe_id) in names.iter().zip(&stripe_ids) {
        let user = UserId::parse(name).unwrap();
        let local = api.env.store.subscription(&user).await.unwrap().expect("adopted");
        assert_eq!(local.stripe_subscription_id.map(|s| s.to_string()).as_ref(), Some(stripe_id));
        let history = api.env.store.history(&user, 10).await.unwrap();
        assert_eq!(history.len(), 1, "{name}: handled once: {history:?}");
        assert_eq!((history[0].change, history[0].actor.as_str()), (HistoryChange::Synced, "job:sweep-stripe"));
    }
    assert!(api.stripe_calls("GET /v1/subscriptions") <= 3 + 1, "one page per run at most");

    // A second live subscription for a user whose record names one is flagged, not adopted.
    let second = orphan(&api, "orphan-0", 2).await;
    let pass = run(&jobs, JobName::SweepStripe, Utc::now()).await;
    assert_eq!((pass.counts.orphans_flagged, pass.counts.sweep_repaired), (1, 0), "{pass:?}");
    let local = api.env.store.subscription(&UserId::parse("orphan-0").unwrap()).await.unwrap().unwrap();
    assert_eq!(local.stripe_subscription_id.map(|s| s.to_string()).as_ref(), Some(&stripe_ids[0]), "not {second}");
}
