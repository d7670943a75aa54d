//! Opt-in Stripe timing (`SimConfig::search_delay`, `idempotency_expiry`,
//! `webhooks_before_response`) and concurrent requests, through HTTP only.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Api, Receiver, DAY, T0};
use serde_json::Value;
use stripe_sim::SimConfig;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

async fn search_count(api: &Api, email: &str) -> usize {
    let found = api.fetch(&format!("/v1/customers/search?query=email:'{email}'")).await;
    found["data"].as_array().unwrap().len()
}

#[tokio::test]
async fn search_results_lag_creation_by_the_configured_delay() {
    let sim = common::sim_with(SimConfig { search_delay: Some(Duration::from_millis(1000)), ..SimConfig::default() }).await;
    let api = Api::new(&sim);
    api.ok("/v1/customers", &[("email", "late@example.com")]).await;
    assert_eq!(search_count(&api, "late@example.com").await, 0, "not searchable right after creation");
    // Retrieval and lists are not eventually consistent, only search is.
    assert_eq!(api.fetch("/v1/customers?email=late@example.com").await["data"].as_array().unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(search_count(&api, "late@example.com").await, 1);

    // Without the option, search sees the customer at once.
    let eager = common::sim().await;
    let api = Api::new(&eager);
    api.ok("/v1/customers", &[("email", "now@example.com")]).await;
    assert_eq!(search_count(&api, "now@example.com").await, 1);
}

async fn subscribe_idem(api: &Api, key: &str, customer: &str) -> (u16, Value, bool) {
    let (status, body, headers) =
        api.post_idem("/v1/subscriptions", key, &[("customer", customer), ("items[0][price]", "price_premium_monthly")]).await;
    (status, body, headers.get("idempotent-replayed").is_some())
}

#[tokio::test]
async fn idempotency_keys_expire_after_24_hours_on_the_test_clock() {
    let sim = common::sim_with(SimConfig { idempotency_expiry: true, ..SimConfig::default() }).await;
    let api = Api::new(&sim);
    let clock = api.clock(T0).await;
    let cus = api.customer(&clock, Some("pm_card_visa")).await;
    let (_, first, replayed) = subscribe_idem(&api, "k-expiry", &cus).await;
    assert!(!replayed);
    api.advance(&clock, T0 + DAY - 60).await;
    let (_, again, replayed) = subscribe_idem(&api, "k-expiry", &cus).await;
    assert!(replayed, "still within 24 h on the clock");
    assert_eq!(again["id"], first["id"]);
    api.advance(&clock, T0 + DAY).await;
    let (status, fresh, replayed) = subscribe_idem(&api, "k-expiry", &cus).await;
    assert_eq!(status, 200);
    assert!(!replayed, "an expired key runs the request again");
    assert_ne!(fresh["id"], first["id"]);
    assert_eq!(api.fetch(&format!("/v1/subscriptions?customer={cus}")).await["data"].as_array().unwrap().len(), 2);
    // The new use starts a new 24 hours.
    let (_, replay, replayed) = subscribe_idem(&api, "k-expiry", &cus).await;
    assert!(replayed);
    assert_eq!(replay["id"], fresh["id"]);
}

#[tokio::test]
async fn idempotency_keys_never_expire_by_default() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let clock = api.clock(T0).await;
    let cus = api.customer(&clock, Some("pm_card_visa")).await;
    let (_, first, _) = subscribe_idem(&api, "k-forever", &cus).await;
    api.advance(&clock, T0 + 40 * DAY).await;
    let (_, again, replayed) = subscribe_idem(&api, "k-forever", &cus).await;
    assert!(replayed);
    assert_eq!(again["id"], first["id"]);
}

#[tokio::test]
async fn webhooks_can_arrive_before_the_response() {
    let sim = common::sim_with(SimConfig { webhooks_before_response: true, ..SimConfig::default() }).await;
    let api = Api::new(&sim);
    let hook = Receiver::registered(&sim).await;
    let cus = api.ok("/v1/customers", &[("email", "first@example.com"), ("payment_method", "pm_card_visa")]).await;
    // No wait_idle: the deliveries already happened while the request was served.
    let got = hook.received();
    let types: Vec<&str> = got.iter().map(|r| r.type_()).collect();
    assert_eq!(types, ["customer.created", "payment_method.attached"]);
    assert_eq!(got[0].object()["id"], cus["id"]);
    let clock = api.clock(T0).await;
    let c2 = api.customer(&clock, Some("pm_card_visa")).await;
    hook.clear();
    api.ok("/v1/subscriptions", &[("customer", &c2), ("items[0][price]", "price_premium_monthly")]).await;
    assert!(hook.types().contains(&"invoice.paid".to_string()), "{:?}", hook.types());

    // A receiver that fails is attempted once before the response, then retried later.
    hook.clear();
    hook.fail_next(1);
    api.ok("/v1/customers", &[("email", "second@example.com")]).await;
    assert!(hook.received().is_empty(), "the first attempt was refused");
    common::idle(&sim).await;
    assert_eq!(hook.types(), ["customer.created"]);
}

#[tokio::test]
async fn concurrent_creates_with_distinct_and_shared_idempotency_keys() {
    let sim = common::sim_with(SimConfig { webhooks_before_response: true, ..SimConfig::default() }).await;
    let _hook = Receiver::registered(&sim).await;
    let api = Arc::new(Api::new(&sim));
    let clock = api.clock(T0).await;
    let cus = api.customer(&clock, Some("pm_card_visa")).await;
    let fire = |key: Box<dyn Fn(usize) -> String + Send>| {
        let mut tasks = Vec::new();
        for n in 0..8 {
            let (api, cus, key) = (api.clone(), cus.clone(), key(n));
            tasks.push(tokio::spawn(async move { subscribe_idem(&api, &key, &cus).await }));
        }
        tasks
    };
    let mut distinct = Vec::new();
    for t in fire(Box::new(|n| format!("distinct-{n}"))) {
        let (status, body, _) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        distinct.push(s(&body["id"]).to_string());
    }
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 8, "eight keys, eight subscriptions");

    let mut shared = Vec::new();
    for t in fire(Box::new(|_| "shared".to_string())) {
        let (status, body, replayed) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        shared.push((body, replayed));
    }
    assert!(shared.windows(2).all(|w| w[0].0 == w[1].0), "all eight get the same answer");
    assert_eq!(shared.iter().filter(|(_, replayed)| !replayed).count(), 1, "exactly one ran");
    let all = api.fetch(&format!("/v1/subscriptions?customer={cus}&limit=100")).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 9);
    let invoices = api.fetch(&format!("/v1/invoices?customer={cus}&limit=100")).await;
    assert_eq!(invoices["data"].as_array().unwrap().len(), 9, "one first invoice each, none twice");
}
