//! Domain events onto the EventBridge bus.

use async_trait::async_trait;
use aws_sdk_eventbridge::{types::PutEventsRequestEntry, Client};
use thiserror::Error;
use tracing::instrument;

use crate::domain::{events::EVENT_SOURCE, DomainEvent};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// EventBridge did not take the event (throttled, unavailable, or the entry failed).
    #[error("eventbridge did not accept the event: {0}")]
    Transient(String),
    #[error("event could not be encoded: {0}")]
    Encode(String),
}

#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes one event; returns EventBridge's event id.
    async fn publish(&self, event: &DomainEvent) -> Result<String, PublishError>;
}

pub struct EventBridgePublisher {
    client: Client,
    bus: String,
}

impl EventBridgePublisher {
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        Self { client, bus: bus.into() }
    }

    /// Puts one entry on the bus; returns EventBridge's event id. The one `PutEvents` of
    /// the code base: domain events and the jobs' continuations both go through it.
    pub async fn put(&self, source: &str, detail_type: &str, resource: String, detail: String) -> Result<String, PublishError> {
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(source)
            .detail_type(detail_type)
            .detail(detail)
            .resources(resource)
            .build();
        let out =
            self.client.put_events().entries(entry).send().await.map_err(|e| PublishError::Transient(crate::store::error_chain(&e)))?;
        // PutEvents answers 200 even when an entry failed: the per-entry result says.
        match out.entries().first() {
            Some(entry) if entry.error_code().is_none() => {
                entry.event_id().map(str::to_owned).ok_or_else(|| PublishError::Transient("no event id".into()))
            }
            Some(entry) => Err(PublishError::Transient(format!(
                "{}: {}",
                entry.error_code().unwrap_or_default(),
                entry.error_message().unwrap_or_default()
            ))),
            None => Err(PublishError::Transient("empty PutEvents response".into())),
        }
    }
}

#[async_trait]
impl EventPublisher for EventBridgePublisher {
    #[instrument(skip_all, fields(event_id = %event.id, kind = event.kind.as_str(), user_id = %event.user_id))]
    async fn publish(&self, event: &DomainEvent) -> Result<String, PublishError> {
        let detail = serde_json::to_string(event).map_err(|e| PublishError::Encode(e.to_string()))?;
        self.put(EVENT_SOURCE, event.kind.as_str(), format!("logiscore:subscription:{}", event.subscription_id), detail).await
    }
}
