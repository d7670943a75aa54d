//! The HTTP transport under async-stripe's request types: one pooled HTTPS client.
//!
//! async-stripe's own client turns its connection pool off, so every Stripe call would
//! open a new TCP connection and TLS session — a handshake to Stripe per call, and a
//! connection opened during init ([`crate::warm`]) that no request could use. This
//! transport keeps idle connections, so a warm instance, and a cold one after its init,
//! reaches Stripe over a connection already open.
//!
//! Invariants:
//! - **One attempt per call.** `execute` sends once; the retry, with its idempotency key
//!   and its backoff, is [`super::StripeBilling`]'s alone, so nothing retries twice.
//! - **Bounded.** Each attempt has a timeout that covers connecting, the answer's headers
//!   and its body: the call's own, else the retry policy's per-attempt timeout.
//! - **The key stays secret.** It travels only in `Authorization`, marked sensitive, and no
//!   error built here quotes a request.
//! - **Stripe's answers are Stripe's errors.** A non-2xx answer becomes
//!   `StripeError::Stripe(error, status)` from its JSON body, as async-stripe's client
//!   makes it, so classification (`super::errors`) sees the same values; a 429 or 5xx
//!   whose body is not Stripe's (a proxy's page) is marked retryable, any other not.
//! - **Trust**: Mozilla's roots, compiled in (`webpki-roots`), so no trust store is read
//!   and parsed at init (the platform's takes about 4 ms, and the AWS SDK already loads it
//!   once); plus the certificates of `SSL_CERT_FILE` when it is set (a private CA: a
//!   TLS-inspecting proxy, the bench's terminator). TLS is rustls over aws-lc-rs.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, USER_AGENT},
    Method, Request, Uri,
};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioTimer},
};
use stripe::StripeError;
use stripe_client_core::{CustomizedStripeRequest, StripeClient, StripeMethod};

const DEFAULT_BASE: &str = "https://api.stripe.com/";
/// How long an idle connection is kept in the pool. One that died while Lambda had the
/// instance frozen fails its attempt like any dropped connection, and the bounded retry
/// (same idempotency key) opens a new one.
const POOL_IDLE: Duration = Duration::from_secs(50);

#[derive(Clone)]
pub struct Transport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    authorization: HeaderValue,
    user_agent: HeaderValue,
    version: HeaderValue,
    timeout: Duration,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").field("base", &self.base).field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

/// Why a transport cannot be built. The texts name the setting, never its value.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("the Stripe API key is not usable in a header")]
    Key,
    #[error("STRIPE_API_BASE is not a URL")]
    Base,
    #[error("SSL_CERT_FILE: {0}")]
    Roots(String),
    #[error("TLS configuration: {0}")]
    Tls(String),
}

impl Transport {
    /// `base`: the API's root (`None`: Stripe's); `app`: the user agent's product token;
    /// `timeout`: per attempt, for calls that set none.
    pub fn new(secret_key: &str, base: Option<&str>, app: &str, timeout: Duration) -> Result<Self, TransportError> {
        let mut base = base.unwrap_or(DEFAULT_BASE).to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        base.parse::<Uri>().map_err(|_| TransportError::Base)?;
        let mut authorization = HeaderValue::try_from(format!("Bearer {secret_key}")).map_err(|_| TransportError::Key)?;
        authorization.set_sensitive(true);
        let connector =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls_config()?).https_or_http().enable_http1().enable_http2().build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Self {
            client,
            base,
            authorization,
            user_agent: HeaderValue::try_from(format!("Stripe/v1 RustBindings {app}"))
                .unwrap_or_else(|_| HeaderValue::from_static("Stripe/v1 RustBindings")),
            version: HeaderValue::from_static(stripe_client_core::VERSION.as_str()),
            timeout,
        })
    }

    async fn attempt(&self, request: Request<Full<Bytes>>) -> Result<Bytes, StripeError> {
        let response = self.client.request(request).await.map_err(|e| StripeError::ClientError(crate::store::error_chain(&e)))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| StripeError::ClientError(e.to_string()))?.to_bytes();
        if status.is_success() {
            return Ok(body);
        }
        let text = std::str::from_utf8(&body).unwrap_or_default();
        Err(miniserde::json::from_str::<stripe_shared::Error>(text).map(|e| StripeError::Stripe(e.error, status.as_u16())).unwrap_or_else(
            |_| {
                if status.is_server_error() || status.as_u16() == 429 {
                    StripeError::JSONDeserialize(super::errors::NON_STRIPE_ERROR_BODY.into())
                } else {
                    StripeError::JSONDeserialize(format!("an HTTP {} answer that is not a Stripe error", status.as_u16()))
                }
            },
        ))
    }
}

/// Mozilla's roots plus those of `SSL_CERT_FILE` (when set), with aws-lc-rs.
fn tls_config() -> Result<rustls::ClientConfig, TransportError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = std::env::var_os("SSL_CERT_FILE") {
        let certs = CertificateDer::pem_file_iter(&path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TransportError::Roots(format!("{}: {e}", std::path::Path::new(&path).display())))?;
        roots.add_parsable_certificates(certs);
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl StripeClient for Transport {
    type Err = StripeError;

    async fn execute(&self, call: CustomizedStripeRequest) -> Result<Bytes, StripeError> {
        let (req, overrides) = call.into_pieces();
        let mut uri = format!("{}v1{}", self.base, req.path);
        if let Some(query) = &req.query {
            uri.push('?');
            uri.push_str(query);
        }
        let method = match req.method {
            StripeMethod::Get => Method::GET,
            StripeMethod::Post => Method::POST,
            StripeMethod::Delete => Method::DELETE,
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(USER_AGENT, self.user_agent.clone())
            .header(HeaderName::from_static("stripe-version"), self.version.clone());
        if let Some(key) = overrides.request_strategy.as_ref().and_then(|s| s.get_key()) {
            builder = builder.header(HeaderName::from_static("idempotency-key"), key.as_str());
        }
        if let Some(account) = &overrides.account_id {
            builder = builder.header(HeaderName::from_static("stripe-account"), account.as_str());
        }
        if req.body.is_some() {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        }
        let request = builder
            .body(Full::new(Bytes::from(req.body.unwrap_or_default())))
            .map_err(|_| StripeError::ClientError("the request could not be built".into()))?;
        let timeout = overrides.timeout.unwrap_or(self.timeout);
        tokio::time::timeout(timeout, self.attempt(request)).await.unwrap_or(Err(StripeError::Timeout))
    }
}
