//! Stripe-shaped API errors: `{"error": {"type", "code", "message", "param", "decline_code", …}}`.
//!
//! Every failure the sim can produce goes through [`ApiError`], so clients see the
//! same status codes and bodies as with Stripe (and async-stripe parses them into its
//! `StripeError::Stripe` variant instead of a decode error).

use axum::http::StatusCode;
use serde_json::{json, Map, Value};

/// The `type` of a Stripe error object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    ApiError,
    CardError,
    IdempotencyError,
    InvalidRequestError,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::ApiError => "api_error",
            ErrorType::CardError => "card_error",
            ErrorType::IdempotencyError => "idempotency_error",
            ErrorType::InvalidRequestError => "invalid_request_error",
        }
    }
}

/// An error response. Construct with the helpers so status and type stay consistent.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: ErrorType,
    pub code: Option<&'static str>,
    pub message: String,
    pub param: Option<String>,
    pub decline_code: Option<&'static str>,
    /// Extra fields merged into the error object (e.g. `payment_intent` on a card error).
    /// Boxed, like the static strings above, to keep `Result<_, ApiError>` small.
    pub extra: Option<Box<Map<String, Value>>>,
    /// Whether to send `Stripe-Should-Retry: true` (rate limits and injected 5xx faults).
    pub should_retry: bool,
}

impl ApiError {
    fn new(status: StatusCode, kind: ErrorType, message: impl Into<String>) -> Self {
        ApiError { status, kind, code: None, message: message.into(), param: None, decline_code: None, extra: None, should_retry: false }
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// Adds a field to the error object (Stripe puts e.g. the `payment_intent` there).
    pub fn with_extra(mut self, key: &str, value: Value) -> Self {
        self.extra.get_or_insert_with(Default::default).insert(key.to_string(), value);
        self
    }

    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_string());
        self
    }

    /// 400 `invalid_request_error`, optionally naming the parameter at fault.
    pub fn invalid_request(param: Option<&str>, message: impl Into<String>) -> Self {
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, ErrorType::InvalidRequestError, message);
        e.param = param.map(str::to_string);
        e
    }

    /// 400 `parameter_missing`.
    pub fn missing_param(param: &str) -> Self {
        ApiError::invalid_request(Some(param), format!("Missing required param: {param}.")).with_code("parameter_missing")
    }

    /// 400 `parameter_invalid_integer` and friends collapse to this one.
    pub fn invalid_value(param: &str, message: impl Into<String>) -> Self {
        ApiError::invalid_request(Some(param), message).with_code("parameter_invalid_empty")
    }

    /// 404 `resource_missing`: `No such customer: 'cus_x'`.
    pub fn no_such(kind: &str, id: &str, param: Option<&str>) -> Self {
        let mut e = ApiError::new(StatusCode::NOT_FOUND, ErrorType::InvalidRequestError, format!("No such {kind}: '{id}'"))
            .with_code("resource_missing");
        e.param = param.map(str::to_string);
        e
    }

    /// 400 `resource_missing`: Stripe uses 400 (not 404) when a *parameter* names a missing object.
    pub fn no_such_param(kind: &str, id: &str, param: &str) -> Self {
        let mut e = ApiError::no_such(kind, id, Some(param));
        e.status = StatusCode::BAD_REQUEST;
        e
    }

    /// 404 for a URL the sim does not know.
    pub fn unrecognized_url(method: &str, path: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequestError,
            format!("Unrecognized request URL ({method}: {path}). stripe-sim implements only part of the Stripe API; see tests/stripe-sim/README.md."),
        )
    }

    /// 402 `card_error` with `code` (e.g. `card_declined`) and `decline_code`.
    pub fn card_declined(code: &'static str, decline_code: &'static str, message: impl Into<String>) -> Self {
        let mut e = ApiError::new(StatusCode::PAYMENT_REQUIRED, ErrorType::CardError, message).with_code(code);
        e.decline_code = Some(decline_code);
        e
    }

    /// 401 for a missing or malformed API key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, ErrorType::InvalidRequestError, message)
    }

    /// 400 `idempotency_error`: same key, different parameters.
    pub fn idempotency_mismatch(key: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorType::IdempotencyError,
            format!(
                "Keys for idempotent requests can only be used with the same parameters they were first used with. \
                 Try using a key other than '{key}' if you meant to execute a different request."
            ),
        )
    }

    /// 500 `api_error` for invariant failures inside the sim (never expected).
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorType::ApiError, message)
    }

    /// The answer to an injected fault: 429 is Stripe's `rate_limit`, anything else an `api_error`.
    pub fn fault(status: StatusCode) -> Self {
        let mut e = if status == StatusCode::TOO_MANY_REQUESTS {
            ApiError::new(status, ErrorType::InvalidRequestError, "Request rate limit exceeded. (stripe-sim injected fault)")
                .with_code("rate_limit")
        } else if status.is_client_error() {
            ApiError::new(status, ErrorType::InvalidRequestError, format!("Injected fault: HTTP {}", status.as_u16()))
        } else {
            ApiError::new(status, ErrorType::ApiError, "An unknown error occurred. (stripe-sim injected fault)")
        };
        e.should_retry = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() || status == StatusCode::CONFLICT;
        e
    }

    /// The JSON body: `{"error": {...}}`. Absent optional fields are omitted, as Stripe does.
    pub fn body(&self, request_id: &str) -> Value {
        let mut err = Map::new();
        err.insert("type".into(), json!(self.kind.as_str()));
        err.insert("message".into(), json!(self.message));
        if let Some(code) = &self.code {
            err.insert("code".into(), json!(code));
            err.insert("doc_url".into(), json!(format!("https://stripe.com/docs/error-codes/{}", code.replace('_', "-"))));
        }
        if let Some(param) = &self.param {
            err.insert("param".into(), json!(param));
        }
        if let Some(decline) = &self.decline_code {
            err.insert("decline_code".into(), json!(decline));
        }
        err.insert("request_log_url".into(), json!(format!("https://dashboard.stripe.com/test/logs/{request_id}")));
        for (k, v) in self.extra.iter().flat_map(|m| m.iter()) {
            err.insert(k.clone(), v.clone());
        }
        json!({ "error": Value::Object(err) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let e = ApiError::card_declined("card_declined", "generic_decline", "Your card was declined.");
        let b = e.body("req_1");
        assert_eq!(e.status.as_u16(), 402);
        assert_eq!(b["error"]["type"], "card_error");
        assert_eq!(b["error"]["decline_code"], "generic_decline");
        let nf = ApiError::no_such("customer", "cus_x", Some("id")).body("req_1");
        assert_eq!(nf["error"]["code"], "resource_missing");
        assert_eq!(nf["error"]["message"], "No such customer: 'cus_x'");
        let missing = ApiError::missing_param("customer");
        assert_eq!(missing.body("r")["error"]["param"], "customer");
        assert!(ApiError::fault(StatusCode::SERVICE_UNAVAILABLE).should_retry);
        assert_eq!(ApiError::fault(StatusCode::TOO_MANY_REQUESTS).code, Some("rate_limit"));
        assert!(std::mem::size_of::<ApiError>() <= 112);
    }
}
