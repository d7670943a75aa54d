//! `/v1/payment_methods`: test-token cards, attach, detach, retrieve, list.
//!
//! Stripe's test tokens (`pm_card_visa`, `pm_card_chargeCustomerFail`, …) are not
//! objects: using one creates a new `pm_…` card with the token's behaviour, exactly as
//! in Stripe's test mode.

use serde_json::{json, Value};

use super::{apply_metadata, customers, newest_first, paginate, Ctx};
use crate::error::ApiError;
use crate::fixtures::fixture;
use crate::ids::new_id;
use crate::state::{test_card, CardBehavior, CardProfile, PaymentMethod, Sim};

pub fn render(pm: &PaymentMethod) -> Value {
    let mut t = fixture("payment_method");
    t.set("id", pm.id.clone())
        .set("object", "payment_method")
        .set("allow_redisplay", "unspecified")
        .set(
            "billing_details",
            json!({
                "address": { "city": null, "country": null, "line1": null, "line2": null, "postal_code": null, "state": null },
                "email": null, "name": null, "phone": null, "tax_id": null
            }),
        )
        .set(
            "card",
            json!({
                "brand": pm.card.brand,
                "checks": { "address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass" },
                "country": "US",
                "display_brand": pm.card.brand,
                "exp_month": 12,
                "exp_year": 2034,
                "fingerprint": pm.fingerprint,
                "funding": pm.card.funding,
                "generated_from": null,
                "last4": pm.card.last4,
                "networks": { "available": [pm.card.brand], "preferred": null },
                "regulated_status": "unregulated",
                "three_d_secure_usage": { "supported": true },
                "wallet": null
            }),
        )
        .set("created", pm.created)
        .set("customer", pm.customer.clone())
        .set("customer_account", Value::Null)
        .set("livemode", false)
        .set("metadata", json!(pm.metadata))
        .set("type", "card");
    t.into_value()
}

fn no_such_pm(id: &str, param: &str) -> ApiError {
    if param == "id" {
        ApiError::no_such("PaymentMethod", id, Some("id"))
    } else {
        ApiError::no_such_param("PaymentMethod", id, param)
    }
}

fn new_card(sim: &mut Sim, card: CardProfile, created: i64, customer: Option<String>) -> String {
    let id = new_id("pm");
    let seq = sim.next_seq();
    // One fingerprint per card number, like Stripe: the same test token always gives the same one.
    let fingerprint = format!("sim{}{}", card.brand, card.last4).chars().take(16).collect();
    sim.payment_methods
        .insert(id.clone(), PaymentMethod { id: id.clone(), seq, created, customer, card, fingerprint, metadata: Default::default() });
    id
}

/// Fails the way Stripe does when `token_or_id` cannot be attached (declined test card,
/// unknown id, attached elsewhere). Has no side effects.
pub fn check_attachable(sim: &Sim, token_or_id: &str, param: &str) -> Result<(), ApiError> {
    if let Some(card) = test_card(token_or_id) {
        return match card.behavior {
            CardBehavior::DeclinesOnAttach(decline_code) => {
                let mut e = ApiError::card_declined("card_declined", decline_code, "Your card was declined.");
                e.param = Some(param.to_string());
                Err(e)
            }
            _ => Ok(()),
        };
    }
    match sim.payment_methods.get(token_or_id) {
        None => Err(no_such_pm(token_or_id, param)),
        // A card created from a declining token (`card[token]=tok_chargeDeclined`) is declined when attached.
        Some(pm) => match pm.card.behavior {
            CardBehavior::DeclinesOnAttach(decline_code) => {
                Err(ApiError::card_declined("card_declined", decline_code, "Your card was declined."))
            }
            _ => Ok(()),
        },
    }
}

/// Attaches a test token (creating a new card) or an existing payment method to
/// `customer` and emits `payment_method.attached`. Returns the payment method id.
pub fn attach_to(sim: &mut Sim, token_or_id: &str, customer: &str, param: &str) -> Result<String, ApiError> {
    check_attachable(sim, token_or_id, param)?;
    let now = sim.now_for_customer(customer);
    let id = if let Some(card) = test_card(token_or_id) {
        new_card(sim, card, now, Some(customer.to_string()))
    } else {
        let pm = sim.payment_methods.get_mut(token_or_id).ok_or_else(|| no_such_pm(token_or_id, param))?;
        match pm.customer.as_deref() {
            Some(c) if c == customer => return Ok(pm.id.clone()),
            Some(_) => {
                return Err(ApiError::invalid_request(
                    Some(param),
                    "The payment method you provided has already been attached to a customer.",
                ))
            }
            None => pm.customer = Some(customer.to_string()),
        }
        pm.id.clone()
    };
    let obj = render(&sim.payment_methods[&id]);
    sim.emit("payment_method.attached", obj, None, now);
    Ok(id)
}

