//! Admin-api as Lambda runs it under load: several instances (each its own process, each
//! served one request by its own loopback Runtime API), released together for one user,
//! and an instance killed after Stripe created the subscription and before the commit.
//! DynamoDB is reached through the env's serial proxy (moto is not isolated; real
//! DynamoDB is), so what races is our code: reads, conditions, versions, operations.

use std::{collections::BTreeMap, time::Duration};

use harness::{
    lambda::{binary, Gate, Instance},
    proxy::{Fault, Proxy},
    sim::Sim,
    TestEnv,
};
use serde_json::{json, Value};
use shared::{
    domain::{SubscriptionStatus, UserId},
    stripe::StripeConfig,
};

const K: usize = 6;

/// What the admin-api process reads from its environment, over `env` and `stripe` (its
/// key stored in the env's Secrets Manager, the process given the secret's ARN).
async fn function_env(env: &TestEnv, stripe: &StripeConfig, lease_secs: u64) -> BTreeMap<String, String> {
    let endpoint = env.config.endpoint_url().expect("the env's AWS endpoint").to_owned();
    let mut vars: BTreeMap<String, String> = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("TABLE_NAME", env.table.as_str()),
        ("EVENT_BUS_NAME", env.bus.as_str()),
        ("ADMIN_GROUP", "admin"),
        ("STRIPE_PRICE_PREMIUM", stripe.price_premium.as_str()),
        ("STRIPE_PRICE_ENTERPRISE", stripe.price_enterprise.as_str()),
        ("MAIL_FROM", harness::env::MAIL_FROM),
        ("APP_BASE_URL", "https://app.logiscore.test"),
        ("RUST_LOG", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    vars.extend(harness::secrets::stripe_vars(env, stripe.secret_key.expose(), None).await);
    vars.insert("STRIPE_API_BASE".into(), stripe.api_base.clone().expect("a local Stripe"));
    vars.insert("OPERATION_LEASE_SECONDS".into(), lease_secs.to_string());
    vars
}

fn put_subscription(user: &str, key: Option<&str>, comment: &str) -> Value {
    let body = json!({"tier": "premium", "duration_months": 12, "is_paid": true, "auto_renew": true,
                      "payment_method_id": "pm_card_visa", "comment": comment});
    let headers: Vec<(&str, &str)> = key.map(|k| vec![("idempotency-key", k)]).unwrap_or_default();
    admin_api::apigw::event(
        "PUT",
        &format!("/users/{user}/subscription"),
        None,
        Some(admin_api::apigw::admin_claims("instance-admin")),
        Some(&body),
        &headers,
    )
}

/// (status, body) of an API Gateway v2 response document.
fn reply(answer: &Value) -> (u64, Value) {
    let status = answer["statusCode"].as_u64().unwrap_or_else(|| panic!("not a response: {answer}"));
    let body = answer["body"].as_str().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
    (status, body)
}

/// Every subscription Stripe has for the user, and how many customers carry their address.
async fn at_stripe(sim: &Sim, user: &str) -> (Vec<Value>, usize) {
    let customers = sim.get(&format!("/v1/customers?email={user}%40example.com")).await;
    let customers = customers["data"].as_array().cloned().unwrap_or_default();
    let mut subscriptions = Vec::new();
    for customer in &customers {
        let id = customer["id"].as_str().unwrap_or_default();
        let listed = sim.get(&format!("/v1/subscriptions?customer={id}&status=all")).await;
        subscriptions.extend(listed["data"].as_array().cloned().unwrap_or_default());
    }
    (subscriptions, customers.len())
}

fn live(subscriptions: &[Value]) -> Vec<&Value> {
    subscriptions.iter().filter(|s| !matches!(s["status"].as_str(), Some("canceled" | "incomplete_expired"))).collect()
}

/// K instances, released together, each sending `events[i]`; their answers.
async fn race(env: &TestEnv, sim: &Sim, events: Vec<Value>) -> Vec<(u64, Value)> {
    let bin = binary("admin-api");
    let vars = function_env(env, &sim.stripe_config(), 60).await;
    let gate = Gate::new();
    let mut instances = Vec::new();
    for event in events {
        instances.push(Instance::start(&bin, &vars, event, &gate).await);
    }
    for instance in &instances {
        instance.ready(Duration::from_secs(30)).await;
    }
    gate.open();
    let mut answers = Vec::new();
    for instance in &instances {
        answers.push(reply(&instance.answer(Duration::from_secs(60)).await));
    }
    answers
}

async fn assert_one_live_subscription(env: &TestEnv, sim: &Sim, user: &str, answers: &[(u64, Value)]) {
    for (status, body) in answers {
        assert!(*status < 500, "{user}: an instance answered {status}: {body}");
        let accepted = matches!(*status, 200 | 201) || body["code"] == "operation_in_progress";
        assert!(accepted, "{user}: unexpected answer {status}: {body}");
    }
    let created = answers.iter().filter(|(s, b)| *s == 201 && b["outcome"] == "created").count();
    assert_eq!(created, 1, "{user}: answers {answers:?}");
    let (subscriptions, customers) = at_stripe(sim, user).await;
    let live = live(&subscriptions);
    assert_eq!(live.len(), 1, "{user}: live Stripe subscriptions {subscriptions:?}");
    assert!(customers <= 1, "{user}: {customers} Stripe customers");
    let local = env.store.subscription(&UserId::parse(user).unwrap()).await.unwrap().expect("a local record");
    assert_eq!(local.stripe_subscription_id.as_ref().map(|s| s.as_str()), live[0]["id"].as_str(), "{user}: the record names it");
}

#[tokio::test]
async fn concurrent_instances_create_one_subscription_per_user_whatever_the_keys() {
    let env = TestEnv::new().await;
    let sim = Sim::start().await;
    let mut cases = 0;
    for (user, keys) in [
        ("race-keys", (0..K).map(|i| Some(format!("key-{i}"))).collect::<Vec<_>>()),
        ("race-one-key", vec![Some("the-key".to_owned()); K]),
        ("race-no-key", vec![None; K]),
    ] {
        harness::jobs::put_profile(&env, &UserId::parse(user).unwrap()).await;
        let events = keys.iter().enumerate().map(|(i, k)| put_subscription(user, k.as_deref(), &format!("admin {i}"))).collect();
        let answers = race(&env, &sim, events).await;
        assert_one_live_subscription(&env, &sim, user, &answers).await;
        cases += K as u64;
    }
    super::finish("concurrent admin-api instances", cases, 0, 0);
}

#[tokio::test]
async fn an_instance_killed_between_stripe_and_the_commit_is_finished_by_the_next_request() {
    let env = TestEnv::new().await;
    let sim = Sim::start().await;
    let user = "killed-mid-create";
    harness::jobs::put_profile(&env, &UserId::parse(user).unwrap()).await;
    // Stripe's answer to the create is held: Stripe has created the subscription and
    // charged its first invoice (`allow_incomplete`), the function is still waiting for
    // the answer, and so has recorded nothing, when it dies.
    let stripe = Proxy::start(sim.handle.base_url()).await;
    stripe.set_route("POST /v1/subscriptions", Fault::Hold(Duration::from_secs(60)));
    let through_proxy = StripeConfig { api_base: Some(stripe.url.clone()), ..sim.stripe_config() };
    let gate = Gate::new();
    let mut instance = Instance::start(
        &binary("admin-api"),
        &function_env(&env, &through_proxy, 2).await,
        put_subscription(user, Some("first-attempt"), "first"),
        &gate,
    )
    .await;
    instance.ready(Duration::from_secs(30)).await;
    gate.open();
    let started = std::time::Instant::now();
    let created = loop {
        let (subscriptions, _) = at_stripe(&sim, user).await;
        if let Some(sub) = subscriptions.first() {
            break sub.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "Stripe never saw the create");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    instance.kill();
    assert_eq!(created["status"], "active", "created and charged at Stripe: {created}");
    let user_id = UserId::parse(user).unwrap();
    assert!(env.store.subscription(&user_id).await.unwrap().is_none(), "the commit never happened");

    // The operation's lease (2 s here) runs out; a different request for the user comes.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let router = admin_api::app(&harness::admin::config(&env, &sim), &env.aws_clients()).expect("admin-api builds");
    let body = json!({"tier": "premium", "duration_months": 12, "is_paid": true, "auto_renew": true,
                      "payment_method_id": "pm_card_visa", "comment": "second, corrected"});
    let event = admin_api::apigw::event(
        "PUT",
        &format!("/users/{user}/subscription"),
        None,
        Some(admin_api::apigw::admin_claims("instance-admin")),
        Some(&body),
        &[("idempotency-key", "another-key")],
    );
    let answer = admin_api::apigw::invoke(&router, &event).await.expect("router answered");
    assert!(answer.status.is_success(), "{}: {}", answer.status, answer.body);
    let (subscriptions, customers) = at_stripe(&sim, user).await;
    let live = live(&subscriptions);
    assert_eq!(live.len(), 1, "live Stripe subscriptions {subscriptions:?}");
    assert_eq!(customers, 1);
    assert_eq!(live[0]["id"], created["id"]);
    let local = env.store.subscription(&user_id).await.unwrap().expect("recorded now");
    assert_eq!(local.stripe_subscription_id.as_ref().map(|s| s.as_str()), created["id"].as_str());
    assert_eq!(answer.body["subscription"]["stripe_subscription_id"], created["id"]);
    // Charged once: by the create, not again by the recovery or the corrected request.
    assert_eq!(live[0]["status"], "active", "{}", live[0]);
    let invoices = sim.get(&format!("/v1/invoices?subscription={}", created["id"].as_str().unwrap())).await;
    let paid: Vec<i64> = invoices["data"].as_array().unwrap().iter().map(|i| i["amount_paid"].as_i64().unwrap()).collect();
    assert_eq!(paid, vec![999], "one first invoice, paid once: {invoices}");
    assert_eq!(local.status, SubscriptionStatus::Active);
    super::finish("admin-api killed between Stripe and the commit", 1, 1, 1);
}
