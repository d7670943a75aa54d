//! API resources: one module per Stripe resource, each with its renderers (fixture →
//! JSON) and request handlers. Handlers run with the state lock held and return the
//! response object; `server.rs` applies `expand[]`, idempotency and encoding.

pub mod customers;
pub mod events;
pub mod invoices;
pub mod payment_methods;
pub mod products;
pub mod subscriptions;
pub mod test_clocks;
pub mod webhook_endpoints;

use serde_json::{json, Value};

use crate::error::ApiError;
use crate::form::{Param, Params};
use crate::state::{Metadata, Sim};

/// What a handler gets: decoded parameters and the ids from the URL path.
pub struct Ctx {
    pub params: Params,
    pub ids: Vec<String>,
}

impl Ctx {
    /// The `n`th id in the path (`/v1/customers/{0}`, `/v1/customers/{0}/…/{1}`).
    pub fn id(&self, n: usize) -> &str {
        self.ids.get(n).map(String::as_str).unwrap_or("")
    }
}

pub type Handler = fn(&mut Sim, &Ctx) -> Result<Value, ApiError>;

/// A Stripe list object over `items` (already sorted newest first), honouring `limit`,
/// `starting_after` and `ending_before`.
pub fn paginate(params: &Params, items: Vec<(String, Value)>, url: &str) -> Result<Value, ApiError> {
    let limit = match params.i64("limit")? {
        None => 10,
        Some(l) if (1..=100).contains(&l) => l as usize,
        Some(_) => return Err(ApiError::invalid_request(Some("limit"), "Invalid limit: must be between 1 and 100.")),
    };
    let position = |key: &str| -> Result<Option<usize>, ApiError> {
        match params.str(key)? {
            None | Some("") => Ok(None),
            Some(id) => items
                .iter()
                .position(|(i, _)| i == id)
                .map(Some)
                .ok_or_else(|| ApiError::invalid_request(Some(key), format!("No such object: '{id}'")).with_code("resource_missing")),
        }
    };
    let (page, has_more): (Vec<Value>, bool) = if let Some(p) = position("starting_after")? {
        let rest = &items[p + 1..];
        (rest.iter().take(limit).map(|(_, v)| v.clone()).collect(), rest.len() > limit)
    } else if let Some(p) = position("ending_before")? {
        let before = &items[..p];
        let start = before.len().saturating_sub(limit);
        (before[start..].iter().map(|(_, v)| v.clone()).collect(), start > 0)
    } else {
        (items.iter().take(limit).map(|(_, v)| v.clone()).collect(), items.len() > limit)
    };
    Ok(json!({ "object": "list", "data": page, "has_more": has_more, "url": url }))
}

/// Applies Stripe's metadata update rules: `metadata[k]=v` sets, `metadata[k]=` removes
/// one key, `metadata=` clears all. Enforces Stripe's limits (50 keys, 40/500 chars).
pub fn apply_metadata(target: &mut Metadata, params: &Params) -> Result<(), ApiError> {
    match params.get("metadata") {
        None => Ok(()),
        Some(Param::Value(v)) if v.is_empty() => {
            target.clear();
            Ok(())
        }
        Some(Param::Map(map)) => {
            for (k, v) in map {
                let name = format!("metadata[{k}]");
                match v {
                    Param::Value(v) if v.is_empty() => {
                        target.remove(k);
                    }
                    Param::Value(v) => {
                        if k.chars().count() > 40 {
                            return Err(ApiError::invalid_request(
                                Some(&name),
                                "Metadata keys can have a maximum length of 40 characters.",
                            ));
                        }
                        if v.chars().count() > 500 {
                            return Err(ApiError::invalid_request(
                                Some(&name),
                                "Metadata values can have a maximum length of 500 characters.",
                            ));
                        }
                        target.insert(k.clone(), v.clone());
                    }
                    _ => return Err(ApiError::invalid_request(Some(&name), "Metadata values must be strings.")),
                }
            }
            if target.len() > 50 {
                return Err(ApiError::invalid_request(Some("metadata"), "Metadata can have a maximum of 50 keys."));
            }
            Ok(())
        }
        Some(_) => Err(ApiError::invalid_request(Some("metadata"), "Invalid metadata: must be a hash.")),
    }
}

pub fn metadata_json(m: &Metadata) -> Value {
    json!(m)
}

/// Optional string param where an empty string means "unset" (Stripe's convention).
pub fn optional_string(params: &Params, key: &str) -> Result<Option<Option<String>>, ApiError> {
    Ok(params.str(key)?.map(|v| if v.is_empty() { None } else { Some(v.to_string()) }))
}

/// `9.99 USD` for line descriptions.
pub fn format_money(amount: i64, currency: &str) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    format!("{sign}{}.{:02} {}", abs / 100, abs % 100, currency.to_uppercase())
}

/// Logs (and otherwise ignores) top-level parameters a handler does not implement, so
/// a client sending a real Stripe parameter the sim lacks is told in the sim's log.
pub fn warn_unknown(params: &Params, known: &[&str], endpoint: &str) {
    for key in params.keys() {
        if key != "expand" && !known.contains(&key) {
            tracing::warn!(endpoint, param = key, "stripe-sim ignores this parameter");
        }
    }
}

