//! Stripe configuration and the tier ↔ price mapping.

use crate::config::{optional, required, ConfigError, Secret};
use crate::domain::Tier;
use crate::secrets::{SecretError, SecretStore};

use super::retry::RetryPolicy;

/// A Stripe API key: a secret (`sk_`) or restricted (`rk_`) key; anything else (a webhook
/// secret, a publishable key, JSON) is the wrong secret and fails the init.
pub fn parse_api_key(value: Secret) -> Result<Secret, &'static str> {
    let key = value.expose();
    let shaped = ["sk_test_", "sk_live_", "rk_test_", "rk_live_"].iter().any(|p| key.starts_with(p))
        && !key.chars().any(|c| c.is_whitespace() || c == ',');
    if shaped {
        Ok(value)
    } else {
        Err("a Stripe API key (sk_test_…, sk_live_…, rk_test_… or rk_live_…)")
    }
}

/// Everything the Stripe adapter needs, read once at cold start.
#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// The API key (`sk_…`, or a restricted `rk_…`), read from Secrets Manager at init;
    /// `Secret` so it never reaches a log line through `Debug`.
    pub secret_key: Secret,
    /// `STRIPE_API_BASE`: where the API lives. `None` is the real Stripe; tests and the
    /// local run point it at stripe-sim (`http://127.0.0.1:12111`).
    pub api_base: Option<String>,
    /// Price of the premium tier (`STRIPE_PRICE_PREMIUM`).
    pub price_premium: String,
    /// Price of the enterprise tier (`STRIPE_PRICE_ENTERPRISE`).
    pub price_enterprise: String,
    /// How hard each call tries (attempts, waits, per-attempt timeout).
    pub retry: RetryPolicy,
}

impl StripeConfig {
    /// Reads `STRIPE_API_BASE` (optional), `STRIPE_PRICE_PREMIUM`, `STRIPE_PRICE_ENTERPRISE`,
    /// and the API key from the Secrets Manager secret `STRIPE_SECRET_ARN` names (one read).
    pub async fn from_env(secrets: &SecretStore) -> Result<Self, SecretError> {
        let config = Self {
            api_base: optional("STRIPE_API_BASE"),
            price_premium: required("STRIPE_PRICE_PREMIUM")?,
            price_enterprise: required("STRIPE_PRICE_ENTERPRISE")?,
            secret_key: secrets.from_env("STRIPE_SECRET_ARN", parse_api_key).await?,
            retry: RetryPolicy::default(),
        };
        config.validate()?;
        Ok(config)
    }

    /// Rejects configurations that would silently mis-bill: one price for two tiers
    /// makes the reverse mapping ambiguous, and a base URL without a scheme would only
    /// fail on the first request.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.price_premium == self.price_enterprise {
            return Err(ConfigError::Invalid { name: "STRIPE_PRICE_ENTERPRISE", why: "must differ from STRIPE_PRICE_PREMIUM".into() });
        }
        if let Some(base) = &self.api_base {
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                return Err(ConfigError::Invalid { name: "STRIPE_API_BASE", why: "must be an http(s) URL".into() });
            }
        }
        Ok(())
    }

    /// The Stripe price of a paid tier; `None` for `free`, which has no Stripe subscription.
    pub fn price_for(&self, tier: Tier) -> Option<&str> {
        match tier {
            Tier::Free => None,
            Tier::Premium => Some(&self.price_premium),
            Tier::Enterprise => Some(&self.price_enterprise),
        }
    }

    /// The tier a Stripe price stands for; `None` for a price that is not one of ours
    /// (e.g. changed by hand in the Dashboard), so the caller keeps the tier it had.
    pub fn tier_for(&self, price: &str) -> Option<Tier> {
        if price == self.price_premium {
            Some(Tier::Premium)
        } else if price == self.price_enterprise {
            Some(Tier::Enterprise)
        } else {
            None
        }
    }

    /// The base URL in the form async-stripe concatenates with `v1/...` (it appends
    /// without a separator, so the trailing slash matters).
    pub(crate) fn api_base_url(&self) -> Option<String> {
        self.api_base.as_ref().map(|base| {
            let trimmed = base.trim_end_matches('/');
            format!("{trimmed}/")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> StripeConfig {
        StripeConfig {
            secret_key: Secret::new("sk_test_x"),
            api_base: Some("http://127.0.0.1:12111".into()),
            price_premium: "price_premium_monthly".into(),
            price_enterprise: "price_enterprise_monthly".into(),
            retry: RetryPolicy::default(),
        }
    }

    #[test]
    fn tiers_and_prices_map_both_ways() {
        let c = config();
        for tier in [Tier::Premium, Tier::Enterprise] {
            let price = c.price_for(tier).unwrap();
            assert_eq!(c.tier_for(price), Some(tier));
        }
        assert_eq!(c.price_for(Tier::Free), None);
        assert_eq!(c.tier_for("price_someone_elses"), None);
    }

    #[test]
    fn base_url_always_ends_with_one_slash() {
        let mut c = config();
        assert_eq!(c.api_base_url().as_deref(), Some("http://127.0.0.1:12111/"));
        c.api_base = Some("http://127.0.0.1:12111//".into());
        assert_eq!(c.api_base_url().as_deref(), Some("http://127.0.0.1:12111/"));
        c.api_base = None;
        assert_eq!(c.api_base_url(), None);
    }

    #[test]
    fn validation_rejects_ambiguous_prices_and_bad_urls() {
        let mut c = config();
        assert!(c.validate().is_ok());
        c.price_enterprise = c.price_premium.clone();
        assert!(c.validate().is_err());
        let mut c = config();
        c.api_base = Some("127.0.0.1:12111".into());
        assert!(c.validate().is_err());
    }

    #[test]
    fn only_api_keys_pass_as_api_keys() {
        for key in ["sk_test_abc", "sk_live_abc", "rk_live_abc", "rk_test_abc"] {
            assert_eq!(parse_api_key(Secret::new(key)).unwrap().expose(), key);
        }
        for wrong in ["whsec_abc", "pk_live_abc", "{\"secret_key\": \"sk_live_abc\"}", "sk_test_a,sk_test_b", "sk_other"] {
            assert!(parse_api_key(Secret::new(wrong)).is_err(), "{wrong}");
        }
    }

    #[test]
    fn debug_hides_the_key() {
        assert!(!format!("{:?}", config()).contains("sk_test_x"));
    }
}
