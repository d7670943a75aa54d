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
use shared::{domain::ValidationErrors, store::StoreError, usecase::admin::AdminError};

pub use shared::problem::{Problem, PROBLEM_BASE, PROBLEM_CONTENT_TYPE};
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
    #[error("no such route")]
    RouteNotFound,
    /// With the `Allow` header value (the methods the path serves).
    #[error("method not allowed")]
    MethodNotAllowed(String),
    #[error(transparent)]
    Validation(#[from] ValidationErrors),
    /// What a use case refused or failed with (not found, conflict, card declined,
    /// provider or storage failures, internal errors).
    #[error(transparent)]
    UseCase(AdminError),
}

impl ApiError {
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::UseCase(AdminError::Conflict { code, detail: detail.into() })
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedBody(_) | Self::UnsupportedMediaType | Self::BodyTooLarge(_) | Self::InvalidIdempotencyKey => {
                StatusCode::BAD_REQUEST
            }
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::UseCase(AdminError::UserNotFound(_)) | Self::UseCase(AdminError::SubscriptionNotFound(_)) | Self::RouteNotFound => {
                StatusCode::NOT_FOUND
            }
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::UseCase(AdminError::UserErased(_)) => StatusCode::GONE,
            // As the cause would answer: 503 to retry later, 502 for Stripe's refusal.
            Self::UseCase(AdminError::ErasureUnfinished(cause)) => match **cause {
                AdminError::BillingUnavailable(_) | AdminError::OutcomeUnknown(_) | AdminError::StoreUnavailable(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                AdminError::BadGateway(_) => StatusCode::BAD_GATEWAY,
                AdminError::Conflict { .. } => StatusCode::CONFLICT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Self::UseCase(AdminError::Conflict { .. }) => StatusCode::CONFLICT,
            Self::UseCase(AdminError::CardDeclined { .. }) => StatusCode::PAYMENT_REQUIRED,
            Self::Validation(_) | Self::UseCase(AdminError::Validation(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::UseCase(AdminError::BillingUnavailable(_) | AdminError::OutcomeUnknown(_))
            | Self::UseCase(AdminError::StoreUnavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Self::UseCase(AdminError::BadGateway(_)) => StatusCode::BAD_GATEWAY,
            Self::UseCase(AdminError::Internal(_)) => StatusCode::INTERNAL_SERVER_ERROR,
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
            Self::UseCase(AdminError::UserNotFound(_)) => "user_not_found",
            Self::UseCase(AdminError::SubscriptionNotFound(_)) => "subscription_not_found",
            Self::RouteNotFound => "route_not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::UseCase(AdminError::UserErased(_)) => "user_erased",
            Self::UseCase(AdminError::ErasureUnfinished(_)) => "erasure_unfinished",
            Self::UseCase(AdminError::Conflict { code, .. }) => code,
            Self::UseCase(AdminError::CardDeclined { .. }) => "card_declined",
            Self::Validation(_) | Self::UseCase(AdminError::Validation(_)) => "validation_error",
            Self::UseCase(AdminError::BillingUnavailable(_) | AdminError::OutcomeUnknown(_)) => "billing_unavailable",
            Self::UseCase(AdminError::StoreUnavailable(_)) => "storage_unavailable",
            Self::UseCase(AdminError::BadGateway(_)) => "billing_provider_error",
            Self::UseCase(AdminError::Internal(_)) => "internal_error",
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
            Self::UseCase(AdminError::UserNotFound(_)) | Self::UseCase(AdminError::SubscriptionNotFound(_)) | Self::RouteNotFound => {
                ("not-found", "Not found")
            }
            Self::MethodNotAllowed(_) => ("method-not-allowed", "Method not allowed"),
            Self::UseCase(AdminError::UserErased(_)) => ("gone", "The user was erased"),
            Self::UseCase(AdminError::ErasureUnfinished(_)) => ("erasure-unfinished", "The erasure did not finish"),
            Self::UseCase(AdminError::Conflict { .. }) => ("conflict", "Conflicts with the current state"),
            Self::UseCase(AdminError::CardDeclined { .. }) => ("card-declined", "Card declined"),
            Self::Validation(_) | Self::UseCase(AdminError::Validation(_)) => ("validation-error", "The request is invalid"),
            Self::UseCase(AdminError::BillingUnavailable(_) | AdminError::OutcomeUnknown(_))
            | Self::UseCase(AdminError::StoreUnavailable(_)) => ("service-unavailable", "Temporarily unavailable"),
            Self::UseCase(AdminError::BadGateway(_)) => ("bad-gateway", "Billing provider error"),
            Self::UseCase(AdminError::Internal(_)) => ("internal-error", "Internal error"),
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
            Self::UseCase(AdminError::UserNotFound(user)) => {
                format!("User `{user}` has no profile. Create it first with PUT /users/{user} (an e-mail address is required).")
            }
            Self::UseCase(AdminError::SubscriptionNotFound(user)) => format!("User `{user}` has no subscription."),
            Self::UseCase(AdminError::UserErased(user)) => {
                format!("User `{user}` was erased; the id is retired and nothing is recorded for it again. Use a new user id.")
            }
            Self::UseCase(AdminError::ErasureUnfinished(_)) => {
                "The erasure started but did not finish (the billing provider or storage did not answer, or refused). The user is already unreachable: no mail, no new subscription. Send the DELETE again: it continues where it stopped.".into()
            }
            Self::RouteNotFound => "No such route. See openapi.yaml for the routes this API serves.".into(),
            Self::MethodNotAllowed(_) => "This route does not support that method.".into(),
            Self::UseCase(AdminError::Conflict { detail, .. }) => detail.clone(),
            Self::UseCase(AdminError::CardDeclined { message, .. }) => message.clone(),
            Self::Validation(errors) | Self::UseCase(AdminError::Validation(errors)) => {
                let fields: Vec<&str> = errors.errors.iter().map(|e| e.field.as_str()).collect();
                format!("Invalid field(s): {}.", fields.join(", "))
            }
            Self::UseCase(AdminError::BillingUnavailable(_)) => {
                "The billing provider did not answer. Retry later with the same Idempotency-Key; anything Stripe did apply is recorded from its events.".into()
            }
            Self::UseCase(AdminError::OutcomeUnknown(_)) => {
                "The billing provider did not confirm the subscription; it may exist. Retry with the same Idempotency-Key: the subscription is finished, never created twice.".into()
            }
            Self::UseCase(AdminError::StoreUnavailable(_)) => "Storage did not answer. Retry later with the same Idempotency-Key.".into(),
            Self::UseCase(AdminError::BadGateway(_)) => "The billing provider refused the request. Nothing was changed locally.".into(),
            Self::UseCase(AdminError::Internal(_)) => "An unexpected error occurred. Quote the request id when reporting it.".into(),
        }
    }

    pub fn to_problem(&self) -> Problem {
        let (slug, title) = self.kind();
        let status = self.status();
        let (errors, decline_code, stripe_code) = match self {
            Self::Validation(v) | Self::UseCase(AdminError::Validation(v)) => (Some(v.errors.clone()), None, None),
            Self::UseCase(AdminError::CardDeclined { code, decline_code, .. }) => (None, decline_code.clone(), code.clone()),
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
        let body = self.to_problem().to_body();
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
        AdminError::from(err).into()
    }
}

impl From<AdminError> for ApiError {
    fn from(err: AdminError) -> Self {
        match err {
            AdminError::Validation(v) => Self::Validation(v),
            other => Self::UseCase(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{billing::BillingError, usecase::admin::BillingStep};

    fn from_billing(err: BillingError, step: BillingStep) -> ApiError {
        AdminError::from_billing(err, step).into()
    }

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
        let problem = ApiError::from(AdminError::Internal("dynamodb said secret things".into())).to_problem();
        assert!(!problem.detail.contains("secret"));
        let problem = ApiError::from(AdminError::StoreUnavailable("connection refused to 10.0.0.1".into())).to_problem();
        assert!(!problem.detail.contains("10.0.0.1"));
        assert_eq!(problem.status, 503);
    }

    #[test]
    fn declines_keep_the_decline_code() {
        let err = from_billing(
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
        assert_eq!(from_billing(invalid(), BillingStep::PaymentMethod).status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(from_billing(invalid(), BillingStep::Subscription).status(), StatusCode::BAD_GATEWAY);
        assert_eq!(from_billing(BillingError::Unavailable("503".into()), BillingStep::Customer).status(), StatusCode::SERVICE_UNAVAILABLE);
        let reused = BillingError::InvalidRequest {
            param: None,
            message: "Keys for idempotent requests can only be used with the same parameters".into(),
        };
        assert_eq!(from_billing(reused, BillingStep::Subscription).code(), "idempotency_key_reused");
    }
}
