//! The router: routes, thin handlers, and the middleware every request passes
//! (request scope → admin check → handler).

use std::collections::HashMap;

use axum::{
    extract::{Query, Request, State},
    http::{header, HeaderValue, StatusCode, Uri},
    middleware::{from_fn, from_fn_with_state, Next},
    response::{IntoResponse, Response},
    routing::{get, post, put},
    Extension, Json, Router,
};
use lambda_http::request::RequestContext;
use shared::domain::{ProfileUpdate, SubscriptionUpdate, ValidationErrors};
use tracing::Instrument;

use crate::{
    auth,
    caller::{Admin, Caller},
    dto::{
        CancelRequest, ErasureResponse, ExportResponse, HistoryResponse, Outcome, ProfileResponse, SubscriptionChange, SubscriptionResponse,
    },
    extract::{IdempotencyHeader, JsonBody, OptionalJsonBody, UserPath},
    problem::{ApiError, Failure, REQUEST_ID},
};
use shared::usecase::admin::{Changed, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT};

pub use crate::state::AppState;

/// One route and every status its handler can answer with (checked against `openapi.yaml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    pub method: &'static str,
    /// In OpenAPI/axum syntax.
    pub path: &'static str,
    pub statuses: &'static [u16],
}

/// Every route this API serves.
pub const ROUTES: &[RouteSpec] = &[
    RouteSpec { method: "PUT", path: "/users/{user_id}", statuses: &[200, 201, 400, 401, 403, 410, 422, 500, 502, 503] },
    RouteSpec { method: "GET", path: "/users/{user_id}", statuses: &[200, 401, 403, 404, 422, 500, 503] },
    RouteSpec { method: "DELETE", path: "/users/{user_id}", statuses: &[200, 401, 403, 404, 409, 422, 500, 502, 503] },
    RouteSpec { method: "GET", path: "/users/{user_id}/export", statuses: &[200, 401, 403, 404, 422, 500, 503] },
    RouteSpec {
        method: "PUT",
        path: "/users/{user_id}/subscription",
        statuses: &[200, 201, 202, 400, 401, 402, 403, 404, 409, 410, 422, 500, 502, 503],
    },
    RouteSpec { method: "GET", path: "/users/{user_id}/subscription", statuses: &[200, 401, 403, 404, 422, 500, 503] },
    RouteSpec {
        method: "POST",
        path: "/users/{user_id}/subscription/cancel",
        statuses: &[200, 400, 401, 403, 404, 409, 422, 500, 502, 503],
    },
    RouteSpec {
        method: "POST",
        path: "/users/{user_id}/subscription/reactivate",
        statuses: &[200, 400, 401, 403, 404, 409, 422, 500, 502, 503],
    },
    RouteSpec { method: "GET", path: "/users/{user_id}/subscription/history", statuses: &[200, 401, 403, 404, 422, 500, 503] },
];

/// Answers to requests no route serves (any path, method).
pub const FALLBACK_STATUSES: &[u16] = &[401, 403, 404, 405];

/// The declared route an actual path belongs to (`/users/u1/subscription` →
/// `/users/{user_id}/subscription`), for callers that check answers against [`ROUTES`].
pub fn route_of(method: &str, path: &str) -> Option<&'static RouteSpec> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    ROUTES.iter().find(|route| {
        let pattern: Vec<&str> = route.path.trim_start_matches('/').split('/').collect();
        route.method == method
            && pattern.len() == segments.len()
            && pattern.iter().zip(&segments).all(|(p, s)| p.starts_with('{') || p == s)
    })
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/users/{user_id}", put(put_profile).get(get_profile).delete(erase))
        .route("/users/{user_id}/export", get(export))
        .route("/users/{user_id}/subscription", put(put_subscription).get(get_subscription))
        .route("/users/{user_id}/subscription/cancel", post(cancel))
        .route("/users/{user_id}/subscription/reactivate", post(reactivate))
        .route("/users/{user_id}/subscription/history", get(history))
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|uri: Uri| async move { ApiError::MethodNotAllowed(allowed_methods(uri.path())) })
        .layer(from_fn_with_state(state.clone(), auth::require_admin))
        .layer(from_fn(request_scope))
        .with_state(state)
}

