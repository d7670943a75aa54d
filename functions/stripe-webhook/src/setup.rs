//! The one way to build the webhook from its configuration and AWS clients: `main` calls
//! it with the environment's, the tests with their own.

use std::sync::Arc;

use axum::Router;
use shared::{
    clock::{Clock, SystemClock},
    config::{AwsClients, InitError},
    store::DynamoStore,
    stripe::StripeBilling,
    usecase::stripe_event::Processor,
    warm::Connections,
};

use crate::{
    config::Config,
    routes::{router, Webhook},
};

/// The router, ready to serve; a Stripe configuration that cannot work fails here.
pub fn app(config: &Config, aws: &AwsClients) -> Result<Router, InitError> {
    build(config, aws).map(|(router, _)| router)
}

/// The router and the connections `main` opens before the first delivery (DynamoDB and
/// Stripe, through the very clients the router uses).
pub fn build(config: &Config, aws: &AwsClients) -> Result<(Router, Connections), InitError> {
    let store = Arc::new(DynamoStore::new(aws.dynamodb.clone(), &config.aws.table_name));
    let billing = Arc::new(StripeBilling::new(config.stripe.clone())?);
    let connections = Connections::new().with("dynamodb", store.clone()).with("stripe", billing.clone());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let router = router(Arc::new(Webhook {
        processor: Processor::new(store, billing, clock.clone()),
        secrets: config.webhook_secrets.clone(),
        tolerance_secs: config.tolerance_secs,
        clock,
    }));
    Ok((router, connections))
}
