//! [`VerifiedEvent`]: the request body as a Stripe event, only once its signature checks
//! out against one of the configured secrets within the tolerance. A handler that takes
//! it cannot see an unverified byte.

use std::sync::Arc;

use axum::{
    extract::{FromRequest, Request},
    http::StatusCode,
};
use shared::{metrics::Metrics, usecase::stripe_event::StripeEvent};

use crate::{error::WebhookError, routes::Webhook, signature};

/// Stripe's payloads are far smaller; API Gateway refuses bodies over 10 MB anyway.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

pub struct VerifiedEvent(pub StripeEvent);

impl FromRequest<Arc<Webhook>> for VerifiedEvent {
    type Rejection = WebhookError;

    async fn from_request(request: Request, webhook: &Arc<Webhook>) -> Result<Self, Self::Rejection> {
        let header = request.headers().get("stripe-signature").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| rejected(WebhookError::TooLarge(MAX_BODY_BYTES)))?;
        let now = webhook.clock.now().timestamp();
        signature::verify(&body, header.as_deref(), &webhook.secrets, now, webhook.tolerance_secs)
            .map_err(|err| rejected(WebhookError::InvalidSignature(err.to_string())))?;
        let event = shared::usecase::stripe_event::decode(&body).map_err(|err| rejected(WebhookError::InvalidEvent(err.to_string())))?;
        Ok(Self(event))
    }
}

/// A refused delivery is logged and counted under `EventType=rejected`, which the
/// rejection alarm watches.
fn rejected(err: WebhookError) -> WebhookError {
    tracing::warn!(reason = %err, status = StatusCode::BAD_REQUEST.as_u16(), "webhook rejected");
    Metrics::new().dimension("EventType", "rejected").dimension("Outcome", "rejected").count("WebhookEvents", 1).emit();
    err
}