/// `POST /v1/payment_methods` with `type=card` and `card[token]=tok_…` (or a `pm_card_…` token).
pub const CREATE_PARAMS: &[&str] = &["type", "card[token]", "metadata[*]"];

pub fn create(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    if p.required_str("type")? != "card" {
        return Err(ApiError::invalid_request(Some("type"), "stripe-sim only supports `type=card`."));
    }
    let token = super::nested_str(p, &["card", "token"])?.ok_or_else(|| {
        ApiError::invalid_request(
            Some("card[token]"),
            "stripe-sim creates cards from test tokens only: pass `card[token]=tok_visa` (raw card numbers are not accepted).",
        )
    })?;
    let card = test_card(token)
        .ok_or_else(|| ApiError::invalid_request(Some("card[token]"), format!("No such token: '{token}'")).with_code("resource_missing"))?;
    let created = crate::time::wall_now();
    let id = new_card(sim, card, created, None);
    if let Some(pm) = sim.payment_methods.get_mut(&id) {
        apply_metadata(&mut pm.metadata, p)?;
    }
    Ok(render(&sim.payment_methods[&id]))
}

pub fn retrieve(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let id = ctx.id(0);
    if let Some(card) = test_card(id) {
        // Retrieving a test token gives a fresh, unattached card, as in Stripe's test mode.
        let created = crate::time::wall_now();
        let new = new_card(sim, card, created, None);
        return Ok(render(&sim.payment_methods[&new]));
    }
    sim.payment_methods.get(id).map(render).ok_or_else(|| no_such_pm(id, "id"))
}

pub fn attach(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let customer = ctx.params.required_str("customer")?.to_string();
    customers::live(sim, &customer, Some("customer"))?;
    let id = attach_to(sim, ctx.id(0), &customer, "id").map_err(|e| {
        // An unknown id in the URL is a 404, not a parameter error.
        if e.code == Some("resource_missing") {
            ApiError::no_such("PaymentMethod", ctx.id(0), Some("id"))
        } else {
            e
        }
    })?;
    Ok(render(&sim.payment_methods[&id]))
}

pub fn detach(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let id = ctx.id(0).to_string();
    let pm = sim.payment_methods.get(&id).ok_or_else(|| no_such_pm(&id, "id"))?;
    let Some(customer) = pm.customer.clone() else {
        return Err(ApiError::invalid_request(
            None,
            "The payment method you provided is not attached to a customer so detachment is impossible.",
        ));
    };
    let now = sim.now_for_customer(&customer);
    let before = render(pm);
    if let Some(pm) = sim.payment_methods.get_mut(&id) {
        pm.customer = None;
    }
    // A detached card can no longer be anyone's default.
    if let Some(c) = sim.customers.get_mut(&customer) {
        if c.default_payment_method.as_deref() == Some(id.as_str()) {
            c.default_payment_method = None;
        }
    }
    let after = render(&sim.payment_methods[&id]);
    let prev = crate::state::diff_previous(&before, &after);
    sim.emit("payment_method.detached", after.clone(), Some(prev), now);
    Ok(after)
}

/// `GET /v1/payment_methods?customer=…&type=card`.
pub fn list(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let customer = p.str("customer")?.map(str::to_string);
    if let Some(t) = p.str("type")? {
        if t != "card" {
            return paginate(p, Vec::new(), "/v1/payment_methods");
        }
    }
    let items = newest_first(
        sim.payment_methods.values().filter(|pm| match &customer {
            Some(c) => pm.customer.as_deref() == Some(c.as_str()),
            None => pm.customer.is_some(),
        }),
        |pm| pm.seq,
        |pm| (pm.id.clone(), render(pm)),
    );
    paginate(p, items, "/v1/payment_methods")
}
