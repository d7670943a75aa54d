//! The HTTP layer: routing, API-key auth, injected faults, request counting,
//! idempotency keys and `expand[]`, around the resource handlers.
//!
//! Routing is a plain `match` on method and path segments (one axum fallback handler)
//! so unknown URLs get Stripe's 404 shape and every route has a stable name
//! (`POST /v1/customers/{id}`) for the request counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use percent_encoding::percent_decode_str;

use crate::config::Fault;
use crate::error::ApiError;
use crate::form::Params;
use crate::ids::random_id;
use crate::resources::{
    self, customers, events, invoices, payment_methods, products, subscriptions, test_clocks, webhook_endpoints, Ctx, Handler,
};
use crate::state::{IdempotentResponse, RequestInfo, Sim};

/// Request bodies above this are refused (Stripe's own limit is far lower for form posts).
const MAX_BODY: usize = 1 << 20;

pub struct App {
    pub sim: Mutex<Sim>,
    pub fault: Mutex<Option<Fault>>,
    pub counts: Mutex<BTreeMap<String, u64>>,
    pub total: AtomicU64,
}

impl App {
    pub fn sim(&self) -> MutexGuard<'_, Sim> {
        // Handlers do not panic by design; if one ever did, keep serving the state as is.
        self.sim.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, route: &str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        *self.counts.lock().unwrap_or_else(|e| e.into_inner()).entry(route.to_string()).or_insert(0) += 1;
    }

    /// The status to fail this request with, consuming one use of a counted fault.
    fn take_fault(&self) -> Option<StatusCode> {
        let mut fault = self.fault.lock().unwrap_or_else(|e| e.into_inner());
        let status = match *fault {
            None => return None,
            Some(Fault::Status(s)) => s,
            Some(Fault::StatusTimes { status, times }) => {
                *fault = if times > 1 { Some(Fault::StatusTimes { status, times: times - 1 }) } else { None };
                if times == 0 {
                    return None;
                }
                status
            }
        };
        StatusCode::from_u16(status).ok()
    }
}

pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(handle).with_state(app)
}

struct Route {
    name: &'static str,
    handler: Handler,
    ids: Vec<String>,
}

