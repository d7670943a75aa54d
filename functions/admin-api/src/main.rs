//! `admin-api`: the admin subscription API on Lambda (API Gateway HTTP API).

use admin_api::Config;
use shared::{
    config::{aws_sdk_config, AwsClients},
    secrets::SecretStore,
    warm,
};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let sdk = aws_sdk_config().await;
    // Everything that can be wrong with the configuration fails here, at cold start,
    // including a Stripe key that cannot be read (it is read once, here, and kept).
    let config = Config::from_env(&SecretStore::new(&sdk)).await?;
    let aws = AwsClients::new(&sdk);
    let (app, connections) = admin_api::build(&config, &aws)?;
    // Before the first request, so it does not pay the TLS handshakes (bounded, best effort).
    connections.open(warm::INIT_BUDGET).await;
    tracing::info!(admin_group = %config.admin_group, "admin-api ready");
    lambda_http::run(app).await
}
