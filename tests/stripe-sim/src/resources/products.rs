//! `/v1/products` and `/v1/prices` (plus the legacy `plan` view of a price that
//! subscription items still carry).

use serde_json::{json, Value};

use super::{apply_metadata, metadata_json, nested_str, newest_first, optional_string, paginate, Ctx};
use crate::error::ApiError;
use crate::fixtures::fixture;
use crate::form::Params;
use crate::ids::new_id;
use crate::state::{Price, Product, Recurring, Sim};
use crate::time::{wall_now, Interval};

pub fn render_product(p: &Product) -> Value {
    let mut t = fixture("product");
    t.set("id", p.id.clone())
        .set("object", "product")
        .set("active", p.active)
        .set("created", p.created)
        .set("default_price", p.default_price.clone())
        .set("description", p.description.clone())
        .set("images", json!([]))
        .set("livemode", false)
        .set("marketing_features", json!([]))
        .set("metadata", metadata_json(&p.metadata))
        .set("name", p.name.clone())
        .set("package_dimensions", Value::Null)
        .set("shippable", Value::Null)
        .set("statement_descriptor", Value::Null)
        .set("tax_code", Value::Null)
        .set("tax_details", Value::Null)
        .set("type", "service")
        .set("unit_label", Value::Null)
        .set("updated", p.updated)
        .set("url", Value::Null);
    t.into_value()
}

pub fn render_price(p: &Price) -> Value {
    let mut t = fixture("price");
    t.set("id", p.id.clone())
        .set("object", "price")
        .set("active", p.active)
        .set("billing_scheme", "per_unit")
        .set("created", p.created)
        .set("currency", p.currency.clone())
        .set("custom_unit_amount", Value::Null)
        .set("livemode", false)
        .set("lookup_key", p.lookup_key.clone())
        .set("metadata", metadata_json(&p.metadata))
        .set("nickname", p.nickname.clone())
        .set("product", p.product.clone())
        .set(
            "recurring",
            match &p.recurring {
                Some(r) => json!({
                    "interval": r.interval.as_str(),
                    "interval_count": r.interval_count,
                    "meter": null,
                    "trial_period_days": null,
                    "usage_type": "licensed"
                }),
                None => Value::Null,
            },
        )
        .set("tax_behavior", "unspecified")
        .set("tiers_mode", Value::Null)
        .set("transform_quantity", Value::Null)
        .set("type", if p.recurring.is_some() { "recurring" } else { "one_time" })
        .set("unit_amount", p.unit_amount)
        .set("unit_amount_decimal", p.unit_amount.to_string());
    t.into_value()
}

/// The deprecated `plan` object that still rides along on subscription items.
pub fn render_plan(p: &Price) -> Value {
    let (interval, count) = p.recurring.as_ref().map(|r| (r.interval.as_str(), r.interval_count)).unwrap_or(("month", 1));
    let mut t = fixture("plan");
    t.set("id", p.id.clone())
        .set("object", "plan")
        .set("active", p.active)
        .set("amount", p.unit_amount)
        .set("amount_decimal", p.unit_amount.to_string())
        .set("billing_scheme", "per_unit")
        .set("created", p.created)
        .set("currency", p.currency.clone())
        .set("interval", interval)
        .set("interval_count", count)
        .set("livemode", false)
        .set("metadata", metadata_json(&p.metadata))
        .set("meter", Value::Null)
        .set("nickname", p.nickname.clone())
        .set("product", p.product.clone())
        .set("tiers_mode", Value::Null)
        .set("transform_usage", Value::Null)
        .set("trial_period_days", Value::Null)
        .set("usage_type", "licensed");
    t.into_value()
}

fn valid_custom_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Inserts a product (used by the API and by the seed helper). Emits `product.created`
/// when `emit` is set.
pub fn insert_product(sim: &mut Sim, id: Option<String>, name: &str, description: Option<String>, emit: bool) -> String {
    let id = id.unwrap_or_else(|| new_id("prod"));
    let now = wall_now();
    let seq = sim.next_seq();
    sim.products.insert(
        id.clone(),
        Product {
            id: id.clone(),
            seq,
            created: now,
            updated: now,
            name: name.to_string(),
            description,
            active: true,
            metadata: Default::default(),
            default_price: None,
        },
    );
    if emit {
        let obj = render_product(&sim.products[&id]);
        sim.emit("product.created", obj, None, now);
    }
    id
}

pub const CREATE_PRODUCT_PARAMS: &[&str] = &["id", "name", "description", "metadata[*]", "active"];
pub const UPDATE_PRODUCT_PARAMS: &[&str] = &["name", "description", "metadata[*]", "active", "default_price"];
pub const CREATE_PRICE_PARAMS: &[&str] = &[
    "currency",
    "unit_amount",
    "recurring[interval]",
    "recurring[interval_count]",
    "product",
    "product_data[name]",
    "lookup_key",
    "transfer_lookup_key",
    "nickname",
    "metadata[*]",
    "active",
];
pub const UPDATE_PRICE_PARAMS: &[&str] = &["active", "nickname", "metadata[*]", "lookup_key", "transfer_lookup_key"];

