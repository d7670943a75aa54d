//! Turning a notification into a subject, an HTML body and a text body.

use std::error::Error as _;
use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use tera::Tera;

use crate::domain::{EmailAddress, EmailContext, UserId, UserProfile};

use super::config::normalise_base_url;
use super::templates::{self, KindTemplates};
use super::{filters, EmailConfig};

/// A rendered e-mail, ready for a [`super::Mailer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    /// One line, whitespace collapsed (no header injection possible).
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// Why one notification could not be rendered. Rendering is deterministic, so
/// retrying the same payload gives the same error: the outbox should park it.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template `{template}` failed: {detail}")]
    Template { template: String, detail: String },
    #[error("the subject of `{kind}` rendered empty")]
    EmptySubject { kind: &'static str },
}

/// Why an [`EmailRenderer`] could not be built: a deploy-time problem, reported
/// at start-up so no customer receives a broken e-mail.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("e-mail template `{name}` is missing from {location}")]
    Missing { name: String, location: String },
    #[error("cannot read e-mail template {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("e-mail templates do not parse: {detail}")]
    Parse { detail: String },
    #[error("e-mail template check failed for `{kind}` with sample data: {source}")]
    Sample { kind: &'static str, source: RenderError },
    #[error("APP_BASE_URL `{0}` is not an absolute http(s) URL")]
    BaseUrl(String),
}

/// Renders every notification kind. Build it once at start-up; rendering is
/// cheap and `&self`, so one renderer serves every invocation.
#[derive(Debug)]
pub struct EmailRenderer {
    tera: Tera,
    app_url: String,
}

impl EmailRenderer {
    /// The templates compiled into the binary: the production default.
    pub fn embedded(config: &EmailConfig) -> Result<Self, TemplateError> {
        Self::from_sources(templates::embedded()?, config)
    }

    /// The templates in `dir` (e.g. `templates/emails`), read once now.
    pub fn from_dir(dir: impl AsRef<Path>, config: &EmailConfig) -> Result<Self, TemplateError> {
        Self::from_sources(templates::from_dir(dir.as_ref())?, config)
    }

    /// Parses the templates and renders every kind with its sample, so a
    /// missing, malformed or mismatched template fails here.
    fn from_sources(sources: Vec<(String, String)>, config: &EmailConfig) -> Result<Self, TemplateError> {
        let app_url = normalise_base_url(&config.app_base_url).ok_or_else(|| TemplateError::BaseUrl(config.app_base_url.clone()))?;
        let mut tera = Tera::default();
        // Only `.html` is escaped; subjects (`.subject`) and text bodies (`.txt`) are plain text.
        tera.autoescape_on(vec![".html"]);
        filters::register(&mut tera);
        tera.add_raw_templates(sources).map_err(|e| TemplateError::Parse { detail: error_chain(&e) })?;
        let renderer = Self { tera, app_url };
        let profile = Self::sample_profile();
        for context in EmailContext::samples() {
            renderer.render(&profile, &context).map_err(|source| TemplateError::Sample { kind: context.kind().as_str(), source })?;
        }
        Ok(renderer)
    }

    /// Renders the e-mail `context` describes for `profile`.
    pub fn render(&self, profile: &UserProfile, context: &EmailContext) -> Result<RenderedEmail, RenderError> {
        let kind = context.kind();
        let names = KindTemplates::of(kind);
        // Re-serialising the typed context means templates only ever see known
        // fields, so nothing from the stored JSON can shadow the names below.
        let mut vars = tera::Context::from_value(context.to_value())
            .map_err(|e| RenderError::Template { template: names.subject.clone(), detail: error_chain(&e) })?;
        vars.insert("kind", kind.as_str());
        vars.insert("app_url", &self.app_url);
        vars.insert("greeting_name", profile.greeting_name());
        vars.insert("recipient", profile.email.as_str());

        let subject = collapse_whitespace(&self.render_one(&names.subject, &vars)?);
        if subject.is_empty() {
            return Err(RenderError::EmptySubject { kind: kind.as_str() });
        }
        vars.insert("subject", &subject);
        let html = self.render_one(&names.html, &vars)?;
        let text = self.render_one(&names.text, &vars)?;
        Ok(RenderedEmail { subject, html, text })
    }

    fn render_one(&self, template: &str, vars: &tera::Context) -> Result<String, RenderError> {
        self.tera.render(template, vars).map_err(|e| RenderError::Template { template: template.to_owned(), detail: error_chain(&e) })
    }

    /// The recipient the samples are rendered for.
    pub fn sample_profile() -> UserProfile {
        // Literal, valid values: the `expect`s cannot fire.
        UserProfile {
            user_id: UserId::parse("sample-user").expect("a valid user id"),
            email: EmailAddress::parse("ada.lovelace@example.com").expect("a valid address"),
            full_name: Some("Ada Lovelace".into()),
            username: Some("ada".into()),
            user_type: None,
            updated_at: Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).single().expect("a valid date"),
            stripe_customer_id: None,
            undeliverable: None,
            last_delivery: None,
        }
    }
}

/// Tera's own message is only "failed to render X"; the cause (which variable,
/// which line) is in the source chain, and is what an operator needs.
fn error_chain(error: &tera::Error) -> String {
    let mut detail = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    detail
}

fn collapse_whitespace(raw: &str) -> String {
    raw.split_whitespace().collect::<Vec<_>>().join(" ")
}
