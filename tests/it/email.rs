//! E-mail delivery through the real `SesMailer` to moto server's SES v2 over loopback.
//!
//! moto keeps what it "sent" in `GET /moto-api/data.json` under `ses.Message`:
//! `[{"id", "source", "destinations": {"ToAddresses": [..]}, "subject", "body"}]`,
//! where `body` is the HTML part only (moto drops the text part).

use std::time::Duration;

use chrono::{TimeZone, Utc};
use harness::Moto;
use serde_json::Value;
use shared::domain::{Currency, EmailAddress, Money, NotificationKind, Tier, UserProfile};
use shared::{
    domain::{EmailContext, PaymentReceiptContext},
    email::{EmailConfig, EmailRenderer, Mailer, RetryPolicy, SendError, SesMailer},
};

const SENDER_DOMAIN: &str = "logiscore.test";

fn email_config() -> EmailConfig {
    EmailConfig {
        mail_from: format!("LogiScore <billing@{SENDER_DOMAIN}>"),
        app_base_url: "https://app.logiscore.test".into(),
        configuration_set: Some("logiscore-notifications".into()),
    }
}

/// Quick retries so the transient-failure test does not wait for production backoffs.
fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        attempt_timeout: Duration::from_secs(5),
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(50),
    }
}

async fn sent_messages(moto: &Moto) -> Vec<Value> {
    let data = moto.data().await;
    data["ses"]["Message"].as_array().cloned().unwrap_or_default()
}

/// A verified sender domain and the configuration set the mailer names.
async fn prepare_ses(moto: &Moto) {
    let ses = aws_sdk_sesv2::Client::new(&moto.sdk_config().await);
    ses.create_email_identity().email_identity(SENDER_DOMAIN).send().await.expect("create SES identity");
    ses.create_configuration_set().configuration_set_name("logiscore-notifications").send().await.expect("create configuration set");
}

fn recipient() -> UserProfile {
    UserProfile {
        email: EmailAddress::parse("yuki.tanaka@example.jp").unwrap(),
        full_name: Some("<script>alert(1)</script> Yuki".into()),
        ..EmailRenderer::sample_profile()
    }
}

fn jpy_receipt() -> EmailContext {
    PaymentReceiptContext {
        amount: Money::new(1200, Currency::parse("jpy").unwrap()),
        plan: Tier::Premium,
        invoice_number: Some("LS-JP-0007".into()),
        hosted_invoice_url: Some("https://invoice.stripe.com/i/acct_1/test_jp".into()),
        period_start: Some(Utc.with_ymd_and_hms(2026, 3, 12, 0, 0, 0).unwrap()),
        period_end: Some(Utc.with_ymd_and_hms(2026, 4, 12, 0, 0, 0).unwrap()),
    }
    .into()
}

#[tokio::test]
async fn a_rendered_receipt_is_delivered_through_ses() {
    let moto = Moto::start().await;
    prepare_ses(&moto).await;
    let config = email_config();
    let renderer = EmailRenderer::embedded(&config).unwrap();
    let mailer = SesMailer::new(&moto.sdk_config().await, &config).with_retry_policy(fast_retries());
    let profile = recipient();

    let context = jpy_receipt();
    let email = renderer.render(&profile, &context).unwrap();
    let message_id = mailer
        .send(&profile.email, &profile.user_id, &email, NotificationKind::PaymentReceipt, "email:payment_receipt:in_jp7")
        .await
        .unwrap();
    assert!(!message_id.is_empty());

    let sent = sent_messages(&moto).await;
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let message = &sent[0];
    assert_eq!(message["id"], message_id.as_str());
    assert_eq!(message["source"], config.mail_from.as_str());
    assert_eq!(message["destinations"]["ToAddresses"], serde_json::json!(["yuki.tanaka@example.jp"]));
    assert_eq!(message["subject"], email.subject.as_str());
    assert!(email.subject.contains("¥1,200"), "{}", email.subject);
    let body = message["body"].as_str().unwrap();
    assert_eq!(body, email.html, "moto stores the HTML part as sent (UTF-8 intact)");
    assert!(body.contains("¥1,200") && body.contains("LS-JP-0007"));
    assert!(body.contains(r#"href="https://invoice.stripe.com/i/acct_1/test_jp""#));
    assert!(body.contains("&lt;script&gt;") && !body.contains("<script>"));
}

#[tokio::test]
async fn every_notification_kind_can_be_sent() {
    let moto = Moto::start().await;
    prepare_ses(&moto).await;
    let config = email_config();
    let renderer = EmailRenderer::embedded(&config).unwrap();
    let mailer: Box<dyn Mailer> = Box::new(SesMailer::new(&moto.sdk_config().await, &config).with_retry_policy(fast_retries()));
    let profile = EmailRenderer::sample_profile();

    let mut subjects = Vec::new();
    for context in EmailContext::samples() {
        let kind = context.kind();
        let email = renderer.render(&profile, &context).unwrap();
        mailer.send(&profile.email, &profile.user_id, &email, kind, &format!("email:{}:sample", kind.as_str())).await.unwrap();
        subjects.push(email.subject);
    }
    let recorded: Vec<String> = sent_messages(&moto).await.iter().map(|m| m["subject"].as_str().unwrap().to_owned()).collect();
    assert_eq!(recorded, subjects);
}

#[tokio::test]
async fn an_unverified_sender_is_a_permanent_failure() {
    let moto = Moto::start().await;
    // No identity created: SES (and moto) reject the message with `MessageRejected`.
    let config = email_config();
    let renderer = EmailRenderer::embedded(&config).unwrap();
    let mailer = SesMailer::new(&moto.sdk_config().await, &config).with_retry_policy(fast_retries());
    let profile = recipient();
    let email = renderer.render(&profile, &jpy_receipt()).unwrap();

    let err = mailer
        .send(&profile.email, &profile.user_id, &email, NotificationKind::PaymentReceipt, "email:payment_receipt:in_x")
        .await
        .unwrap_err();
    assert!(err.is_permanent(), "{err:?}");
    assert!(matches!(&err, SendError::Permanent { code, .. } if code == "MessageRejected"), "{err:?}");
    assert!(sent_messages(&moto).await.is_empty());
}

#[tokio::test]
async fn an_unreachable_ses_is_a_transient_failure_after_bounded_retries() {
    let moto = Moto::start().await;
    let config = email_config();
    let sdk_config = moto.sdk_config().await;
    moto.stop();
    let renderer = EmailRenderer::embedded(&config).unwrap();
    let mailer = SesMailer::new(&sdk_config, &config).with_retry_policy(fast_retries());
    let profile = recipient();
    let email = renderer.render(&profile, &jpy_receipt()).unwrap();

    let started = std::time::Instant::now();
    let err = mailer
        .send(&profile.email, &profile.user_id, &email, NotificationKind::PaymentReceipt, "email:payment_receipt:in_y")
        .await
        .unwrap_err();
    assert!(!err.is_permanent(), "{err:?}");
    assert_eq!(err.code(), "DispatchFailure", "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "retries are bounded: {:?}", started.elapsed());
}
