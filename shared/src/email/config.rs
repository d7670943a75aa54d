//! The e-mail settings the functions read at start-up (`shared::config` fills
//! this from `MAIL_FROM`, `APP_BASE_URL` and `SES_CONFIGURATION_SET`).

/// Where mail comes from and where its links point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailConfig {
    /// The sender, e.g. `LogiScore <billing@logiscore.com>`; its domain must be a
    /// verified SES identity.
    pub mail_from: String,
    /// The web app's base URL (`https://app.logiscore.com`); every link in an
    /// e-mail is built from it. A trailing `/` is ignored.
    pub app_base_url: String,
    /// The SES configuration set for delivery/bounce/complaint events, if any.
    pub configuration_set: Option<String>,
}

/// Checks `raw` is an absolute http(s) URL that is safe to splice into an
/// `href`, and returns it without a trailing slash so templates can append paths.
pub(crate) fn normalise_base_url(raw: &str) -> Option<String> {
    let trimmed = raw.trim().trim_end_matches('/');
    let lower = trimmed.to_ascii_lowercase();
    let rest = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://"))?;
    let host_present = rest.split('/').next().is_some_and(|host| !host.is_empty());
    let clean = trimmed.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '<' | '>' | '`' | '\\'));
    (host_present && clean).then(|| trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::normalise_base_url;

    #[test]
    fn base_url_must_be_absolute_http() {
        assert_eq!(normalise_base_url("https://app.logiscore.com/").as_deref(), Some("https://app.logiscore.com"));
        assert_eq!(normalise_base_url(" http://127.0.0.1:3000 ").as_deref(), Some("http://127.0.0.1:3000"));
        for bad in ["", "app.logiscore.com", "javascript:alert(1)", "https://", "https://a b.com", "https://x.com/\"onclick"] {
            assert_eq!(normalise_base_url(bad), None, "{bad}");
        }
    }
}
