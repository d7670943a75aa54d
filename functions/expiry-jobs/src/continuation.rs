//! Handing the rest of an interrupted run to the next invocation.
//!
//! The continuation is one EventBridge event on the jobs' own bus
//! (`JOB_CONTINUATION_BUS_NAME`), not the domain-event bus other functions publish to:
//!
//! ```json
//! {
//!   "source": "logiscore.subscriptions.jobs",
//!   "detail-type": "JobContinuation",
//!   "time": "2026-03-10T06:14:41Z",
//!   "resources": ["logiscore:job:<job>"],
//!   "detail": {"job": "daily", "time": "2026-03-10T06:00:00Z",
//!              "cursor": {"step": "expire-lapsed", "index": {"shard": 3, "after": {…}}, "hops": 1}}
//! }
//! ```
//!
//! A rule on that bus matching `source` + `detail-type` re-invokes this function with the
//! *whole* event (no `InputPath`, no input transformer), so [`crate::JobRequest::parse`]
//! can check what it trusts: the `source` is this one, and the detail's `time` — always the
//! interrupted run's "now", so the continuation acts as of the same instant — is not later
//! than the envelope's `time`, which EventBridge sets when it accepts the event (this
//! publisher never sets it). Only this function is granted `events:PutEvents` on that bus,
//! and only with this source (`events:source` condition in template.yaml).

use aws_sdk_eventbridge::Client;
use shared::events::EventBridgePublisher;
use tracing::instrument;

use crate::{input::JobRequest, JobError};

/// The `source` of continuation events (deliberately not the domain events' source, so
/// consumers of domain events never see them).
pub const CONTINUATION_SOURCE: &str = "logiscore.subscriptions.jobs";
/// The `detail-type` of continuation events.
pub const CONTINUATION_DETAIL_TYPE: &str = "JobContinuation";

pub struct ContinuationPublisher {
    bus: EventBridgePublisher,
}

impl ContinuationPublisher {
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        Self { bus: EventBridgePublisher::new(client, bus) }
    }

    /// Puts the continuation on the bus; returns EventBridge's event id.
    #[instrument(skip_all, fields(job = request.job.as_str()))]
    pub async fn publish(&self, request: &JobRequest) -> Result<String, JobError> {
        let detail = serde_json::to_string(request).map_err(|e| JobError::Continuation(e.to_string()))?;
        let resource = format!("logiscore:job:{}", request.job.as_str());
        self.bus
            .put(CONTINUATION_SOURCE, CONTINUATION_DETAIL_TYPE, resource, detail)
            .await
            .map_err(|e| JobError::Continuation(e.to_string()))
    }
}