fn route(method: &Method, path: &str) -> Option<Route> {
    let segments: Vec<String> =
        path.trim_end_matches('/').split('/').skip(1).map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned()).collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let m = method.as_str();
    let r = |name: &'static str, handler: Handler, ids: &[&str]| {
        Some(Route { name, handler, ids: ids.iter().map(|s| s.to_string()).collect() })
    };
    match (m, seg.as_slice()) {
        ("POST", ["v1", "customers"]) => r("POST /v1/customers", customers::create, &[]),
        ("GET", ["v1", "customers"]) => r("GET /v1/customers", customers::list, &[]),
        ("GET", ["v1", "customers", "search"]) => r("GET /v1/customers/search", customers::search, &[]),
        ("GET", ["v1", "customers", id]) => r("GET /v1/customers/{id}", customers::retrieve, &[id]),
        ("POST", ["v1", "customers", id]) => r("POST /v1/customers/{id}", customers::update, &[id]),
        ("DELETE", ["v1", "customers", id]) => r("DELETE /v1/customers/{id}", customers::delete, &[id]),
        ("GET", ["v1", "customers", id, "payment_methods"]) => {
            r("GET /v1/customers/{id}/payment_methods", customers::list_payment_methods, &[id])
        }

        ("POST", ["v1", "payment_methods"]) => r("POST /v1/payment_methods", payment_methods::create, &[]),
        ("GET", ["v1", "payment_methods"]) => r("GET /v1/payment_methods", payment_methods::list, &[]),
        ("GET", ["v1", "payment_methods", id]) => r("GET /v1/payment_methods/{id}", payment_methods::retrieve, &[id]),
        ("POST", ["v1", "payment_methods", id, "attach"]) => r("POST /v1/payment_methods/{id}/attach", payment_methods::attach, &[id]),
        ("POST", ["v1", "payment_methods", id, "detach"]) => r("POST /v1/payment_methods/{id}/detach", payment_methods::detach, &[id]),

        ("POST", ["v1", "products"]) => r("POST /v1/products", products::create_product, &[]),
        ("GET", ["v1", "products"]) => r("GET /v1/products", products::list_products, &[]),
        ("GET", ["v1", "products", id]) => r("GET /v1/products/{id}", products::retrieve_product, &[id]),
        ("POST", ["v1", "products", id]) => r("POST /v1/products/{id}", products::update_product, &[id]),
        ("POST", ["v1", "prices"]) => r("POST /v1/prices", products::create_price, &[]),
        ("GET", ["v1", "prices"]) => r("GET /v1/prices", products::list_prices, &[]),
        ("GET", ["v1", "prices", id]) => r("GET /v1/prices/{id}", products::retrieve_price, &[id]),
        ("POST", ["v1", "prices", id]) => r("POST /v1/prices/{id}", products::update_price, &[id]),

        ("POST", ["v1", "subscriptions"]) => r("POST /v1/subscriptions", subscriptions::create, &[]),
        ("GET", ["v1", "subscriptions"]) => r("GET /v1/subscriptions", subscriptions::list, &[]),
        ("GET", ["v1", "subscriptions", id]) => r("GET /v1/subscriptions/{id}", subscriptions::retrieve, &[id]),
        ("POST", ["v1", "subscriptions", id]) => r("POST /v1/subscriptions/{id}", subscriptions::update, &[id]),
        ("DELETE", ["v1", "subscriptions", id]) => r("DELETE /v1/subscriptions/{id}", subscriptions::cancel, &[id]),
        ("POST", ["v1", "subscriptions", id, "resume"]) => r("POST /v1/subscriptions/{id}/resume", subscriptions::resume, &[id]),

        ("GET", ["v1", "invoices"]) => r("GET /v1/invoices", invoices::list, &[]),
        ("GET", ["v1", "invoices", id]) => r("GET /v1/invoices/{id}", invoices::retrieve, &[id]),
        ("GET", ["v1", "invoices", id, "lines"]) => r("GET /v1/invoices/{id}/lines", invoices::lines, &[id]),
        ("POST", ["v1", "invoices", id, "pay"]) => r("POST /v1/invoices/{id}/pay", invoices::pay, &[id]),
        ("POST", ["v1", "invoices", id, "void"]) => r("POST /v1/invoices/{id}/void", invoices::void, &[id]),
        ("POST", ["v1", "invoices", id, "mark_uncollectible"]) => {
            r("POST /v1/invoices/{id}/mark_uncollectible", invoices::mark_uncollectible, &[id])
        }
        ("GET", ["v1", "invoiceitems"]) => r("GET /v1/invoiceitems", invoices::list_invoice_items, &[]),
        ("GET", ["v1", "payment_intents", id]) => r("GET /v1/payment_intents/{id}", invoices::retrieve_payment_intent, &[id]),
        ("POST", ["v1", "payment_intents", id, "confirm"]) => {
            r("POST /v1/payment_intents/{id}/confirm", invoices::confirm_payment_intent, &[id])
        }

        ("GET", ["v1", "events"]) => r("GET /v1/events", events::list, &[]),
        ("GET", ["v1", "events", id]) => r("GET /v1/events/{id}", events::retrieve, &[id]),

        ("POST", ["v1", "webhook_endpoints"]) => r("POST /v1/webhook_endpoints", webhook_endpoints::create, &[]),
        ("GET", ["v1", "webhook_endpoints"]) => r("GET /v1/webhook_endpoints", webhook_endpoints::list, &[]),
        ("GET", ["v1", "webhook_endpoints", id]) => r("GET /v1/webhook_endpoints/{id}", webhook_endpoints::retrieve, &[id]),
        ("POST", ["v1", "webhook_endpoints", id]) => r("POST /v1/webhook_endpoints/{id}", webhook_endpoints::update, &[id]),
        ("DELETE", ["v1", "webhook_endpoints", id]) => r("DELETE /v1/webhook_endpoints/{id}", webhook_endpoints::delete, &[id]),

        ("POST", ["v1", "test_helpers", "test_clocks"]) => r("POST /v1/test_helpers/test_clocks", test_clocks::create, &[]),
        ("GET", ["v1", "test_helpers", "test_clocks"]) => r("GET /v1/test_helpers/test_clocks", test_clocks::list, &[]),
        ("GET", ["v1", "test_helpers", "test_clocks", id]) => r("GET /v1/test_helpers/test_clocks/{id}", test_clocks::retrieve, &[id]),
        ("DELETE", ["v1", "test_helpers", "test_clocks", id]) => r("DELETE /v1/test_helpers/test_clocks/{id}", test_clocks::delete, &[id]),
        ("POST", ["v1", "test_helpers", "test_clocks", id, "advance"]) => {
            r("POST /v1/test_helpers/test_clocks/{id}/advance", test_clocks::advance, &[id])
        }
        _ => None,
    }
}

/// Accepts any test-mode secret key (`sk_test_…`, or a restricted `rk_test_…`).
fn check_auth(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Err(ApiError::unauthorized(
            "You did not provide an API key. You need to provide your API key in the Authorization header, \
             using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        ));
    };
    let key = value.strip_prefix("Bearer ").map(str::trim).unwrap_or("");
    let test_key = (key.starts_with("sk_test_") || key.starts_with("rk_test_")) && key.len() > 8;
    if test_key {
        return Ok(());
    }
    let shown: String = key.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    Err(ApiError::unauthorized(format!(
        "Invalid API Key provided: ****{shown}. stripe-sim accepts test-mode secret keys (sk_test_…) with Bearer auth only."
    )))
}

fn json_response(status: StatusCode, body: bytes::Bytes, request_id: &str) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("request-id", v);
    }
    h.insert("stripe-version", HeaderValue::from_static(events::API_VERSION));
    resp
}

