//! `stripe-webhook`: verifies and applies Stripe events (see the crate docs).

use std::sync::Arc;

use lambda_http::{run, service_fn, Error};
use shared::{
    config::aws_sdk_config,
    store::DynamoStore,
    stripe::{StripeBilling, StripeConfig},
};
use stripe_webhook::{config::Config, http::Webhook, processor::Processor};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env().expect("webhook configuration");
    let stripe = StripeBilling::new(StripeConfig::from_env().expect("stripe configuration")).expect("stripe client");
    let sdk = aws_sdk_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &config.aws.table_name);
    let clock = Arc::new(chrono::Utc::now);
    let webhook = Arc::new(Webhook {
        processor: Processor::new(store, Arc::new(stripe), clock.clone()),
        secrets: config.webhook_secrets,
        tolerance_secs: config.tolerance_secs,
        clock,
    });
    run(service_fn(move |request| {
        let webhook = webhook.clone();
        async move { Ok::<_, Error>(webhook.handle(request).await) }
    }))
    .await
}
