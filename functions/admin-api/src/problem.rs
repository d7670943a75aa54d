//! Every error the API answers with, as one enum, and its RFC 9457
//! `application/problem+json` rendering.
//!
//! Each variant has a stable `type` URI and a stable machine-readable `code`; the
//! `detail` is for people. 5xx answers never carry internals: the real cause is
//! logged (with the request id) and the body says only what the caller can act on.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use shared::{
    billing::BillingError,
    domain::{FieldError, ValidationErrors},
    store::StoreError,
};

/// Where the problem `type` URIs live (documented in `openapi.yaml`).
pub const PROBLEM_BASE: &str = "https://logiscore.dev/problems/";
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";
/// Seconds a caller should wait after a 503.
pub const RETRY_AFTER_SECS: u32 = 5;

tokio::task_local! {
    /// The id of the request being served (API Gateway's request id, else the Lambda
    /// invocation id), set by the request-scope middleware so problems can carry it.
    pub static REQUEST_ID: String;
}

/// The current request's id, when called inside a request.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed request body: {0}")]
    MalformedBody(String),
    #[error("unsupported content type")]
    UnsupportedMediaType,
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("invalid Idempotency-Key header")]
    InvalidIdempotencyKey,
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    #[error("caller is not in the admin group")]
    Forbidden,
    #[error("user {0} has no profile")]
    UserNotFound(String),
    #[error("user {0} has no subscription")]
    SubscriptionNotFound(String),
    #[error("no such route")]
    RouteNotFound,
    /// With the `Allow` header value (the methods the path serves).
    #[error("method not allowed")]
    MethodNotAllowed(String),
    /// The request conflicts with the subscription's current state.
    #[error("conflict ({code}): {detail}")]
    Conflict { code: &'static str, detail: String },
    /// Stripe declined the card.
    #[error("card declined: {message}")]
    CardDeclined { code: Option<String>, decline_code: Option<String>, message: String },
    #[error(transparent)]
    Validation(#[from] ValidationErrors),
    /// Stripe did not answer (or answered 429/5xx) after the client's retries.
    #[error("billing unavailable: {0}")]
    BillingUnavailable(String),
    /// DynamoDB did not answer.
    #[error("storage unavailable: {0}")]
    StoreUnavailable(String),
    /// Stripe refused a request this service built, or answered with something unreadable.
    #[error("billing provider error: {0}")]
    BadGateway(String),
    /// Anything else: a bug or corrupt data. Logged in full, answered generically.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Conflict { code, detail: detail.into() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedBody(_) | Self::UnsupportedMediaType | Self::BodyTooLarge(_) | Self::InvalidIdempotencyKey => {
                StatusCode::BAD_REQUEST
            }
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::UserNotFound(_) | Self::SubscriptionNotFound(_) | Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::CardDeclined { .. } => StatusCode::PAYMENT_REQUIRED,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BillingUnavailable(_) | Self::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedBody(_) => "malformed_json",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::BodyTooLarge(_) => "body_too_large",
            Self::InvalidIdempotencyKey => "invalid_idempotency_key",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::UserNotFound(_) => "user_not_found",
            Self::SubscriptionNotFound(_) => "subscription_not_found",
            Self::RouteNotFound => "route_not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Conflict { code, .. } => code,
            Self::CardDeclined { .. } => "card_declined",
            Self::Validation(_) => "validation_error",
            Self::BillingUnavailable(_) => "billing_unavailable",
            Self::StoreUnavailable(_) => "storage_unavailable",
            Self::BadGateway(_) => "billing_provider_error",
            Self::Internal(_) => "internal_error",
        }
    }

    /// `(type slug, title)`: one problem type per kind of failure.
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            Self::MalformedBody(_) | Self::UnsupportedMediaType | Self::BodyTooLarge(_) | Self::InvalidIdempotencyKey => {
                ("malformed-request", "Malformed request")
            }
            Self::Unauthenticated(_) => ("unauthenticated", "Authentication required"),
            Self::Forbidden => ("forbidden", "Not allowed"),
            Self::UserNotFound(_) | Self::SubscriptionNotFound(_) | Self::RouteNotFound => ("not-found", "Not found"),
            Self::MethodNotAllowed(_) => ("method-not-allowed", "Method not allowed"),
            Self::Conflict { .. } => ("conflict", "Conflicts with the current state"),
            Self::CardDeclined { .. } => ("card-declined", "Card declined"),
            Self::Validation(_) => ("validation-error", "The request is invalid"),
            Self::BillingUnavailable(_) | Self::StoreUnavailable(_) => ("service-unavailable", "Temporarily unavailable"),
            Self::BadGateway(_) => ("bad-gateway", "Billing provider error"),
            Self::Internal(_) => ("internal-error", "Internal error"),
        }
    }

    /// What the caller reads. Never includes internals for 5xx.
    fn detail(&self) -> String {
        match self {
            Self::MalformedBody(why) => format!("The request body is not valid JSON: {why}."),
            Self::UnsupportedMediaType => "Send the body as JSON with `Content-Type: application/json`.".into(),
            Self::BodyTooLarge(limit) => format!("The request body exceeds {limit} bytes."),
            Self::InvalidIdempotencyKey => "The Idempotency-Key header must be 1 to 255 visible ASCII characters.".into(),
            Self::Unauthenticated(why) => format!("This API needs a valid admin token: {why}."),
            Self::Forbidden => "The caller is not a member of the admin group.".into(),
            Self::UserNotFound(user) => {
                format!("User `{user}` has no profile. Create it first with PUT /users/{user} (an e-mail address is required).")
            }
            Self::SubscriptionNotFound(user) => format!("User `{user}` has no subscription."),
            Self::RouteNotFound => "No such route. See openapi.yaml for the routes this API serves.".into(),
            Self::MethodNotAllowed(_) => "This route does not support that method.".into(),
            Self::Conflict { detail, .. } => detail.clone(),
            Self::CardDeclined { message, .. } => message.clone(),
            Self::Validation(errors) => {
                let fields: Vec<&str> = errors.errors.iter().map(|e| e.field.as_str()).collect();
                format!("Invalid field(s): {}.", fields.join(", "))
            }
            Self::BillingUnavailable(_) => "The billing provider did not answer. Nothing was changed; retry later.".into(),
            Self::StoreUnavailable(_) => "Storage did not answer. Retry later with the same Idempotency-Key.".into(),
            Self::BadGateway(_) => "The billing provider refused the request. Nothing was changed locally.".into(),
            Self::Internal(_) => "An unexpected error occurred. Quote the request id when reporting it.".into(),
        }
    }

    pub fn to_problem(&self) -> Problem {
        let (slug, title) = self.kind();
        let status = self.status();
        let (errors, decline_code, stripe_code) = match self {
            Self::Validation(v) => (Some(v.errors.clone()), None, None),
            Self::CardDeclined { code, decline_code, .. } => (None, decline_code.clone(), code.clone()),
            _ => (None, None, None),
        };
        Problem {
            type_: format!("{PROBLEM_BASE}{slug}"),
            title,
            status: status.as_u16(),
            detail: self.detail(),
            code: self.code(),
            request_id: current_request_id(),
            errors,
            decline_code,
            stripe_code,
        }
    }
}

