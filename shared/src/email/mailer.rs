//! Sending a rendered e-mail: the [`Mailer`] port and its error model.

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{EmailAddress, NotificationKind, UserId};

use super::RenderedEmail;

/// Delivers rendered e-mails. Object-safe, so functions hold an `Arc<dyn Mailer>`.
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends `email` to `to`, the address of `user`, and returns the provider's message id.
    /// The user is attached to the message so the provider's feedback (bounces,
    /// complaints) can be traced back to their profile.
    ///
    /// `idempotency_tag` names the logical notification (the outbox item id); it
    /// is attached to the message so duplicates can be traced. The provider has
    /// no idempotency key, so callers must not send twice once this returns `Ok`.
    async fn send(
        &self,
        to: &EmailAddress,
        user: &UserId,
        email: &RenderedEmail,
        kind: NotificationKind,
        idempotency_tag: &str,
    ) -> Result<String, SendError>;
}

/// Why a send failed, split by what the caller should do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// This message can never be delivered as is (rejected content or address,
    /// unverified sender, suspended account): do not retry.
    #[error("e-mail refused for good ({code}): {message}")]
    Permanent { code: String, message: String },
    /// Worth retrying later (throttling, timeouts, connection or server errors).
    #[error("e-mail not sent, try again later ({code}): {message}")]
    Transient { code: String, message: String },
}

impl SendError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent { .. })
    }

    /// Whether SES refused for rate (`TooManyRequestsException`: the send rate;
    /// `LimitExceededException`: the daily quota; any 429): worth retrying later, and
    /// never a reason to give the message up.
    pub fn is_throttling(&self) -> bool {
        matches!(self, Self::Transient { code, .. } if THROTTLING_CODES.contains(&code.as_str()))
    }

    /// The provider's error code (`MessageRejected`, `Timeout`, …).
    pub fn code(&self) -> &str {
        match self {
            Self::Permanent { code, .. } | Self::Transient { code, .. } => code,
        }
    }
}

/// The error codes [`SendError::is_throttling`] recognises.
pub(crate) const THROTTLING_CODES: [&str; 4] = ["TooManyRequestsException", "LimitExceededException", "Throttling", "ThrottlingException"];

/// How hard a mailer tries before reporting a transient error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (at least 1).
    pub attempts: u32,
    /// The limit for one attempt, connection and response included.
    pub attempt_timeout: Duration,
    /// The first backoff; each later one doubles, up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// Three attempts within roughly 30 s: inside a Lambda's time budget, and
    /// anything longer is better left to the outbox's own retry schedule.
    fn default() -> Self {
        Self {
            attempts: 3,
            attempt_timeout: Duration::from_secs(8),
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The pause before attempt `attempt + 1` (counting from 1): the shared backoff,
    /// doubling, with random jitter so concurrent senders throttled together do not retry
    /// together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        crate::backoff::Backoff { base: self.base_backoff, factor: 2, max: self.max_backoff }.random(attempt)
    }
}

/// `ada.lovelace@example.com` → `a***@example.com`: enough to tell recipients
/// apart in logs and stored errors without keeping the address.
pub fn redact_address(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{}***@{domain}", local.chars().next().unwrap_or('*')),
        None => "***".to_owned(),
    }
}

/// Masks every address-like word in a provider message (SES names the failing
/// recipients in some errors), so the error can be logged and stored.
pub(crate) fn redact_addresses_in(message: &str) -> String {
    message.split(' ').map(|word| if word.contains('@') { redact_address(word) } else { word.to_owned() }).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_bounded() {
        let policy = RetryPolicy::default();
        for attempt in 1..=10 {
            let pause = policy.backoff(attempt);
            assert!(pause <= policy.max_backoff, "{attempt}: {pause:?}");
            assert!(pause >= policy.base_backoff / 2, "{attempt}: {pause:?}");
        }
        assert!(policy.backoff(4) >= policy.max_backoff / 2);
    }

    #[test]
    fn redacts_addresses() {
        assert_eq!(redact_address("ada.lovelace@example.com"), "a***@example.com");
        assert_eq!(
            redact_addresses_in("Email address is not verified: bob@x.io, carol@y.io"),
            "Email address is not verified: b***@x.io, c***@y.io"
        );
    }

    #[test]
    fn permanence_is_visible() {
        let p = SendError::Permanent { code: "MessageRejected".into(), message: "no".into() };
        let t = SendError::Transient { code: "Timeout".into(), message: "slow".into() };
        assert!(p.is_permanent() && !t.is_permanent());
        assert_eq!(t.code(), "Timeout");
        assert!(!t.is_throttling());
        for code in ["TooManyRequestsException", "LimitExceededException", "Throttling"] {
            assert!(SendError::Transient { code: code.into(), message: "slow down".into() }.is_throttling(), "{code}");
        }
        assert!(!SendError::Permanent { code: "Throttling".into(), message: "x".into() }.is_throttling());
    }
}
