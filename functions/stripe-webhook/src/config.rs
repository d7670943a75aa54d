//! The webhook's configuration, read once at cold start.

use shared::{
    config::{self, AwsResources, ConfigError, Secret},
    stripe::StripeConfig,
};

pub struct Config {
    pub aws: AwsResources,
    /// `STRIPE_SECRET_KEY`, `STRIPE_API_BASE`, `STRIPE_PRICE_*`: the re-fetch of each event's objects.
    pub stripe: StripeConfig,
    /// Every secret currently accepted (`STRIPE_WEBHOOK_SECRET`, comma-separated during a rotation).
    pub webhook_secrets: Vec<Secret>,
    pub tolerance_secs: i64,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let raw = config::required("STRIPE_WEBHOOK_SECRET")?;
        let webhook_secrets = parse_secrets(&raw)?;
        Ok(Self {
            aws: AwsResources::from_env()?,
            stripe: StripeConfig::from_env()?,
            webhook_secrets,
            tolerance_secs: config::number("STRIPE_WEBHOOK_TOLERANCE_SECS", crate::signature::DEFAULT_TOLERANCE_SECS)?,
        })
    }
}

/// Splits the comma-separated list; each must look like an endpoint secret.
pub fn parse_secrets(raw: &str) -> Result<Vec<Secret>, ConfigError> {
    let secrets: Vec<Secret> = raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Secret::new).collect();
    if secrets.is_empty() || secrets.iter().any(|s| !s.expose().starts_with("whsec_")) {
        return Err(ConfigError::Invalid {
            name: "STRIPE_WEBHOOK_SECRET",
            why: "expected one or more comma-separated whsec_… values".into(),
        });
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
