//! The function binaries, run as Lambda runs them, start from secrets stored in (moto's)
//! Secrets Manager with no Stripe key in their environment, only the secrets' ARNs: each
//! secret is read once, at init. A secret that cannot be read, or holds the wrong thing,
//! fails the init, naming the secret and never its value; an unreachable Secrets Manager
//! fails it within the SDK's timeouts and bounded retry instead of hanging.

use std::{collections::BTreeMap, time::Duration};

use harness::{
    lambda::{binary, build_functions, unknown_subscription_updated, webhook_delivery, Gate, Instance},
    proxy::{Fault, Proxy},
    secrets,
    sim::Sim,
    TestEnv,
};
use serde_json::{json, Value};
use stripe_webhook::signature::sign_header;

const STRIPE_KEY: &str = "sk_test_secretsFROMsm7c2e9a";
const SIGNING_SECRET: &str = "whsec_secretsFROMsm4b1d8f";

/// Everything a function reads from its environment but the secrets, with AWS at `aws_endpoint`.
fn plain_env(env: &TestEnv, sim: &Sim, aws_endpoint: &str) -> BTreeMap<String, String> {
    harness::lambda::function_env(env, sim.handle.base_url(), aws_endpoint)
}

/// The `SecretId`s of the `GetSecretValue` calls among `exchanges` (the only AWS calls
/// whose JSON body names a `SecretId`).
fn secret_reads(exchanges: &[harness::proxy::Exchange]) -> Vec<String> {
    exchanges
        .iter()
        .filter_map(|x| serde_json::from_slice::<Value>(&x.request_body).ok())
        .filter_map(|body| body["SecretId"].as_str().map(str::to_owned))
        .collect()
}

/// Runs `name` with `vars` for one `event`; its answer and the secrets it read meanwhile.
async fn run_once(name: &str, vars: &BTreeMap<String, String>, event: Value, recording: &Proxy) -> (Value, Vec<String>) {
    let before = recording.exchanges().len();
    let gate = Gate::new();
    let instance = Instance::start(&binary(name), vars, event, &gate).await;
    instance.ready(Duration::from_secs(30)).await;
    gate.open();
    let answer = instance.answer(Duration::from_secs(60)).await;
    (answer, secret_reads(&recording.exchanges()[before..]))
}

#[tokio::test]
async fn each_function_starts_from_its_secrets_in_secrets_manager_reading_each_once() {
    build_functions();
    let env = TestEnv::new().await;
    let sim = Sim::start().await;
    // Every AWS call of the functions through a recording proxy, to count the secret reads.
    let recording = Proxy::recording(env.moto.endpoint()).await;
    let stored = secrets::stripe_vars(&env, STRIPE_KEY, Some(SIGNING_SECRET)).await;
    let mut vars = plain_env(&env, &sim, &recording.url);
    vars.extend(stored.clone());
    for (var, value) in &vars {
        assert!(!value.contains(STRIPE_KEY) && !value.contains(SIGNING_SECRET), "{var} holds a secret's value");
    }
    let key_arn = stored["STRIPE_SECRET_ARN"].clone();
    let signing_arn = stored["STRIPE_WEBHOOK_SECRET_ARN"].clone();

    let claims = admin_api::apigw::admin_claims("secrets-admin");
    let get = admin_api::apigw::event("GET", "/users/secrets-nobody/subscription", None, Some(claims), None, &[]);
    let (answer, reads) = run_once("admin-api", &vars, get, &recording).await;
    assert_eq!(answer["statusCode"], 404, "{answer}");
    assert_eq!(reads, std::slice::from_ref(&key_arn), "admin-api reads its Stripe key once");

    // A subscription Stripe does not know: the webhook asks Stripe (with the key it read),
    // is told 404, and records the event as ignored. Signed with the secret from Secrets
    // Manager it is accepted; signed with any other, refused.
    let body = unknown_subscription_updated("secrets");
    let now = chrono::Utc::now().timestamp();
    let (answer, reads) =
        run_once("stripe-webhook", &vars, webhook_delivery(&body, &sign_header(body.as_bytes(), SIGNING_SECRET, now)), &recording).await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let mut sorted = reads.clone();
    sorted.sort();
    let mut expected = vec![key_arn.clone(), signing_arn.clone()];
    expected.sort();
    assert_eq!(sorted, expected, "stripe-webhook reads its key and its signing secrets, once each");
    let forged = sign_header(body.as_bytes(), "whsec_not_the_one_in_secrets_manager", now);
    let (answer, _) = run_once("stripe-webhook", &vars, webhook_delivery(&body, &forged), &recording).await;
    assert_eq!(answer["statusCode"], 400, "{answer}");

    let (answer, reads) = run_once("expiry-jobs", &vars, json!({"job": "deliver-pending"}), &recording).await;
    assert_eq!(answer["job"], "deliver-pending", "{answer}");
    assert_eq!(reads, [key_arn], "expiry-jobs reads its Stripe key once");
}

