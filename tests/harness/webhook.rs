//! The stripe-webhook handler served over real HTTP on loopback, exactly as Lambda
//! would call it (an `http::Request` with the raw body), for stripe-sim to deliver to.

use std::{net::SocketAddr, sync::Arc};

use axum::{body::Body as AxumBody, extract::State, response::Response};
use http_body_util::BodyExt;
use stripe_webhook::http::Webhook;

pub struct WebhookServer {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(webhook): State<Arc<Webhook>>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let request = lambda_http::Request::from_parts(parts, lambda_http::Body::Binary(bytes.to_vec()));
    let response = webhook.handle(request).await;
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, AxumBody::from(body.as_ref().to_vec()))
}

pub async fn serve(webhook: Arc<Webhook>) -> WebhookServer {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind webhook server");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().fallback(forward).with_state(webhook);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    WebhookServer { url: format!("http://{addr}/stripe/webhook"), task }
}
