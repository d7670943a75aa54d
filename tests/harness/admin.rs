//! The admin API wired to one test's own resources: the real router, built by the
//! function's own [`admin_api::app`] over the real DynamoDB store (moto), the real Stripe
//! client (at stripe-sim) and the real outbox delivery (moto's SES and EventBridge),
//! driven with API Gateway v2 events carrying JWT claims — the same conversion
//! `lambda_http` does in AWS.

use admin_api::{
    apigw::{self, Answer},
    route_of,
};
use serde_json::Value;
use shared::delivery::{DeliveryPolicy, Mailing, OutboxDelivery};

use crate::{
    env::{email_config, quick_mail_retry},
    sim::Sim,
    TestEnv,
};

pub use admin_api::apigw::{admin_claims, claims_with_groups};

pub const ADMIN_SUB: &str = "admin-7f3a";

pub struct AdminApi {
    pub env: TestEnv,
    pub sim: Sim,
    pub router: axum::Router,
}

/// The admin API's configuration for `env` and `sim`.
pub fn config(env: &TestEnv, sim: &Sim) -> admin_api::Config {
    admin_api::Config {
        aws: env.resources(),
        admin_group: "admin".into(),
        stripe: sim.stripe_config(),
        mail: mailing(),
        operation_lease: shared::usecase::admin::DEFAULT_OPERATION_LEASE,
    }
}

/// The admin API's delivery right after a change: production's, without SES pacing, one
/// quick SES attempt per item.
fn mailing() -> Mailing {
    Mailing {
        email: email_config(),
        mail_retry: quick_mail_retry(),
        policy: DeliveryPolicy { sends_per_second: None, ..DeliveryPolicy::default() },
    }
}

/// The real outbox delivery over the env's SES and bus, one quick SES attempt per item,
/// as the admin API delivers (for tests that wire the service by hand).
pub fn delivery(env: &TestEnv) -> OutboxDelivery {
    OutboxDelivery::over_aws(env.store.clone(), &env.aws_clients(), &env.bus, &mailing()).expect("e-mail templates render")
}

impl AdminApi {
    pub async fn start() -> AdminApi {
        Self::over(TestEnv::new().await, Sim::start().await)
    }

    /// The admin API over these resources (e.g. a sim with Stripe's timing switched on).
    pub fn over(env: TestEnv, sim: Sim) -> AdminApi {
        let router = admin_api::app(&config(&env, &sim), &env.aws_clients()).expect("admin-api builds");
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
