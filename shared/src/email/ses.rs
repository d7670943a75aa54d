//! [`Mailer`] over Amazon SES v2 `SendEmail`.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sesv2::config::retry::RetryConfig;
use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::operation::send_email::builders::SendEmailFluentBuilder;
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message, MessageTag};
use aws_sdk_sesv2::Client;

use crate::domain::{EmailAddress, NotificationKind, UserId};

use super::mailer::redact_addresses_in;
use super::{EmailConfig, Mailer, RenderedEmail, RetryPolicy, SendError};

/// An SES client for a [`SesMailer`]: the SDK's own retries off, so the mailer's
/// [`RetryPolicy`] is the only retry loop (otherwise attempts multiply).
pub fn client(sdk_config: &SdkConfig) -> Client {
    Client::from_conf(aws_sdk_sesv2::config::Builder::from(sdk_config).retry_config(RetryConfig::disabled()).build())
}

/// Sends through SES with the configured sender and configuration set, tagging
/// each message `notification=<kind>` for SES event destinations and metrics, and
/// `user=<hex of the user id>` for the bounce and complaint handler.
#[derive(Debug, Clone)]
pub struct SesMailer {
    client: Client,
    mail_from: String,
    configuration_set: Option<String>,
    retry: RetryPolicy,
}

impl SesMailer {
    /// A mailer on its own SES client. The SDK's built-in retries are switched off
    /// so [`RetryPolicy`] is the only retry loop (otherwise attempts multiply).
    pub fn new(sdk_config: &SdkConfig, config: &EmailConfig) -> Self {
        Self::from_client(client(sdk_config), config)
    }

