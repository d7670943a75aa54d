//! The HTTP edge: route, verify, decode, process, answer.
//!
//! Status codes are chosen for Stripe's retry behaviour: 2xx for anything processed or
//! deliberately ignored (including duplicates), 400 for what a retry cannot fix (bad
//! signature, not an event) — nothing is written in those cases — and 5xx only when a
//! retry can succeed (DynamoDB or Stripe unavailable), so Stripe's retries recover it.

use std::{sync::Arc, time::Instant};

use lambda_http::{http::StatusCode, Body, Request, Response};
use serde_json::json;
use tracing::Instrument;

use shared::{clock::Clock, config::Secret, metrics::Metrics};

use crate::{envelope, processor::Processor, signature};

pub const WEBHOOK_PATH: &str = "/stripe/webhook";

pub struct Webhook {
    pub processor: Processor,
    pub secrets: Vec<Secret>,
    pub tolerance_secs: i64,
    pub clock: Arc<dyn Clock>,
}

fn respond(status: StatusCode, content_type: &str, body: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert("content-type", value);
    }
    response
}

fn problem(status: StatusCode, code: &str, detail: &str) -> Response<Body> {
    respond(
        status,
        "application/problem+json",
        json!({
            "type": format!("https://logiscore.dev/problems/{code}"),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "code": code,
            "detail": detail,
        }),
    )
}

/// The event types this service acts on; every other type is counted as `other` so the
/// metric's dimension stays small whatever Stripe sends.
const HANDLED_TYPES: &[&str] = &[
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.trial_will_end",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.payment_action_required",
    "invoice.upcoming",
    "checkout.session.completed",
];

fn count(event_type: &str, outcome: &str) {
    // `rejected` (bad signature or body) is kept: the rejection alarm watches EventType=rejected.
    let event_type = if HANDLED_TYPES.contains(&event_type) || event_type == "rejected" { event_type } else { "other" };
    Metrics::new().dimension("EventType", event_type).dimension("Outcome", outcome).count("WebhookEvents", 1).emit();
}

impl Webhook {
    pub async fn handle(&self, request: Request) -> Response<Body> {
        if request.uri().path() != WEBHOOK_PATH {
            return problem(StatusCode::NOT_FOUND, "not-found", "no such route");
        }
        if request.method() != lambda_http::http::Method::POST {
            return problem(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "use POST");
        }
        let started = Instant::now();
        let body: &[u8] = request.body().as_ref();
        let header = request.headers().get("stripe-signature").and_then(|v| v.to_str().ok());
        let now = self.clock.now().timestamp();
        if let Err(err) = signature::verify(body, header, &self.secrets, now, self.tolerance_secs) {
            tracing::warn!(reason = %err, "webhook rejected");
            count("rejected", "rejected");
            return problem(StatusCode::BAD_REQUEST, "invalid-signature", &err.to_string());
        }
        let event = match envelope::decode(body) {
            Ok(event) => event,
            Err(err) => {
                tracing::warn!(reason = %err, "signed body is not a usable Stripe event");
                count("rejected", "rejected");
                return problem(StatusCode::BAD_REQUEST, "invalid-event", &err.to_string());
            }
        };
        let span = tracing::info_span!("stripe_event", event_id = %event.id, event_type = %event.event_type);
        // Instrumented, not entered across the await: an entered guard does not follow the
        // future between polls, so the result lines would lose the event's span.
        let result = self.processor.process(&event).instrument(span.clone()).await;
        let _enter = span.enter();
        match result {
            Ok(outcome) => {
                tracing::info!(outcome = outcome.as_str(), latency_ms = started.elapsed().as_millis() as u64, "webhook processed");
                count(&event.event_type, outcome.as_str());
                respond(StatusCode::OK, "application/json", json!({ "received": true, "event_id": event.id, "outcome": outcome }))
            }
            Err(err) => {
                tracing::error!(error = %err, "webhook failed; Stripe will retry");
                count(&event.event_type, "failed");
                problem(StatusCode::SERVICE_UNAVAILABLE, "temporarily-unavailable", "the event could not be processed now; retry later")
            }
        }
    }
}
