//! `admin-api`: the admin subscription API on Lambda (API Gateway HTTP API).

use admin_api::Config;
use shared::config::{aws_sdk_config, AwsClients};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    // Everything that can be wrong with the configuration fails here, at cold start.
    let config = Config::from_env()?;
    let aws = AwsClients::new(&aws_sdk_config().await);
    let app = admin_api::app(&config, &aws)?;
    tracing::info!(admin_group = %config.admin_group, "admin-api ready");
    lambda_http::run(app).await
}
