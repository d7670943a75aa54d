//! The jobs' own knobs, read once at cold start (a bad value fails the init, never a run).

use std::time::Duration as StdDuration;

use chrono::Duration;
use shared::{
    config::{number, optional, required, AwsResources, ConfigError, InitError},
    delivery::{DeliveryPolicy, Mailing},
    secrets::SecretStore,
    stripe::StripeConfig,
};

/// Everything the function is configured with, read once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `TABLE_NAME`, `EVENT_BUS_NAME`.
    pub aws: AwsResources,
    /// `JOB_CONTINUATION_BUS_NAME`: the bus continuations go on, of this function alone
    /// (see [`crate::continuation`]).
    pub continuation_bus: String,
    /// `STRIPE_API_BASE`, `STRIPE_PRICE_*`, and the key in the secret `STRIPE_SECRET_ARN` names.
    pub stripe: StripeConfig,
    /// E-mail and outbox delivery, the policy from the settings' `MAX_DELIVERY_ATTEMPTS`
    /// and `SES_SEND_RATE`.
    pub mail: Mailing,
    pub settings: JobSettings,
}

impl Config {
    /// Reads the environment, and the Stripe key from Secrets Manager (one read).
    pub async fn from_env(secrets: &SecretStore) -> Result<Self, InitError> {
        let settings = JobSettings::from_env()?;
        Ok(Self {
            aws: AwsResources::from_env()?,
            continuation_bus: required("JOB_CONTINUATION_BUS_NAME")?,
            stripe: StripeConfig::from_env(secrets).await?,
            mail: Mailing::from_env(settings.delivery_policy())?,
            settings,
        })
    }
}

/// How the jobs behave. Every field has a production default; see [`JobSettings::from_env`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettings {
    /// `WARNING_DAYS` (default 3): warn when a subscription ends within this many days.
    pub warning_days: u32,
    /// `REMINDER_DAYS` (optional, e.g. 1): a second, last-minute warning window. Must be
    /// shorter than `warning_days`.
    pub reminder_days: Option<u32>,
    /// `EXPIRY_GRACE_HOURS` (default 24): a subscription is expired only this long after its
    /// end, so a renewal webhook that is merely late does not downgrade a paying customer.
    pub expiry_grace: Duration,
    /// `PAST_DUE_GRACE_DAYS` (default 7, as [`shared::domain::AccessPolicy`]): how long a
    /// `past_due` subscription is left to Stripe's payment retries before it is expired locally.
    pub past_due_grace: Duration,
    /// `SES_SEND_RATE` (default 10): outbox items delivered per second by `deliver-pending`.
    pub send_rate: u32,
    /// `MAX_DELIVERY_ATTEMPTS` (default: the shared delivery policy's): attempts before an outbox item is dead-lettered.
    /// Enforced by the shared delivery code this function is built with.
    pub max_delivery_attempts: u32,
    /// `JOB_PAGE_SIZE` (default 100): subscriptions read per index query.
    pub page_size: u32,
    /// `JOB_CONCURRENCY` (default 4): subscriptions handled at once (Stripe calls, commits).
    pub concurrency: usize,
    /// `JOB_SAFETY_MARGIN_MS` (default 20 000): stop starting new work when the Lambda deadline
    /// is this close, and hand the rest to a continuation (capped at a third of the invocation's
    /// time, see [`crate::Budget::until`]; the function's timeout should be minutes, not seconds).
    pub safety_margin: StdDuration,
    /// `JOB_MAX_ITEMS` (optional): at most this many items per invocation, then continue.
    pub max_items: Option<u64>,
    /// `JOB_MAX_CONTINUATIONS` (default 50): a chain of continuations longer than this fails
    /// loudly instead of re-invoking itself for ever.
    pub max_continuations: u32,
}

impl JobSettings {
    /// Delivery as these settings ask: `max_delivery_attempts`, paced at `send_rate`.
    pub fn delivery_policy(&self) -> DeliveryPolicy {
        DeliveryPolicy { max_attempts: self.max_delivery_attempts, sends_per_second: Some(self.send_rate), ..DeliveryPolicy::default() }
    }
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            warning_days: 3,
            reminder_days: None,
            expiry_grace: Duration::hours(24),
            past_due_grace: Duration::days(7),
            send_rate: 10,
            max_delivery_attempts: shared::delivery::DeliveryPolicy::default().max_attempts,
            page_size: 100,
            concurrency: 4,
            safety_margin: StdDuration::from_secs(20),
            max_items: None,
            max_continuations: 50,
        }
    }
}

