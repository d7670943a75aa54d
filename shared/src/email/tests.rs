//! Rendering tests over the real templates in `templates/emails/`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{TimeZone, Utc};

use super::*;
use crate::domain::{
    Currency, EmailContext, ExpiryWarningContext, Money, NotificationKind, PaymentFailedContext, PaymentReceiptContext, Tier, UserProfile,
};

const APP_URL: &str = "https://app.logiscore.test";

fn config() -> EmailConfig {
    EmailConfig { mail_from: "LogiScore <billing@logiscore.test>".into(), app_base_url: format!("{APP_URL}/"), configuration_set: None }
}

fn renderer() -> EmailRenderer {
    EmailRenderer::embedded(&config()).expect("the embedded templates build")
}

fn templates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates/emails")
}

fn profile_named(name: &str) -> UserProfile {
    UserProfile { full_name: Some(name.into()), ..EmailRenderer::sample_profile() }
}

/// A fresh copy of the real templates that a test may break.
struct TempTemplates(PathBuf);

impl TempTemplates {
    fn copy() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!("logiscore-email-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(templates_dir()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        Self(dir)
    }
}

impl Drop for TempTemplates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Words each subject must contain, so a template mixed up with another kind's is caught.
fn expected_subject_words(kind: NotificationKind) -> &'static [&'static str] {
    match kind {
        NotificationKind::SubscriptionConfirmation => &["Premium", "active"],
        NotificationKind::PaymentReceipt => &["receipt", "$19.99", "LS-2026-0042"],
        NotificationKind::PaymentFailed => &["payment", "failed", "$19.99"],
        NotificationKind::ExpiryWarning => &["Enterprise", "ends in 7 days"],
        NotificationKind::RenewalReminder => &["renews", "15 March 2026"],
        NotificationKind::SubscriptionExpired => &["Premium", "ended"],
        NotificationKind::TrialEnding => &["trial", "tomorrow"],
        NotificationKind::PlanChanged => &["Enterprise"],
        NotificationKind::CancellationConfirmed => &["cancelled"],
    }
}

#[test]
fn every_kind_renders_html_and_text_with_its_sample() {
    let renderer = renderer();
    let profile = EmailRenderer::sample_profile();
    let samples = EmailContext::samples();
    assert_eq!(samples.len(), NotificationKind::ALL.len());
    for context in samples {
        let kind = context.kind();
        let email = renderer.render(&profile, &context).unwrap();
        assert!(!email.subject.is_empty() && !email.subject.contains('\n'), "{kind:?}");
        for word in expected_subject_words(kind) {
            assert!(email.subject.contains(word), "{kind:?} subject `{}` lacks `{word}`", email.subject);
        }
        assert!(email.html.starts_with("<!DOCTYPE html>"), "{kind:?}");
        assert!(email.html.contains(&format!("<title>{}</title>", email.subject.replace('&', "&amp;"))), "{kind:?}");
        assert!(email.html.contains("max-width:600px"), "{kind:?}");
        assert!(email.html.contains("Hi Ada Lovelace,") && email.text.contains("Hi Ada Lovelace,"), "{kind:?}");
        // The footer says why the mail was sent, in both parts.
        for body in [&email.html, &email.text] {
            assert!(body.contains("You are receiving this e-mail because ada.lovelace@example.com"), "{kind:?}");
        }
        assert!(!email.text.contains('<') && !email.text.contains("&amp;"), "{kind:?} text looks like HTML");
        assert!(!email.text.starts_with('\n'), "{kind:?}");
        assert!(!email.html.contains("<img"), "{kind:?}: no image may carry meaning");
    }
}

#[test]
fn user_data_is_escaped_in_html_and_verbatim_in_text() {
    let renderer = renderer();
    let profile = profile_named("<script>alert(1)</script> & Co");
    for context in EmailContext::samples() {
        let kind = context.kind();
        let email = renderer.render(&profile, &context).unwrap();
        assert!(!email.html.contains("<script>"), "{kind:?}");
        assert!(email.html.contains("Hi &lt;script&gt;alert(1)&lt;&#x2F;script&gt; &amp; Co,"), "{kind:?}");
        assert!(email.text.contains("Hi <script>alert(1)</script> & Co,"), "{kind:?}");
    }
}

