//! `/v1/events`: the event log, newest first.

use serde_json::{json, Value};

use super::{paginate, Ctx};
use crate::error::ApiError;
use crate::fixtures::fixture;
use crate::state::{Event, Sim};

/// The API version async-stripe pins; every event claims it.
pub const API_VERSION: &str = "2026-09-30.endive";

pub fn render(e: &Event) -> Value {
    let mut data = json!({ "object": e.object });
    if let Some(prev) = &e.previous_attributes {
        data["previous_attributes"] = prev.clone();
    }
    let mut t = fixture("event");
    t.set("id", e.id.clone())
        .set("object", "event")
        .set("api_version", API_VERSION)
        .set("created", e.created)
        .set("data", data)
        .set("livemode", false)
        .set("pending_webhooks", e.pending_webhooks)
        .set("request", json!({ "id": e.request_id, "idempotency_key": e.idempotency_key }))
        .set("type", e.type_.clone());
    t.into_value()
}

pub fn retrieve(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    sim.event_index
        .get(ctx.id(0))
        .and_then(|i| sim.events.get(*i))
        .map(render)
        .ok_or_else(|| ApiError::no_such("event", ctx.id(0), Some("id")))
}

/// `type` matches exactly or with a trailing `*` wildcard (`customer.subscription.*`).
fn type_matches(pattern: &str, t: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => t.starts_with(prefix),
        None => pattern == t,
    }
}

/// `GET /v1/events` with `type` or `types[]`, newest first.
pub fn list(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let single = p.str("type")?.map(str::to_string);
    let many = p.str_list("types")?;
    if single.is_some() && !many.is_empty() {
        return Err(ApiError::invalid_request(Some("types"), "You may only specify one of these parameters: type, types."));
    }
    let items: Vec<(String, Value)> = sim
        .events
        .iter()
        .rev()
        .filter(|e| match &single {
            Some(t) => type_matches(t, &e.type_),
            None => many.is_empty() || many.iter().any(|t| type_matches(t, &e.type_)),
        })
        .map(|e| (e.id.clone(), render(e)))
        .collect();
    paginate(p, items, "/v1/events")
}

#[cfg(test)]
mod tests {
    #[test]
    fn wildcard() {
        assert!(super::type_matches("customer.subscription.*", "customer.subscription.updated"));
        assert!(!super::type_matches("customer.subscription.*", "customer.updated"));
        assert!(super::type_matches("invoice.paid", "invoice.paid"));
    }
}
