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

/// Pagination parameters every list endpoint takes.
pub const LIST_PARAMS: &[&str] = &["limit", "starting_after", "ending_before"];

/// The parameters each route accepts, as bracketed patterns: `items[][price]` for an
/// indexed array of hashes, `lookup_keys[]` for an array of strings and a trailing
/// `[*]` (`metadata[*]`) for a free-form hash. `expand[]` is accepted everywhere.
/// A route missing here accepts nothing but `expand[]`.
pub fn allowed_params(route: &str) -> Vec<&'static str> {
    let own: &[&[&str]] = match route {
        "POST /v1/customers" => &[customers::CREATE_PARAMS],
        "POST /v1/customers/{id}" => &[customers::UPDATE_PARAMS],
        "GET /v1/customers" => &[customers::LIST_FILTERS, LIST_PARAMS],
        "GET /v1/customers/search" => &[customers::SEARCH_PARAMS],
        "GET /v1/customers/{id}/payment_methods" => &[&["type"], LIST_PARAMS],
        "POST /v1/payment_methods" => &[payment_methods::CREATE_PARAMS],
        "GET /v1/payment_methods" => &[&["customer", "type"], LIST_PARAMS],
        "POST /v1/payment_methods/{id}/attach" => &[&["customer"]],
        "POST /v1/products" => &[products::CREATE_PRODUCT_PARAMS],
        "POST /v1/products/{id}" => &[products::UPDATE_PRODUCT_PARAMS],
        "GET /v1/products" => &[&["active"], LIST_PARAMS],
        "POST /v1/prices" => &[products::CREATE_PRICE_PARAMS],
        "POST /v1/prices/{id}" => &[products::UPDATE_PRICE_PARAMS],
        "GET /v1/prices" => &[&["lookup_keys[]", "product", "active", "type"], LIST_PARAMS],
        "POST /v1/subscriptions" => &[subscriptions::CREATE_PARAMS],
        "POST /v1/subscriptions/{id}" => &[subscriptions::UPDATE_PARAMS],
        "DELETE /v1/subscriptions/{id}" => &[subscriptions::CANCEL_PARAMS],
        "POST /v1/subscriptions/{id}/resume" => &[&["billing_cycle_anchor"]],
        "GET /v1/subscriptions" => &[&["customer", "price", "status", "test_clock"], LIST_PARAMS],
        "GET /v1/invoices" => &[&["customer", "subscription", "status"], LIST_PARAMS],
        "GET /v1/invoices/{id}/lines" => &[LIST_PARAMS],
        "POST /v1/invoices/{id}/pay" => &[invoices::PAY_PARAMS],
        "GET /v1/invoiceitems" => &[&["customer", "pending"], LIST_PARAMS],
        "POST /v1/payment_intents/{id}/confirm" => &[invoices::CONFIRM_PARAMS],
        "GET /v1/events" => &[
            &["type", "types[]", "delivery_success", "created", "created[gt]", "created[gte]", "created[lt]", "created[lte]"],
            LIST_PARAMS,
        ],
        "POST /v1/webhook_endpoints" => &[webhook_endpoints::CREATE_PARAMS],
        "POST /v1/webhook_endpoints/{id}" => &[webhook_endpoints::UPDATE_PARAMS],
        "GET /v1/webhook_endpoints" | "GET /v1/test_helpers/test_clocks" => &[LIST_PARAMS],
        "POST /v1/test_helpers/test_clocks" => &[&["frozen_time", "name"]],
        "POST /v1/test_helpers/test_clocks/{id}/advance" => &[&["frozen_time"]],
        _ => &[],
    };
    let mut all: Vec<&'static str> = own.iter().flat_map(|l| l.iter().copied()).collect();
    all.push("expand[]");
    all
}

