//! The one way to build the admin API from its configuration and AWS clients: `main` calls
//! it with the environment's, the tests with their own (moto, stripe-sim), so what is
//! tested is what is deployed.

use std::sync::Arc;

use axum::Router;
use shared::{
    clock::SystemClock,
    config::{AwsClients, InitError},
    delivery::OutboxDelivery,
    store::{DynamoStore, Store},
    stripe::StripeBilling,
    warm::Connections,
};

use crate::{router, AdminService, AppState, Config};

/// The router, ready to serve. Fails on a configuration that cannot work (Stripe client,
/// e-mail templates), so a bad deploy fails its cold start, not a request.
pub fn app(config: &Config, aws: &AwsClients) -> Result<Router, InitError> {
    build(config, aws).map(|(router, _)| router)
}

/// The router and the connections `main` opens before the first request (DynamoDB and
/// Stripe, through the very clients the router uses).
pub fn build(config: &Config, aws: &AwsClients) -> Result<(Router, Connections), InitError> {
    let dynamo = Arc::new(DynamoStore::new(aws.dynamodb.clone(), &config.aws.table_name));
    let billing = Arc::new(StripeBilling::new(config.stripe.clone())?);
    let store: Arc<dyn Store> = dynamo.clone();
    let deliver = OutboxDelivery::over_aws(store.clone(), aws, &config.aws.event_bus_name, &config.mail)?;
    let connections = Connections::new().with("dynamodb", dynamo).with("stripe", billing.clone());
    let service = AdminService::new(store, billing, Arc::new(deliver), Arc::new(SystemClock)).with_operation_lease(config.operation_lease);
    Ok((router(AppState::new(service, config.admin_group.as_str())), connections))
}
