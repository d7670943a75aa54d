//! The function's configuration, read once at cold start (a missing or invalid
//! variable fails the start, never a request).

use std::time::Duration;

use shared::{
    config::{optional, AwsResources, ConfigError, InitError},
    delivery::{DeliveryPolicy, Mailing},
    secrets::SecretStore,
    stripe::StripeConfig,
    usecase::admin::DEFAULT_OPERATION_LEASE,
};

pub const DEFAULT_ADMIN_GROUP: &str = "admin";

#[derive(Debug, Clone)]
pub struct Config {
    /// `TABLE_NAME`, `EVENT_BUS_NAME`.
    pub aws: AwsResources,
    /// `ADMIN_GROUP` (default `admin`): the Cognito group whose members may call the API.
    pub admin_group: String,
    /// `STRIPE_API_BASE`, `STRIPE_PRICE_*`, and the key in the secret `STRIPE_SECRET_ARN` names.
    pub stripe: StripeConfig,
    /// How the outbox items a change queues are delivered right after it (what fails is
    /// left pending for `deliver-pending`).
    pub mail: Mailing,
    /// `OPERATION_LEASE_SECONDS` (default 60, at least the function's timeout): how long an
    /// unfinished subscribe is presumed to be still running before another request
    /// finishes it.
    pub operation_lease: Duration,
}

impl Config {
    /// Reads the environment, and the Stripe key from Secrets Manager (one read).
    pub async fn from_env(secrets: &SecretStore) -> Result<Self, InitError> {
        Ok(Self {
            aws: AwsResources::from_env()?,
            admin_group: admin_group(optional("ADMIN_GROUP"))?,
            stripe: StripeConfig::from_env(secrets).await?,
            mail: Mailing::from_env(DeliveryPolicy::default())?,
            operation_lease: operation_lease(optional("OPERATION_LEASE_SECONDS"))?,
        })
    }
}

/// Whole seconds, at least 1.
pub fn operation_lease(raw: Option<String>) -> Result<Duration, ConfigError> {
    match raw {
        None => Ok(DEFAULT_OPERATION_LEASE),
        Some(raw) => match raw.trim().parse::<u64>() {
            Ok(secs) if secs >= 1 => Ok(Duration::from_secs(secs)),
            _ => Err(ConfigError::Invalid { name: "OPERATION_LEASE_SECONDS", why: "must be a whole number of seconds, at least 1".into() }),
        },
    }
}

/// A group name as it can appear in `cognito:groups`: no whitespace or brackets, which
/// are the claim's own separators.
pub fn admin_group(raw: Option<String>) -> Result<String, ConfigError> {
    let group = raw.unwrap_or_else(|| DEFAULT_ADMIN_GROUP.to_owned());
    if group.chars().any(|c| c.is_whitespace() || c == '[' || c == ']') {
        return Err(ConfigError::Invalid { name: "ADMIN_GROUP", why: "must be one group name without spaces or brackets".into() });
    }
    Ok(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_group_defaults_and_rejects_separators() {
        assert_eq!(admin_group(None).unwrap(), "admin");
        assert_eq!(admin_group(Some("billing-admins".into())).unwrap(), "billing-admins");
        assert!(admin_group(Some("admin billing".into())).is_err());
        assert!(admin_group(Some("[admin]".into())).is_err());
    }
}
