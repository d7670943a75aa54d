//! Typed configuration, read once at start-up. A missing or malformed variable
//! fails the cold start (the only place `expect` is allowed), never a request.

use std::{fmt, time::Duration};

use aws_config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, SdkConfig};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {why}")]
    Invalid { name: &'static str, why: String },
}

/// Reads a required variable.
pub fn required(name: &'static str) -> Result<String, ConfigError> {
    optional(name).ok_or(ConfigError::Missing(name))
}

/// Reads an optional variable; empty counts as unset.
pub fn optional(name: &'static str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Reads an optional number with a default.
pub fn number<T: std::str::FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    match optional(name) {
        None => Ok(default),
        Some(raw) => raw.parse().map_err(|e: T::Err| ConfigError::Invalid { name, why: e.to_string() }),
    }
}

/// A secret value: usable, but never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where the shared AWS resources are.
#[derive(Debug, Clone)]
pub struct AwsResources {
    pub table_name: String,
    pub event_bus_name: String,
}

impl AwsResources {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self { table_name: required("TABLE_NAME")?, event_bus_name: required("EVENT_BUS_NAME")? })
    }
}

/// The AWS clients a function is built with, made once per cold start (tests make their
/// own, e.g. with SES behind a recording proxy).
#[derive(Debug, Clone)]
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// With the SDK's retries off: the mailer's [`crate::email::RetryPolicy`] retries.
    pub ses: aws_sdk_sesv2::Client,
    pub eventbridge: aws_sdk_eventbridge::Client,
}

impl AwsClients {
    pub fn new(sdk: &SdkConfig) -> Self {
        Self::with_ses(sdk, sdk)
    }

    /// SES from `ses`, everything else from `sdk`.
    pub fn with_ses(sdk: &SdkConfig, ses: &SdkConfig) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            ses: crate::email::ses_client(ses),
            eventbridge: aws_sdk_eventbridge::Client::new(sdk),
        }
    }
}

/// Why a function could not start: every cause is a cold-start failure, never a request's.
#[derive(Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    #[error("stripe client: {0}")]
    Stripe(#[from] crate::billing::BillingError),
    #[error("e-mail templates: {0}")]
    Templates(#[from] crate::email::TemplateError),
}

/// `main` returns this error, and Rust prints a returned error with `Debug` (`Error: …` on
/// stderr, which is what the Lambda console shows for a failed init): so `Debug` says what
/// `Display` says, the sentence naming the variable or secret, not the nested variants.
impl fmt::Debug for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The AWS SDK configuration every client is built from: region and endpoint from the
/// environment (`AWS_REGION`, `AWS_ENDPOINT_URL` for moto), plus explicit timeouts and a
/// bounded retry so no AWS call can hang a Lambda until its deadline.
pub async fn aws_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(8))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .load()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_errors_print_as_sentences() {
        let error = InitError::from(ConfigError::Missing("STRIPE_SECRET_ARN"));
        assert_eq!(format!("{error:?}"), "environment variable STRIPE_SECRET_ARN is required");
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("sk_test_123");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "sk_test_123");
    }
}
