//! `openapi.yaml` and the router agree: every route the router serves is documented
//! with exactly the statuses its handler can answer, and every documented operation
//! is served. No servers are needed: the routing check drives the real router with
//! ports that always fail, which is enough to tell "served" from "no such route".

use std::{collections::BTreeSet, path::PathBuf, sync::Arc};

use admin_api::{
    apigw::{admin_claims, event, invoke},
    problem::{ApiError, PROBLEM_BASE},
    router, AdminService, AppState, ROUTES,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_yaml::Value as Yaml;
use shared::usecase::admin::AdminError;
use shared::{
    billing::*,
    delivery::{Deliver, DeliveryReport},
    domain::*,
    store::{
        Change, Erased, EventContext, ExpiryCursor, ExpiryPage, ExpiryRange, PendingPage, Store, StoreError, StripeMapping, UserRecords,
    },
};

fn openapi() -> Yaml {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../openapi.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml::from_str(&text).expect("openapi.yaml is YAML")
}

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];

fn documented_operations(doc: &Yaml) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_mapping().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                ops.insert((method.to_uppercase(), path.as_str().expect("path is a string").to_owned()));
            }
        }
    }
    ops
}

#[test]
fn every_route_is_documented_with_exactly_its_statuses() {
    let doc = openapi();
    assert_eq!(doc["openapi"].as_str(), Some("3.1.0"));
    let served: BTreeSet<(String, String)> = ROUTES.iter().map(|r| (r.method.to_owned(), r.path.to_owned())).collect();
    assert_eq!(served, documented_operations(&doc), "routes and openapi.yaml operations differ");

    for route in ROUTES {
        let operation = &doc["paths"][route.path][route.method.to_lowercase().as_str()];
        let documented: BTreeSet<u16> = operation["responses"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{} {} has no responses", route.method, route.path))
            .keys()
            .map(|k| k.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status key {k:?} is not a quoted code")))
            .collect();
        let declared: BTreeSet<u16> = route.statuses.iter().copied().collect();
        assert_eq!(declared, documented, "{} {}: statuses differ from openapi.yaml", route.method, route.path);
        assert!(operation["operationId"].as_str().is_some(), "{} {} needs an operationId", route.method, route.path);
    }
}

#[test]
fn every_problem_type_is_in_the_problem_schema() {
    let doc = openapi();
    let documented: BTreeSet<String> = doc["components"]["schemas"]["Problem"]["properties"]["type"]["enum"]
        .as_sequence()
        .expect("Problem.type enum")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let samples = [
        ApiError::MalformedBody("x".into()),
        ApiError::Unauthenticated("x"),
        ApiError::Forbidden,
        ApiError::RouteNotFound,
        ApiError::MethodNotAllowed("GET".into()),
        ApiError::conflict("x", "y"),
        AdminError::CardDeclined { code: None, decline_code: None, message: "x".into() }.into(),
        ApiError::Validation(ValidationErrors::single("x", "y")),
        AdminError::BillingUnavailable("x".into()).into(),
        AdminError::BadGateway("x".into()).into(),
        AdminError::Internal("x".into()).into(),
        AdminError::UserErased(UserId::parse("u1").unwrap()).into(),
        AdminError::ErasureUnfinished(Box::new(AdminError::BillingUnavailable("x".into()))).into(),
    ];
    for error in samples {
        let problem = error.to_problem();
        assert!(problem.type_.starts_with(PROBLEM_BASE));
        assert!(documented.contains(&problem.type_), "{} is not documented", problem.type_);
    }
    assert!(doc["components"]["securitySchemes"]["cognitoJwt"]["bearerFormat"].as_str() == Some("JWT"));
}

/// Ports that always fail: enough to show a request reached its handler.
struct Down;

#[async_trait]
impl Store for Down {
    async fn profile(&self, _: &UserId) -> Result<Option<UserProfile>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn put_profile(&self, _: &UserProfile) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn record_address_feedback(&self, _: &UserId, _: &shared::store::AddressFeedback) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn claim_send_slot(&self, _: i64, _: u32) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn set_customer(&self, _: &UserId, _: &StripeCustomerId) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn event_context(&self, _: Option<&str>, _: &[StripeMapping]) -> Result<EventContext, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn cursor(&self, _: &str) -> Result<Option<String>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn put_cursor(&self, _: &str, _: &str) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn erasure(&self, _: &UserId) -> Result<Option<Erasure>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn begin_erasure(&self, _: &UserId, _: DateTime<Utc>) -> Result<Erasure, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn erase_user(&self, _: &UserId, _: DateTime<Utc>) -> Result<Erased, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn user_records(&self, _: &UserId) -> Result<UserRecords, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn subscription(&self, _: &UserId) -> Result<Option<Subscription>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn history(&self, _: &UserId, _: i32) -> Result<Vec<HistoryEntry>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn commit(&self, _: Change) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn outbox_item(&self, _: &str) -> Result<Option<OutboxItem>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn expiring(&self, _: ExpiryRange, _: Option<ExpiryCursor>, _: i32) -> Result<ExpiryPage, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn pending_outbox(&self, _: DateTime<Utc>, _: i32) -> Result<PendingPage, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn begin_operation(&self, _: &shared::store::Operation) -> Result<Option<shared::store::Operation>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn close_operation(&self, _: &UserId, _: &str) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn update_outbox(&self, _: &OutboxItem, _: u32) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
}

fn down() -> BillingError {
    BillingError::Unavailable("down".into())
}

#[async_trait]
impl BillingGateway for Down {
    async fn events(&self, _: &EventQuery) -> Result<Page<ListedEvent>, BillingError> {
        Err(down())
    }
    async fn all_subscriptions(&self, _: Option<&str>) -> Result<Page<ListedSubscription>, BillingError> {
        Err(down())
    }
    async fn create_customer(&self, _: &CustomerDetails, _: Option<&str>, _: &IdempotencyKey) -> Result<NewCustomer, BillingError> {
        Err(down())
    }
    async fn update_customer(&self, _: &StripeCustomerId, _: &CustomerDetails, _: &IdempotencyKey) -> Result<(), BillingError> {
        Err(down())
    }
    async fn delete_customer(&self, _: &StripeCustomerId, _: &IdempotencyKey) -> Result<(), BillingError> {
        Err(down())
    }
    async fn attach_payment_method(&self, _: &StripeCustomerId, _: &str, _: &IdempotencyKey) -> Result<String, BillingError> {
        Err(down())
    }
    async fn create_subscription(&self, _: &NewSubscription, _: &IdempotencyKey) -> Result<CreatedSubscription, BillingError> {
        Err(down())
    }
    async fn subscription(&self, _: &StripeSubscriptionId) -> Result<StripeSnapshot, BillingError> {
        Err(down())
    }
    async fn set_cancel_at_period_end(
        &self,
        _: &StripeSubscriptionId,
        _: bool,
        _: &IdempotencyKey,
    ) -> Result<StripeSnapshot, BillingError> {
        Err(down())
    }
    async fn cancel_now(&self, _: &StripeSubscriptionId, _: &IdempotencyKey) -> Result<StripeSnapshot, BillingError> {
        Err(down())
    }
    async fn change_tier(
        &self,
        _: &StripeSubscriptionId,
        _: Tier,
        _: Proration,
        _: &IdempotencyKey,
    ) -> Result<StripeSnapshot, BillingError> {
        Err(down())
    }
    async fn invoice(&self, _: &str) -> Result<InvoiceRead, BillingError> {
        Err(down())
    }
    async fn subscription_of_operation(&self, _: &StripeCustomerId, _: &str) -> Result<Option<StripeSnapshot>, BillingError> {
        Err(down())
    }
}

#[async_trait]
impl Deliver for Down {
    async fn deliver(&self, _: &[OutboxItem]) -> DeliveryReport {
        DeliveryReport::default()
    }
}

fn app() -> axum::Router {
    let down = Arc::new(Down);
    let service = AdminService::new(down.clone(), down.clone(), down, Arc::new(shared::clock::SystemClock));
    router(AppState::new(service, "admin"))
}

fn body_for(path: &str) -> Option<serde_json::Value> {
    if path == "/users/{user_id}" {
        Some(serde_json::json!({"email": "a@b.co"}))
    } else if path == "/users/{user_id}/subscription" {
        Some(serde_json::json!({"tier": "premium", "duration_months": 1, "is_paid": false, "auto_renew": false}))
    } else {
        None
    }
}

#[tokio::test]
async fn the_router_serves_every_documented_route_and_nothing_else() {
    let app = app();
    for route in ROUTES {
        let path = route.path.replace("{user_id}", "user-1");
        let answer =
            invoke(&app, &event(route.method, &path, None, Some(admin_claims("a1")), body_for(route.path).as_ref(), &[])).await.unwrap();
        // Every port is down: a served route reaches its handler and answers 503.
        assert_eq!(answer.status.as_u16(), 503, "{} {}: {:?}", route.method, route.path, answer.body);
        assert!(route.statuses.contains(&answer.status.as_u16()));
        assert_eq!(answer.headers["retry-after"], "5");
        assert_eq!(answer.headers["content-type"], "application/problem+json");
    }
    let unknown = invoke(&app, &event("GET", "/users/user-1/invoices", None, Some(admin_claims("a1")), None, &[])).await.unwrap();
    assert_eq!((unknown.status.as_u16(), unknown.body["code"].as_str()), (404, Some("route_not_found")));
    let wrong_method =
        invoke(&app, &event("DELETE", "/users/user-1/subscription", None, Some(admin_claims("a1")), None, &[])).await.unwrap();
    assert_eq!((wrong_method.status.as_u16(), wrong_method.body["code"].as_str()), (405, Some("method_not_allowed")));
    assert_eq!(wrong_method.headers["allow"], "PUT, GET");
    let anonymous = invoke(&app, &event("GET", "/nowhere", None, None, None, &[])).await.unwrap();
    assert_eq!(anonymous.status.as_u16(), 401, "auth runs before routing, so nothing leaks which routes exist");
}

#[tokio::test]
async fn bad_input_is_rejected_before_any_port_is_called() {
    let app = app();
    let claims = || Some(admin_claims("a1"));
    let cases: Vec<(serde_json::Value, u16, &str)> = vec![
        (event("PUT", "/users/user-1/subscription", None, claims(), None, &[]), 400, "malformed_json"),
        (
            {
                let mut e = event("PUT", "/users/user-1/subscription", None, claims(), None, &[("content-type", "application/json")]);
                e["body"] = serde_json::json!("{\"tier\": ");
                e
            },
            400,
            "malformed_json",
        ),
        (
            {
                let mut e = event("PUT", "/users/user-1/subscription", None, claims(), None, &[("content-type", "text/plain")]);
                e["body"] = serde_json::json!("{}");
                e
            },
            400,
            "unsupported_media_type",
        ),
        (
            {
                let mut e = event("PUT", "/users/user-1", None, claims(), None, &[("content-type", "application/json")]);
                e["body"] = serde_json::json!(format!("{{\"email\": \"{}\"}}", "a".repeat(20_000)));
                e
            },
            400,
            "body_too_large",
        ),
        (
            event(
                "PUT",
                "/users/user-1/subscription",
                None,
                claims(),
                Some(&serde_json::json!({"tier": "gold", "duration_months": 0, "is_paid": true, "auto_renew": true})),
                &[],
            ),
            422,
            "validation_error",
        ),
        (event("GET", "/users/bad%23id/subscription", None, claims(), None, &[]), 422, "validation_error"),
        (event("DELETE", "/users/bad%23id", None, claims(), None, &[]), 422, "validation_error"),
        (event("GET", "/users/bad%23id/export", None, claims(), None, &[]), 422, "validation_error"),
        (event("GET", "/users/user-1/subscription/history", Some("limit=0"), claims(), None, &[]), 422, "validation_error"),
        (
            event("POST", "/users/user-1/subscription/cancel", None, claims(), Some(&serde_json::json!({"now": true})), &[]),
            422,
            "validation_error",
        ),
        (
            event("POST", "/users/user-1/subscription/reactivate", None, claims(), None, &[("idempotency-key", "")]),
            400,
            "invalid_idempotency_key",
        ),
    ];
    for (request, status, code) in cases {
        let answer = invoke(&app, &request).await.unwrap();
        assert_eq!((answer.status.as_u16(), answer.body["code"].as_str()), (status, Some(code)), "{}: {}", request["rawPath"], answer.body);
        assert_eq!(answer.body["status"].as_u64(), Some(u64::from(status)));
        assert!(answer.body["type"].as_str().is_some_and(|t| t.starts_with(PROBLEM_BASE)));
    }
    let invalid = invoke(
        &app,
        &event(
            "PUT",
            "/users/user-1/subscription",
            None,
            claims(),
            Some(&serde_json::json!({"tier": "gold", "duration_months": 0, "is_paid": true, "auto_renew": true})),
            &[],
        ),
    )
    .await
    .unwrap();
    let fields: Vec<&str> = invalid.body["errors"].as_array().unwrap().iter().filter_map(|e| e["field"].as_str()).collect();
    assert_eq!(fields, ["tier", "duration_months", "payment_method_id"]);
}

#[tokio::test]
async fn every_sample_event_reaches_a_route() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events/admin");
    let app = app();
    let mut seen = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("events/admin") {
        let path = entry.expect("dir entry").path();
        let event: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(event["version"], "2.0", "{}", path.display());
        assert_eq!(event["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:groups"], "[admin]");
        let answer = invoke(&app, &event).await.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(answer.status.as_u16(), 503, "{}: {}", path.display(), answer.body);
        seen.insert((
            event["requestContext"]["http"]["method"].as_str().unwrap().to_owned(),
            event["rawPath"].as_str().unwrap().replace("user-123", "{user_id}"),
        ));
    }
    let routes: BTreeSet<(String, String)> = ROUTES.iter().map(|r| (r.method.to_owned(), r.path.to_owned())).collect();
    assert_eq!(seen, routes, "one sample event per route at least");
}
