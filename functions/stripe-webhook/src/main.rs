//! `stripe-webhook`: verifies and applies Stripe events (see the crate docs).

use lambda_http::{run, Error};
use shared::{
    config::{aws_sdk_config, AwsClients},
    secrets::SecretStore,
    warm,
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
    let (app, connections) = stripe_webhook::build(&config, &aws)?;
    // Before the first delivery, so it does not pay the TLS handshakes (bounded, best effort).
    connections.open(warm::INIT_BUDGET).await;
    run(app).await
}
