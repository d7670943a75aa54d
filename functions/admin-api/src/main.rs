//! `admin-api`: the admin subscription API on Lambda (API Gateway HTTP API).

use std::sync::Arc;

use admin_api::{router, AdminService, AppState, Config, SystemClock};
use shared::{
    delivery::{DeliveryPolicy, OutboxDelivery},
    email::{EmailRenderer, SesMailer},
    events::EventBridgePublisher,
    store::DynamoStore,
    stripe::StripeBilling,
};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    // Everything that can be wrong with the configuration fails here, at cold start.
    let config = Config::from_env()?;
    let sdk = shared::config::aws_sdk_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &config.aws.table_name);
    let billing = StripeBilling::new(config.stripe.clone())?;
    let renderer = EmailRenderer::embedded(&config.email)?;
    let deliver = OutboxDelivery::new(
        store.clone(),
        Arc::new(renderer),
        Arc::new(SesMailer::new(&sdk, &config.email)),
        Arc::new(EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(&sdk), &config.aws.event_bus_name)),
        DeliveryPolicy::default(),
    );
    let service = AdminService::new(Arc::new(store), Arc::new(billing), Arc::new(deliver), Arc::new(SystemClock));
    tracing::info!(admin_group = %config.admin_group, "admin-api ready");
    lambda_http::run(router(AppState::new(service, config.admin_group))).await
}
