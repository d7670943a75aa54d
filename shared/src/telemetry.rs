//! Structured JSON logs for CloudWatch.

use tracing_subscriber::{fmt, EnvFilter};

/// Installs the JSON log subscriber. The level comes from Lambda's `AWS_LAMBDA_LOG_LEVEL`
/// (set by the function's `LoggingConfig`, so changing `ApplicationLogLevel` takes effect),
/// else `RUST_LOG` (local runs, per-module directives), else `info`.
/// Each line is one JSON object with the event's fields flattened and the current
/// span's fields (`span`) and those of every enclosing span (`spans`: request, event, job…)
/// attached, which is what Logs Insights queries.
/// Under Lambda's JSON log format (`AWS_LAMBDA_LOG_FORMAT=JSON`) every line also carries
/// an RFC 3339 `timestamp`: without one Lambda files each line as INFO, whatever its level.
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .map(|l| lambda_level(&l))
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt()
        .json()
        .with_env_filter(filter)
        .flatten_event(true)
        .with_current_span(true)
        // The whole chain too: a Stripe call inside an event's processing carries the
        // event's ids (`spans[*].event_id`), not only its own span's.
        .with_span_list(true)
        .with_target(false);
    let lambda_json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let _ = if lambda_json {
        builder.try_init()
    } else {
        // Plain-text log format: CloudWatch stamps every line itself.
        builder.without_time().try_init()
    };
}

/// Lambda's level names (`TRACE`…`FATAL`) as a tracing filter directive.
fn lambda_level(raw: &str) -> String {
    match raw.trim().to_ascii_lowercase().as_str() {
        "fatal" => "error".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lambda_levels_map_to_tracing_levels() {
        assert_eq!(super::lambda_level("DEBUG"), "debug");
        assert_eq!(super::lambda_level("WARN"), "warn");
        assert_eq!(super::lambda_level("FATAL"), "error");
    }
}
