//! `/v1/customers`: create, retrieve, update, delete, list, search.

use serde_json::{json, Value};

use super::{apply_metadata, metadata_json, nested_str, newest_first, optional_string, paginate, Ctx};
use crate::billing;
use crate::error::ApiError;
use crate::fixtures::fixture;
use crate::ids::{random_hex_upper, random_id};
use crate::state::{Customer, InvoiceStatus, Sim};

pub fn render(sim: &Sim, c: &Customer) -> Value {
    if c.deleted {
        return render_deleted(&c.id);
    }
    // Stripe flags a customer delinquent while an invoice's automatic payment has failed.
    let delinquent = sim.invoices.values().any(|i| i.customer == c.id && i.status == InvoiceStatus::Open && i.attempt_count > 0);
    let mut t = fixture("customer");
    t.set("id", c.id.clone())
        .set("object", "customer")
        .set("address", Value::Null)
        .set("balance", c.balance)
        .set("created", c.created)
        .set("currency", c.currency.clone())
        .set("default_source", Value::Null)
        .set("delinquent", delinquent)
        .set("description", c.description.clone())
        .set("discount", Value::Null)
        .set("email", c.email.clone())
        .set("invoice_prefix", c.invoice_prefix.clone())
        .set(
            "invoice_settings",
            json!({
                "custom_fields": null,
                "default_payment_method": c.default_payment_method,
                "footer": null,
                "rendering_options": null
            }),
        )
        .set("livemode", false)
        .set("metadata", metadata_json(&c.metadata))
        .set("name", c.name.clone())
        .set("next_invoice_sequence", c.next_invoice_sequence)
        .set("phone", c.phone.clone())
        .set("preferred_locales", json!([]))
        .set("shipping", Value::Null)
        .set("tax_exempt", "none")
        .set("test_clock", c.test_clock.clone());
    t.into_value()
}

pub fn render_deleted(id: &str) -> Value {
    let mut t = fixture("deleted_customer");
    t.set("id", id).set("object", "customer").set("deleted", true);
    t.into_value()
}

/// A live (not deleted) customer, or the 404 Stripe gives for it.
pub fn live<'a>(sim: &'a Sim, id: &str, param: Option<&str>) -> Result<&'a Customer, ApiError> {
    match sim.customers.get(id) {
        Some(c) if !c.deleted => Ok(c),
        _ => Err(match param {
            Some(p) => ApiError::no_such_param("customer", id, p),
            None => ApiError::no_such("customer", id, Some("id")),
        }),
    }
}

const FIELDS: &[&str] = &["email", "name", "description", "phone"];

fn validate_email(email: &str) -> Result<(), ApiError> {
    if email.len() > 512 || (!email.is_empty() && !email.contains('@')) {
        return Err(ApiError::invalid_request(Some("email"), format!("Invalid email address: {email}")).with_code("email_invalid"));
    }
    Ok(())
}

pub const CREATE_PARAMS: &[&str] =
    &["email", "name", "description", "phone", "metadata[*]", "payment_method", "invoice_settings[default_payment_method]", "test_clock"];
pub const UPDATE_PARAMS: &[&str] = &["email", "name", "description", "phone", "metadata[*]", "invoice_settings[default_payment_method]"];
pub const LIST_FILTERS: &[&str] = &["email", "test_clock"];
pub const SEARCH_PARAMS: &[&str] = &["query", "limit", "page"];

