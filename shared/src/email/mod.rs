//! E-mail notifications: tera templates, rendering and SES delivery of the domain's typed
//! contexts ([`crate::domain::EmailContext`]).
//!
//! The flow: a producer queues an `EmailContext` in the outbox; the
//! deliverer loads the user's profile, calls [`EmailRenderer::render`] and hands
//! the [`RenderedEmail`] to a [`Mailer`] (in AWS, [`SesMailer`]).
//!
//! Templates live in `templates/emails/` and are compiled in (see
//! [`EmailRenderer::embedded`]). Per notification kind (`NotificationKind::as_str`):
//! - `<kind>.subject`: the subject line (plain text; whitespace collapsed),
//! - `<kind>.html`: extends `layout.html` (autoescaped),
//! - `<kind>.txt`: extends `layout.txt` (plain text, never escaped).
//!
//! Every template sees the kind's context fields plus `app_url`, `greeting_name`,
//! `recipient` and `kind`; bodies also see the rendered `subject`. Undefined
//! variables are errors, and the renderer renders every kind with sample data
//! when it is built, so a broken template stops start-up, not an e-mail.

mod config;
mod filters;
mod mailer;
mod render;
mod ses;
mod templates;

#[cfg(test)]
mod tests;

pub use config::EmailConfig;
pub use mailer::{redact_address, Mailer, RetryPolicy, SendError};
pub use render::{EmailRenderer, RenderError, RenderedEmail, TemplateError};
pub use ses::{client as ses_client, SendQuota, SesMailer};
