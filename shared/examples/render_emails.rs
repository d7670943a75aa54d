//! Renders every notification with its sample data, for reviewing templates:
//!
//!     cargo run -p shared --example render_emails -- OUT_DIR
//!
//! Writes `<kind>.html`, `<kind>.txt` and an `index.html` listing each e-mail
//! with its subject. `APP_BASE_URL` sets the links (default: a placeholder);
//! `EMAIL_TEMPLATES_DIR` renders from a directory instead of the embedded set.

use std::path::PathBuf;
use std::process::ExitCode;

use shared::{
    domain::EmailContext,
    email::{EmailConfig, EmailRenderer},
};

fn main() -> ExitCode {
    match run() {
        Ok(count) => {
            eprintln!("rendered {count} e-mails");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("render_emails: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<usize, String> {
    let out_dir = std::env::args_os().nth(1).map(PathBuf::from).ok_or("usage: render_emails OUT_DIR")?;
    let config = EmailConfig {
        mail_from: "LogiScore <billing@logiscore.example>".into(),
        app_base_url: std::env::var("APP_BASE_URL").unwrap_or_else(|_| "https://app.logiscore.example".into()),
        configuration_set: None,
    };
    let renderer = match std::env::var_os("EMAIL_TEMPLATES_DIR") {
        Some(dir) => EmailRenderer::from_dir(dir, &config),
        None => EmailRenderer::embedded(&config),
    }
    .map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;

    let profile = EmailRenderer::sample_profile();
    let mut rows = String::new();
    for context in EmailContext::samples() {
        let email = renderer.render(&profile, &context).map_err(|e| e.to_string())?;
        let name = context.kind().as_str();
        write(&out_dir, &format!("{name}.html"), &email.html)?;
        write(&out_dir, &format!("{name}.txt"), &email.text)?;
        rows.push_str(&format!(
            "<tr><td><code>{name}</code></td><td>{}</td><td><a href=\"{name}.html\">HTML</a></td><td><a href=\"{name}.txt\">text</a></td></tr>\n",
            escape(&email.subject)
        ));
    }
    let index = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>LogiScore e-mail previews</title></head>\n\
         <body style=\"font-family:Arial,Helvetica,sans-serif;margin:24px;\">\n<h1>LogiScore e-mail previews</h1>\n\
         <table cellpadding=\"6\" border=\"1\" style=\"border-collapse:collapse;\">\n\
         <tr><th>Notification</th><th>Subject</th><th colspan=\"2\">Bodies</th></tr>\n{rows}</table>\n</body></html>\n"
    );
    write(&out_dir, "index.html", &index)?;
    Ok(shared::domain::NotificationKind::ALL.len())
}

fn write(dir: &std::path::Path, name: &str, contents: &str) -> Result<(), String> {
    let path = dir.join(name);
    std::fs::write(&path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Subjects are plain text; the index is HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