pub fn create(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let test_clock = match p.str("test_clock")? {
        None | Some("") => None,
        Some(id) => {
            if !sim.test_clocks.contains_key(id) {
                return Err(ApiError::no_such_param("test_clock", id, "test_clock"));
            }
            Some(id.to_string())
        }
    };
    let mut metadata = Default::default();
    apply_metadata(&mut metadata, p)?;
    if let Some(email) = p.str("email")? {
        validate_email(email)?;
    }
    if let Some(pm) = nested_str(p, &["invoice_settings", "default_payment_method"])? {
        // Only the payment method attached in this same call can be the default of a new customer.
        if p.str("payment_method")? != Some(pm) {
            return Err(ApiError::no_such_param("PaymentMethod", pm, "invoice_settings[default_payment_method]"));
        }
    }
    let now = sim.now_in_clock(test_clock.as_deref());
    let seq = sim.next_seq();
    let id = random_id("cus", 14);
    let customer = Customer {
        id: id.clone(),
        seq,
        created: now,
        email: optional_string(p, "email")?.flatten(),
        name: optional_string(p, "name")?.flatten(),
        description: optional_string(p, "description")?.flatten(),
        phone: optional_string(p, "phone")?.flatten(),
        metadata,
        default_payment_method: None,
        test_clock,
        invoice_prefix: random_hex_upper(8),
        next_invoice_sequence: 1,
        balance: 0,
        currency: None,
        deleted: false,
    };
    // Validate the payment method before anything is stored, so a declined card leaves no customer behind.
    let pm_token = p.str("payment_method")?.filter(|s| !s.is_empty()).map(str::to_string);
    if let Some(token) = &pm_token {
        super::payment_methods::check_attachable(sim, token, "payment_method")?;
    }
    sim.customers.insert(id.clone(), customer);
    let obj = render(sim, &sim.customers[&id]);
    sim.index_for_search(&id);
    sim.emit("customer.created", obj, None, now);
    if let Some(token) = pm_token {
        let pm_id = super::payment_methods::attach_to(sim, &token, &id, "payment_method")?;
        if nested_str(p, &["invoice_settings", "default_payment_method"])?.is_some() {
            if let Some(c) = sim.customers.get_mut(&id) {
                c.default_payment_method = Some(pm_id);
            }
        }
    }
    Ok(render(sim, &sim.customers[&id]))
}

pub fn retrieve(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let c = sim.customers.get(ctx.id(0)).ok_or_else(|| ApiError::no_such("customer", ctx.id(0), Some("id")))?;
    Ok(render(sim, c))
}

pub fn update(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let id = ctx.id(0).to_string();
    let current = live(sim, &id, None)?.clone();
    let mut next = current.clone();
    for field in FIELDS {
        if let Some(v) = optional_string(p, field)? {
            if *field == "email" {
                validate_email(v.as_deref().unwrap_or(""))?;
            }
            let slot = match *field {
                "email" => &mut next.email,
                "name" => &mut next.name,
                "description" => &mut next.description,
                _ => &mut next.phone,
            };
            *slot = v;
        }
    }
    apply_metadata(&mut next.metadata, p)?;
    match nested_str(p, &["invoice_settings", "default_payment_method"])? {
        None => {}
        Some("") => next.default_payment_method = None,
        Some(pm) => {
            let attached = sim.payment_methods.get(pm).is_some_and(|m| m.customer.as_deref() == Some(id.as_str()));
            if !attached {
                return Err(ApiError::invalid_request(
                    Some("invoice_settings[default_payment_method]"),
                    format!("No such PaymentMethod: '{pm}'; it must be attached to customer '{id}' first."),
                )
                .with_code("resource_missing"));
            }
            next.default_payment_method = Some(pm.to_string());
        }
    }
    let now = sim.now_in_clock(current.test_clock.as_deref());
    let before = render(sim, &current);
    sim.customers.insert(id.clone(), next);
    let after = render(sim, &sim.customers[&id]);
    sim.emit_updated("customer.updated", &before, after.clone(), now);
    Ok(after)
}

pub fn delete(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let id = ctx.id(0).to_string();
    let c = live(sim, &id, None)?;
    let now = sim.now_in_clock(c.test_clock.as_deref());
    let snapshot = render(sim, c);
    // Deleting a customer cancels their subscriptions immediately, as Stripe does.
    let subs: Vec<String> = sim.subscriptions.values().filter(|s| s.customer == id && !s.status.is_ended()).map(|s| s.id.clone()).collect();
    for sub in subs {
        billing::cancel_now(sim, &sub, now, Some("cancellation_requested"));
    }
    if let Some(c) = sim.customers.get_mut(&id) {
        c.deleted = true;
    }
    sim.emit("customer.deleted", snapshot, None, now);
    Ok(render_deleted(&id))
}

