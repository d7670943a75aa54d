//! Business metrics in CloudWatch Embedded Metric Format: one JSON document per line
//! on stdout, which Lambda ships to CloudWatch Logs and CloudWatch turns into metrics
//! with no API call. Dimensions are few and bounded (tier, kind, outcome, job) —
//! never a user id.

use serde_json::{json, Map, Value};

pub const NAMESPACE: &str = "LogiScore/Subscriptions";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One count of `metric` under `dimensions`, emitted at once.
pub fn count(metric: &'static str, dimensions: &[(&'static str, &str)]) {
    dimensions.iter().fold(Metrics::new(), |m, (name, value)| m.dimension(name, *value)).count(metric, 1).emit();
}

/// One EMF document: a set of dimension values and the metric values recorded under them.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    dimensions: Vec<(&'static str, String)>,
    values: Vec<(&'static str, Unit, f64)>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn dimension(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.dimensions.push((name, value.into()));
        self
    }

    pub fn count(mut self, name: &'static str, value: u64) -> Self {
        self.values.push((name, Unit::Count, value as f64));
        self
    }

    pub fn millis(mut self, name: &'static str, value: u128) -> Self {
        self.values.push((name, Unit::Milliseconds, value as f64));
        self
    }

    /// The EMF document as JSON.
    pub fn to_json(&self, timestamp_ms: i64) -> Value {
        let mut doc = Map::new();
        let dimension_names: Vec<&str> = self.dimensions.iter().map(|(n, _)| *n).collect();
        let metrics: Vec<Value> = self.values.iter().map(|(n, u, _)| json!({ "Name": n, "Unit": u.as_str() })).collect();
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{ "Namespace": NAMESPACE, "Dimensions": [dimension_names], "Metrics": metrics }]
            }),
        );
        for (name, value) in &self.dimensions {
            doc.insert((*name).into(), Value::String(value.clone()));
        }
        for (name, _, value) in &self.values {
            doc.insert((*name).into(), json!(value));
        }
        Value::Object(doc)
    }

    /// Writes the document as one line to stdout.
    pub fn emit(&self) {
        if self.values.is_empty() {
            return;
        }
        // `println!` (not a raw stdout handle) so test harnesses capture it like any output.
        println!("{}", self.to_json(chrono::Utc::now().timestamp_millis()));
    }
}

/// One call to a dependency (Stripe, DynamoDB): `calls` (Count, 1) and `latency`
/// (Milliseconds) under `Operation` and `Outcome`, both from small fixed sets the caller
/// names (an operation label and e.g. `ok`/`error`), never an id.
pub fn dependency_call(
    calls: &'static str,
    latency: &'static str,
    operation: &'static str,
    outcome: &'static str,
    elapsed: std::time::Duration,
) {
    Metrics::new()
        .dimension("Operation", operation)
        .dimension("Outcome", outcome)
        .count(calls, 1)
        .millis(latency, elapsed.as_millis())
        .emit();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_follow_the_emf_shape() {
        let doc = Metrics::new().dimension("Tier", "premium").count("SubscriptionsCreated", 1).to_json(1_700_000_000_000);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([["Tier"]]));
        assert_eq!(directive["Metrics"], json!([{ "Name": "SubscriptionsCreated", "Unit": "Count" }]));
        assert_eq!(doc["Tier"], "premium");
        assert_eq!(doc["SubscriptionsCreated"], 1.0);
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000i64);
    }
}