/// The outermost layer: the request id (for problems, logs and the `x-request-id`
/// header) and one tracing span per request. Paths are logged, bodies never.
async fn request_scope(request: Request, next: Next) -> Response {
    let request_id = request_id(&request);
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        path = %request.uri().path(),
        admin = tracing::field::Empty,
    );
    let mut response = REQUEST_ID.scope(request_id.clone(), next.run(request).instrument(span.clone())).await;
    span.in_scope(|| {
        // Problems carry their cause in the response's extensions (never in its body): it
        // is logged here, once, so turning an error into a response has no side effects.
        match response.extensions().get::<Failure>() {
            Some(failure) if failure.status >= 500 => {
                tracing::error!(status = failure.status, code = failure.code, error = %failure.cause, "request failed")
            }
            Some(failure) => tracing::info!(status = failure.status, code = failure.code, "request rejected"),
            None => {}
        }
        tracing::info!(status = response.status().as_u16(), "request served")
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

fn request_id(request: &Request) -> String {
    let from_gateway = match request.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        #[allow(unreachable_patterns)]
        _ => None,
    };
    from_gateway
        .or_else(|| request.extensions().get::<lambda_http::Context>().map(|c| c.request_id.clone()))
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn caller(admin: Admin, key: IdempotencyHeader) -> Caller {
    admin.caller(key.0)
}

async fn put_profile(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    JsonBody(body): JsonBody<ProfileUpdate>,
) -> Result<Response, ApiError> {
    let (profile, created) = state.service.put_profile(user, body).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(ProfileResponse::from(&profile))).into_response())
}

/// The profile with its address's delivery state (SES bounce and complaint feedback).
async fn get_profile(State(state): State<AppState>, UserPath(user): UserPath) -> Result<Response, ApiError> {
    let profile = state.service.profile(user).await?;
    Ok(Json(ProfileResponse::from(&profile)).into_response())
}

/// `200` with what was done, also for a user erased before (`already_erased`): a retry
/// of a DELETE whose answer was lost reads the same as the first. No `Idempotency-Key`:
/// the erasure's Stripe keys derive from the user, so every DELETE is the same operation.
async fn erase(State(state): State<AppState>, Extension(admin): Extension<Admin>, UserPath(user): UserPath) -> Result<Response, ApiError> {
    let report = state.service.erase(user.clone(), &admin.caller(None)).await?;
    Ok(Json(ErasureResponse::of(user.to_string(), &report)).into_response())
}

async fn export(State(state): State<AppState>, UserPath(user): UserPath) -> Result<Response, ApiError> {
    let records = state.service.export(user.clone()).await?;
    Ok(Json(ExportResponse::of(user.to_string(), records, state.service.now())).into_response())
}

async fn put_subscription(
    State(state): State<AppState>,
    Extension(admin): Extension<Admin>,
    key: IdempotencyHeader,
    UserPath(user): UserPath,
    JsonBody(body): JsonBody<SubscriptionUpdate>,
) -> Result<Response, ApiError> {
    let location = format!("/users/{user}/subscription");
    let change = state.service.put_subscription(user, body, &caller(admin, key)).await?;
    Ok(change_response(&state, change, Some(&location)))
}

async fn get_subscription(State(state): State<AppState>, UserPath(user): UserPath) -> Result<Response, ApiError> {
    let sub = state.service.subscription(user).await?;
    Ok(Json(SubscriptionResponse::of(&sub, state.service.now(), state.service.access())).into_response())
}

async fn cancel(
    State(state): State<AppState>,
    Extension(admin): Extension<Admin>,
    key: IdempotencyHeader,
    UserPath(user): UserPath,
    OptionalJsonBody(body): OptionalJsonBody<CancelRequest>,
) -> Result<Response, ApiError> {
    let change = state.service.cancel(user, body.immediately, &caller(admin, key)).await?;
    Ok(change_response(&state, change, None))
}

