//! Secrets read from AWS Secrets Manager at cold start.
//!
//! Invariants:
//! - A function is configured with *where* a secret is (a `…_ARN` variable holding the
//!   secret's ARN, or locally its name), never with its value: a value in the environment
//!   is readable by anyone allowed `lambda:GetFunctionConfiguration`, and ends up in
//!   deploy logs and change sets.
//! - Each secret is read with exactly one `GetSecretValue` per instance, at init, and
//!   kept in memory (as a [`Secret`]) for the instance's life. A rotated secret is picked
//!   up by the instances Lambda starts after the rotation; nothing re-reads it mid-life,
//!   so a request never waits on Secrets Manager.
//! - The client is built from [`crate::config::aws_sdk_config`], so the read has the same
//!   timeouts and bounded retry as every other AWS call: an unreachable Secrets Manager
//!   fails the init in seconds instead of hanging it until Lambda's init timeout.
//! - Errors name the variable and the secret id, never the value: the value is only ever
//!   held in a [`Secret`], whose `Debug` prints `***`.
//!
//! Locally (`make dev`, the tests) the same code reads the same secrets from moto
//! server's Secrets Manager (`AWS_ENDPOINT_URL`).

use aws_config::SdkConfig;
use thiserror::Error;

use crate::config::{required, ConfigError, Secret};

/// Why a secret could not be read. Never carries the value.
#[derive(Debug, Error)]
pub enum SecretError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Secrets Manager refused or could not be reached (after the SDK's bounded retries):
    /// a missing secret, a missing grant, a network failure.
    #[error("secret `{id}` (from {var}) could not be read: {cause}")]
    Unreadable { var: &'static str, id: String, cause: String },
    /// The secret exists but holds no text (a binary or empty secret).
    #[error("secret `{id}` (from {var}) holds no text value")]
    Empty { var: &'static str, id: String },
    /// The text is not what the variable asks for (e.g. a webhook secret where the API
    /// key belongs); `why` describes the expected shape, not the value.
    #[error("secret `{id}` (from {var}) is not {why}")]
    Invalid { var: &'static str, id: String, why: &'static str },
}

/// Reads secrets from Secrets Manager; built once per cold start.
#[derive(Debug, Clone)]
pub struct SecretStore {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretStore {
    /// A store over `sdk` (region, endpoint, timeouts and retry from it).
    pub fn new(sdk: &SdkConfig) -> Self {
        Self { client: aws_sdk_secretsmanager::Client::new(sdk) }
    }

    /// The secret whose ARN (or name) the required variable `var` holds, checked by
    /// `parse` (which says what shape it expected when the value does not fit).
    pub async fn from_env<T>(&self, var: &'static str, parse: impl FnOnce(Secret) -> Result<T, &'static str>) -> Result<T, SecretError> {
        let id = required(var)?;
        let value = self.read(var, &id).await?;
        parse(value).map_err(|why| SecretError::Invalid { var, id, why })
    }

    /// The value of secret `id` (`var` names where the id came from, for the error). One
    /// `GetSecretValue` call; the SDK's own bounded retry covers throttling and blips.
    pub async fn read(&self, var: &'static str, id: &str) -> Result<Secret, SecretError> {
        let out = self.client.get_secret_value().secret_id(id).send().await.map_err(|e| SecretError::Unreadable {
            var,
            id: id.to_owned(),
            cause: crate::store::error_chain(&e),
        })?;
        match out.secret_string().map(str::trim).filter(|s| !s.is_empty()) {
            Some(value) => Ok(Secret::new(value)),
            None => Err(SecretError::Empty { var, id: id.to_owned() }),
        }
    }
}