impl JobSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        let reminder_days = match optional("REMINDER_DAYS") {
            None => None,
            Some(raw) => Some(raw.parse::<u32>().map_err(|e| ConfigError::Invalid { name: "REMINDER_DAYS", why: e.to_string() })?),
        };
        let max_items = match optional("JOB_MAX_ITEMS") {
            None => None,
            Some(raw) => Some(raw.parse::<u64>().map_err(|e| ConfigError::Invalid { name: "JOB_MAX_ITEMS", why: e.to_string() })?),
        };
        let settings = Self {
            warning_days: number("WARNING_DAYS", d.warning_days)?,
            reminder_days,
            expiry_grace: Duration::hours(number("EXPIRY_GRACE_HOURS", 24i64)?),
            past_due_grace: Duration::days(number("PAST_DUE_GRACE_DAYS", 7i64)?),
            send_rate: number("SES_SEND_RATE", d.send_rate)?,
            max_delivery_attempts: number("MAX_DELIVERY_ATTEMPTS", d.max_delivery_attempts)?,
            page_size: number("JOB_PAGE_SIZE", d.page_size)?,
            concurrency: number("JOB_CONCURRENCY", d.concurrency)?,
            safety_margin: StdDuration::from_millis(number("JOB_SAFETY_MARGIN_MS", 20_000u64)?),
            max_items,
            max_continuations: number("JOB_MAX_CONTINUATIONS", d.max_continuations)?,
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Rejects settings that would make a job do nothing, loop, or warn twice at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |name: &'static str, why: &str| Err(ConfigError::Invalid { name, why: why.to_owned() });
        if self.warning_days == 0 {
            return invalid("WARNING_DAYS", "must be at least 1");
        }
        if let Some(reminder) = self.reminder_days {
            if reminder == 0 || reminder >= self.warning_days {
                return invalid("REMINDER_DAYS", "must be at least 1 and less than WARNING_DAYS");
            }
        }
        if self.expiry_grace < Duration::zero() {
            return invalid("EXPIRY_GRACE_HOURS", "must not be negative");
        }
        if self.past_due_grace < Duration::zero() {
            return invalid("PAST_DUE_GRACE_DAYS", "must not be negative");
        }
        if self.send_rate == 0 {
            return invalid("SES_SEND_RATE", "must be at least 1 per second");
        }
        if self.max_delivery_attempts == 0 {
            return invalid("MAX_DELIVERY_ATTEMPTS", "must be at least 1");
        }
        if !(1..=1000).contains(&self.page_size) {
            return invalid("JOB_PAGE_SIZE", "must be 1 to 1000");
        }
        if !(1..=64).contains(&self.concurrency) {
            return invalid("JOB_CONCURRENCY", "must be 1 to 64");
        }
        if self.max_items == Some(0) {
            return invalid("JOB_MAX_ITEMS", "must be at least 1 when set");
        }
        Ok(())
    }

    /// The lifecycle rules these settings ask for.
    pub fn rules(&self) -> shared::usecase::lifecycle::Rules {
        shared::usecase::lifecycle::Rules { expiry_grace: self.expiry_grace, past_due_grace: self.past_due_grace, windows: self.windows() }
    }

    /// The warning windows, longest first (`[warning]` or `[warning, reminder]`), in days.
    pub fn windows(&self) -> Vec<u32> {
        let mut windows = vec![self.warning_days];
        windows.extend(self.reminder_days);
        windows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_refused() {
        assert!(JobSettings::default().validate().is_ok());
        let bad = [
            JobSettings { warning_days: 0, ..JobSettings::default() },
            JobSettings { reminder_days: Some(3), ..JobSettings::default() },
            JobSettings { reminder_days: Some(0), ..JobSettings::default() },
            JobSettings { send_rate: 0, ..JobSettings::default() },
            JobSettings { page_size: 0, ..JobSettings::default() },
            JobSettings { concurrency: 0, ..JobSettings::default() },
            JobSettings { max_items: Some(0), ..JobSettings::default() },
            JobSettings { expiry_grace: Duration::hours(-1), ..JobSettings::default() },
        ];
        for settings in bad {
            assert!(settings.validate().is_err(), "{settings:?}");
        }
        let ok = JobSettings { reminder_days: Some(1), ..JobSettings::default() };
        assert!(ok.validate().is_ok());
        assert_eq!(ok.windows(), [3, 1]);
    }
}
