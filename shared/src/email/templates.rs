//! Where the template sources come from: compiled into the binary (the default,
//! so a Lambda package needs no files beside it) or read from a directory (for
//! editing templates without a rebuild). Both yield the same fixed set of names,
//! so the start-up check sees exactly what production will use.

use std::path::{Path, PathBuf};

use crate::domain::NotificationKind;

use super::TemplateError;

/// Templates shared by every notification.
pub(crate) const SHARED: [&str; 3] = ["layout.html", "layout.txt", "macros.html"];

/// The three templates of one notification, named after [`NotificationKind::as_str`].
pub(crate) struct KindTemplates {
    /// One line; not escaped; whitespace collapsed after rendering.
    pub subject: String,
    /// Extends `layout.html`; autoescaped.
    pub html: String,
    /// Extends `layout.txt`; not escaped.
    pub text: String,
}

impl KindTemplates {
    pub(crate) fn of(kind: NotificationKind) -> Self {
        let name = kind.as_str();
        Self { subject: format!("{name}.subject"), html: format!("{name}.html"), text: format!("{name}.txt") }
    }
}

/// Every file the renderer needs, shared ones first.
pub(crate) fn required_names() -> Vec<String> {
    let mut names: Vec<String> = SHARED.iter().map(|s| (*s).to_owned()).collect();
    for kind in NotificationKind::ALL {
        let t = KindTemplates::of(kind);
        names.extend([t.subject, t.html, t.text]);
    }
    names
}

/// Embeds `templates/emails/<name>` for each listed name.
macro_rules! embed {
    ($($name:literal),+ $(,)?) => {
        &[$(($name, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../templates/emails/", $name)))),+]
    };
}

/// The templates compiled into the binary. The list is checked against
/// [`required_names`] when the renderer is built (and by a unit test), so a kind
/// added without its templates fails the build's tests, not a customer's e-mail.
pub(crate) const EMBEDDED: &[(&str, &str)] = embed![
    "layout.html",
    "layout.txt",
    "macros.html",
    "subscription_confirmation.subject",
    "subscription_confirmation.html",
    "subscription_confirmation.txt",
    "payment_receipt.subject",
    "payment_receipt.html",
    "payment_receipt.txt",
    "payment_failed.subject",
    "payment_failed.html",
    "payment_failed.txt",
    "expiry_warning.subject",
    "expiry_warning.html",
    "expiry_warning.txt",
    "renewal_reminder.subject",
    "renewal_reminder.html",
    "renewal_reminder.txt",
    "subscription_expired.subject",
    "subscription_expired.html",
    "subscription_expired.txt",
    "trial_ending.subject",
    "trial_ending.html",
    "trial_ending.txt",
    "plan_changed.subject",
    "plan_changed.html",
    "plan_changed.txt",
    "cancellation_confirmed.subject",
    "cancellation_confirmed.html",
    "cancellation_confirmed.txt",
];

/// The embedded sources, in [`required_names`] order; a name missing from
/// [`EMBEDDED`] is reported like a file missing from a directory.
pub(crate) fn embedded() -> Result<Vec<(String, String)>, TemplateError> {
    required_names()
        .into_iter()
        .map(|name| match EMBEDDED.iter().find(|(embedded, _)| *embedded == name) {
            Some((_, source)) => Ok((name, (*source).to_owned())),
            None => Err(TemplateError::Missing { name, location: "the embedded template set".into() }),
        })
        .collect()
}

/// Reads every required template from `dir`.
pub(crate) fn from_dir(dir: &Path) -> Result<Vec<(String, String)>, TemplateError> {
    required_names()
        .into_iter()
        .map(|name| {
            let path: PathBuf = dir.join(&name);
            match std::fs::read_to_string(&path) {
                Ok(source) => Ok((name, source)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(TemplateError::Missing { name, location: dir.display().to_string() })
                }
                Err(source) => Err(TemplateError::Io { path, source }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_set_is_exactly_the_required_set() {
        let mut embedded: Vec<&str> = EMBEDDED.iter().map(|(name, _)| *name).collect();
        let mut required = required_names();
        embedded.sort_unstable();
        required.sort_unstable();
        assert_eq!(embedded, required);
    }
}