/// The RFC 9457 body.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// 422 only: every rejected field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// 402 only: the issuer's decline code as Stripe reports it (e.g. `generic_decline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<String>,
    /// 402 only: Stripe's error code (e.g. `card_declined`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stripe_code: Option<String>,
}

/// What a problem response was about, for the request's log line (see
/// `routes::request_scope`): kept in the response's extensions, never sent.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: u16,
    pub code: &'static str,
    /// The full cause (for 5xx it names internals the body hides).
    pub cause: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let problem = self.to_problem();
        let body = serde_json::to_vec(&problem).unwrap_or_else(|_| br#"{"title":"Internal error","status":500}"#.to_vec());
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if let Self::MethodNotAllowed(allow) = &self {
            if let Ok(value) = HeaderValue::from_str(allow) {
                headers.insert(header::ALLOW, value);
            }
        }
        response.extensions_mut().insert(Failure { status: status.as_u16(), code: self.code(), cause: self.to_string() });
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(why) => Self::StoreUnavailable(why),
            // Conflicts are resolved by the service where they can happen; one reaching
            // here is a concurrent change the caller should re-read and retry.
            StoreError::Conflict(why) => {
                tracing::warn!(reason = %why, "store conflict");
                Self::conflict("concurrent_change", "The subscription changed while this request ran. Read it again and retry.")
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

/// Which Stripe step failed: decides how a "not found" or "invalid" answer is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillingStep {
    Customer,
    PaymentMethod,
    Subscription,
}

impl ApiError {
    pub fn from_billing(err: BillingError, step: BillingStep) -> Self {
        match err {
            BillingError::CardDeclined { code, decline_code, message } => Self::CardDeclined { code, decline_code, message },
            BillingError::Unavailable(why) => Self::BillingUnavailable(why),
            BillingError::InvalidRequest { message, .. } if message.to_ascii_lowercase().contains("idempoten") => Self::conflict(
                "idempotency_key_reused",
                "This Idempotency-Key was already used for a different request. Use a new key for a new request.",
            ),
            BillingError::InvalidRequest { param, message }
                if step == BillingStep::PaymentMethod || param.as_deref().is_some_and(|p| p.contains("payment_method")) =>
            {
                Self::Validation(ValidationErrors::single("payment_method_id", format!("was refused by Stripe: {message}")))
            }
            BillingError::NotFound(what) if step == BillingStep::PaymentMethod => {
                Self::Validation(ValidationErrors::single("payment_method_id", format!("does not exist at Stripe ({what})")))
            }
            BillingError::InvalidRequest { message, .. } => Self::BadGateway(message),
            BillingError::NotFound(what) => Self::BadGateway(format!("stripe has no such object: {what}")),
            BillingError::Unexpected(why) => Self::BadGateway(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_problem_lists_fields() {
        let mut errors = ValidationErrors::default();
        errors.push("tier", "unknown");
        errors.push("duration_months", "too small");
        let problem = ApiError::Validation(errors).to_problem();
        assert_eq!(problem.status, 422);
        assert_eq!(problem.type_, "https://logiscore.dev/problems/validation-error");
        let json = serde_json::to_value(&problem).unwrap();
        assert_eq!(json["errors"][1]["field"], "duration_months");
        assert!(json.get("decline_code").is_none());
    }

    #[test]
    fn server_errors_hide_internals() {
        let problem = ApiError::Internal("dynamodb said secret things".into()).to_problem();
        assert!(!problem.detail.contains("secret"));
        let problem = ApiError::StoreUnavailable("connection refused to 10.0.0.1".into()).to_problem();
        assert!(!problem.detail.contains("10.0.0.1"));
        assert_eq!(problem.status, 503);
    }

    #[test]
    fn declines_keep_the_decline_code() {
        let err = ApiError::from_billing(
            BillingError::CardDeclined {
                code: Some("card_declined".into()),
                decline_code: Some("generic_decline".into()),
                message: "Your card was declined.".into(),
            },
            BillingStep::PaymentMethod,
        );
        let problem = err.to_problem();
        assert_eq!((problem.status, problem.decline_code.as_deref()), (402, Some("generic_decline")));
    }

    #[test]
    fn billing_errors_map_by_step() {
        let invalid = || BillingError::InvalidRequest { param: None, message: "No such PaymentMethod".into() };
        assert_eq!(ApiError::from_billing(invalid(), BillingStep::PaymentMethod).status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(ApiError::from_billing(invalid(), BillingStep::Subscription).status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            ApiError::from_billing(BillingError::Unavailable("503".into()), BillingStep::Customer).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let reused = BillingError::InvalidRequest {
            param: None,
            message: "Keys for idempotent requests can only be used with the same parameters".into(),
        };
        assert_eq!(ApiError::from_billing(reused, BillingStep::Subscription).code(), "idempotency_key_reused");
    }
}