async fn reactivate(
    State(state): State<AppState>,
    Extension(admin): Extension<Admin>,
    key: IdempotencyHeader,
    UserPath(user): UserPath,
) -> Result<Response, ApiError> {
    let change = state.service.reactivate(user, &caller(admin, key)).await?;
    Ok(change_response(&state, change, None))
}

async fn history(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let limit = history_limit(&query)?;
    let entries = state.service.history(user.clone(), limit).await?;
    Ok(Json(HistoryResponse { user_id: user.to_string(), entries }).into_response())
}

/// The methods `ROUTES` serve on `path`, for the `Allow` header of a 405.
pub fn allowed_methods(path: &str) -> String {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let methods: Vec<&str> = ROUTES
        .iter()
        .filter(|route| {
            let pattern: Vec<&str> = route.path.trim_start_matches('/').split('/').collect();
            pattern.len() == segments.len() && pattern.iter().zip(&segments).all(|(p, s)| p.starts_with('{') || p == s)
        })
        .map(|route| route.method)
        .collect();
    methods.join(", ")
}

/// `?limit=` 1..=100, default 20; anything else is a 422 naming `limit`.
fn history_limit(query: &HashMap<String, String>) -> Result<i32, ApiError> {
    let mut errors = ValidationErrors::default();
    for name in query.keys().filter(|k| k.as_str() != "limit") {
        errors.push(name, "is not a query parameter of this route (only `limit`)");
    }
    let limit = match query.get("limit") {
        None => HISTORY_DEFAULT_LIMIT,
        Some(raw) => match raw.trim().parse::<i32>() {
            Ok(n) if (1..=HISTORY_MAX_LIMIT).contains(&n) => n,
            _ => {
                errors.push("limit", format!("must be a whole number from 1 to {HISTORY_MAX_LIMIT}"));
                HISTORY_DEFAULT_LIMIT
            }
        },
    };
    errors.into_result(limit).map_err(ApiError::Validation)
}

/// `201` + `Location` for a new subscription, `202` when it awaits the customer's
/// payment, `200` otherwise.
fn change_response(state: &AppState, change: Changed, location: Option<&str>) -> Response {
    let change = SubscriptionChange::of(change, state.service.now(), state.service.access());
    let status = match change.outcome {
        Outcome::Created => StatusCode::CREATED,
        Outcome::PaymentRequired => StatusCode::ACCEPTED,
        _ => StatusCode::OK,
    };
    let mut response = (status, Json(change)).into_response();
    if let (StatusCode::CREATED | StatusCode::ACCEPTED, Some(location)) = (status, location) {
        if let Ok(value) = HeaderValue::from_str(location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn history_limit_is_bounded() {
        assert_eq!(history_limit(&query(&[])).unwrap(), HISTORY_DEFAULT_LIMIT);
        assert_eq!(history_limit(&query(&[("limit", "1")])).unwrap(), 1);
        assert_eq!(history_limit(&query(&[("limit", "100")])).unwrap(), 100);
        for bad in ["0", "101", "-1", "ten", ""] {
            assert!(history_limit(&query(&[("limit", bad)])).is_err(), "{bad}");
        }
        assert!(history_limit(&query(&[("cursor", "x")])).is_err());
    }

    #[test]
    fn allow_lists_the_methods_of_the_path() {
        assert_eq!(allowed_methods("/users/u1/subscription"), "PUT, GET");
        assert_eq!(allowed_methods("/users/u1/subscription/cancel"), "POST");
        assert_eq!(allowed_methods("/users/u1"), "PUT, GET, DELETE");
        assert_eq!(allowed_methods("/users/u1/export"), "GET");
    }

    #[test]
    fn every_route_lists_the_common_statuses() {
        for route in ROUTES {
            for status in [200, 401, 403, 422, 500, 503] {
                assert!(route.statuses.contains(&status), "{} {} lacks {status}", route.method, route.path);
            }
        }
    }
}
