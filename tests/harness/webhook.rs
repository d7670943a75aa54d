//! The stripe-webhook router served over real HTTP on loopback, exactly as Lambda's
//! adapter hands it requests, for stripe-sim to deliver to; and [`call`] for tests that
//! drive one request through it without a socket.

use std::net::SocketAddr;

use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;

pub struct WebhookServer {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve(webhook: Router) -> WebhookServer {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind webhook server");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, webhook).await;
    });
    WebhookServer { url: format!("http://{addr}/stripe/webhook"), task }
}

/// What the router answered.
pub struct Reply {
    pub status: u16,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A signed (or not) `POST /stripe/webhook` with `body`.
pub fn request(body: Vec<u8>, signature: Option<String>) -> axum::extract::Request {
    let mut builder = axum::http::Request::builder().method("POST").uri("https://hooks.logiscore.test/stripe/webhook");
    if let Some(signature) = signature {
        builder = builder.header("stripe-signature", signature);
    }
    builder.body(axum::body::Body::from(body)).expect("a valid request")
}

/// One request through the router, as Lambda would hand it over.
pub async fn call(webhook: &Router, request: axum::extract::Request) -> Reply {
    let response = webhook.clone().oneshot(request).await.expect("the router is infallible");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes().to_vec()).unwrap_or_default();
    Reply { status: parts.status.as_u16(), headers: parts.headers, body }
}

/// The webhook's configuration over `env`, with Stripe at `stripe`, accepting `secrets`
/// (tolerance 300 s, Stripe's default).
pub fn config(env: &crate::TestEnv, stripe: shared::stripe::StripeConfig, secrets: &[&str]) -> stripe_webhook::config::Config {
    stripe_webhook::config::Config {
        aws: env.resources(),
        stripe,
        webhook_secrets: secrets.iter().map(|s| shared::config::Secret::new(*s)).collect(),
        tolerance_secs: 300,
    }
}

/// The webhook as the function builds it, over `env`'s AWS clients.
pub fn app(env: &crate::TestEnv, stripe: shared::stripe::StripeConfig, secrets: &[&str]) -> Router {
    stripe_webhook::app(&config(env, stripe, secrets), &env.aws_clients()).expect("stripe-webhook builds")
}
