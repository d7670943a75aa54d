//! Handing the rest of an interrupted run to the next invocation.
//!
//! The continuation is one EventBridge event on the service's bus:
//!
//! ```json
//! {
//!   "source": "logiscore.subscriptions.jobs",
//!   "detail-type": "JobContinuation",
//!   "resources": ["logiscore:job:<job>"],
//!   "detail": {"job": "daily", "time": "2026-03-10T06:00:00Z",
//!              "cursor": {"step": "expire-lapsed", "index": {"shard": 3, "after": {…}}, "hops": 1}}
//! }
//! ```
//!
//! A rule matching `source` + `detail-type` that targets this function (without an input
//! transformer) re-invokes it with the whole event; [`crate::JobRequest::parse`] reads the
//! `detail`. `time` is always the interrupted run's "now", so the continuation acts as of
//! the same instant.

use aws_sdk_eventbridge::{types::PutEventsRequestEntry, Client};
use tracing::instrument;

use crate::{input::JobRequest, JobError};

/// The `source` of continuation events (deliberately not the domain events' source, so
/// consumers of domain events never see them).
pub const CONTINUATION_SOURCE: &str = "logiscore.subscriptions.jobs";
/// The `detail-type` of continuation events.
pub const CONTINUATION_DETAIL_TYPE: &str = "JobContinuation";

#[derive(Debug, Clone)]
pub struct ContinuationPublisher {
    client: Client,
    bus: String,
}

impl ContinuationPublisher {
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        Self { client, bus: bus.into() }
    }

    /// Puts the continuation on the bus; returns EventBridge's event id.
    #[instrument(skip_all, fields(job = request.job.as_str()))]
    pub async fn publish(&self, request: &JobRequest) -> Result<String, JobError> {
        let detail = serde_json::to_string(request).map_err(|e| JobError::Continuation(e.to_string()))?;
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(CONTINUATION_SOURCE)
            .detail_type(CONTINUATION_DETAIL_TYPE)
            .resources(format!("logiscore:job:{}", request.job.as_str()))
            .detail(detail)
            .build();
        let out =
            self.client.put_events().entries(entry).send().await.map_err(|e| JobError::Continuation(shared::store::error_chain(&e)))?;
        // PutEvents answers 200 even when the entry failed: the entry's result says.
        match out.entries().first() {
            Some(entry) if entry.error_code().is_none() => {
                entry.event_id().map(str::to_owned).ok_or_else(|| JobError::Continuation("no event id in the PutEvents answer".into()))
            }
            Some(entry) => Err(JobError::Continuation(format!(
                "{}: {}",
                entry.error_code().unwrap_or_default(),
                entry.error_message().unwrap_or_default()
            ))),
            None => Err(JobError::Continuation("empty PutEvents answer".into())),
        }
    }
}
