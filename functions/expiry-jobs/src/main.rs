//! `expiry-jobs`: the scheduled jobs (see the library docs). Reads its configuration and
//! builds its clients once per cold start — a bad variable fails the init, not a run —
//! then serves each invocation with [`expiry_jobs::Jobs::invoke`] (a job, or SES's feedback).

// The AWS SDK and async-stripe futures nest deeply; the default limit is too low for
// the layout of `main`'s future.
#![recursion_limit = "256"]

use expiry_jobs::Config;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use shared::{
    config::{aws_sdk_config, AwsClients},
    secrets::SecretStore,
    warm,
};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let sdk = aws_sdk_config().await;
    // The Stripe key is read from Secrets Manager once, here, and kept for the instance's life.
    let config = Config::from_env(&SecretStore::new(&sdk)).await?;
    let aws = AwsClients::new(&sdk);
    let (jobs, connections) = expiry_jobs::build(&config, &aws)?;
    // Before the first run, so it does not pay the TLS handshakes (bounded, best effort).
    connections.open(warm::INIT_BUDGET).await;
    let jobs = &jobs;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<Value>| async move { jobs.invoke(&event.payload, event.context.deadline()).await },
    ))
    .await
}
