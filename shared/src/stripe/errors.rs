//! Turning async-stripe's errors into the port's `BillingError`, and deciding which
//! failures are worth another attempt.
//!
//! Never format a `stripe::StripeError` into a log line or an error message: its
//! `Display` pretty-prints the whole `ApiErrors`, which can carry the payment method
//! (card brand, last4, fingerprint, billing details). Only the fields picked here leave
//! this module.

use stripe::StripeError;
use stripe_shared::{ApiErrors, ApiErrorsType};

use crate::billing::BillingError;

/// What the transport reports for a 429 or 5xx answer whose body is not a Stripe error
/// object: in practice a proxy or load balancer in front of the API (502/503/504 pages),
/// worth another attempt. Any other status with such a body is not retried.
pub(super) const NON_STRIPE_ERROR_BODY: &str = "error deserializing Stripe error";

/// One failed attempt, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub error: BillingError,
    /// Worth another attempt with the same idempotency key.
    pub retryable: bool,
    /// HTTP status, when Stripe answered.
    pub status: Option<u16>,
    /// `req_…`, when Stripe's error carried a request log URL.
    pub request_id: Option<String>,
    /// Short outcome for the log line (`http_503`, `timeout`, `connection`, ...).
    pub outcome: &'static str,
}

pub(crate) fn classify(err: &StripeError) -> Failure {
    match err {
        StripeError::Stripe(api, status) => classify_api(api, *status),
        StripeError::Timeout => Failure {
            error: BillingError::Unavailable("stripe did not answer within the attempt timeout".into()),
            retryable: true,
            status: None,
            request_id: None,
            outcome: "timeout",
        },
        StripeError::ClientError(msg) => Failure {
            // Connection refused/reset, TLS or HTTP protocol errors: nothing reached
            // Stripe's application layer, or the answer was lost; a retry with the same
            // idempotency key is safe either way.
            error: BillingError::Unavailable(format!("could not reach stripe: {msg}")),
            retryable: true,
            status: None,
            request_id: None,
            outcome: "connection",
        },
        StripeError::JSONDeserialize(msg) if msg == NON_STRIPE_ERROR_BODY => Failure {
            error: BillingError::Unavailable("stripe answered an error without a Stripe error body".into()),
            retryable: true,
            status: None,
            request_id: None,
            outcome: "non_stripe_error_body",
        },
        StripeError::JSONDeserialize(msg) => Failure {
            // The call succeeded at Stripe but the object did not parse: retrying would
            // only repeat that, and for a create the object exists already.
            error: BillingError::Unexpected(format!("could not parse stripe's answer: {msg}")),
            retryable: false,
            status: None,
            request_id: None,
            outcome: "unparsable",
        },
        StripeError::ConfigError(msg) => Failure {
            error: BillingError::Unexpected(format!("stripe client misconfigured: {msg}")),
            retryable: false,
            status: None,
            request_id: None,
            outcome: "config",
        },
    }
}

fn classify_api(api: &ApiErrors, status: u16) -> Failure {
    let message = api.message.clone().unwrap_or_else(|| format!("stripe answered HTTP {status}"));
    let code = api.code.as_ref().map(|c| c.as_str().to_owned());
    let request_id = api.request_log_url.as_deref().and_then(request_id_from_log_url);
    let (error, retryable, outcome) = if matches!(api.type_, ApiErrorsType::CardError) || status == 402 {
        (BillingError::CardDeclined { code, decline_code: api.decline_code.clone(), message }, false, "card_error")
    } else if status == 404 || code.as_deref() == Some("resource_missing") {
        (BillingError::NotFound(message), false, "not_found")
    } else if status == 429 || (500..=599).contains(&status) {
        (BillingError::Unavailable(format!("HTTP {status}: {message}")), true, "transient")
    } else if status == 409 {
        // A request with the same idempotency key is still in flight at Stripe. Not
        // retried here (a 4xx), but the caller may retry the whole operation later.
        (BillingError::Unavailable(format!("HTTP 409: {message}")), false, "conflict")
    } else {
        (BillingError::InvalidRequest { param: api.param.clone(), message }, false, "invalid_request")
    };
    Failure { error, retryable, status: Some(status), request_id, outcome }
}

