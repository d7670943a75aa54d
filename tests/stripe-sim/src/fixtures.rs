//! Stripe's canonical example objects, used as templates for every response.
//!
//! `fixtures/stripe-fixtures.json` is a subset of `fixtures3.json` from Stripe's public
//! OpenAPI repository (MIT licence in `fixtures/LICENSE`). Each response starts as a
//! clone of the fixture object and the sim overwrites fields, so every object carries
//! exactly the fixture's top-level key set — the shape of the API version async-stripe
//! pins. Nested example values that make no sense for a fresh object (a fake discount,
//! `"currency": "currency"`) are overwritten by the renderers as well.

use std::sync::OnceLock;

use serde_json::{Map, Value};

static FIXTURES: OnceLock<Map<String, Value>> = OnceLock::new();

const FIXTURES_JSON: &str = include_str!("../fixtures/stripe-fixtures.json");

fn resources() -> &'static Map<String, Value> {
    FIXTURES.get_or_init(|| {
        // The file is part of the crate and checked by the tests; a broken file is a
        // build defect, so an empty map (every render would then miss keys and the
        // fidelity tests fail loudly) is preferable to a panic in a server thread.
        serde_json::from_str::<Value>(FIXTURES_JSON)
            .ok()
            .and_then(|v| v.get("resources").and_then(Value::as_object).cloned())
            .unwrap_or_default()
    })
}

/// The fixture object for `resource` (e.g. `"customer"`, `"test_helpers.test_clock"`).
pub fn fixture(resource: &str) -> Template {
    let obj = resources().get(resource).and_then(Value::as_object).cloned().unwrap_or_default();
    Template { obj, resource: resource.to_string() }
}

/// The top-level key set of a fixture, for tests and debug assertions.
pub fn fixture_keys(resource: &str) -> Vec<String> {
    let mut keys: Vec<String> =
        resources().get(resource).and_then(Value::as_object).map(|o| o.keys().cloned().collect()).unwrap_or_default();
    keys.sort();
    keys
}

/// A fixture object being filled in. `set` only overwrites keys the fixture has, so
/// a typo in a renderer cannot add a key Stripe would not send.
#[derive(Debug, Clone)]
pub struct Template {
    obj: Map<String, Value>,
    resource: String,
}

impl Template {
    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        match self.obj.get_mut(key) {
            Some(slot) => *slot = value.into(),
            None => {
                debug_assert!(false, "fixture `{}` has no key `{key}`", self.resource);
                tracing::error!(resource = %self.resource, key, "renderer wrote a key the fixture does not have");
            }
        }
        self
    }

    pub fn into_value(self) -> Value {
        Value::Object(self.obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_load() {
        for r in [
            "customer",
            "deleted_customer",
            "payment_method",
            "product",
            "price",
            "plan",
            "subscription",
            "subscription_item",
            "invoice",
            "line_item",
            "invoiceitem",
            "invoice_payment",
            "payment_intent",
            "event",
            "test_helpers.test_clock",
            "webhook_endpoint",
        ] {
            assert!(!fixture_keys(r).is_empty(), "{r}");
        }
    }
}
