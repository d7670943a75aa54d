//! The tera filters the e-mail templates use. They turn the contexts' raw data
//! (minor-unit money, RFC 3339 dates, tier ids) into what a reader expects, so
//! formatting lives in one place and every template formats the same way.
//!
//! - `money`: `{"amount": 1200, "currency": "jpy"}` → `¥1,200` (via [`Money::display`]).
//! - `long_date`: an RFC 3339 timestamp → `12 March 2026` (UTC).
//! - `plan_name`: `premium` → `Premium`; `plan_features`: the plan's feature list.
//! - `href`: an http(s) URL made safe for an HTML attribute (HTML templates only).
//!
//! Every filter fails on input it does not understand, so a wrong context is an
//! error at render time rather than a blank in a customer's inbox.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use tera::{Filter, Tera, Value};

use crate::domain::{Money, Tier};

type Args = HashMap<String, Value>;

pub(crate) fn register(tera: &mut Tera) {
    tera.register_filter("money", money);
    tera.register_filter("long_date", long_date);
    tera.register_filter("plan_name", plan_name);
    tera.register_filter("plan_features", plan_features);
    tera.register_filter("href", Href);
    // Tera ships a `get_env` function; e-mail templates must never be able to
    // print the process environment (it holds the Stripe key), so it is replaced.
    tera.register_function("get_env", |_: &Args| -> tera::Result<Value> {
        Err(tera::Error::msg("`get_env` is disabled in e-mail templates"))
    });
}

fn parse<T: serde::de::DeserializeOwned>(filter: &str, value: &Value) -> tera::Result<T> {
    serde_json::from_value(value.clone()).map_err(|e| tera::Error::msg(format!("filter `{filter}` cannot use {value}: {e}")))
}

fn money(value: &Value, _: &Args) -> tera::Result<Value> {
    Ok(Value::String(parse::<Money>("money", value)?.display()))
}

/// A day as people write it, in UTC: the service is global and the dates are
/// billing boundaries, which Stripe also reports in UTC.
pub(crate) fn format_long_date(at: DateTime<Utc>) -> String {
    at.format("%-d %B %Y").to_string()
}

fn long_date(value: &Value, _: &Args) -> tera::Result<Value> {
    Ok(Value::String(format_long_date(parse::<DateTime<Utc>>("long_date", value)?)))
}

fn plan_name(value: &Value, _: &Args) -> tera::Result<Value> {
    Ok(Value::String(parse::<Tier>("plan_name", value)?.display_name().to_owned()))
}

fn plan_features(value: &Value, _: &Args) -> tera::Result<Value> {
    let features = parse::<Tier>("plan_features", value)?.features();
    Ok(Value::Array(features.iter().map(|f| Value::String((*f).to_owned())).collect()))
}

/// Marks an http(s) URL safe for `href="…"` after checking and escaping it.
/// Without it tera's autoescaping still keeps the page safe, but rewrites every
/// `/` as `&#x2F;`, which some mail clients' link scanners mangle.
struct Href;

impl Filter for Href {
    fn filter(&self, value: &Value, _: &Args) -> tera::Result<Value> {
        let url = value.as_str().ok_or_else(|| tera::Error::msg(format!("filter `href` needs a string, got {value}")))?;
        let lower = url.to_ascii_lowercase();
        let absolute_http = lower.starts_with("https://") || lower.starts_with("http://");
        if !absolute_http || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(tera::Error::msg(format!("filter `href` refuses `{url}`: not an absolute http(s) URL")));
        }
        let mut escaped = String::with_capacity(url.len());
        for c in url.chars() {
            match c {
                '&' => escaped.push_str("&amp;"),
                '"' => escaped.push_str("%22"),
                '\'' => escaped.push_str("%27"),
                '<' => escaped.push_str("%3C"),
                '>' => escaped.push_str("%3E"),
                '`' => escaped.push_str("%60"),
                c => escaped.push(c),
            }
        }
        Ok(Value::String(escaped))
    }

    fn is_safe(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(filter: &dyn Filter, value: Value) -> tera::Result<Value> {
        filter.filter(&value, &HashMap::new())
    }

    #[test]
    fn formats_money_dates_and_plans() {
        assert_eq!(apply(&money, json!({"amount": 1200, "currency": "jpy"})).unwrap(), json!("¥1,200"));
        assert_eq!(apply(&money, json!({"amount": 999, "currency": "usd"})).unwrap(), json!("$9.99"));
        assert_eq!(apply(&long_date, json!("2026-03-12T23:59:59Z")).unwrap(), json!("12 March 2026"));
        // A later offset that is still the 11th in UTC must show the 11th.
        assert_eq!(apply(&long_date, json!("2026-03-12T01:00:00+02:00")).unwrap(), json!("11 March 2026"));
        assert_eq!(apply(&plan_name, json!("enterprise")).unwrap(), json!("Enterprise"));
        assert_eq!(apply(&plan_features, json!("premium")).unwrap().as_array().unwrap().len(), Tier::Premium.features().len());
    }

    #[test]
    fn rejects_what_it_cannot_format() {
        assert!(apply(&money, json!(12)).is_err());
        assert!(apply(&long_date, json!("next tuesday")).is_err());
        assert!(apply(&plan_name, json!("gold")).is_err());
        assert!(apply(&Href, json!("javascript:alert(1)")).is_err());
        assert!(apply(&Href, json!(null)).is_err());
    }

    #[test]
    fn templates_cannot_read_the_environment() {
        let mut tera = Tera::default();
        register(&mut tera);
        let rendered = tera.render_str(r#"{{ get_env(name="PATH") }}"#, &tera::Context::new());
        assert!(rendered.is_err());
    }

    #[test]
    fn href_escapes_attribute_breakers_only() {
        let out = apply(&Href, json!("https://x.io/a/b?c=1&d=\"><script>")).unwrap();
        assert_eq!(out, json!("https://x.io/a/b?c=1&amp;d=%22%3E%3Cscript%3E"));
    }
}
