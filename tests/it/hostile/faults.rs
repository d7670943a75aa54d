//! Dependency faults: each function's DynamoDB (moto) and Stripe (stripe-sim) traffic goes
//! through a `harness::proxy::Proxy` switched to refuse, delay past the timeout, cut the
//! response mid-way (after the upstream applied the request), or answer 500 / 429.
//!
//! - admin: 502/503 problem+json, never half-written state; the same request retried after
//!   the fault clears completes once (one Stripe subscription, one record, one history entry);
//! - webhook: 5xx so Stripe retries; the redelivery after the fault applies the event once
//!   (the same outbox items as an unfaulted delivery, none twice);
//! - jobs: the faulted run fails, a rerun completes (one expiry, one e-mail queued).

use crate::fixtures::{created, granted};
use std::{collections::BTreeSet, time::Duration};

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use harness::{
    proxy::{Fault, Proxy},
    sim::Sim,
    webhook, TestEnv,
};
use serde_json::{json, Value};
use shared::{
    config::AwsClients,
    domain::{Subscription, SubscriptionStatus, Tier, UserId},
    store::{Change, StripeMapping},
    stripe::{RetryPolicy, StripeConfig},
};

/// Every fault, for each dependency.
fn faults() -> Vec<Fault> {
    vec![Fault::Refuse, Fault::Status(500), Fault::Status(429), Fault::Cut, Fault::Delay(Duration::from_millis(1_500))]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dep {
    Dynamo,
    Stripe,
}

/// SDK config through `proxy`, with a 1 s attempt timeout so `Delay` is quick to see.
async fn sdk_through(proxy: &Proxy) -> SdkConfig {
    harness::moto::sdk_config_for(&proxy.url)
        .await
        .to_builder()
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(500))
                .operation_attempt_timeout(Duration::from_secs(1))
                .operation_timeout(Duration::from_secs(4))
                .build(),
        )
        .build()
}

/// Stripe through `proxy`, with two quick attempts per call so a fault is quick to see.
fn stripe_through(sim: &Sim, proxy: &Proxy) -> StripeConfig {
    let retry = RetryPolicy { max_attempts: 2, base_delay: Duration::from_millis(20), factor: 2, attempt_timeout: Duration::from_secs(1) };
    StripeConfig { api_base: Some(proxy.url.clone()), retry, ..sim.stripe_config() }
}

struct Rig {
    env: TestEnv,
    sim: Sim,
    ddb: Proxy,
    stripe: Proxy,
    /// The functions' AWS clients: DynamoDB through the `ddb` proxy, SES and EventBridge direct.
    aws: AwsClients,
}

impl Rig {
    async fn new() -> Rig {
        let env = TestEnv::new().await;
        let sim = Sim::start().await;
        let ddb = Proxy::start(env.moto.endpoint()).await;
        let stripe = Proxy::start(sim.handle.base_url()).await;
        let aws = AwsClients { dynamodb: aws_sdk_dynamodb::Client::new(&sdk_through(&ddb).await), ..env.aws_clients() };
        Rig { env, sim, ddb, stripe, aws }
    }

    fn proxy(&self, dep: Dep) -> &Proxy {
        match dep {
            Dep::Dynamo => &self.ddb,
            Dep::Stripe => &self.stripe,
        }
    }

    fn injected(&self) -> u64 {
        self.ddb.injected() + self.stripe.injected()
    }

