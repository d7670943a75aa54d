//! `/v1/webhook_endpoints`: endpoints the sim delivers signed events to.

use serde_json::{json, Value};

use super::{apply_metadata, newest_first, optional_string, paginate, Ctx};
use crate::config::{ChaosConfig, WebhookEndpointConfig};
use crate::error::ApiError;
use crate::fixtures::fixture;
use crate::ids::{new_id, random_id};
use crate::state::{Sim, WebhookEndpoint};
use crate::time::wall_now;

pub fn render(e: &WebhookEndpoint) -> Value {
    let mut t = fixture("webhook_endpoint");
    t.set("id", e.id.clone())
        .set("object", "webhook_endpoint")
        .set("api_version", super::events::API_VERSION)
        .set("application", Value::Null)
        .set("created", e.created)
        .set("description", e.description.clone())
        .set("enabled_events", json!(e.enabled_events))
        .set("livemode", false)
        .set("metadata", json!(e.metadata))
        .set("status", if e.enabled { "enabled" } else { "disabled" })
        .set("url", e.url.clone());
    t.into_value()
}

fn validate_url(url: &str) -> Result<(), ApiError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(ApiError::invalid_request(Some("url"), format!("Invalid URL: {url}. URLs must begin with http:// or https://."))
            .with_code("url_invalid"))
    }
}

fn validate_events(events: &[String]) -> Result<(), ApiError> {
    if events.is_empty() {
        return Err(ApiError::missing_param("enabled_events"));
    }
    if let Some(bad) = events.iter().find(|e| e.is_empty() || e.contains(char::is_whitespace)) {
        return Err(ApiError::invalid_request(Some("enabled_events"), format!("Invalid event type: `{bad}`")));
    }
    Ok(())
}

/// Registers an endpoint (API, CLI and in-process registration all end here).
pub fn insert(sim: &mut Sim, cfg: &WebhookEndpointConfig) -> Result<WebhookEndpoint, ApiError> {
    validate_url(&cfg.url)?;
    validate_events(&cfg.enabled_events)?;
    let seq = sim.next_seq();
    let endpoint = WebhookEndpoint {
        id: new_id("we"),
        seq,
        created: wall_now(),
        url: cfg.url.clone(),
        secret: cfg.secret.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| random_id("whsec", 32)),
        enabled_events: cfg.enabled_events.clone(),
        description: None,
        metadata: Default::default(),
        enabled: true,
        chaos: cfg.chaos.clone(),
    };
    sim.webhook_endpoints.insert(endpoint.id.clone(), endpoint.clone());
    Ok(endpoint)
}

/// Create returns the signing `secret` — the only time Stripe shows it, and the one
/// key the fixture (a retrieved endpoint) does not have.
/// `api_version` is accepted and ignored (every event uses the sim's version).
pub const CREATE_PARAMS: &[&str] = &["url", "enabled_events[]", "description", "metadata[*]", "api_version"];
pub const UPDATE_PARAMS: &[&str] = &["url", "enabled_events[]", "description", "metadata[*]", "disabled"];

pub fn create(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let cfg = WebhookEndpointConfig {
        url: p.required_str("url")?.to_string(),
        secret: None,
        enabled_events: p.str_list("enabled_events")?,
        chaos: None::<ChaosConfig>,
    };
    let endpoint = insert(sim, &cfg)?;
    if let Some(e) = sim.webhook_endpoints.get_mut(&endpoint.id) {
        e.description = optional_string(p, "description")?.flatten();
        apply_metadata(&mut e.metadata, p)?;
    }
    let e = &sim.webhook_endpoints[&endpoint.id];
    let mut obj = render(e);
    obj["secret"] = json!(e.secret);
    Ok(obj)
}

fn get<'a>(sim: &'a Sim, id: &str) -> Result<&'a WebhookEndpoint, ApiError> {
    sim.webhook_endpoints.get(id).ok_or_else(|| ApiError::no_such("webhook endpoint", id, Some("id")))
}

pub fn retrieve(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    Ok(render(get(sim, ctx.id(0))?))
}

pub fn update(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let mut next = get(sim, ctx.id(0))?.clone();
    if let Some(url) = p.str("url")? {
        validate_url(url)?;
        next.url = url.to_string();
    }
    if p.contains("enabled_events") {
        let events = p.str_list("enabled_events")?;
        validate_events(&events)?;
        next.enabled_events = events;
    }
    if let Some(d) = optional_string(p, "description")? {
        next.description = d;
    }
    if let Some(disabled) = p.bool("disabled")? {
        next.enabled = !disabled;
    }
    apply_metadata(&mut next.metadata, p)?;
    let obj = render(&next);
    sim.webhook_endpoints.insert(next.id.clone(), next);
    Ok(obj)
}

pub fn delete(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let id = get(sim, ctx.id(0))?.id.clone();
    sim.webhook_endpoints.remove(&id);
    sim.dispatcher.close_endpoint(&id);
    let mut t = fixture("deleted_webhook_endpoint");
    t.set("id", id).set("object", "webhook_endpoint").set("deleted", true);
    Ok(t.into_value())
}

pub fn list(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let items = newest_first(sim.webhook_endpoints.values(), |e| e.seq, |e| (e.id.clone(), render(e)));
    paginate(&ctx.params, items, "/v1/webhook_endpoints")
}
