//! What a cold start does before it asks for work: each function binary, run as Lambda
//! runs it, opens its DynamoDB and Stripe connections during init (one read each, through
//! the clients its handlers use), so its first request reuses them and opens none.
//! Connections are counted by TCP forwarders in front of stripe-sim and of a keep-alive
//! proxy before moto server (which closes every connection itself, as AWS does not);
//! Secrets Manager, read at init too, has its own endpoint so it cannot stand in for
//! DynamoDB's connection.

use std::time::Duration;

use harness::{
    counting::CountingProxy,
    lambda::{binary, build_functions, function_env, unknown_subscription_updated, webhook_delivery, Gate, Instance},
    secrets,
    sim::Sim,
    tcp::Forwarder,
    TestEnv,
};
use serde_json::{json, Value};
use stripe_webhook::signature::sign_header;

const STRIPE_KEY: &str = "sk_test_coldstart5d1f0c";
const SIGNING_SECRET: &str = "whsec_coldstart9a7e21";

fn signed(body: &str) -> Value {
    webhook_delivery(body, &sign_header(body.as_bytes(), SIGNING_SECRET, chrono::Utc::now().timestamp()))
}

#[tokio::test]
async fn each_function_opens_its_connections_during_init_and_its_first_request_opens_none() {
    build_functions();
    let env = TestEnv::new().await;
    let sim = Sim::start().await;
    let keep_alive = CountingProxy::start(env.moto.endpoint()).await;
    let aws = Forwarder::start(&keep_alive.url).await;
    let stripe = Forwarder::start(sim.handle.base_url()).await;
    let mut vars = function_env(&env, &format!("http://{}", stripe.addr), &format!("http://{}", aws.addr));
    vars.extend(secrets::stripe_vars(&env, STRIPE_KEY, Some(SIGNING_SECRET)).await);
    vars.insert("AWS_ENDPOINT_URL_SECRETS_MANAGER".into(), env.moto.endpoint().to_owned());

    let claims = admin_api::apigw::admin_claims("cold-admin");
    let cases = [
        // (function, its first request, whether that request goes to Stripe, what it answers)
        (
            "admin-api",
            admin_api::apigw::event("GET", "/users/cold-nobody/subscription", None, Some(claims), None, &[]),
            false,
            "statusCode",
        ),
        // A subscription Stripe does not know: read from DynamoDB, asked of Stripe, ledgered.
        ("stripe-webhook", signed(&unknown_subscription_updated("cold")), true, "statusCode"),
        ("expiry-jobs", json!({"job": "deliver-pending"}), false, "job"),
    ];
    for (name, event, asks_stripe, answer_field) in cases {
        let price_reads = || sim.handle.request_counts().get("GET /v1/prices/{id}").copied().unwrap_or(0);
        let (aws_before, stripe_before, prices_before) = (aws.accepted(), stripe.accepted(), price_reads());
        let gate = Gate::new();
        let instance = Instance::start(&binary(name), &vars, event, &gate).await;
        instance.ready(Duration::from_secs(30)).await;
        let (aws_at_init, stripe_at_init) = (aws.accepted() - aws_before, stripe.accepted() - stripe_before);
        assert!(aws_at_init >= 1, "{name} opened no AWS connection during init");
        assert_eq!(stripe_at_init, 1, "{name} opens one Stripe connection during init");
        assert_eq!(price_reads() - prices_before, 1, "{name}'s init reads the configured price once");

        gate.open();
        let answer = instance.answer(Duration::from_secs(60)).await;
        assert!(answer.get(answer_field).is_some(), "{name} answered {answer}");
        if name != "expiry-jobs" {
            // The jobs query the index shards at once, so their first run may need more
            // connections than init opened; the HTTP functions make one call at a time.
            assert_eq!(aws.accepted() - aws_before, aws_at_init, "{name}'s first request opened a new AWS connection: {answer}");
        }
        if asks_stripe {
            assert_eq!(stripe.accepted() - stripe_before, 1, "{name}'s first request opened a new Stripe connection: {answer}");
        }
    }
}