#[test]
fn stripe_supplied_text_is_escaped_too() {
    let context = PaymentFailedContext {
        amount: Money::new(500, Currency::parse("usd").unwrap()),
        plan: Tier::Premium,
        failure_reason: Some("<b>declined</b>".into()),
        next_attempt_at: None,
        hosted_invoice_url: Some("https://invoice.stripe.com/i/x?a=1&b=\"2\"".into()),
    };
    let email = renderer().render(&EmailRenderer::sample_profile(), &context.into()).unwrap();
    assert!(email.html.contains("&lt;b&gt;declined&lt;&#x2F;b&gt;"));
    assert!(email.html.contains(r#"href="https://invoice.stripe.com/i/x?a=1&amp;b=%222%22""#));
    assert!(email.text.contains("https://invoice.stripe.com/i/x?a=1&b=\"2\""));
}

#[test]
fn jpy_receipt_has_no_decimals() {
    let context = PaymentReceiptContext {
        amount: Money::new(1200, Currency::parse("jpy").unwrap()),
        plan: Tier::Premium,
        invoice_number: None,
        hosted_invoice_url: None,
        period_start: None,
        period_end: Some(Utc.with_ymd_and_hms(2026, 3, 12, 23, 0, 0).unwrap()),
    };
    let email = renderer().render(&EmailRenderer::sample_profile(), &context.into()).unwrap();
    assert!(email.subject.contains("¥1,200"), "{}", email.subject);
    for body in [&email.html, &email.text] {
        assert!(body.contains("¥1,200") && !body.contains("¥1,200.") && !body.contains("¥12.00"));
        assert!(body.contains("12 March 2026"));
    }
    // Without a hosted invoice the button falls back to the app's billing page.
    assert!(email.html.contains(&format!(r#"href="{APP_URL}/account/billing""#)));
}

#[test]
fn links_are_built_from_app_base_url() {
    let renderer = renderer();
    let profile = EmailRenderer::sample_profile();
    for context in EmailContext::samples() {
        let kind = context.kind();
        let email = renderer.render(&profile, &context).unwrap();
        assert!(email.html.contains(&format!(r#"href="{APP_URL}/account/billing""#)), "{kind:?}");
        assert!(email.text.contains(&format!("{APP_URL}/account/billing")), "{kind:?}");
        // The trailing slash of the configured URL is not doubled, and no href is entity-mangled.
        assert!(!email.html.contains("test//") && !email.html.contains("href=\"https:&#x2F;"), "{kind:?}");
    }
}

#[test]
fn an_undefined_variable_is_an_error() {
    let dir = TempTemplates::copy();
    let path = dir.0.join("plan_changed.txt");
    let source = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, source.replace("{{ new_plan | plan_name }}", "{{ no_such_field }}")).unwrap();
    let err = EmailRenderer::from_dir(&dir.0, &config()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, TemplateError::Sample { kind: "plan_changed", .. }), "{message}");
    assert!(message.contains("no_such_field"), "{message}");
}

#[test]
fn a_missing_template_fails_construction() {
    let dir = TempTemplates::copy();
    assert!(EmailRenderer::from_dir(&dir.0, &config()).is_ok(), "the untouched copy builds");
    std::fs::remove_file(dir.0.join("trial_ending.subject")).unwrap();
    let err = EmailRenderer::from_dir(&dir.0, &config()).unwrap_err();
    assert!(matches!(&err, TemplateError::Missing { name, .. } if name == "trial_ending.subject"), "{err}");
}

#[test]
fn a_template_that_does_not_parse_fails_construction() {
    let dir = TempTemplates::copy();
    std::fs::write(dir.0.join("payment_failed.html"), "{% extends \"layout.html\" %}{% block content %}{{ amount | money }").unwrap();
    let err = EmailRenderer::from_dir(&dir.0, &config()).unwrap_err();
    assert!(matches!(err, TemplateError::Parse { .. }), "{err}");
}

#[test]
fn an_empty_subject_fails_construction() {
    let dir = TempTemplates::copy();
    std::fs::write(dir.0.join("renewal_reminder.subject"), "  \n").unwrap();
    let err = EmailRenderer::from_dir(&dir.0, &config()).unwrap_err();
    assert!(matches!(err, TemplateError::Sample { source: RenderError::EmptySubject { .. }, .. }), "{err}");
}

#[test]
fn a_bad_base_url_fails_construction() {
    let bad = EmailConfig { app_base_url: "app.logiscore.test".into(), ..config() };
    assert!(matches!(EmailRenderer::embedded(&bad), Err(TemplateError::BaseUrl(_))));
}

#[test]
fn subjects_cannot_carry_header_breaks() {
    let dir = TempTemplates::copy();
    std::fs::write(dir.0.join("plan_changed.subject"), "Plan\r\nBcc: x@evil.test\n").unwrap();
    let renderer = EmailRenderer::from_dir(&dir.0, &config()).unwrap();
    let context = EmailContext::samples().into_iter().find(|c| c.kind() == NotificationKind::PlanChanged).unwrap();
    let email = renderer.render(&EmailRenderer::sample_profile(), &context).unwrap();
    assert_eq!(email.subject, "Plan Bcc: x@evil.test");
}

#[test]
fn greeting_falls_back_when_the_profile_has_no_name() {
    let profile = UserProfile { full_name: None, username: None, ..EmailRenderer::sample_profile() };
    let context = EmailContext::samples().remove(0);
    let email = renderer().render(&profile, &context).unwrap();
    assert!(email.text.contains("Hi there,"));
}

#[test]
fn day_counts_read_naturally() {
    let renderer = renderer();
    let profile = EmailRenderer::sample_profile();
    let end = Utc.with_ymd_and_hms(2026, 3, 12, 0, 0, 0).unwrap();
    let subject = |days| {
        let context = ExpiryWarningContext { plan: Tier::Premium, days_remaining: days, end_date: end };
        renderer.render(&profile, &context.into()).unwrap().subject
    };
    assert!(subject(0).ends_with("ends today"));
    assert!(subject(1).ends_with("ends tomorrow"));
    assert!(subject(30).ends_with("ends in 30 days"));
}

#[test]
fn directory_and_embedded_templates_render_alike() {
    let from_dir = EmailRenderer::from_dir(templates_dir(), &config()).unwrap();
    let embedded = renderer();
    let profile = EmailRenderer::sample_profile();
    for context in EmailContext::samples() {
        assert_eq!(from_dir.render(&profile, &context).unwrap(), embedded.render(&profile, &context).unwrap(), "{:?}", context.kind());
    }
}
