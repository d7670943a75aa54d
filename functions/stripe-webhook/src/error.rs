//! Every answer the webhook gives other than 200, as one enum rendered as the same
//! problem+json body the admin API uses.
//!
//! Status codes are chosen for Stripe's retry behaviour: 400 for what a retry cannot fix
//! (bad signature, not an event) — nothing is written in those cases — and 5xx only when
//! a retry can succeed (DynamoDB or Stripe unavailable), so Stripe's retries recover it.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use shared::problem::{Problem, PROBLEM_CONTENT_TYPE};

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("invalid signature: {0}")]
    InvalidSignature(String),
    #[error("not a usable Stripe event: {0}")]
    InvalidEvent(String),
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    #[error("no such route")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Processing failed in a way a redelivery can fix.
    #[error("processing failed: {0}")]
    Unavailable(String),
}

impl WebhookError {
    fn status(&self) -> StatusCode {
        match self {
            Self::InvalidSignature(_) | Self::InvalidEvent(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// `(code, title, detail)`; the code is also the type's slug.
    fn parts(&self) -> (&'static str, &'static str, String) {
        match self {
            Self::InvalidSignature(why) => ("invalid-signature", "Invalid signature", why.clone()),
            Self::InvalidEvent(why) => ("invalid-event", "Not a Stripe event", why.clone()),
            Self::TooLarge(limit) => ("body-too-large", "Body too large", format!("the body exceeds {limit} bytes")),
            Self::NotFound => ("not-found", "Not found", "no such route".into()),
            Self::MethodNotAllowed => ("method-not-allowed", "Method not allowed", "use POST".into()),
            // The cause is logged by the handler; the body says only what Stripe can act on.
            Self::Unavailable(_) => {
                ("temporarily-unavailable", "Temporarily unavailable", "the event could not be processed now; retry later".into())
            }
        }
    }
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (code, title, detail) = self.parts();
        let body = Problem::new(code, title, status.as_u16(), code, detail).to_body();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        if status == StatusCode::METHOD_NOT_ALLOWED {
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
}
