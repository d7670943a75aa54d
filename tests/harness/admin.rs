//! The admin API wired to one test's own resources: the real router over the real
//! DynamoDB store (moto), the real Stripe client (at stripe-sim) and the real outbox
//! delivery (moto's SES and EventBridge), driven with API Gateway v2 events carrying
//! JWT claims — the same conversion `lambda_http` does in AWS.

use std::{sync::Arc, time::Duration};

use admin_api::{
    apigw::{self, Answer},
    AdminService, AppState, RouteSpec, ROUTES,
};
use serde_json::Value;
use shared::{
    delivery::{DeliveryPolicy, OutboxDelivery},
    email::{EmailConfig, EmailRenderer, RetryPolicy, SesMailer},
    events::EventBridgePublisher,
};

use crate::{env::MAIL_FROM, sim::Sim, TestEnv};

pub use admin_api::apigw::{admin_claims, claims_with_groups};

pub const ADMIN_SUB: &str = "admin-7f3a";

pub struct AdminApi {
    pub env: TestEnv,
    pub sim: Sim,
    pub router: axum::Router,
}

fn email_config() -> EmailConfig {
    EmailConfig { mail_from: MAIL_FROM.into(), app_base_url: "https://app.logiscore.test".into(), configuration_set: None }
}

/// The real outbox delivery over the env's SES and bus, one quick SES attempt per item.
pub fn delivery(env: &TestEnv) -> OutboxDelivery {
    let config = email_config();
    let renderer = Arc::new(EmailRenderer::embedded(&config).expect("e-mail templates render"));
    let retry = RetryPolicy {
        attempts: 1,
        attempt_timeout: Duration::from_secs(3),
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
    };
    let mailer = SesMailer::from_client(env.ses.clone(), &config).with_retry_policy(retry);
    let publisher = EventBridgePublisher::new(env.events.clone(), &env.bus);
    let policy = DeliveryPolicy { sends_per_second: None, ..DeliveryPolicy::default() };
    OutboxDelivery::new(env.store.clone(), renderer, Arc::new(mailer), Arc::new(publisher), policy)
}

impl AdminApi {
    pub async fn start() -> AdminApi {
        let env = TestEnv::new().await;
        let sim = Sim::start().await;
        let service = AdminService::new(
            Arc::new(env.store.clone()),
            Arc::new(sim.billing()),
            Arc::new(delivery(&env)),
            Arc::new(admin_api::SystemClock),
        );
        let router = admin_api::router(AppState::new(service, "admin"));
        AdminApi { env, sim, router }
    }

    /// Sends an event and checks the answer's status is one the route declares.
    pub async fn send(&self, event: Value) -> Answer {
        let method = event["requestContext"]["http"]["method"].as_str().unwrap_or_default().to_owned();
        let path = event["rawPath"].as_str().unwrap_or_default().to_owned();
        let answer = apigw::invoke(&self.router, &event).await.expect("router answered");
        if let Some(route) = route_of(&method, &path) {
            assert!(
                route.statuses.contains(&answer.status.as_u16()),
                "{method} {path} answered {} which {} does not declare: {}",
                answer.status,
                route.path,
                answer.body
            );
        }
        if !answer.status.is_success() {
            let content_type = answer.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
            assert_eq!(content_type, "application/problem+json", "{method} {path}: {}", answer.body);
        }
        answer
    }

    /// An admin request (`body` as JSON).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.send(apigw::event(method, path, None, Some(admin_claims(ADMIN_SUB)), body.as_ref(), &[])).await
    }

    pub async fn call_with(&self, method: &str, path: &str, query: Option<&str>, body: Option<Value>, headers: &[(&str, &str)]) -> Answer {
        self.send(apigw::event(method, path, query, Some(admin_claims(ADMIN_SUB)), body.as_ref(), headers)).await
    }

    pub async fn call_as(&self, claims: Option<Value>, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.send(apigw::event(method, path, None, claims, body.as_ref(), &[])).await
    }

    /// `PUT /users/{user}` with a valid profile; panics unless it is stored.
    pub async fn create_profile(&self, user: &str) {
        let answer = self
            .call(
                "PUT",
                &format!("/users/{user}"),
                Some(serde_json::json!({"email": format!("{user}@example.com"), "full_name": "Test User"})),
            )
            .await;
        assert!(answer.status.is_success(), "profile: {}", answer.body);
    }

    /// Every item in the test's table (small tables only).
    pub async fn table_items(&self) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        let out = self.env.ddb.scan().table_name(&self.env.table).send().await.expect("scan");
        out.items.unwrap_or_default()
    }

    /// The `pk`s in the table, sorted.
    pub async fn table_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .table_items()
            .await
            .iter()
            .filter_map(|item| Some(format!("{}|{}", item.get("pk")?.as_s().ok()?, item.get("sk")?.as_s().ok()?)))
            .collect();
        keys.sort();
        keys
    }

    /// Requests the sim received on one route, e.g. `"POST /v1/subscriptions"`.
    pub fn stripe_calls(&self, route: &str) -> u64 {
        self.sim.handle.request_count_for(route)
    }
}

/// The declared route an actual path belongs to (`/users/u1/subscription` → `/users/{user_id}/subscription`).
pub fn route_of(method: &str, path: &str) -> Option<&'static RouteSpec> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    ROUTES.iter().find(|route| {
        let pattern: Vec<&str> = route.path.trim_start_matches('/').split('/').collect();
        route.method == method
            && pattern.len() == segments.len()
            && pattern.iter().zip(&segments).all(|(p, s)| p.starts_with('{') || p == s)
    })
}