/// Runs `name` with `vars` until it exits (its init fails before it asks for work);
/// returns everything it printed.
async fn failed_init(name: &str, vars: &BTreeMap<String, String>) -> String {
    let logs = harness::workspace_root().join("target/test-logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    let log_path = logs.join(format!("secrets-init-{name}-{}.log", uuid::Uuid::new_v4().simple()));
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut command = std::process::Command::new(binary(name));
    command
        .envs(vars)
        // Nothing listens there: a function that got past its init would fail differently.
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{}", harness::free_port()))
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log);
    let mut child = harness::process::ChildGuard::spawn(command).expect("start the function");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{name} neither started nor failed within 30 s");
        // Not a blocking sleep: the proxies this test reads are served on this runtime.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(!status.success(), "{name} exited successfully:\n{output}");
    output
}

#[tokio::test]
async fn a_secret_that_cannot_be_read_or_is_the_wrong_one_fails_the_init_without_showing_its_value() {
    build_functions();
    let env = TestEnv::new().await;
    let sim = Sim::start().await;
    let plain = plain_env(&env, &sim, env.moto.endpoint());
    let signing = secrets::store(&env, "signing", SIGNING_SECRET).await;
    let key = secrets::store(&env, "key", STRIPE_KEY).await;
    let missing = format!("{key}-gone");

    let with = |pairs: &[(&str, &str)]| {
        let mut vars = plain.clone();
        vars.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        vars
    };
    // The signing secret where the API key belongs, and the other way round.
    let cases: Vec<(&str, BTreeMap<String, String>, Vec<&str>)> = vec![
        ("admin-api", with(&[]), vec!["STRIPE_SECRET_ARN is required"]),
        ("admin-api", with(&[("STRIPE_SECRET_ARN", &missing)]), vec![&missing, "could not be read"]),
        ("expiry-jobs", with(&[("STRIPE_SECRET_ARN", &signing)]), vec![&signing, "a Stripe API key"]),
        (
            "stripe-webhook",
            with(&[("STRIPE_SECRET_ARN", &key), ("STRIPE_WEBHOOK_SECRET_ARN", &key)]),
            vec![&key, "STRIPE_WEBHOOK_SECRET_ARN", "whsec_"],
        ),
    ];
    for (name, vars, expected) in cases {
        let output = failed_init(name, &vars).await;
        for text in expected {
            assert!(output.contains(text), "{name}: the init error does not say `{text}`:\n{output}");
        }
        assert!(!output.contains(STRIPE_KEY) && !output.contains(SIGNING_SECRET), "{name} printed a secret:\n{output}");
    }
}

#[tokio::test]
async fn an_unreachable_secrets_manager_fails_the_init_within_the_sdk_timeouts() {
    build_functions();
    let env = TestEnv::new().await;
    let sim = Sim::start().await;
    let key = secrets::store(&env, "key", STRIPE_KEY).await;
    // Secrets Manager accepts the connection and never answers in time.
    let stalled = Proxy::start(env.moto.endpoint()).await;
    stalled.set(Fault::Delay(Duration::from_secs(120)));
    let mut vars = plain_env(&env, &sim, &stalled.url);
    vars.insert("STRIPE_SECRET_ARN".into(), key.clone());
    let started = std::time::Instant::now();
    let output = failed_init("admin-api", &vars).await;
    let took = started.elapsed();
    assert!(output.contains(&key) && output.contains("could not be read"), "{output}");
    // Attempts of at most 3 s, 8 s in all (shared::config::aws_sdk_config), plus the start.
    assert!(took < Duration::from_secs(20), "the init took {took:?}");
    let attempts = stalled.requests();
    assert!((1..=3).contains(&attempts), "{attempts} GetSecretValue attempts: the retry is not bounded");
}
