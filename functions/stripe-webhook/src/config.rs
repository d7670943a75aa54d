//! The webhook's configuration, read once at cold start.

use shared::{
    config::{self, AwsResources, InitError, Secret},
    secrets::SecretStore,
    stripe::StripeConfig,
};

pub struct Config {
    pub aws: AwsResources,
    /// `STRIPE_API_BASE`, `STRIPE_PRICE_*`, and the key in the secret `STRIPE_SECRET_ARN`
    /// names: the re-fetch of each event's objects (a restricted key that can only read).
    pub stripe: StripeConfig,
    /// Every signing secret currently accepted, from the Secrets Manager secret
    /// `STRIPE_WEBHOOK_SECRET_ARN` names (comma-separated `whsec_…` during a rotation).
    pub webhook_secrets: Vec<Secret>,
    pub tolerance_secs: i64,
}

impl Config {
    /// Reads the environment, and the two secrets it names from Secrets Manager (one
    /// read each).
    pub async fn from_env(secrets: &SecretStore) -> Result<Self, InitError> {
        Ok(Self {
            aws: AwsResources::from_env()?,
            stripe: StripeConfig::from_env(secrets).await?,
            webhook_secrets: secrets.from_env("STRIPE_WEBHOOK_SECRET_ARN", |raw| parse_secrets(raw.expose())).await?,
            tolerance_secs: config::number("STRIPE_WEBHOOK_TOLERANCE_SECS", crate::signature::DEFAULT_TOLERANCE_SECS)?,
        })
    }
}

/// Splits the comma-separated list; each must look like an endpoint secret.
pub fn parse_secrets(raw: &str) -> Result<Vec<Secret>, &'static str> {
    let secrets: Vec<Secret> = raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Secret::new).collect();
    if secrets.is_empty() || secrets.iter().any(|s| !s.expose().starts_with("whsec_")) {
        return Err("one or more comma-separated whsec_… values");
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_lists_are_split_and_checked() {
        assert_eq!(parse_secrets("whsec_a, whsec_b").unwrap().len(), 2);
        assert!(parse_secrets("whsec_a,sk_test_oops").is_err());
        assert!(parse_secrets(" , ").is_err());
    }
}
