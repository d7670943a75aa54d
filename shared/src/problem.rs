//! The RFC 9457 `application/problem+json` body every HTTP edge of this service answers
//! errors with: a stable `type` URI and machine-readable `code` per kind of failure, a
//! `detail` for people, and never internals on a 5xx.

use serde::Serialize;

use crate::domain::FieldError;

/// Where the problem `type` URIs live.
pub const PROBLEM_BASE: &str = "https://logiscore.dev/problems/";
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

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

impl Problem {
    /// A problem of type `slug` with no extension members.
    pub fn new(slug: &str, title: &'static str, status: u16, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            type_: format!("{PROBLEM_BASE}{slug}"),
            title,
            status,
            detail: detail.into(),
            code,
            request_id: None,
            errors: None,
            decline_code: None,
            stripe_code: None,
        }
    }

    /// The serialized body (a fixed minimal one if serialization could ever fail).
    pub fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| br#"{"title":"Internal error","status":500}"#.to_vec())
    }
}
