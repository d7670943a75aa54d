//! Structured JSON logs for CloudWatch.

use tracing_subscriber::{fmt, EnvFilter};

/// Installs the JSON log subscriber. The level comes from `RUST_LOG`, else Lambda's
/// `AWS_LAMBDA_LOG_LEVEL` (set by the function's `LoggingConfig`), else `info`.
/// Each line is one JSON object with the event's fields flattened and the current
/// span's fields (user id, event id, job…) attached, which is what Logs Insights queries.
pub fn init() {
    let level = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL").map(|l| l.to_lowercase()))
        .unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = fmt()
        .json()
        .with_env_filter(filter)
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        // CloudWatch stamps every line itself.
        .without_time()
        .try_init();
}
