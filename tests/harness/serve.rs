//! The real admin router served over plain HTTP on loopback, for HTTP clients (schemathesis)
//! that cannot build API Gateway events themselves.
//!
//! Each HTTP request is turned into the API Gateway HTTP API (payload 2.0) event the
//! function receives in AWS — raw path and query, headers, the body (base64 when it is not
//! UTF-8) and `requestContext` — converted with `lambda_http` exactly as the Lambda runtime
//! does, and run through the router; its answer goes back unchanged.
//!
//! The harness plays the HTTP API's JWT authorizer, per [`Caller`]: a request whose
//! `Authorization` header is `Bearer {TOKEN}` reaches the function with the mode's claims;
//! any other (missing, wrong) credential reaches it with no claims at all. The function
//! itself decides 401/403 from those claims; the binaries keep no bypass.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    body::Body as AxumBody,
    extract::State,
    http::{HeaderValue, StatusCode},
    response::Response,
};
use http_body_util::BodyExt;
use serde_json::{json, Value};

/// The bearer token the harness's "authorizer" accepts.
pub const TOKEN: &str = "hostile-harness-token";

/// Whose claims an accepted request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// `cognito:groups` = `[admin]` (and a `sub`).
    Admin,
    /// A valid token of a user in other groups only (`[users administrators]`).
    NonAdmin,
    /// No authorizer context at all, whatever the request carries.
    Anonymous,
}

pub struct Served {
    /// `http://127.0.0.1:{port}`
    pub url: String,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// How many answers of each status the router gave so far.
    pub fn statuses(&self) -> BTreeMap<u16, u64> {
        self.inner.statuses.lock().expect("statuses lock").clone()
    }

    /// How many requests reached each declared route (`"DELETE /users/{user_id}"`), so a
    /// run can show it exercised every route rather than a few.
    pub fn routes(&self) -> BTreeMap<String, u64> {
        self.inner.routes.lock().expect("routes lock").clone()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Inner {
    router: axum::Router,
    caller: Caller,
    statuses: Mutex<BTreeMap<u16, u64>>,
    routes: Mutex<BTreeMap<String, u64>>,
}

/// Serves `router` on 127.0.0.1:0 as `caller`.
pub async fn serve(router: axum::Router, caller: Caller) -> Served {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind admin server");
    let addr = listener.local_addr().expect("addr");
    let inner = Arc::new(Inner { router, caller, statuses: Mutex::new(BTreeMap::new()), routes: Mutex::new(BTreeMap::new()) });
    let app = axum::Router::new().fallback(forward).with_state(inner.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Served { url: format!("http://{addr}"), inner, task }
}

fn claims(caller: Caller, authorization: Option<&str>) -> Option<Value> {
    let presented = authorization.and_then(|a| a.strip_prefix("Bearer ")).map(str::trim);
    if presented != Some(TOKEN) {
        return None;
    }
    match caller {
        Caller::Admin => Some(admin_api::apigw::admin_claims("hostile-admin")),
        Caller::NonAdmin => Some(admin_api::apigw::claims_with_groups("hostile-user", "[users administrators]")),
        Caller::Anonymous => None,
    }
}

/// The API Gateway v2 event for one HTTP request.
pub fn event_for(parts: &axum::http::request::Parts, body: &[u8], claims: Option<Value>) -> Value {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_ascii_lowercase())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let (body, base64) = match std::str::from_utf8(body) {
        _ if body.is_empty() => (Value::Null, false),
        Ok(text) => (json!(text), false),
        Err(_) => (json!(base64(body)), true),
    };
    let path = parts.uri.path();
    let user_agent = headers.get("user-agent").cloned().unwrap_or_default();
    let context = admin_api::apigw::request_context(parts.method.as_str(), path, &user_agent, claims);
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": parts.uri.query().unwrap_or_default(),
        "headers": headers,
        "requestContext": context,
        "body": body,
        "isBase64Encoded": base64,
    })
}

async fn forward(State(inner): State<Arc<Inner>>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let authorization = parts.headers.get("authorization").and_then(|v| v.to_str().ok());
    let event = event_for(&parts, &bytes, claims(inner.caller, authorization));
    // `apigw::invoke` converts the event with `lambda_http` (as the runtime does) and runs the router.
    let response = match admin_api::apigw::invoke(&inner.router, &event).await {
        Ok(answer) => {
            let body = if answer.body.is_null() { Vec::new() } else { answer.body.to_string().into_bytes() };
            let mut response = Response::new(AxumBody::from(body));
            *response.status_mut() = answer.status;
            *response.headers_mut() = answer.headers;
            response.headers_mut().remove("content-length");
            response
        }
        // Not an event API Gateway would send, or a body that is not JSON: make it visible.
        Err(e) => harness_problem(StatusCode::INTERNAL_SERVER_ERROR, &format!("harness: {e}")),
    };
    *inner.statuses.lock().expect("statuses lock").entry(response.status().as_u16()).or_default() += 1;
    if let Some(route) = admin_api::route_of(parts.method.as_str(), parts.uri.path()) {
        *inner.routes.lock().expect("routes lock").entry(format!("{} {}", route.method, route.path)).or_default() += 1;
    }
    response
}

fn harness_problem(status: StatusCode, detail: &str) -> Response {
    let body = json!({"type": "https://logiscore.dev/problems/internal-error", "title": "Harness error", "status": status.as_u16(), "detail": detail, "code": "harness_rejected"});
    let mut response = Response::new(AxumBody::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/problem+json"));
    response
}

/// Standard base64 with padding (API Gateway's encoding of binary bodies).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16) | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8) | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
