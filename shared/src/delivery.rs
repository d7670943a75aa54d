//! Delivery of committed outbox items (e-mails via SES, domain events via EventBridge).
//!
//! Functions call [`Deliver::deliver`] right after their transaction commits, so mail
//! goes out within the request in the common case; whatever that attempt does not
//! finish stays pending and the `deliver-pending` job sends it later. Delivery is
//! therefore at-least-once per attempt but exactly-once per outbox item in effect: an
//! item is marked sent with a conditional write, and SES sends are keyed by item id.
//!
//! An e-mail whose recipient's current address SES reported undeliverable (a permanent
//! bounce or a complaint, see [`crate::usecase::mail_feedback`]) is not sent: the item ends
//! `suppressed`, is counted (`EmailsSuppressed`) and is never retried. The check is made at
//! send time, so mail queued before the bounce is stopped as well as mail queued after.

use async_trait::async_trait;

use crate::domain::OutboxItem;

/// Outcome counts of one delivery pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryReport {
    pub sent: u32,
    pub retry_later: u32,
    pub failed: u32,
    pub dead_lettered: u32,
    /// E-mails not sent because their address is undeliverable (SES's feedback).
    pub suppressed: u32,
    /// Items another worker had already handled.
    pub skipped: u32,
}

impl DeliveryReport {
    pub fn add(&mut self, other: DeliveryReport) {
        self.sent += other.sent;
        self.retry_later += other.retry_later;
        self.failed += other.failed;
        self.dead_lettered += other.dead_lettered;
        self.suppressed += other.suppressed;
        self.skipped += other.skipped;
    }
}

#[async_trait]
pub trait Deliver: Send + Sync {
    /// Tries to deliver these freshly committed items now. Never fails the caller:
    /// problems are recorded on the items and left to the `deliver-pending` job.
    async fn deliver(&self, items: &[OutboxItem]) -> DeliveryReport;
}

mod outbox;
pub mod pacing;
pub use outbox::{DeliveryPolicy, OutboxDelivery};

use crate::{
    config::{optional, required, ConfigError},
    email::{EmailConfig, RetryPolicy},
};

/// How a function delivers its outbox: the sender and links of its mail, SES attempts per
/// e-mail within one delivery, and the outbox policy (attempts, pacing). Every function
/// that delivers is configured with one of these.
#[derive(Debug, Clone)]
pub struct Mailing {
    /// `MAIL_FROM`, `APP_BASE_URL`, `SES_CONFIGURATION_SET`.
    pub email: EmailConfig,
    /// SES attempts per e-mail within one delivery (the outbox retries across deliveries).
    pub mail_retry: RetryPolicy,
    pub policy: DeliveryPolicy,
}

impl Mailing {
    /// The e-mail settings from the environment, delivered under `policy`.
    pub fn from_env(policy: DeliveryPolicy) -> Result<Self, ConfigError> {
        let email = EmailConfig {
            mail_from: required("MAIL_FROM")?,
            app_base_url: required("APP_BASE_URL")?,
            configuration_set: optional("SES_CONFIGURATION_SET"),
        };
        Ok(Self { email, mail_retry: RetryPolicy::default(), policy })
    }
}
