//! Request extractors whose rejections are [`ApiError`] problems, so every bad input
//! is answered in the same RFC 9457 shape: malformed JSON, wrong content type and
//! oversized bodies are 400; well-formed JSON of the wrong shape is 422 naming the field.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Path, Request},
    http::{header, request::Parts, HeaderMap},
};
use serde::de::DeserializeOwned;
use shared::domain::{UserId, ValidationErrors};

use crate::problem::ApiError;

/// Largest accepted body. The biggest valid body (a subscription update with a
/// 500-character comment) is far below this.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// A JSON body (required).
pub struct JsonBody<T>(pub T);

/// A JSON body that may be absent (empty): then `T::default()`.
pub struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (headers, bytes) = read_body(request, state).await?;
        if bytes.is_empty() {
            return Err(ApiError::MalformedBody("the body is empty; this route needs a JSON object".into()));
        }
        ensure_json(&headers)?;
        parse_json(&bytes).map(JsonBody)
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (headers, bytes) = read_body(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        ensure_json(&headers)?;
        parse_json(&bytes).map(OptionalJsonBody)
    }
}

async fn read_body<S: Send + Sync>(request: Request, _state: &S) -> Result<(HeaderMap, Bytes), ApiError> {
    let (parts, body) = request.into_parts();
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
        return Err(ApiError::BodyTooLarge(MAX_BODY_BYTES));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| ApiError::BodyTooLarge(MAX_BODY_BYTES))?;
    Ok((parts.headers, bytes))
}

/// `application/json` or any `application/*+json`, parameters allowed.
fn ensure_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let is_json = essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// Parses JSON; syntax errors are 400, shape errors (missing, unknown or mistyped
/// fields) are 422 with the field's path.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        shape_or_syntax(&path, &inner)
    })?;
    deserializer.end().map_err(|e| ApiError::MalformedBody(without_position(&e)))?;
    Ok(value)
}

fn shape_or_syntax(path: &str, err: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Data => {
            let message = without_position(err);
            let field = named_field(&message).map(|name| {
                if path == "." {
                    name.to_owned()
                } else if path.rsplit('.').next() == Some(name) {
                    // `unknown field` errors already point at the field itself.
                    path.to_owned()
                } else {
                    format!("{path}.{name}")
                }
            });
            let field = field.unwrap_or_else(|| if path == "." { "body".to_owned() } else { path.to_owned() });
            ApiError::Validation(ValidationErrors::single(&field, message))
        }
        Category::Syntax | Category::Eof | Category::Io => ApiError::MalformedBody(without_position(err)),
    }
}

/// `missing field `x``/`unknown field `x``: the field the message is about.
fn named_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `").or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split('`').next()
}

/// serde_json's message without its " at line 1 column 7" suffix.
fn without_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(idx) => text[..idx].to_owned(),
        None => text,
    }
}

/// The `{user_id}` path segment, validated (422 naming `user_id` when invalid).
pub struct UserPath(pub UserId);

impl<S: Send + Sync> FromRequestParts<S> for UserPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::Validation(ValidationErrors::single("user_id", "is not a valid path segment")))?;
        UserId::parse(&raw).map(UserPath).map_err(ApiError::Validation)
    }
}

/// The caller's `Idempotency-Key` header, when sent.
pub struct IdempotencyHeader(pub Option<String>);

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(IDEMPOTENCY_HEADER) else {
            return Ok(IdempotencyHeader(None));
        };
        let text = value.to_str().map_err(|_| ApiError::InvalidIdempotencyKey)?.trim();
        let ok = !text.is_empty() && text.len() <= 255 && text.chars().all(|c| c.is_ascii_graphic());
        if ok {
            Ok(IdempotencyHeader(Some(text.to_owned())))
        } else {
            Err(ApiError::InvalidIdempotencyKey)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::domain::SubscriptionUpdate;

    fn err_of(body: &str) -> ApiError {
        match parse_json::<SubscriptionUpdate>(body.as_bytes()) {
            Ok(_) => panic!("{body} parsed"),
            Err(err) => err,
        }
    }

    fn fields(err: ApiError) -> Vec<String> {
        match err {
            ApiError::Validation(v) => v.errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected 422, got {other:?}"),
        }
    }

    #[test]
    fn syntax_errors_are_400() {
        assert!(matches!(err_of("{\"tier\": "), ApiError::MalformedBody(_)));
        assert!(matches!(err_of("not json"), ApiError::MalformedBody(_)));
        assert!(matches!(err_of("{} {}"), ApiError::MalformedBody(_)) || matches!(err_of("{} {}"), ApiError::Validation(_)));
    }

    #[test]
    fn shape_errors_name_the_field() {
        assert_eq!(fields(err_of(r#"{"duration_months": 1, "is_paid": false, "auto_renew": true}"#)), ["tier"]);
        assert_eq!(
            fields(err_of(r#"{"tier": "premium", "duration_months": "x", "is_paid": false, "auto_renew": true}"#)),
            ["duration_months"]
        );
        assert_eq!(
            fields(err_of(r#"{"tier": "premium", "duration_months": 1, "is_paid": false, "auto_renew": true, "colour": 1}"#)),
            ["colour"]
        );
        assert_eq!(fields(err_of("[]")), ["body"]);
    }

    #[test]
    fn content_type_must_be_json() {
        let mut headers = HeaderMap::new();
        assert!(ensure_json(&headers).is_err());
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(ensure_json(&headers).is_err());
        headers.insert(header::CONTENT_TYPE, "Application/JSON; charset=utf-8".parse().unwrap());
        assert!(ensure_json(&headers).is_ok());
        headers.insert(header::CONTENT_TYPE, "application/merge-patch+json".parse().unwrap());
        assert!(ensure_json(&headers).is_ok());
    }
}
