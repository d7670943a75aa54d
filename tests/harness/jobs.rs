//! The expiry jobs wired to one test's own resources, built by the function's own
//! [`expiry_jobs::app`]: the real store, the real outbox delivery over moto's SES (through
//! the test's mail sink) and EventBridge, the real Stripe client (at stripe-sim, or at a
//! port where nothing listens), and continuations on the test's bus.

use chrono::{DateTime, Utc};
use expiry_jobs::{Budget, JobName, JobRequest, JobSettings, Jobs, RunSummary};
use shared::{
    config::{AwsClients, Secret},
    delivery::Mailing,
    domain::{EmailAddress, UserId, UserProfile},
    stripe::StripeConfig,
};

use crate::{
    env::{email_config, quick_mail_retry, test_delivery_policy},
    free_port, TestEnv,
};

/// Stripe at a loopback port nobody listens on: jobs over records without a Stripe id
/// never call it, and one that did would see Stripe unavailable.
pub fn unreachable_stripe() -> StripeConfig {
    StripeConfig {
        secret_key: Secret::new("sk_test_unreachable"),
        api_base: Some(format!("http://127.0.0.1:{}", free_port())),
        price_premium: "price_premium_monthly".into(),
        price_enterprise: "price_enterprise_monthly".into(),
        retry: Default::default(),
    }
}

/// The jobs' configuration for `env`: one quick SES attempt per delivery so an outage is
/// quick to see, three attempts before dead-lettering, no SES pacing.
pub fn config(env: &TestEnv, stripe: StripeConfig, settings: JobSettings) -> expiry_jobs::Config {
    expiry_jobs::Config {
        aws: env.resources(),
        // The test's one bus, so its SQS queue sees the continuations too.
        continuation_bus: env.bus.clone(),
        stripe,
        mail: Mailing { email: email_config(), mail_retry: quick_mail_retry(), policy: test_delivery_policy() },
        settings,
    }
}

/// The jobs over `env`, with Stripe at `stripe`, and `settings`.
pub fn jobs(env: &TestEnv, stripe: StripeConfig, settings: JobSettings) -> Jobs {
    jobs_over(env, &env.aws_clients(), stripe, settings)
}

/// The jobs over `env`'s resources reached through `aws` (e.g. SES at a stopped server).
pub fn jobs_over(env: &TestEnv, aws: &AwsClients, stripe: StripeConfig, settings: JobSettings) -> Jobs {
    expiry_jobs::app(&config(env, stripe, settings), aws).expect("expiry-jobs builds")
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
        stripe_customer_id: None,
        undeliverable: None,
        last_delivery: None,
    };
    env.store.put_profile(&profile).await.expect("put profile");
    address
}