fn error_response(e: &ApiError, request_id: &str) -> Response {
    let mut resp = json_response(e.status, bytes::Bytes::from(e.body(request_id).to_string()), request_id);
    if e.should_retry {
        resp.headers_mut().insert("stripe-should-retry", HeaderValue::from_static("true"));
    }
    resp
}

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let request_id = random_id("req", 14);
    let route = route(&method, &path);
    app.count(&route.as_ref().map(|r| r.name.to_string()).unwrap_or_else(|| format!("{method} {path}")));

    let response = serve(&app, &method, &path, parts.uri.query(), &parts.headers, body, route, &request_id).await;
    tracing::info!(%method, %path, status = response.status().as_u16(), request_id, "request");
    response
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    app: &App,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
    route: Option<Route>,
    request_id: &str,
) -> Response {
    if let Some(status) = app.take_fault() {
        return error_response(&ApiError::fault(status), request_id);
    }
    if method == Method::GET {
        if let Some(rest) = path.strip_prefix("/i/") {
            return hosted_invoice(app, rest.trim_end_matches("/pdf"));
        }
    }
    if let Err(e) = check_auth(headers) {
        return error_response(&e, request_id);
    }
    let Some(route) = route else {
        return error_response(&ApiError::unrecognized_url(method.as_str(), path), request_id);
    };
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(&ApiError::invalid_request(None, "The request body is too large or could not be read."), request_id)
        }
    };
    let params = match parse_params(query, &body) {
        Ok(p) => p,
        Err(e) => return error_response(&e, request_id),
    };
    let expand = match params.str_list("expand") {
        Ok(x) => x,
        Err(e) => return error_response(&e, request_id),
    };
    // Stripe honours idempotency keys on POST only (GET and DELETE are idempotent anyway).
    let idempotency_key = if *method == Method::POST {
        match headers.get("idempotency-key").map(|v| v.to_str()) {
            None => None,
            Some(Ok(k)) if !k.is_empty() && k.len() <= 255 => Some(k.to_string()),
            Some(_) => {
                return error_response(
                    &ApiError::invalid_request(None, "Idempotency-Key must be a non-empty string of at most 255 characters."),
                    request_id,
                )
            }
        }
    } else {
        None
    };
    // Like Stripe, a parameter the endpoint does not know is a 400 `parameter_unknown`
    // (a validation failure, so it is never stored under an idempotency key).
    if let Err(e) = resources::check_params(&params, &resources::allowed_params(route.name)) {
        return error_response(&e, request_id);
    }
    let fingerprint = format!("{method} {path} {params:?}");
    let ctx = Ctx { params, ids: route.ids };

    // The state lock is held (in this block) for the whole request, never across an await.
    let (status, body, error, acks, wait_limit) = {
        let mut sim = app.sim();
        if let Some(key) = &idempotency_key {
            // With `idempotency_expiry`, a key older than 24 h (on its clock) is forgotten.
            if sim.config.idempotency_expiry && sim.idempotency.get(key).is_some_and(|stored| stored.expired(&sim)) {
                sim.idempotency.remove(key);
            }
            if let Some(stored) = sim.idempotency.get(key) {
                if stored.fingerprint != fingerprint {
                    return error_response(&ApiError::idempotency_mismatch(key), request_id);
                }
                let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
                let mut resp = json_response(status, stored.body.clone(), request_id);
                resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
                if let Ok(v) = HeaderValue::from_str(key) {
                    resp.headers_mut().insert("idempotency-key", v);
                }
                return resp;
            }
        }
        sim.request = RequestInfo { id: Some(request_id.to_string()), idempotency_key: idempotency_key.clone() };
        let result = (route.handler)(&mut sim, &ctx).and_then(|mut value| {
            resources::expand(&sim, &mut value, &expand)?;
            Ok(value)
        });
        sim.request = RequestInfo::default();
        let clock_at = result.as_ref().ok().and_then(|v| response_clock(&sim, v));
        let (status, body, error) = match result {
            Ok(v) => (StatusCode::OK, bytes::Bytes::from(v.to_string()), None),
            Err(e) => (e.status, bytes::Bytes::from(e.body(request_id).to_string()), Some(e)),
        };
        // Like Stripe, remember results of requests that ran (success or a card decline), not
        // of requests rejected by validation, so a corrected retry with the same key works.
        if let Some(key) = &idempotency_key {
            if status == StatusCode::OK || status == StatusCode::PAYMENT_REQUIRED {
                let stored = IdempotentResponse {
                    fingerprint,
                    status: status.as_u16(),
                    body: body.clone(),
                    wall_at: crate::time::wall_now(),
                    clock_at,
                };
                sim.idempotency.insert(key.clone(), stored);
            }
        }
        let acks = std::mem::take(&mut sim.webhook_acks);
        let wait_limit = sim.config.webhook_retry.timeout + Duration::from_secs(5);
        (status, body, error, acks, wait_limit)
    };
    // `webhooks_before_response`: every webhook this request caused has been attempted
    // once before the client hears back (bounded, so a hung receiver cannot wedge it).
    if !acks.is_empty() {
        let all = futures_join_all(acks);
        if tokio::time::timeout(wait_limit, all).await.is_err() {
            tracing::warn!(request_id, "webhooks were not all attempted before the response; answering anyway");
        }
    }
    let mut resp = json_response(status, body, request_id);
    if let Some(key) = idempotency_key.and_then(|k| HeaderValue::from_str(&k).ok()) {
        resp.headers_mut().insert("idempotency-key", key);
    }
    if error.is_some_and(|e| e.should_retry) {
        resp.headers_mut().insert("stripe-should-retry", HeaderValue::from_static("true"));
    }
    resp
}

