//! The router: `POST /stripe/webhook` takes a [`VerifiedEvent`], applies it, and answers
//! 200 for anything processed or deliberately ignored (duplicates included).

use std::{sync::Arc, time::Instant};

use axum::{extract::State, routing::post, Json, Router};
use serde_json::{json, Value};
use tracing::Instrument;

use shared::{
    clock::Clock,
    config::Secret,
    metrics::Metrics,
    usecase::stripe_event::{EventKind, Processor},
};

use crate::{error::WebhookError, extract::VerifiedEvent};

pub const WEBHOOK_PATH: &str = "/stripe/webhook";

/// What every delivery shares.
pub struct Webhook {
    pub processor: Processor,
    /// Every secret currently accepted (more than one while a secret is rotated).
    pub secrets: Vec<Secret>,
    pub tolerance_secs: i64,
    pub clock: Arc<dyn Clock>,
}

pub fn router(webhook: Arc<Webhook>) -> Router {
    Router::new()
        .route(WEBHOOK_PATH, post(receive).fallback(|| async { WebhookError::MethodNotAllowed }))
        .fallback(|| async { WebhookError::NotFound })
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(webhook)
}

fn count(kind: &EventKind, outcome: &str) {
    Metrics::new().dimension("EventType", kind.metric_label()).dimension("Outcome", outcome).count("WebhookEvents", 1).emit();
}

async fn receive(State(webhook): State<Arc<Webhook>>, VerifiedEvent(event): VerifiedEvent) -> Result<Json<Value>, WebhookError> {
    let started = Instant::now();
    let span = tracing::info_span!("stripe_event", event_id = %event.id, event_type = %event.kind.as_str());
    // Instrumented, not entered across the await: an entered guard does not follow the
    // future between polls, so the result lines would lose the event's span.
    let result = webhook.processor.process(&event).instrument(span.clone()).await;
    let _enter = span.enter();
    match result {
        Ok(outcome) => {
            tracing::info!(outcome = outcome.as_str(), latency_ms = started.elapsed().as_millis() as u64, "webhook processed");
            count(&event.kind, outcome.as_str());
            Ok(Json(json!({ "received": true, "event_id": event.id, "outcome": outcome })))
        }
        Err(err) => {
            tracing::error!(error = %err, "webhook failed; Stripe will retry");
            count(&event.kind, "failed");
            Err(WebhookError::Unavailable(err.to_string()))
        }
    }
}