/// Renders any object by id, for `expand[]`.
pub fn render_by_id(sim: &Sim, id: &str) -> Option<Value> {
    let prefix = id.split('_').next().unwrap_or("");
    match prefix {
        "cus" => sim.customers.get(id).map(|c| customers::render(sim, c)),
        "pm" => sim.payment_methods.get(id).map(payment_methods::render),
        "prod" => sim.products.get(id).map(products::render_product),
        "price" => sim.prices.get(id).map(products::render_price),
        "sub" => sim.subscriptions.get(id).map(|s| subscriptions::render(sim, s)),
        "in" => sim.invoices.get(id).map(|i| invoices::render(sim, i)),
        "pi" => sim.payment_intents.get(id).map(|p| invoices::render_payment_intent(sim, p)),
        "ii" => sim.invoice_items.get(id).map(invoices::render_invoice_item),
        "clock" => sim.test_clocks.get(id).map(|c| test_clocks::render(c, "ready")),
        _ => None,
    }
}

/// Applies `expand[]` paths (`latest_invoice`, `latest_invoice.payments`,
/// `data.customer`, …) to a response object. An id string on the path is replaced by
/// the object; on an invoice, the includable `payments` and `confirmation_secret`
/// fields are added.
pub fn expand(sim: &Sim, value: &mut Value, paths: &[String]) -> Result<(), ApiError> {
    for path in paths {
        let segments: Vec<&str> = path.split('.').collect();
        // Stripe allows four levels of expansion; list `data` hops do not count.
        let depth = segments.iter().filter(|s| **s != "data").count();
        if depth > 4 || segments.iter().any(|s| s.is_empty()) {
            return Err(ApiError::invalid_request(Some("expand"), format!("Invalid expand path `{path}` (at most 4 levels).")));
        }
        expand_path(sim, value, &segments, path)?;
    }
    Ok(())
}

fn expand_path(sim: &Sim, value: &mut Value, segments: &[&str], full: &str) -> Result<(), ApiError> {
    let Some((first, rest)) = segments.split_first() else {
        return Ok(());
    };
    let Some(obj) = value.as_object_mut() else {
        return Ok(());
    };
    let not_expandable = || ApiError::invalid_request(Some("expand"), format!("This property cannot be expanded ({full})."));
    // Lists: `data.x` applies to every element.
    let is_list = matches!(obj.get("object").and_then(Value::as_str), Some("list" | "search_result"));
    if is_list && *first == "data" {
        if let Some(Value::Array(items)) = obj.get_mut("data") {
            for item in items {
                expand_path(sim, item, rest, full)?;
            }
        }
        return Ok(());
    }
    if obj.get("object").and_then(Value::as_str) == Some("invoice") && (*first == "payments" || *first == "confirmation_secret") {
        let id = obj.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        let inv = sim.invoices.get(&id).ok_or_else(not_expandable)?;
        let mut included =
            if *first == "payments" { invoices::render_payments(sim, inv) } else { invoices::render_confirmation_secret(sim, inv) };
        expand_path(sim, &mut included, rest, full)?;
        obj.insert((*first).to_string(), included);
        return Ok(());
    }
    match obj.get_mut(*first) {
        Some(Value::String(id)) => {
            let mut rendered = render_by_id(sim, id).ok_or_else(not_expandable)?;
            expand_path(sim, &mut rendered, rest, full)?;
            obj.insert((*first).to_string(), rendered);
            Ok(())
        }
        Some(inner @ Value::Object(_)) => expand_path(sim, inner, rest, full),
        // A null reference stays null, as with Stripe.
        Some(Value::Null) => Ok(()),
        _ => Err(not_expandable()),
    }
}

/// Sorts records newest first by their sequence number and renders them.
pub fn newest_first<T>(
    items: impl Iterator<Item = T>,
    seq: impl Fn(&T) -> u64,
    render: impl Fn(&T) -> (String, Value),
) -> Vec<(String, Value)> {
    let mut v: Vec<T> = items.collect();
    v.sort_by_key(|t| std::cmp::Reverse(seq(t)));
    v.iter().map(render).collect()
}

/// Convenience for nested hash params: `trial_settings[end_behavior][missing_payment_method]`.
pub fn nested_str<'a>(params: &'a Params, path: &[&str]) -> Result<Option<&'a str>, ApiError> {
    let name = path.iter().enumerate().map(|(i, p)| if i == 0 { p.to_string() } else { format!("[{p}]") }).collect::<String>();
    let Some((first, rest)) = path.split_first() else {
        return Ok(None);
    };
    let mut current: &Param = match params.get(first) {
        None => return Ok(None),
        Some(p) => p,
    };
    for seg in rest {
        current = match current {
            Param::Map(m) => match m.get(*seg) {
                None => return Ok(None),
                Some(p) => p,
            },
            _ => return Err(ApiError::invalid_request(Some(&name), format!("Invalid hash for `{name}`."))),
        };
    }
    match current {
        Param::Value(v) => Ok(Some(v.as_str())),
        _ => Err(ApiError::invalid_request(Some(&name), format!("Invalid string: `{name}`."))),
    }
}
