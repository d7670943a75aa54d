//! `stripe-webhook`: verifies and applies Stripe events (see the crate docs).

use lambda_http::{run, Error};
use shared::config::{aws_sdk_config, AwsClients};
use stripe_webhook::config::Config;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // A bad configuration fails the cold start, never a delivery.
    let config = Config::from_env()?;
    let aws = AwsClients::new(&aws_sdk_config().await);
    run(stripe_webhook::app(&config, &aws)?).await
}
