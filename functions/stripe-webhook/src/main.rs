//! `stripe-webhook`: verifies and applies Stripe events (see the crate docs).

use lambda_http::{run, Error};
use shared::{
    config::{aws_sdk_config, AwsClients},
    secrets::SecretStore,
};
use stripe_webhook::config::Config;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let sdk = aws_sdk_config().await;
    // A bad configuration, or a secret that cannot be read, fails the cold start, never a
    // delivery; the Stripe key and the signing secrets are read once, here, and kept.
    let config = Config::from_env(&SecretStore::new(&sdk)).await?;
    let aws = AwsClients::new(&sdk);
    run(stripe_webhook::app(&config, &aws)?).await
}