    /// A mailer on an existing client (its own retry settings then apply too).
    pub fn from_client(client: Client, config: &EmailConfig) -> Self {
        Self {
            client,
            mail_from: config.mail_from.clone(),
            configuration_set: config.configuration_set.clone().filter(|name| !name.trim().is_empty()),
            retry: RetryPolicy::default(),
        }
    }

    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    fn request(
        &self,
        to: &EmailAddress,
        user: &UserId,
        email: &RenderedEmail,
        kind: NotificationKind,
        tag: &str,
    ) -> Result<SendEmailFluentBuilder, SendError> {
        let message = Message::builder()
            .subject(utf8(&email.subject)?)
            .body(Body::builder().html(utf8(&email.html)?).text(utf8(&email.text)?).build())
            .build();
        let request = self
            .client
            .send_email()
            .from_email_address(&self.mail_from)
            .destination(Destination::builder().to_addresses(to.as_str()).build())
            .content(EmailContent::builder().simple(message).build())
            .email_tags(message_tag("notification", kind.as_str())?)
            .email_tags(message_tag("notification_id", tag)?)
            // SES's bounce and complaint events carry the tags: how feedback finds the user.
            .email_tags(message_tag(crate::usecase::mail_feedback::USER_TAG, &crate::usecase::mail_feedback::user_tag_value(user))?)
            .set_configuration_set_name(self.configuration_set.clone());
        Ok(request)
    }
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(
        &self,
        to: &EmailAddress,
        user: &UserId,
        email: &RenderedEmail,
        kind: NotificationKind,
        idempotency_tag: &str,
    ) -> Result<String, SendError> {
        let request = self.request(to, user, email, kind, idempotency_tag)?;
        let attempts = self.retry.attempts.max(1);
        let mut attempt = 1;
        loop {
            // A timed-out attempt may still have been accepted by SES; resending
            // risks a duplicate, which beats losing a billing e-mail.
            let outcome = match tokio::time::timeout(self.retry.attempt_timeout, request.clone().send()).await {
                Ok(Ok(output)) => Ok(output.message_id().unwrap_or_default().to_owned()),
                Ok(Err(error)) => Err(classify(error)),
                Err(_) => Err(SendError::Transient {
                    code: "Timeout".into(),
                    message: format!("no answer from SES within {:?}", self.retry.attempt_timeout),
                }),
            };
            match outcome {
                Ok(message_id) => {
                    tracing::info!(
                        kind = kind.as_str(),
                        notification_id = idempotency_tag,
                        message_id,
                        attempt,
                        outcome = "sent",
                        "e-mail sent"
                    );
                    return Ok(message_id);
                }
                Err(error) if error.is_permanent() || attempt >= attempts => {
                    tracing::warn!(
                        kind = kind.as_str(),
                        notification_id = idempotency_tag,
                        attempt,
                        outcome = if error.is_permanent() { "rejected" } else { "gave_up" },
                        error = %error,
                        "e-mail not sent"
                    );
                    return Err(error);
                }
                Err(error) => {
                    let pause = self.retry.backoff(attempt);
                    tracing::info!(
                        kind = kind.as_str(),
                        notification_id = idempotency_tag,
                        attempt,
                        retry_in_ms = pause.as_millis() as u64,
                        error = %error,
                        "e-mail send failed, retrying"
                    );
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// The account's sending quota, read from SES `GetAccount`.
#[derive(Debug, Clone)]
pub struct SendQuota {
    client: Client,
}

impl SendQuota {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The maximum send rate in whole messages per second (at least 1), within `timeout`;
    /// `None` when it cannot be read (moto has no `GetAccount`; a missing grant; an
    /// outage): the caller falls back to its configured rate.
    pub async fn max_send_rate(&self, timeout: std::time::Duration) -> Option<u32> {
        max_send_rate(&self.client, timeout).await.map(|rate| (rate.floor() as u32).max(1))
    }
}

/// The cold start's SES read ([`crate::warm`]): `GetAccount`, the call each job run makes
/// first, on the client the mailer sends with.
#[async_trait::async_trait]
impl crate::warm::Warm for SendQuota {
    async fn warm(&self) -> Result<(), String> {
        match self.client.get_account().send().await {
            Ok(_) => Ok(()),
            Err(error) => {
                // Code and status only, as for the run's own read.
                let code = error.as_service_error().and_then(|e| e.code()).unwrap_or("Unknown").to_owned();
                Err(match error.raw_response().map(|r| r.status().as_u16()) {
                    // An answer came, so the connection is open all the same.
                    Some(status) => format!("GetAccount answered HTTP {status} ({code})"),
                    None => format!("GetAccount failed ({code})"),
                })
            }
        }
    }
}

async fn max_send_rate(client: &Client, timeout: std::time::Duration) -> Option<f64> {
    match tokio::time::timeout(timeout, client.get_account().send()).await {
        Ok(Ok(account)) => account.send_quota().map(|quota| quota.max_send_rate()).filter(|rate| *rate > 0.0),
        Ok(Err(error)) => {
            // Code and status only: the raw answer may be anything (moto answers an HTML 404).
            let code = error.as_service_error().and_then(|e| e.code()).unwrap_or("Unknown");
            let status = error.raw_response().map(|r| r.status().as_u16());
            tracing::warn!(code, status, "SES GetAccount failed; using the configured send rate");
            None
        }
        Err(_) => {
            tracing::warn!(?timeout, "SES GetAccount timed out; using the configured send rate");
            None
        }
    }
}

/// SES text content, always declared UTF-8 (names, `€`, `¥`).
fn utf8(data: &str) -> Result<Content, SendError> {
    Content::builder().data(data).charset("UTF-8").build().map_err(invalid_request)
}

/// SES tag values allow only `[A-Za-z0-9_-]` (max 256): anything else becomes
/// `_`, e.g. the outbox id `email:payment_receipt:in_1` → `email_payment_receipt_in_1`.
fn message_tag(name: &str, value: &str) -> Result<MessageTag, SendError> {
    let mut clean: String =
        value.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).take(256).collect();
    if clean.is_empty() {
        clean.push('_');
    }
    MessageTag::builder().name(name).value(clean).build().map_err(invalid_request)
}

fn invalid_request(error: impl std::fmt::Display) -> SendError {
    SendError::Permanent { code: "InvalidRequest".into(), message: error.to_string() }
}

/// Sorts an SDK failure into "never" and "later".
fn classify(error: SdkError<SendEmailError, aws_sdk_sesv2::config::http::HttpResponse>) -> SendError {
    let transient = |code: &str, message: String| SendError::Transient { code: code.to_owned(), message };
    match error {
        SdkError::ServiceError(context) => {
            let status = context.raw().status().as_u16();
            let err = context.err();
            // An unmodelled 429 is throttling whatever its body says.
            let code = match err.code() {
                Some(code) => code.to_owned(),
                None if status == 429 => "Throttling".to_owned(),
                None => "Unknown".to_owned(),
            };
            let message = redact_addresses_in(err.message().unwrap_or_default());
            let permanent = match err {
                SendEmailError::MessageRejected(_)
                | SendEmailError::MailFromDomainNotVerifiedException(_)
                | SendEmailError::AccountSuspendedException(_)
                | SendEmailError::BadRequestException(_)
                // The configuration set does not exist: no retry will find it.
                | SendEmailError::NotFoundException(_) => true,
                SendEmailError::TooManyRequestsException(_) | SendEmailError::LimitExceededException(_) => false,
                // Sending was paused by an operator and will be resumed: keep the
                // mail queued rather than drop it.
                SendEmailError::SendingPausedException(_) => false,
                // Unmodelled: server errors and throttling are transient; so are
                // 401/403 (expired or not-yet-granted credentials are fixed without
                // touching the message); any other 4xx is about the request itself.
                _ => !(status >= 500 || matches!(status, 401 | 403 | 408 | 429)),
            };
            if permanent {
                SendError::Permanent { code, message }
            } else {
                SendError::Transient { code, message }
            }
        }
        SdkError::TimeoutError(_) => transient("Timeout", "the SDK timed out".into()),
        SdkError::DispatchFailure(failure) => {
            let detail = failure.as_connector_error().map_or_else(|| "the request was not sent".to_owned(), ToString::to_string);
            transient("DispatchFailure", detail)
        }
        SdkError::ResponseError(_) => transient("ResponseError", "SES sent an unreadable response".into()),
        // The request could not even be built: retrying builds it the same way.
        SdkError::ConstructionFailure(_) => {
            SendError::Permanent { code: "ConstructionFailure".into(), message: "the SES request could not be built".into() }
        }
        other => transient("Unknown", aws_sdk_sesv2::error::DisplayErrorContext(&other).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_values_are_restricted_to_what_ses_accepts() {
        let tag = message_tag("notification_id", "email:payment_receipt:in_1Ab@x").unwrap();
        assert_eq!(tag.value(), "email_payment_receipt_in_1Ab_x");
        assert_eq!(message_tag("n", "").unwrap().value(), "_");
        assert_eq!(message_tag("n", &"a".repeat(300)).unwrap().value().len(), 256);
    }
}