    /// (sort keys under `USER#{user}`, ids of the outbox items about `user`).
    async fn state_of(&self, user: &str) -> (BTreeSet<String>, BTreeSet<String>) {
        let mut keys = BTreeSet::new();
        let mut outbox = BTreeSet::new();
        let mut start = None;
        loop {
            let page = self.env.ddb.scan().table_name(&self.env.table).set_exclusive_start_key(start).send().await.expect("scan");
            for item in page.items() {
                let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                let sk = item.get("sk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                // Outbox items name their user inside the JSON payload.
                let payload = item.get("payload").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                // The operation lock is written before any Stripe call by design (and left open
                // when Stripe's answer is unknown): it is not the user's subscription state.
                if pk == format!("USER#{user}") && sk != "OPERATION" {
                    keys.insert(sk);
                } else if pk.starts_with("OUTBOX#") && payload.contains(&format!("\"{user}\"")) {
                    outbox.insert(pk.trim_start_matches("OUTBOX#").to_owned());
                }
            }
            match page.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return (keys, outbox),
            }
        }
    }
}

fn is_problem_5xx(answer: &admin_api::apigw::Answer, allowed: &[u16]) -> bool {
    allowed.contains(&answer.status.as_u16())
        && answer.headers.get("content-type").and_then(|v| v.to_str().ok()) == Some("application/problem+json")
}

#[tokio::test]
async fn admin_answers_502_or_503_writes_nothing_half_and_the_retry_completes_once() {
    let rig = Rig::new().await;
    let config = admin_api::Config { stripe: stripe_through(&rig.sim, &rig.stripe), ..harness::admin::config(&rig.env, &rig.sim) };
    let router = admin_api::app(&config, &rig.aws).expect("admin-api builds");
    let call = |method: &'static str, path: String, body: Option<Value>, key: Option<String>| {
        let router = router.clone();
        async move {
            let headers: Vec<(&str, &str)> = key.as_deref().map(|k| vec![("idempotency-key", k)]).unwrap_or_default();
            let event =
                admin_api::apigw::event(method, &path, None, Some(admin_api::apigw::admin_claims("fault-admin")), body.as_ref(), &headers);
            admin_api::apigw::invoke(&router, &event).await.expect("router answered")
        }
    };
    let mut cases = 0;
    for dep in [Dep::Dynamo, Dep::Stripe] {
        for (i, fault) in faults().into_iter().enumerate() {
            let user = format!("fault-{dep:?}-{i}").to_lowercase();
            let profile = call("PUT", format!("/users/{user}"), Some(json!({"email": format!("{user}@example.com")})), None).await;
            assert!(profile.status.is_success(), "{user} profile: {}", profile.body);
            let body =
                json!({"tier": "premium", "duration_months": 12, "is_paid": true, "auto_renew": true, "payment_method_id": "pm_card_visa"});
            let key = format!("key-{user}");
            let (keys_before, outbox_before) = rig.state_of(&user).await;

            rig.proxy(dep).set(fault);
            let answer = call("PUT", format!("/users/{user}/subscription"), Some(body.clone()), Some(key.clone())).await;
            rig.proxy(dep).set(Fault::Pass);
            assert!(
                is_problem_5xx(&answer, &[502, 503]),
                "{dep:?} {fault}: answered {} {:?}: {}",
                answer.status,
                answer.headers.get("content-type"),
                answer.body
            );

            // Never half-written: the record, its history entry and its notifications are one
            // transaction (a cut response may hide that it committed — then all of it is there).
            let (keys, outbox) = rig.state_of(&user).await;
            let has_sub = keys.contains("SUBSCRIPTION");
            let has_history = keys.iter().any(|k| k.starts_with("HISTORY#"));
            assert_eq!(has_sub, has_history, "{dep:?} {fault}: half-written: {keys:?}");
            if !has_sub {
                assert_eq!((&keys, &outbox), (&keys_before, &outbox_before), "{dep:?} {fault}: a failed request changed state");
            }

            // The fault clears; the client retries with the same key: done, once.
            let retry = call("PUT", format!("/users/{user}/subscription"), Some(body), Some(key)).await;
            assert!(retry.status.is_success(), "{dep:?} {fault}: retry answered {}: {}", retry.status, retry.body);
            let (keys, outbox) = rig.state_of(&user).await;
            assert!(keys.contains("SUBSCRIPTION"), "{dep:?} {fault}: {keys:?}");
            let history = keys.iter().filter(|k| k.starts_with("HISTORY#")).count();
            assert_eq!(history, 1, "{dep:?} {fault}: history entries {keys:?}");
            let local = rig.env.store.subscription(&UserId::parse(&user).unwrap()).await.unwrap().expect("record");
            let customer = local.stripe_customer_id.clone().expect("customer id");
            let subs = rig.sim.get(&format!("/v1/subscriptions?customer={customer}&status=all")).await;
            assert_eq!(subs["data"].as_array().map(Vec::len), Some(1), "{dep:?} {fault}: Stripe subscriptions {subs}");
            let customers = rig.sim.get(&format!("/v1/customers?email={user}%40example.com")).await;
            assert!(customers["data"].as_array().map_or(0, Vec::len) <= 1, "{dep:?} {fault}: duplicate customers {customers}");
            assert!(!outbox.is_empty(), "{dep:?} {fault}: the confirmation was not queued");
            cases += 1;
        }
    }
    super::finish("admin under dependency faults", cases, rig.injected(), 0);
}