/// 400 `parameter_unknown` for the first parameter (in key order) that `allowed`
/// (see [`allowed_params`]) does not cover, named as sent: `items[0][colour]`.
pub fn check_params(params: &Params, allowed: &[&str]) -> Result<(), ApiError> {
    for key in params.keys() {
        if let Some(p) = params.get(key) {
            check_param(key, key, p, allowed)?;
        }
    }
    Ok(())
}

fn check_param(shown: &str, pattern: &str, p: &Param, allowed: &[&str]) -> Result<(), ApiError> {
    let free_form = |pattern: &str| {
        allowed.iter().any(|a| a.strip_suffix("[*]").is_some_and(|base| pattern.strip_prefix(base).is_some_and(|r| r.starts_with('['))))
    };
    let unknown =
        |name: &str| ApiError::invalid_request(Some(name), format!("Received unknown parameter: {name}")).with_code("parameter_unknown");
    match p {
        Param::Value(v) => {
            // `name=` (empty) unsets a hash or array whose members are allowed.
            let unsets = v.is_empty() && allowed.iter().any(|a| a.strip_prefix(pattern).is_some_and(|r| r.starts_with('[')));
            if allowed.contains(&pattern) || free_form(pattern) || unsets {
                Ok(())
            } else {
                Err(unknown(shown))
            }
        }
        Param::List(_) => {
            let elem = format!("{pattern}[]");
            if allowed.contains(&elem.as_str()) || free_form(&elem) {
                Ok(())
            } else {
                Err(unknown(&format!("{shown}[]")))
            }
        }
        Param::Map(map) => {
            for (k, v) in map {
                let seg = if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) { "[]".to_string() } else { format!("[{k}]") };
                check_param(&format!("{shown}[{k}]"), &format!("{pattern}{seg}"), v, allowed)?;
            }
            Ok(())
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
        "ii" => sim.invoice_items.get(id).map(|ii| invoices::render_invoice_item(sim, ii)),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(route: &str, body: &str) -> Result<(), Option<String>> {
        let p = Params::parse(body).unwrap();
        check_params(&p, &allowed_params(route)).map_err(|e| {
            assert_eq!(e.code, Some("parameter_unknown"));
            e.param
        })
    }

    #[test]
    fn nested_keys_are_checked_against_the_route() {
        let sub = "POST /v1/subscriptions";
        assert_eq!(check(sub, "customer=c&items[0][price]=p&items[1][quantity]=2&expand[]=latest_invoice"), Ok(()));
        assert_eq!(check(sub, "expand[0]=latest_invoice&expand[1]=customer"), Ok(()));
        assert_eq!(check(sub, "metadata[anything]=1&metadata[0]=2&items[0][metadata][k]=v"), Ok(()));
        assert_eq!(check(sub, "metadata=&items[0][metadata]="), Ok(()));
        assert_eq!(check(sub, "trial_settings[end_behavior][missing_payment_method]=cancel&payment_settings[x][y]=z"), Ok(()));
        assert_eq!(check(sub, "items[0][colour]=red"), Err(Some("items[0][colour]".into())));
        assert_eq!(check(sub, "trial_settings[end_behavior][other]=1"), Err(Some("trial_settings[end_behavior][other]".into())));
        assert_eq!(check(sub, "coupon=X"), Err(Some("coupon".into())));
        assert_eq!(check(sub, "customer[id]=c"), Err(Some("customer[id]".into())));
        assert_eq!(check("GET /v1/customers/{id}", "expand[]=default_source"), Ok(()));
        assert_eq!(check("GET /v1/customers/{id}", "limit=3"), Err(Some("limit".into())));
        assert_eq!(check("GET /v1/prices", "lookup_keys[0]=a&lookup_keys[1]=b&limit=3"), Ok(()));
        assert_eq!(check("GET /v1/prices", "lookup_keys[]=a"), Ok(()));
        assert_eq!(check("GET /v1/prices", "lookup_keys=a"), Err(Some("lookup_keys".into())));
        assert_eq!(check("POST /v1/webhook_endpoints", "url=u&enabled_events[]=*"), Ok(()));
    }
}
