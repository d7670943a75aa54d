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

/// Events older than the retention are gone, as at Stripe.
fn retained(sim: &Sim, e: &Event) -> bool {
    let retention = i64::try_from(sim.config.event_retention.as_secs()).unwrap_or(i64::MAX);
    crate::time::wall_now().saturating_sub(e.recorded_at) < retention
}

pub fn retrieve(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    sim.event_index
        .get(ctx.id(0))
        .and_then(|i| sim.events.get(*i))
        .filter(|e| retained(sim, e))
        .map(render)
        .ok_or_else(|| ApiError::no_such("event", ctx.id(0), Some("id")))
}

/// `created` as Stripe filters lists: an exact timestamp, or `created[gt|gte|lt|lte]`.
fn created_filter(params: &crate::form::Params) -> Result<impl Fn(i64) -> bool, ApiError> {
    let mut bounds: Vec<(&'static str, i64)> = Vec::new();
    match params.get("created") {
        None => {}
        Some(crate::form::Param::Map(map)) => {
            // The route's parameter check has refused any other key.
            for op in ["gt", "gte", "lt", "lte"] {
                if let Some(value) = crate::form::map_i64(map, op, &format!("created[{op}]"))? {
                    bounds.push((op, value));
                }
            }
        }
        Some(_) => bounds.push(("eq", params.i64("created")?.unwrap_or_default())),
    }
    Ok(move |t: i64| {
        bounds.iter().all(|(op, v)| match *op {
            "gt" => t > *v,
            "gte" => t >= *v,
            "lt" => t < *v,
            "lte" => t <= *v,
            _ => t == *v,
        })
    })
}

/// `type` matches exactly or with a trailing `*` wildcard (`customer.subscription.*`).
fn type_matches(pattern: &str, t: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => t.starts_with(prefix),
        None => pattern == t,
    }
}

/// `GET /v1/events` with `type` or `types[]`, `created` and `delivery_success`, newest first.
pub fn list(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let single = p.str("type")?.map(str::to_string);
    let many = p.str_list("types")?;
    if single.is_some() && !many.is_empty() {
        return Err(ApiError::invalid_request(Some("types"), "You may only specify one of these parameters: type, types."));
    }
    let created = created_filter(p)?;
    let delivery_success = p.bool("delivery_success")?;
    // Newest first; new events only ever go in front, so a `starting_after` cursor keeps
    // its place while events are being written.
    let items: Vec<(String, Value)> = sim
        .events
        .iter()
        .rev()
        .filter(|e| retained(sim, e) && created(e.created))
        .filter(|e| match &single {
            Some(t) => type_matches(t, &e.type_),
            None => many.is_empty() || many.iter().any(|t| type_matches(t, &e.type_)),
        })
        .filter(|e| delivery_success.is_none_or(|want| sim.dispatcher.delivered_everywhere(&e.id, e.pending_webhooks) == want))
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
