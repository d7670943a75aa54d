//! API Gateway HTTP API (payload 2.0) events: building them and running them through
//! the router exactly as `lambda_http` would, so tests and tools exercise the same
//! request context (JWT claims, request id) the function sees in AWS.

use axum::{http::HeaderMap, http::StatusCode, Router};
use serde_json::{json, Value};
use tower::ServiceExt;

/// An HTTP API v2 event. `claims: None` means no authorizer context at all.
pub fn event(
    method: &str,
    path: &str,
    query: Option<&str>,
    claims: Option<Value>,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> Value {
    let mut header_map = serde_json::Map::new();
    header_map.insert("accept".into(), json!("application/json"));
    if body.is_some() {
        header_map.insert("content-type".into(), json!("application/json"));
    }
    for (name, value) in headers {
        header_map.insert(name.to_ascii_lowercase(), json!(value));
    }
    let context = request_context(method, path, "admin-api-tests", claims);
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query.unwrap_or_default(),
        "headers": header_map,
        "requestContext": context,
        "body": body.map(Value::to_string),
        "isBase64Encoded": false,
    })
}

/// The `requestContext` of an HTTP API v2 event; `claims: None` means no authorizer context.
pub fn request_context(method: &str, path: &str, user_agent: &str, claims: Option<Value>) -> Value {
    let mut context = json!({
        "accountId": "123456789012",
        "apiId": "adminapi",
        "domainName": "adminapi.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "adminapi",
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": user_agent},
        "requestId": uuid::Uuid::new_v4().to_string(),
        "routeKey": "$default",
        "stage": "$default",
        "time": "01/Mar/2026:12:00:00 +0000",
        "timeEpoch": 1_772_366_400_000i64,
    });
    if let Some(claims) = claims {
        context["authorizer"] = json!({"jwt": {"claims": claims, "scopes": null}});
    }
    context
}

/// Claims of an admin (`cognito:groups` as HTTP APIs render a one-element array).
pub fn admin_claims(sub: &str) -> Value {
    json!({"sub": sub, "cognito:groups": "[admin]", "token_use": "access", "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_test"})
}

/// Claims with the given raw `cognito:groups` value.
pub fn claims_with_groups(sub: &str, groups: &str) -> Value {
    json!({"sub": sub, "cognito:groups": groups})
}

/// The router's answer to an event.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

/// Converts `event` with `lambda_http` (as the runtime does) and serves it.
pub async fn invoke(router: &Router, event: &Value) -> Result<Answer, String> {
    let request = lambda_http::request::from_str(&event.to_string()).map_err(|e| format!("not an API Gateway event: {e}"))?;
    let response = match router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1024 * 1024).await.map_err(|e| e.to_string())?;
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).map_err(|e| format!("non-JSON body: {e}"))? };
    Ok(Answer { status: parts.status, headers: parts.headers, body })
}
