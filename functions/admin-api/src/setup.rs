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
};

use crate::{router, AdminService, AppState, Config};

/// The router, ready to serve. Fails on a configuration that cannot work (Stripe client,
/// e-mail templates), so a bad deploy fails its cold start, not a request.
pub fn app(config: &Config, aws: &AwsClients) -> Result<Router, InitError> {
    let store: Arc<dyn Store> = Arc::new(DynamoStore::new(aws.dynamodb.clone(), &config.aws.table_name));
    let billing = StripeBilling::new(config.stripe.clone())?;
    let deliver = OutboxDelivery::over_aws(store.clone(), aws, &config.aws.event_bus_name, &config.mail)?;
    let service =
        AdminService::new(store, Arc::new(billing), Arc::new(deliver), Arc::new(SystemClock)).with_operation_lease(config.operation_lease);
    Ok(router(AppState::new(service, config.admin_group.as_str())))
}