const SECRET: &str = "whsec_fault_tests";

fn signed(webhook_event: &Value) -> axum::extract::Request {
    let body = serde_json::to_vec(webhook_event).unwrap();
    let header = stripe_webhook::signature::sign_header(&body, SECRET, Utc::now().timestamp());
    harness::webhook::request(body, Some(header))
}

#[tokio::test]
async fn webhook_answers_5xx_under_faults_and_the_redelivery_applies_once() {
    let rig = Rig::new().await;
    let config = webhook::config(&rig.env, stripe_through(&rig.sim, &rig.stripe), &[SECRET]);
    let webhook = stripe_webhook::app(&config, &rig.aws).expect("stripe-webhook builds");
    let mut reference: Option<usize> = None;
    let mut cases = 0;
    let mut plan = vec![(Dep::Dynamo, Fault::Pass)];
    for dep in [Dep::Dynamo, Dep::Stripe] {
        plan.extend(faults().into_iter().map(|f| (dep, f)));
    }
    for (i, (dep, fault)) in plan.into_iter().enumerate() {
        let user = format!("wh-fault-{i}");
        let user_id = UserId::parse(&user).unwrap();
        harness::jobs::put_profile(&rig.env, &user_id).await;
        let customer = rig.sim.post("/v1/customers", &[("email", &format!("{user}@example.com"))]).await["id"].as_str().unwrap().to_owned();
        let pm =
            rig.sim.post("/v1/payment_methods/pm_card_visa/attach", &[("customer", &customer)]).await["id"].as_str().unwrap().to_owned();
        let sub = rig
            .sim
            .post(
                "/v1/subscriptions",
                &[("customer", &customer), ("items[0][price]", stripe_sim::PREMIUM_MONTHLY), ("default_payment_method", &pm)],
            )
            .await;
        let sub_id = sub["id"].as_str().unwrap().to_owned();
        rig.env
            .store
            .commit(Change {
                user_id: Some(user_id.clone()),
                mappings: vec![StripeMapping::Customer(customer.clone())],
                ..Change::default()
            })
            .await
            .unwrap();
        let event = json!({"id": format!("evt_fault_{i}"), "object": "event", "type": "customer.subscription.created", "created": Utc::now().timestamp(), "livemode": false,
                           "data": {"object": {"id": sub_id, "object": "subscription", "customer": customer}}});

        rig.proxy(dep).set(fault);
        let first = webhook::call(&webhook, signed(&event)).await;
        rig.proxy(dep).set(Fault::Pass);
        if fault == Fault::Pass {
            assert_eq!(first.status, 200);
        } else {
            assert!(first.status >= 500, "{dep:?} {fault}: answered {} — Stripe would not retry", first.status);
        }
        // Stripe redelivers (twice, for good measure): applied once, then duplicates.
        for _ in 0..2 {
            let again = webhook::call(&webhook, signed(&event)).await;
            assert_eq!(again.status, 200, "{dep:?} {fault}: redelivery {}", again.text());
        }
        let local = rig.env.store.subscription(&user_id).await.unwrap().unwrap_or_else(|| panic!("{dep:?} {fault}: lost"));
        assert_eq!((local.status, local.tier), (SubscriptionStatus::Active, Tier::Premium), "{dep:?} {fault}");
        assert!(rig.env.store.event_seen(&format!("evt_fault_{i}")).await.unwrap());
        let (keys, outbox) = rig.state_of(&user).await;
        assert_eq!(keys.iter().filter(|k| k.starts_with("HISTORY#")).count(), 1, "{dep:?} {fault}: {keys:?}");
        let expected = *reference.get_or_insert(outbox.len());
        assert!(expected > 0, "the unfaulted delivery queued nothing");
        assert_eq!(outbox.len(), expected, "{dep:?} {fault}: outbox {outbox:?} (lost or duplicated)");
        cases += 1;
    }
    super::finish("webhook under dependency faults", cases, rig.injected(), 0);
}