/// Waits for every receiver (a dropped sender counts as done).
async fn futures_join_all(acks: Vec<tokio::sync::oneshot::Receiver<()>>) {
    for ack in acks {
        let _ = ack.await;
    }
}

/// The test clock a response object lives in, with its frozen time now: the object's
/// own `test_clock`, its customer's, or the clock itself. `None` for wall-clock objects.
fn response_clock(sim: &Sim, v: &serde_json::Value) -> Option<(String, i64)> {
    let id_of = |x: &serde_json::Value| x.as_str().map(str::to_string).or_else(|| x["id"].as_str().map(str::to_string));
    let clock = id_of(&v["test_clock"])
        .or_else(|| id_of(&v["customer"]).and_then(|c| sim.customers.get(&c)).and_then(|c| c.test_clock.clone()))
        .or_else(|| v["id"].as_str().filter(|id| id.starts_with("clock_")).map(str::to_string))?;
    let frozen = sim.test_clocks.get(&clock)?.frozen_time;
    Some((clock, frozen))
}

/// Query parameters, overridden by form-body parameters of the same name.
fn parse_params(query: Option<&str>, body: &[u8]) -> Result<Params, ApiError> {
    let mut params = Params::parse(query.unwrap_or(""))?;
    if !body.is_empty() {
        let text =
            std::str::from_utf8(body).map_err(|_| ApiError::invalid_request(None, "The request body must be UTF-8 form encoding."))?;
        params.merge(Params::parse(text)?);
    }
    Ok(params)
}

/// A minimal stand-in for Stripe's hosted invoice page, so `hosted_invoice_url` resolves.
fn hosted_invoice(app: &App, id: &str) -> Response {
    let sim = app.sim();
    let Some(inv) = sim.invoices.get(id) else {
        return (StatusCode::NOT_FOUND, "No such invoice").into_response();
    };
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Invoice {number}</title></head><body>\
         <h1>Invoice {number}</h1><p>Status: {status}</p><p>Amount due: {due}</p><p>Amount paid: {paid}</p>\
         <p>stripe-sim (test mode)</p></body></html>",
        number = html_escape(inv.number.as_deref().unwrap_or(&inv.id)),
        status = inv.status.as_str(),
        due = html_escape(&resources::format_money(inv.amount_due, &inv.currency)),
        paid = html_escape(&resources::format_money(inv.amount_paid, &inv.currency)),
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_resolve_with_ids() {
        let r = route(&Method::GET, "/v1/customers/search").unwrap();
        assert_eq!(r.name, "GET /v1/customers/search");
        let r = route(&Method::POST, "/v1/test_helpers/test_clocks/clock_1/advance").unwrap();
        assert_eq!(r.ids, vec!["clock_1"]);
        let r = route(&Method::DELETE, "/v1/subscriptions/sub_1/").unwrap();
        assert_eq!(r.name, "DELETE /v1/subscriptions/{id}");
        assert!(route(&Method::PUT, "/v1/customers").is_none());
        assert!(route(&Method::GET, "/v2/core/events").is_none());
    }

    #[test]
    fn auth() {
        let mut h = HeaderMap::new();
        assert!(check_auth(&h).is_err());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer sk_live_123"));
        assert_eq!(check_auth(&h).unwrap_err().status, StatusCode::UNAUTHORIZED);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer sk_test_123"));
        assert!(check_auth(&h).is_ok());
    }
}
