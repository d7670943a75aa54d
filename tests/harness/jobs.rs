//! The expiry jobs wired to one test's own resources: the real store, the real outbox
//! delivery over moto's SES and EventBridge, the real Stripe client (at stripe-sim, or at a
//! port where nothing listens), and continuations on the test's bus.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use expiry_jobs::{Budget, ContinuationPublisher, JobName, JobRequest, JobSettings, Jobs, RunSummary};
use shared::{
    billing::BillingGateway,
    config::Secret,
    delivery::{DeliveryPolicy, OutboxDelivery},
    domain::{EmailAddress, UserId, UserProfile},
    email::{EmailConfig, EmailRenderer, RetryPolicy, SesMailer},
    events::EventBridgePublisher,
    stripe::{StripeBilling, StripeConfig},
};

use crate::{env::MAIL_FROM, free_port, TestEnv};

pub fn email_config() -> EmailConfig {
    EmailConfig { mail_from: MAIL_FROM.into(), app_base_url: "https://app.logiscore.test".into(), configuration_set: None }
}

/// The shared outbox delivery, sending e-mail through `ses` (the env's, or one pointed at a
/// stopped server) with a single SES attempt per delivery so an outage is quick to see.
pub fn delivery_via(env: &TestEnv, ses: aws_sdk_sesv2::Client) -> OutboxDelivery {
    let config = email_config();
    let renderer = Arc::new(EmailRenderer::embedded(&config).expect("e-mail templates render"));
    let retry = RetryPolicy {
        attempts: 1,
        attempt_timeout: Duration::from_secs(3),
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
    };
    let mailer = SesMailer::from_client(ses, &config).with_retry_policy(retry);
    let publisher = EventBridgePublisher::new(env.events.clone(), &env.bus);
    let policy = DeliveryPolicy { max_attempts: 3, sends_per_second: None, ..DeliveryPolicy::default() };
    OutboxDelivery::new(env.store.clone(), renderer, Arc::new(mailer), Arc::new(publisher), policy)
}

/// A real Stripe client aimed at a loopback port nobody listens on: jobs over records
/// without a Stripe id never call it, and one that did would see Stripe unavailable.
pub fn unreachable_billing() -> Arc<dyn BillingGateway> {
    let config = StripeConfig {
        secret_key: Secret::new("sk_test_unreachable"),
        api_base: Some(format!("http://127.0.0.1:{}", free_port())),
        price_premium: "price_premium_monthly".into(),
        price_enterprise: "price_enterprise_monthly".into(),
    };
    Arc::new(StripeBilling::new(config).expect("stripe client builds"))
}

/// The jobs over `env`, with `billing`, the env's SES, and `settings`.
pub fn jobs(env: &TestEnv, billing: Arc<dyn BillingGateway>, settings: JobSettings) -> Jobs {
    jobs_with_delivery(env, billing, delivery_via(env, env.ses.clone()), settings)
}

pub fn jobs_with_delivery(env: &TestEnv, billing: Arc<dyn BillingGateway>, delivery: OutboxDelivery, settings: JobSettings) -> Jobs {
    let continuations = ContinuationPublisher::new(env.events.clone(), &env.bus);
    Jobs::new(env.store.clone(), billing, Arc::new(delivery), continuations, settings)
}

/// Runs `job` as of `now` with no budget limit.
pub async fn run(jobs: &Jobs, job: JobName, now: DateTime<Utc>) -> RunSummary {
    let request = JobRequest { job, time: Some(now), cursor: None };
    jobs.run(request, now, &Budget::unlimited()).await.unwrap_or_else(|e| panic!("{job} at {now}: {e}"))
}

/// Runs `job` as of `now` with at most `max_items` per invocation, following every
/// continuation until the job is done; returns each invocation's summary.
pub async fn run_in_slices(jobs: &Jobs, job: JobName, now: DateTime<Utc>, max_items: u64) -> Vec<RunSummary> {
    let mut request = JobRequest { job, time: Some(now), cursor: None };
    let mut runs = Vec::new();
    for _ in 0..1000 {
        let budget = Budget::unlimited().with_max_items(Some(max_items));
        let summary = jobs.run(request.clone(), now, &budget).await.unwrap_or_else(|e| panic!("{job} slice: {e}"));
        let next = summary.continuation.clone();
        runs.push(summary);
        match next {
            Some(next) => request = next,
            None => return runs,
        }
    }
    panic!("{job} did not finish in 1000 continuations");
}

/// Stores a profile so e-mails to `user` can be delivered; returns the address.
pub async fn put_profile(env: &TestEnv, user: &UserId) -> String {
    let address = format!("{user}@example.com");
    let profile = UserProfile {
        user_id: user.clone(),
        email: EmailAddress::parse(&address).expect("valid test address"),
        full_name: Some(format!("User {user}")),
        username: None,
        user_type: None,
        updated_at: Utc::now(),
    };
    env.store.put_profile(&profile).await.expect("put profile");
    address
}