fn lapsed(user: &UserId, end: DateTime<Utc>) -> Subscription {
    Subscription { id: format!("local-{user}"), cancel_at_period_end: true, ..granted(user, end) }
}

#[tokio::test]
async fn a_job_run_failed_by_a_fault_is_completed_by_the_rerun() {
    let rig = Rig::new().await;
    let now = Utc::now();
    let mut cases = 0;
    for (i, fault) in faults().into_iter().enumerate() {
        let user = UserId::parse(&format!("job-fault-{i}")).unwrap();
        harness::jobs::put_profile(&rig.env, &user).await;
        let sub = lapsed(&user, now - chrono::Duration::days(10 + i as i64));
        rig.env.store.commit(created(&sub)).await.unwrap();
        // The jobs with DynamoDB behind the fault proxy.
        let settings = expiry_jobs::JobSettings { page_size: 25, concurrency: 1, ..expiry_jobs::JobSettings::default() };
        let jobs = harness::jobs::jobs_over(&rig.env, &rig.aws, harness::jobs::unreachable_stripe(), settings);
        let request = expiry_jobs::JobRequest { job: expiry_jobs::JobName::ExpireLapsed, time: Some(now), cursor: None };

        rig.ddb.set(fault);
        let failed = jobs.run(request.clone(), now, &expiry_jobs::Budget::unlimited()).await;
        rig.ddb.set(Fault::Pass);
        let done_already = matches!(&failed, Ok(s) if s.counts.expired >= 1);
        assert!(
            !done_already || fault == Fault::Cut || matches!(fault, Fault::Delay(_)),
            "{fault}: the run succeeded through the fault: {failed:?}"
        );

        let mut expired = 0;
        for _ in 0..3 {
            let rerun =
                jobs.run(request.clone(), now, &expiry_jobs::Budget::unlimited()).await.unwrap_or_else(|e| panic!("{fault}: rerun: {e}"));
            expired += rerun.counts.expired;
        }
        if let Ok(first) = &failed {
            expired += first.counts.expired;
        }
        let local = rig.env.store.subscription(&user).await.unwrap().expect("record");
        assert_eq!(local.status, SubscriptionStatus::Expired, "{fault}: not expired after the rerun");
        assert!(expired <= 1, "{fault}: expired {expired} times");
        let (keys, outbox) = rig.state_of(user.as_str()).await;
        assert_eq!(keys.iter().filter(|k| k.starts_with("HISTORY#")).count(), 2, "{fault}: created + expired: {keys:?}");
        let emails: Vec<_> = outbox.iter().filter(|id| id.contains("email") || id.contains("expired") || id.contains("ended")).collect();
        assert!(!outbox.is_empty() && emails.len() <= 1, "{fault}: outbox {outbox:?}");
        cases += 1;
    }
    super::finish("jobs under dependency faults", cases, rig.injected(), 0);
}