pub fn create_product(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let name = p.required_str("name")?;
    let id = match p.str("id")? {
        None | Some("") => None,
        Some(id) if !valid_custom_id(id) => {
            return Err(ApiError::invalid_request(Some("id"), "Invalid id: use letters, digits, `_` and `-` only."))
        }
        Some(id) if sim.products.contains_key(id) => {
            return Err(ApiError::invalid_request(Some("id"), format!("Product already exists: {id}")).with_code("resource_already_exists"))
        }
        Some(id) => Some(id.to_string()),
    };
    let mut metadata = Default::default();
    apply_metadata(&mut metadata, p)?;
    let active = p.bool("active")?.unwrap_or(true);
    let description = optional_string(p, "description")?.flatten();
    let id = insert_product(sim, id, name, description, false);
    if let Some(prod) = sim.products.get_mut(&id) {
        prod.metadata = metadata;
        prod.active = active;
    }
    let obj = render_product(&sim.products[&id]);
    sim.emit("product.created", obj.clone(), None, wall_now());
    Ok(obj)
}

pub fn retrieve_product(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    sim.products.get(ctx.id(0)).map(render_product).ok_or_else(|| ApiError::no_such("product", ctx.id(0), Some("id")))
}

pub fn update_product(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let id = ctx.id(0).to_string();
    let current = sim.products.get(&id).cloned().ok_or_else(|| ApiError::no_such("product", &id, Some("id")))?;
    let mut next = current.clone();
    if let Some(name) = p.str("name")? {
        if name.is_empty() {
            return Err(ApiError::invalid_value("name", "You passed an empty string for 'name'."));
        }
        next.name = name.to_string();
    }
    if let Some(d) = optional_string(p, "description")? {
        next.description = d;
    }
    if let Some(a) = p.bool("active")? {
        next.active = a;
    }
    if let Some(dp) = optional_string(p, "default_price")? {
        if let Some(price) = &dp {
            if sim.prices.get(price).is_none_or(|pr| pr.product != id) {
                return Err(ApiError::no_such_param("price", price, "default_price"));
            }
        }
        next.default_price = dp;
    }
    apply_metadata(&mut next.metadata, p)?;
    let now = wall_now();
    next.updated = now;
    let before = render_product(&current);
    let after = render_product(&next);
    sim.products.insert(id, next);
    sim.emit_updated("product.updated", &before, after.clone(), now);
    Ok(after)
}

pub fn list_products(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let active = ctx.params.bool("active")?;
    let items = newest_first(
        sim.products.values().filter(|p| active.is_none_or(|a| p.active == a)),
        |p| p.seq,
        |p| (p.id.clone(), render_product(p)),
    );
    paginate(&ctx.params, items, "/v1/products")
}

fn parse_recurring(p: &Params) -> Result<Option<Recurring>, ApiError> {
    let Some(interval) = nested_str(p, &["recurring", "interval"])? else {
        if p.contains("recurring") {
            return Err(ApiError::missing_param("recurring[interval]"));
        }
        return Ok(None);
    };
    let interval = Interval::parse(interval).ok_or_else(|| {
        ApiError::invalid_request(
            Some("recurring[interval]"),
            format!("Invalid recurring[interval]: must be one of day, week, month, or year (got `{interval}`)."),
        )
    })?;
    let count = match nested_str(p, &["recurring", "interval_count"])? {
        None => 1,
        Some(c) => {
            c.parse::<u32>().map_err(|_| ApiError::invalid_request(Some("recurring[interval_count]"), format!("Invalid integer: {c}")))?
        }
    };
    // Stripe allows at most one year between invoices.
    let max = match interval {
        Interval::Day => 365,
        Interval::Week => 52,
        Interval::Month => 12,
        Interval::Year => 1,
    };
    if count == 0 || count > max {
        return Err(ApiError::invalid_request(
            Some("recurring[interval_count]"),
            "Invalid recurring[interval_count]: the maximum interval is one year (1 year, 12 months, 52 weeks or 365 days).",
        ));
    }
    Ok(Some(Recurring { interval, interval_count: count }))
}

fn lookup_key_owner(sim: &Sim, key: &str) -> Option<String> {
    sim.prices.values().find(|p| p.lookup_key.as_deref() == Some(key)).map(|p| p.id.clone())
}