pub fn list(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let email = p.str("email")?;
    let clock = p.str("test_clock")?;
    let items = newest_first(
        sim.customers
            .values()
            .filter(|c| !c.deleted)
            .filter(|c| email.is_none_or(|e| c.email.as_deref() == Some(e)))
            .filter(|c| clock.is_none_or(|k| c.test_clock.as_deref() == Some(k))),
        |c| c.seq,
        |c| (c.id.clone(), render(sim, c)),
    );
    paginate(p, items, "/v1/customers")
}

/// One `field:'value'` / `field~'value'` / `metadata['k']:'v'` clause of a search query.
#[derive(Debug, PartialEq)]
struct Clause {
    field: Field,
    substring: bool,
    negated: bool,
    value: String,
}

#[derive(Debug, PartialEq)]
enum Field {
    Email,
    Name,
    Phone,
    Description,
    Metadata(String),
}

#[derive(Debug, PartialEq)]
struct Query {
    clauses: Vec<Clause>,
    any: bool,
}

fn bad_query(msg: impl Into<String>) -> ApiError {
    ApiError::invalid_request(Some("query"), msg)
}

/// Parses the subset of Stripe's search query language the sim supports: clauses on
/// `email`, `name`, `phone`, `description` and `metadata['key']`, with `:` (exact,
/// case-insensitive) or `~` (substring), optional `-` negation, joined by all-`AND` or
/// all-`OR`.
fn parse_query(q: &str) -> Result<Query, ApiError> {
    let mut clauses = Vec::new();
    let mut joiner: Option<&str> = None;
    let mut rest = q.trim();
    if rest.is_empty() {
        return Err(bad_query("Missing required param: query."));
    }
    loop {
        let negated = rest.starts_with('-');
        if negated {
            rest = &rest[1..];
        }
        let (field, after) = if let Some(r) = rest.strip_prefix("metadata[") {
            let quote = r
                .chars()
                .next()
                .filter(|c| *c == '\'' || *c == '"')
                .ok_or_else(|| bad_query("metadata keys must be quoted: metadata['key']"))?;
            let r = &r[1..];
            let end = r.find(quote).ok_or_else(|| bad_query("Unterminated metadata key."))?;
            let key = &r[..end];
            let r = r[end + 1..].strip_prefix(']').ok_or_else(|| bad_query("Expected `]` after metadata key."))?;
            (Field::Metadata(key.to_string()), r)
        } else {
            let end = rest.find([':', '~']).ok_or_else(|| bad_query(format!("Invalid query clause near `{rest}`.")))?;
            let field = match rest[..end].trim() {
                "email" => Field::Email,
                "name" => Field::Name,
                "phone" => Field::Phone,
                "description" => Field::Description,
                other => return Err(bad_query(format!("Field `{other}` is not supported by stripe-sim's customer search."))),
            };
            (field, &rest[end..])
        };
        let substring = match after.chars().next() {
            Some(':') => false,
            Some('~') => true,
            _ => return Err(bad_query("Expected `:` or `~` after the field.")),
        };
        let after = &after[1..];
        let quote = after.chars().next().filter(|c| *c == '\'' || *c == '"').ok_or_else(|| bad_query("Values must be quoted."))?;
        let body = &after[1..];
        // Backslash escapes the quote character inside a value.
        let mut value = String::new();
        let mut chars = body.char_indices();
        let mut end = None;
        while let Some((i, ch)) = chars.next() {
            match ch {
                '\\' => {
                    if let Some((_, next)) = chars.next() {
                        value.push(next);
                    }
                }
                c if c == quote => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end.ok_or_else(|| bad_query("Unterminated quoted value."))?;
        if substring && value.chars().count() < 3 {
            return Err(bad_query("Substring (`~`) queries need at least 3 characters."));
        }
        clauses.push(Clause { field, substring, negated, value });
        rest = body[end + 1..].trim_start();
        if rest.is_empty() {
            break;
        }
        let (word, tail) = rest.split_once(' ').ok_or_else(|| bad_query(format!("Unexpected `{rest}` in query.")))?;
        if word != "AND" && word != "OR" {
            return Err(bad_query(format!("Expected AND or OR, got `{word}`.")));
        }
        if joiner.is_some_and(|j| j != word) {
            return Err(bad_query("A query cannot mix AND and OR."));
        }
        joiner = Some(if word == "AND" { "AND" } else { "OR" });
        rest = tail.trim_start();
    }
    Ok(Query { clauses, any: joiner == Some("OR") })
}

fn matches(c: &Customer, clause: &Clause) -> bool {
    let field = match &clause.field {
        Field::Email => c.email.as_deref(),
        Field::Name => c.name.as_deref(),
        Field::Phone => c.phone.as_deref(),
        Field::Description => c.description.as_deref(),
        Field::Metadata(k) => c.metadata.get(k).map(String::as_str),
    };
    let hit = match field {
        None => false,
        Some(v) if clause.substring => v.to_lowercase().contains(&clause.value.to_lowercase()),
        Some(v) => v.eq_ignore_ascii_case(&clause.value),
    };
    hit != clause.negated
}

/// `GET /v1/customers/search?query=…`. Results are immediate unless
/// `SimConfig::search_delay` makes new customers appear late, like Stripe's
/// eventually consistent search.
pub fn search(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let query = parse_query(p.str("query")?.unwrap_or(""))?;
    let limit = match p.i64("limit")? {
        None => 10,
        Some(l) if (1..=100).contains(&l) => l as usize,
        Some(_) => return Err(ApiError::invalid_request(Some("limit"), "Invalid limit: must be between 1 and 100.")),
    };
    let offset = match p.str("page")? {
        None | Some("") => 0,
        Some(tok) => tok
            .strip_prefix("page_")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| ApiError::invalid_request(Some("page"), "Invalid page token."))?,
    };
    let hits = newest_first(
        sim.customers.values().filter(|c| !c.deleted && sim.searchable(&c.id)).filter(|c| {
            if query.any {
                query.clauses.iter().any(|cl| matches(c, cl))
            } else {
                query.clauses.iter().all(|cl| matches(c, cl))
            }
        }),
        |c| c.seq,
        |c| (c.id.clone(), render(sim, c)),
    );
    let page: Vec<Value> = hits.iter().skip(offset).take(limit).map(|(_, v)| v.clone()).collect();
    let has_more = hits.len() > offset + limit;
    Ok(json!({
        "object": "search_result",
        "data": page,
        "has_more": has_more,
        "next_page": if has_more { Some(format!("page_{}", offset + limit)) } else { None },
        "url": "/v1/customers/search",
    }))
}

/// `GET /v1/customers/{id}/payment_methods`.
pub fn list_payment_methods(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let id = ctx.id(0).to_string();
    live(sim, &id, None)?;
    let items = newest_first(
        sim.payment_methods.values().filter(|pm| pm.customer.as_deref() == Some(id.as_str())),
        |pm| pm.seq,
        |pm| (pm.id.clone(), super::payment_methods::render(pm)),
    );
    paginate(&ctx.params, items, &format!("/v1/customers/{id}/payment_methods"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_metadata_and_boolean_queries() {
        let q = parse_query("metadata['user_id']:'u1'").unwrap();
        assert_eq!(
            q.clauses,
            vec![Clause { field: Field::Metadata("user_id".into()), substring: false, negated: false, value: "u1".into() }]
        );
        let q = parse_query(r#"email:"a@b.co" AND -name~'bob' "#).unwrap();
        assert!(!q.any);
        assert_eq!(q.clauses.len(), 2);
        assert!(q.clauses[1].negated && q.clauses[1].substring);
        let q = parse_query("name:'it\\'s' OR phone:'1'").unwrap();
        assert!(q.any);
        assert_eq!(q.clauses[0].value, "it's");
    }

    #[test]
    fn rejects_bad_queries() {
        for bad in [
            "",
            "email",
            "email:u1",
            "email:'x",
            "foo:'x'",
            "email:'a' AND name:'b' OR phone:'c'",
            "name~'ab'",
            "metadata[user]:'x'",
            "email:'a' XOR name:'b'",
        ] {
            assert_eq!(parse_query(bad).unwrap_err().param.as_deref(), Some("query"), "{bad}");
        }
    }
}