/// Stripe's error objects carry `request_log_url`
/// (`https://dashboard.stripe.com/test/logs/req_123?t=…`); the `req_…` part is the
/// request id support asks for. async-stripe does not expose response headers, so
/// this is the only place the id can be had.
pub(crate) fn request_id_from_log_url(url: &str) -> Option<String> {
    let start = url.find("req_")?;
    let id: String = url[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    (id.len() > "req_".len()).then_some(id)
}

/// A card decline that needs the customer to authenticate (3-D Secure) rather than
/// use another card.
pub(crate) fn needs_authentication(code: Option<&str>) -> bool {
    matches!(code, Some("invoice_payment_intent_requires_action" | "authentication_required"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::str::FromStr;
    use stripe_shared::ApiErrorsCode;

    pub fn api_error(type_: ApiErrorsType, code: Option<&str>, message: &str) -> ApiErrors {
        ApiErrors {
            advice_code: None,
            charge: None,
            code: code.map(|c| ApiErrorsCode::from_str(c).unwrap()),
            decline_code: None,
            doc_url: None,
            message: Some(message.into()),
            network_advice_code: None,
            network_decline_code: None,
            param: None,
            payment_intent: None,
            payment_method: None,
            payment_method_type: None,
            request_log_url: None,
            setup_intent: None,
            source: None,
            type_,
        }
    }

    fn stripe(api: ApiErrors, status: u16) -> StripeError {
        StripeError::Stripe(Box::new(api), status)
    }

    #[test]
    fn card_errors_are_declines_with_their_codes() {
        let mut api = api_error(ApiErrorsType::CardError, Some("card_declined"), "Your card was declined.");
        api.decline_code = Some("generic_decline".into());
        api.request_log_url = Some("https://dashboard.stripe.com/test/logs/req_abc123?t=1".into());
        let f = classify(&stripe(api, 402));
        assert_eq!(
            f.error,
            BillingError::CardDeclined {
                code: Some("card_declined".into()),
                decline_code: Some("generic_decline".into()),
                message: "Your card was declined.".into()
            }
        );
        assert!(!f.retryable);
        assert_eq!(f.status, Some(402));
        assert_eq!(f.request_id.as_deref(), Some("req_abc123"));
    }

    #[test]
    fn invalid_requests_keep_the_param() {
        let mut api = api_error(ApiErrorsType::InvalidRequestError, Some("parameter_invalid_empty"), "bad");
        api.param = Some("items[0][price]".into());
        let f = classify(&stripe(api, 400));
        assert_eq!(f.error, BillingError::InvalidRequest { param: Some("items[0][price]".into()), message: "bad".into() });
        assert!(!f.retryable);
    }

    #[test]
    fn missing_resources_are_not_found_whatever_the_status() {
        let api = api_error(ApiErrorsType::InvalidRequestError, Some("resource_missing"), "No such customer: 'cus_x'");
        assert!(matches!(classify(&stripe(api.clone(), 404)).error, BillingError::NotFound(_)));
        assert!(matches!(classify(&stripe(api, 400)).error, BillingError::NotFound(_)));
    }

    #[test]
    fn rate_limits_server_errors_and_network_failures_are_retried() {
        for status in [429, 500, 502, 503, 504] {
            let f = classify(&stripe(api_error(ApiErrorsType::ApiError, None, "busy"), status));
            assert!(f.retryable, "{status}");
            assert!(matches!(f.error, BillingError::Unavailable(_)), "{status}");
        }
        for err in [StripeError::Timeout, StripeError::ClientError("connection refused".into())] {
            let f = classify(&err);
            assert!(f.retryable);
            assert!(matches!(f.error, BillingError::Unavailable(_)));
        }
        assert!(classify(&StripeError::JSONDeserialize(NON_STRIPE_ERROR_BODY.into())).retryable);
    }

    #[test]
    fn client_errors_and_bad_bodies_are_never_retried() {
        for status in [400, 401, 403, 404, 409] {
            let f = classify(&stripe(api_error(ApiErrorsType::InvalidRequestError, None, "no"), status));
            assert!(!f.retryable, "{status}");
        }
        let f = classify(&StripeError::JSONDeserialize("error deserializing request data".into()));
        assert!(!f.retryable);
        assert!(matches!(f.error, BillingError::Unexpected(_)));
    }

    #[test]
    fn request_ids_come_out_of_log_urls() {
        assert_eq!(request_id_from_log_url("https://dashboard.stripe.com/logs/req_Z9x?t=5").as_deref(), Some("req_Z9x"));
        assert_eq!(request_id_from_log_url("https://dashboard.stripe.com/logs/"), None);
        assert_eq!(request_id_from_log_url("…/req_"), None);
    }

    #[test]
    fn authentication_declines_are_told_apart() {
        assert!(needs_authentication(Some("invoice_payment_intent_requires_action")));
        assert!(needs_authentication(Some("authentication_required")));
        assert!(!needs_authentication(Some("card_declined")));
        assert!(!needs_authentication(None));
    }
}