/// Gives `key` to `price_id`, taking it from another price only with `transfer_lookup_key`.
fn claim_lookup_key(sim: &mut Sim, key: &str, price_id: &str, transfer: bool) -> Result<(), ApiError> {
    if let Some(owner) = lookup_key_owner(sim, key) {
        if owner != price_id {
            if !transfer {
                return Err(ApiError::invalid_request(
                    Some("lookup_key"),
                    format!("A price (`{owner}`) already uses that lookup key. Pass `transfer_lookup_key=true` to move it."),
                ));
            }
            if let Some(p) = sim.prices.get_mut(&owner) {
                p.lookup_key = None;
            }
        }
    }
    Ok(())
}

/// Inserts a price (used by the API and by the seed helper).
pub fn insert_price(sim: &mut Sim, price: Price) -> String {
    let id = price.id.clone();
    if let Some(prod) = sim.products.get_mut(&price.product) {
        if prod.default_price.is_none() {
            prod.default_price = Some(id.clone());
        }
    }
    sim.prices.insert(id.clone(), price);
    id
}

pub fn create_price(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let currency = p.required_str("currency")?.to_ascii_lowercase();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err(ApiError::invalid_request(Some("currency"), format!("Invalid currency: {currency}")));
    }
    let unit_amount = p.i64("unit_amount")?.ok_or_else(|| ApiError::missing_param("unit_amount"))?;
    if !(0..=99_999_999).contains(&unit_amount) {
        return Err(ApiError::invalid_request(Some("unit_amount"), "Invalid unit_amount: must be between 0 and 99999999."));
    }
    let recurring = parse_recurring(p)?;
    let product_name = nested_str(p, &["product_data", "name"])?;
    let product = match (p.str("product")?, product_name) {
        (Some(prod), None) if !prod.is_empty() => {
            if !sim.products.contains_key(prod) {
                return Err(ApiError::no_such_param("product", prod, "product"));
            }
            prod.to_string()
        }
        (None, Some(name)) if !name.is_empty() => insert_product(sim, None, name, None, true),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_request(Some("product"), "You may only specify one of these parameters: product, product_data."))
        }
        _ => return Err(ApiError::missing_param("product")),
    };
    let id = new_id("price");
    let lookup_key = p.str("lookup_key")?.filter(|k| !k.is_empty()).map(str::to_string);
    if let Some(key) = &lookup_key {
        claim_lookup_key(sim, key, &id, p.bool("transfer_lookup_key")?.unwrap_or(false))?;
    }
    let mut metadata = Default::default();
    apply_metadata(&mut metadata, p)?;
    let seq = sim.next_seq();
    let price = Price {
        id: id.clone(),
        seq,
        created: wall_now(),
        product,
        currency,
        unit_amount,
        recurring,
        lookup_key,
        nickname: optional_string(p, "nickname")?.flatten(),
        active: p.bool("active")?.unwrap_or(true),
        metadata,
    };
    insert_price(sim, price);
    let obj = render_price(&sim.prices[&id]);
    sim.emit("price.created", obj.clone(), None, wall_now());
    Ok(obj)
}

pub fn retrieve_price(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    sim.prices.get(ctx.id(0)).map(render_price).ok_or_else(|| ApiError::no_such("price", ctx.id(0), Some("id")))
}

pub fn update_price(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let id = ctx.id(0).to_string();
    let current = sim.prices.get(&id).cloned().ok_or_else(|| ApiError::no_such("price", &id, Some("id")))?;
    let mut next = current.clone();
    if let Some(a) = p.bool("active")? {
        next.active = a;
    }
    if let Some(n) = optional_string(p, "nickname")? {
        next.nickname = n;
    }
    apply_metadata(&mut next.metadata, p)?;
    if let Some(key) = optional_string(p, "lookup_key")? {
        if let Some(k) = &key {
            claim_lookup_key(sim, k, &id, p.bool("transfer_lookup_key")?.unwrap_or(false))?;
        }
        next.lookup_key = key;
    }
    let before = render_price(&current);
    let after = render_price(&next);
    sim.prices.insert(id, next);
    sim.emit_updated("price.updated", &before, after.clone(), wall_now());
    Ok(after)
}

/// `GET /v1/prices` with `lookup_keys[]`, `product`, `active`, `type`.
pub fn list_prices(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let keys = p.str_list("lookup_keys")?;
    if keys.len() > 10 {
        return Err(ApiError::invalid_request(Some("lookup_keys"), "You may pass at most 10 lookup keys."));
    }
    let product = p.str("product")?;
    let active = p.bool("active")?;
    let kind = p.str("type")?;
    let items = newest_first(
        sim.prices.values().filter(|pr| {
            (keys.is_empty() || pr.lookup_key.as_ref().is_some_and(|k| keys.contains(k)))
                && product.is_none_or(|x| pr.product == x)
                && active.is_none_or(|a| pr.active == a)
                && kind.is_none_or(|t| (t == "recurring") == pr.recurring.is_some())
        }),
        |pr| pr.seq,
        |pr| (pr.id.clone(), render_price(pr)),
    );
    paginate(p, items, "/v1/prices")
}
