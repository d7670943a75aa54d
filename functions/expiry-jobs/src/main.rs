//! `expiry-jobs`: the scheduled jobs (see the library docs). Reads its configuration and
//! builds its clients once per cold start — a bad variable fails the init, not a run —
//! then serves each invocation with [`expiry_jobs::Jobs::handle`].

// The AWS SDK and async-stripe futures nest deeply; the default limit is too low for
// the layout of `main`'s future.
#![recursion_limit = "256"]

use std::sync::Arc;

use expiry_jobs::{ContinuationPublisher, JobSettings, Jobs};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use shared::{
    config::{aws_sdk_config, optional, required, AwsResources},
    delivery::{DeliveryPolicy, OutboxDelivery},
    email::{EmailConfig, EmailRenderer, SesMailer},
    events::EventBridgePublisher,
    store::DynamoStore,
    stripe::{StripeBilling, StripeConfig},
};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let resources = AwsResources::from_env()?;
    let settings = JobSettings::from_env()?;
    let stripe = StripeConfig::from_env()?;
    let email = EmailConfig {
        mail_from: required("MAIL_FROM")?,
        app_base_url: required("APP_BASE_URL")?,
        configuration_set: optional("SES_CONFIGURATION_SET"),
    };

    let sdk = aws_sdk_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &resources.table_name);
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let renderer = Arc::new(EmailRenderer::embedded(&email)?);
    let policy = DeliveryPolicy {
        max_attempts: settings.max_delivery_attempts,
        sends_per_second: Some(settings.send_rate),
        ..DeliveryPolicy::default()
    };
    let delivery = OutboxDelivery::new(
        store.clone(),
        renderer,
        Arc::new(SesMailer::new(&sdk, &email)),
        Arc::new(EventBridgePublisher::new(events.clone(), &resources.event_bus_name)),
        policy,
    );
    let jobs = Jobs::new(
        store,
        Arc::new(StripeBilling::new(stripe)?),
        Arc::new(delivery),
        ContinuationPublisher::new(events, &resources.event_bus_name),
        settings,
    );
    let jobs = &jobs;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<Value>| async move { jobs.handle(&event.payload, event.context.deadline()).await },
    ))
    .await
}
