//! The one way to build the jobs from their configuration and AWS clients: `main` calls it
//! with the environment's, the tests with their own.

use std::sync::Arc;

use shared::{
    config::{AwsClients, InitError},
    delivery::OutboxDelivery,
    email::SendQuota,
    store::{DynamoStore, Store},
    stripe::StripeBilling,
    warm::Connections,
};

use crate::{config::Config, ContinuationPublisher, Jobs};

/// The jobs, ready to run; a configuration that cannot work fails here.
pub fn app(config: &Config, aws: &AwsClients) -> Result<Jobs, InitError> {
    build(config, aws).map(|(jobs, _)| jobs)
}

/// The jobs and the connections `main` opens before the first run: DynamoDB, Stripe and
/// SES (every run reads its send quota, and `deliver-pending` sends), through the very
/// clients the jobs use.
pub fn build(config: &Config, aws: &AwsClients) -> Result<(Jobs, Connections), InitError> {
    let dynamo = Arc::new(DynamoStore::new(aws.dynamodb.clone(), &config.aws.table_name));
    let billing = Arc::new(StripeBilling::new(config.stripe.clone())?);
    let quota = SendQuota::new(aws.ses.clone());
    let connections =
        Connections::new().with("dynamodb", dynamo.clone()).with("stripe", billing.clone()).with("ses", Arc::new(quota.clone()));
    let store: Arc<dyn Store> = dynamo;
    let delivery = OutboxDelivery::over_aws(store.clone(), aws, &config.aws.event_bus_name, &config.mail)?;
    let jobs = Jobs::new(
        store,
        billing,
        Arc::new(delivery),
        ContinuationPublisher::new(aws.eventbridge.clone(), &config.continuation_bus),
        config.settings.clone(),
    )
    .with_send_quota(quota);
    Ok((jobs, connections))
}
