//! The one way to build the jobs from their configuration and AWS clients: `main` calls it
//! with the environment's, the tests with their own.

use std::sync::Arc;

use shared::{
    config::{AwsClients, InitError},
    delivery::OutboxDelivery,
    store::{DynamoStore, Store},
    stripe::StripeBilling,
};

use crate::{config::Config, ContinuationPublisher, Jobs};

/// The jobs, ready to run; a configuration that cannot work fails here.
pub fn app(config: &Config, aws: &AwsClients) -> Result<Jobs, InitError> {
    let store: Arc<dyn Store> = Arc::new(DynamoStore::new(aws.dynamodb.clone(), &config.aws.table_name));
    let delivery = OutboxDelivery::over_aws(store.clone(), aws, &config.aws.event_bus_name, &config.mail)?;
    Ok(Jobs::new(
        store,
        Arc::new(StripeBilling::new(config.stripe.clone())?),
        Arc::new(delivery),
        ContinuationPublisher::new(aws.eventbridge.clone(), &config.continuation_bus),
        config.settings.clone(),
    )
    .with_send_quota(shared::email::SendQuota::new(aws.ses.clone())))
}
