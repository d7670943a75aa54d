//! `/v1/invoices`, `/v1/invoiceitems` and `/v1/payment_intents`.
//!
//! In the pinned API version an invoice has no `payment_intent` field: its payments
//! are the includable `payments` list (`expand[]=payments`, each an `invoice_payment`
//! pointing at a payment intent) and `confirmation_secret` (`expand[]=confirmation_secret`,
//! the client secret a frontend confirms).

use serde_json::{json, Value};

use super::{newest_first, paginate, payment_methods, Ctx};
use crate::billing::{self, AttemptMode, Outcome};
use crate::error::ApiError;
use crate::fixtures::fixture;
use crate::state::{Invoice, InvoiceItem, InvoiceStatus, Line, PaymentIntent, PiStatus, Sim};

fn pricing(sim: &Sim, price: &str, unit_amount_decimal: String) -> Value {
    let product = sim.prices.get(price).map(|p| p.product.clone());
    json!({
        "price_details": { "price": price, "product": product },
        "type": "price_details",
        "unit_amount_decimal": unit_amount_decimal
    })
}

pub fn render_line(sim: &Sim, inv: &Invoice, l: &Line) -> Value {
    let unit = if l.proration || l.quantity == 0 {
        l.amount.to_string()
    } else {
        sim.prices.get(&l.price).map(|p| p.unit_amount.to_string()).unwrap_or_else(|| l.amount.to_string())
    };
    let parent = match &l.subscription_item {
        Some(si) => json!({
            "invoice_item_details": null,
            "subscription_item_details": {
                "invoice_item": l.invoice_item,
                "proration": l.proration,
                "proration_details": { "credited_items": null },
                "subscription": l.subscription,
                "subscription_item": si
            },
            "type": "subscription_item_details"
        }),
        None => json!({
            "invoice_item_details": {
                "invoice_item": l.invoice_item,
                "proration": l.proration,
                "proration_details": { "credited_items": null },
                "subscription": l.subscription
            },
            "subscription_item_details": null,
            "type": "invoice_item_details"
        }),
    };
    let mut t = fixture("line_item");
    t.set("id", l.id.clone())
        .set("object", "line_item")
        .set("amount", l.amount)
        .set("currency", l.currency.clone())
        .set("description", l.description.clone())
        .set("discount_amounts", json!([]))
        .set("discountable", !l.proration)
        .set("discounts", json!([]))
        .set("invoice", inv.id.clone())
        .set("livemode", false)
        .set("metadata", json!(l.metadata))
        .set("parent", parent)
        .set("period", json!({ "end": l.period_end, "start": l.period_start }))
        .set("pretax_credit_amounts", json!([]))
        .set("pricing", pricing(sim, &l.price, unit))
        .set("quantity", l.quantity)
        .set("quantity_decimal", l.quantity.to_string())
        .set("subscription", l.subscription.clone())
        .set("subtotal", l.amount)
        .set("taxes", json!([]));
    t.into_value()
}

pub fn render(sim: &Sim, inv: &Invoice) -> Value {
    let lines: Vec<Value> = inv.lines.iter().map(|l| render_line(sim, inv, l)).collect();
    let finalized = inv.finalized_at.is_some();
    let parent = inv.subscription.as_ref().map(|s| {
        json!({
            "quote_details": null,
            // `subscription_proration_date` is optional: Stripe sends it only when the
            // invoice was created with a proration date.
            "subscription_details": { "metadata": inv.subscription_metadata, "subscription": s },
            "type": "subscription_details"
        })
    });
    let mut t = fixture("invoice");
    t.set("id", inv.id.clone())
        .set("object", "invoice")
        .set("account_country", "US")
        .set("account_name", "stripe-sim")
        .set("account_tax_ids", Value::Null)
        .set("amount_due", inv.amount_due)
        .set("amount_overpaid", 0)
        .set("amount_paid", inv.amount_paid)
        .set("amount_remaining", inv.amount_remaining())
        .set("amount_shipping", 0)
        .set("application", Value::Null)
        .set("attempt_count", inv.attempt_count)
        .set("attempted", inv.attempted)
        .set("auto_advance", inv.auto_advance && matches!(inv.status, InvoiceStatus::Draft | InvoiceStatus::Open))
        .set("automatic_tax", json!({ "disabled_reason": null, "enabled": false, "liability": null, "provider": null, "status": null }))
        .set("automatically_finalizes_at", Value::Null)
        .set("billing_reason", inv.billing_reason)
        .set("collection_method", "charge_automatically")
        .set("created", inv.created)
        .set("currency", inv.currency.clone())
        .set("custom_fields", Value::Null)
        .set("customer", inv.customer.clone())
        .set("customer_account", Value::Null)
        .set("customer_address", Value::Null)
        .set("customer_email", inv.customer_email.clone())
        .set("customer_name", inv.customer_name.clone())
        .set("customer_phone", Value::Null)
        .set("customer_shipping", Value::Null)
        .set("customer_tax_exempt", "none")
        .set("customer_tax_ids", json!([]))
        .set("default_payment_method", inv.default_payment_method.clone())
        .set("default_source", Value::Null)
        .set("default_tax_rates", json!([]))
        .set("description", Value::Null)
        .set("discounts", json!([]))
        .set("due_date", Value::Null)
        .set("effective_at", inv.finalized_at)
        .set("ending_balance", inv.ending_balance)
        .set("footer", Value::Null)
        .set("from_invoice", Value::Null)
        .set("hosted_invoice_url", finalized.then(|| format!("{}/i/{}", sim.base_url, inv.id)))
        .set("invoice_pdf", finalized.then(|| format!("{}/i/{}/pdf", sim.base_url, inv.id)))
        .set("issuer", json!({ "type": "self" }))
        .set("last_finalization_error", Value::Null)
        .set("latest_revision", Value::Null)
        .set("lines", json!({ "object": "list", "data": lines, "has_more": false, "url": format!("/v1/invoices/{}/lines", inv.id) }))
        .set("livemode", false)
        .set("metadata", json!(inv.metadata))
        .set("next_payment_attempt", inv.next_payment_attempt)
        .set("number", inv.number.clone())
        .set("on_behalf_of", Value::Null)
        .set("parent", parent)
        .set("payment_settings", json!({ "default_mandate": null, "payment_method_options": null, "payment_method_types": null }))
        .set("period_end", inv.period_end)
        .set("period_start", inv.period_start)
        .set("post_payment_credit_notes_amount", 0)
        .set("pre_payment_credit_notes_amount", 0)
        .set("receipt_number", Value::Null)
        .set("rendering", Value::Null)
        .set("shipping_cost", Value::Null)
        .set("shipping_details", Value::Null)
        .set("starting_balance", inv.starting_balance)
        .set("statement_descriptor", Value::Null)
        .set("status", inv.status.as_str())
        .set(
            "status_transitions",
            json!({
                "finalized_at": inv.finalized_at,
                "marked_uncollectible_at": inv.marked_uncollectible_at,
                "paid_at": inv.paid_at,
                "voided_at": inv.voided_at
            }),
        )
        .set("subtotal", inv.total)
        .set("subtotal_excluding_tax", inv.total)
        .set("test_clock", inv.test_clock.clone())
        .set("total", inv.total)
        .set("total_discount_amounts", json!([]))
        .set("total_excluding_tax", inv.total)
        .set("total_pretax_credit_amounts", json!([]))
        .set("total_taxes", json!([]))
        .set("webhooks_delivered_at", finalized.then_some(inv.created));
    t.into_value()
}

/// The includable `payments` list of an invoice.
pub fn render_payments(sim: &Sim, inv: &Invoice) -> Value {
    let data: Vec<Value> =
        inv.payment_intent.as_ref().and_then(|p| sim.payment_intents.get(p)).map(|pi| vec![render_invoice_payment(pi)]).unwrap_or_default();
    json!({ "object": "list", "data": data, "has_more": false, "url": format!("/v1/invoice_payments?invoice={}", inv.id) })
}

/// The includable `confirmation_secret` of an invoice (null when nothing is due).
pub fn render_confirmation_secret(sim: &Sim, inv: &Invoice) -> Value {
    match inv.payment_intent.as_ref().and_then(|p| sim.payment_intents.get(p)) {
        Some(pi) => json!({ "client_secret": pi.client_secret, "type": "payment_intent" }),
        None => Value::Null,
    }
}

pub fn render_invoice_payment(pi: &PaymentIntent) -> Value {
    let status = match pi.status {
        PiStatus::Succeeded => "paid",
        PiStatus::Canceled => "canceled",
        _ => "open",
    };
    let mut t = fixture("invoice_payment");
    t.set("id", pi.invoice_payment_id.clone())
        .set("object", "invoice_payment")
        .set("amount_paid", (pi.status == PiStatus::Succeeded).then_some(pi.amount_received))
        .set("amount_requested", pi.amount)
        .set("created", pi.created)
        .set("currency", pi.currency.clone())
        .set("invoice", pi.invoice.clone())
        .set("is_default", true)
        .set("livemode", false)
        .set("payment", json!({ "type": "payment_intent", "payment_intent": pi.id }))
        .set("status", status)
        .set("status_transitions", json!({ "canceled_at": pi.canceled_at, "paid_at": pi.paid_at }));
    t.into_value()
}

pub fn render_payment_intent(sim: &Sim, pi: &PaymentIntent) -> Value {
    let last_error = pi.last_payment_error.as_ref().map(|e| {
        json!({
            "type": "card_error",
            "code": e.code,
            "decline_code": e.decline_code,
            "message": e.message,
            "payment_method": e.payment_method.as_ref().and_then(|id| sim.payment_methods.get(id)).map(payment_methods::render),
        })
    });
    let next_action = (pi.status == PiStatus::RequiresAction).then(|| json!({ "type": "use_stripe_sdk", "use_stripe_sdk": {} }));
    let description = sim.invoices.get(&pi.invoice).map(|i| match i.billing_reason {
        "subscription_create" => "Subscription creation",
        "subscription_cycle" => "Subscription cycle",
        "subscription_update" => "Subscription update",
        _ => "Invoice payment",
    });
    let mut t = fixture("payment_intent");
    t.set("id", pi.id.clone())
        .set("object", "payment_intent")
        .set("amount", pi.amount)
        .set("amount_capturable", 0)
        .set("amount_details", json!({ "tip": {} }))
        .set("amount_received", pi.amount_received)
        .set("allowed_payment_method_types", Value::Null)
        .set("application", Value::Null)
        .set("application_fee_amount", Value::Null)
        .set("automatic_payment_methods", Value::Null)
        .set("canceled_at", pi.canceled_at)
        .set("cancellation_reason", (pi.status == PiStatus::Canceled).then_some("void_invoice"))
        .set("capture_method", "automatic")
        .set("client_secret", pi.client_secret.clone())
        .set("confirmation_method", "automatic")
        .set("created", pi.created)
        .set("currency", pi.currency.clone())
        .set("customer", pi.customer.clone())
        .set("customer_account", Value::Null)
        .set("description", description)
        .set("excluded_payment_method_types", Value::Null)
        .set("last_payment_error", last_error)
        .set("latest_charge", Value::Null)
        .set("livemode", false)
        .set("managed_payments", Value::Null)
        .set("metadata", json!({}))
        .set("next_action", next_action)
        .set("on_behalf_of", Value::Null)
        .set("payment_method", pi.payment_method.clone())
        .set("payment_method_configuration_details", Value::Null)
        .set("payment_method_options", Value::Null)
        .set("payment_method_types", json!(["card"]))
        .set("payment_record", Value::Null)
        .set("processing", Value::Null)
        .set("receipt_email", Value::Null)
        .set("review", Value::Null)
        .set("setup_future_usage", Value::Null)
        .set("shipping", Value::Null)
        .set("source", Value::Null)
        .set("statement_descriptor", Value::Null)
        .set("statement_descriptor_suffix", Value::Null)
        .set("status", pi.status.as_str())
        .set("transfer_data", Value::Null)
        .set("transfer_group", Value::Null);
    t.into_value()
}

pub fn render_invoice_item(sim: &Sim, ii: &InvoiceItem) -> Value {
    let mut t = fixture("invoiceitem");
    t.set("id", ii.id.clone())
        .set("object", "invoiceitem")
        .set("amount", ii.amount)
        .set("currency", ii.currency.clone())
        .set("customer", ii.customer.clone())
        .set("customer_account", Value::Null)
        .set("date", ii.date)
        .set("description", ii.description.clone())
        .set("discountable", !ii.proration)
        .set("discounts", json!([]))
        .set("invoice", ii.invoice.clone())
        .set("livemode", false)
        .set("metadata", json!({}))
        .set("net_amount", ii.amount)
        .set(
            "parent",
            ii.subscription.as_ref().map(|s| {
                json!({
                    "subscription_details": { "subscription": s, "subscription_item": ii.subscription_item },
                    "type": "subscription_details"
                })
            }),
        )
        .set("period", json!({ "end": ii.period_end, "start": ii.period_start }))
        .set("pricing", pricing(sim, &ii.price, ii.amount.to_string()))
        .set("proration", ii.proration)
        .set("quantity", 1)
        .set("quantity_decimal", "1")
        .set("tax_rates", json!([]))
        .set("test_clock", ii.test_clock.clone());
    t.into_value()
}

fn get<'a>(sim: &'a Sim, id: &str) -> Result<&'a Invoice, ApiError> {
    sim.invoices.get(id).ok_or_else(|| ApiError::no_such("invoice", id, Some("invoice")))
}

pub fn retrieve(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let inv = get(sim, ctx.id(0))?;
    Ok(render(sim, inv))
}

/// `GET /v1/invoices` with `customer`, `subscription`, `status`.
pub fn list(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let customer = p.str("customer")?;
    let subscription = p.str("subscription")?;
    let status = match p.str("status")? {
        None => None,
        Some(s) => Some(InvoiceStatus::parse(s).ok_or_else(|| ApiError::invalid_request(Some("status"), format!("Invalid status: {s}")))?),
    };
    let items = newest_first(
        sim.invoices.values().filter(|i| {
            customer.is_none_or(|c| i.customer == c)
                && subscription.is_none_or(|s| i.subscription.as_deref() == Some(s))
                && status.is_none_or(|s| i.status == s)
        }),
        |i| i.seq,
        |i| (i.id.clone(), render(sim, i)),
    );
    paginate(p, items, "/v1/invoices")
}

/// `GET /v1/invoices/{id}/lines`.
pub fn lines(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let inv = get(sim, ctx.id(0))?;
    let items: Vec<(String, Value)> = inv.lines.iter().map(|l| (l.id.clone(), render_line(sim, inv, l))).collect();
    paginate(&ctx.params, items, &format!("/v1/invoices/{}/lines", inv.id))
}

fn payment_error(e: &crate::state::PaymentError) -> ApiError {
    ApiError::card_declined(e.code, e.decline_code, e.message.clone())
}

fn no_payment_method() -> ApiError {
    ApiError::invalid_request(None, "This customer has no attached payment source or default payment method.").with_code("resource_missing")
}

/// `POST /v1/invoices/{id}/pay` (`payment_method`, `paid_out_of_band`).
/// Accepted by `/pay`; `off_session` and `forgive` are accepted and ignored.
pub const PAY_PARAMS: &[&str] = &["payment_method", "paid_out_of_band", "off_session", "forgive"];
/// Accepted by `/confirm`; all but `payment_method` are accepted and ignored.
pub const CONFIRM_PARAMS: &[&str] = &["payment_method", "return_url", "off_session", "setup_future_usage"];

pub fn pay(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let inv = get(sim, ctx.id(0))?.clone();
    let now = sim.now_for_customer(&inv.customer);
    match inv.status {
        InvoiceStatus::Paid => return Err(ApiError::invalid_request(None, "Invoice is already paid.").with_code("invoice_not_editable")),
        InvoiceStatus::Void => return Err(ApiError::invalid_request(None, "This invoice has been voided and can no longer be paid.")),
        InvoiceStatus::Draft => billing::finalize(sim, &inv.id, now),
        InvoiceStatus::Open | InvoiceStatus::Uncollectible => {}
    }
    if sim.invoices.get(&inv.id).is_some_and(|i| i.status == InvoiceStatus::Paid) {
        return Ok(render(sim, &sim.invoices[&inv.id]));
    }
    if sim.invoices.get(&inv.id).is_some_and(|i| i.status == InvoiceStatus::Uncollectible) {
        // Paying an uncollectible invoice reopens it for the attempt.
        if let Some(i) = sim.invoices.get_mut(&inv.id) {
            i.status = InvoiceStatus::Open;
        }
    }
    if p.bool("paid_out_of_band")?.unwrap_or(false) {
        // Settled outside Stripe: paid without a charge; the payment intent is canceled.
        if let Some(pi) = inv.payment_intent.as_ref().and_then(|id| sim.payment_intents.get_mut(id)) {
            pi.status = PiStatus::Canceled;
            pi.canceled_at = Some(now);
        }
        billing::mark_paid(sim, &inv.id, now, true);
        return Ok(render(sim, &sim.invoices[&inv.id]));
    }
    let override_pm = match p.str("payment_method")? {
        None | Some("") => None,
        Some(pm) => {
            let attached = sim.payment_methods.get(pm).is_some_and(|m| m.customer.as_deref() == Some(inv.customer.as_str()));
            if !attached {
                return Err(ApiError::no_such_param("PaymentMethod", pm, "payment_method"));
            }
            Some(pm.to_string())
        }
    };
    let pm = billing::resolve_payment_method(
        sim,
        &inv.customer,
        inv.subscription.as_deref(),
        inv.default_payment_method.as_deref(),
        override_pm.as_deref(),
    );
    if pm.is_none() {
        return Err(no_payment_method());
    }
    attempt_and_render(sim, &inv.id, now, override_pm)
}

fn attempt_and_render(sim: &mut Sim, inv_id: &str, now: i64, override_pm: Option<String>) -> Result<Value, ApiError> {
    match billing::attempt_payment(sim, inv_id, now, override_pm.as_deref(), AttemptMode::Manual) {
        Outcome::Paid => Ok(render(sim, &sim.invoices[inv_id])),
        Outcome::Failed(e) => {
            billing::after_failure(sim, inv_id, now, AttemptMode::Manual);
            Err(payment_error(&e))
        }
        Outcome::NoPaymentMethod => Err(no_payment_method()),
    }
}

/// `POST /v1/invoices/{id}/void`.
pub fn void(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let inv = get(sim, ctx.id(0))?.clone();
    if !matches!(inv.status, InvoiceStatus::Open | InvoiceStatus::Uncollectible) {
        return Err(ApiError::invalid_request(
            None,
            format!("You can only void an open or uncollectible invoice (this one is {}).", inv.status.as_str()),
        ));
    }
    let now = sim.now_for_customer(&inv.customer);
    void_invoice(sim, &inv.id, now);
    Ok(render(sim, &sim.invoices[&inv.id]))
}

/// Voids an invoice and cancels its payment intent; emits `invoice.voided`.
pub fn void_invoice(sim: &mut Sim, inv_id: &str, now: i64) {
    let Some(inv) = sim.invoices.get_mut(inv_id) else {
        return;
    };
    inv.status = InvoiceStatus::Void;
    inv.voided_at = Some(now);
    inv.next_payment_attempt = None;
    if let Some(pi) = inv.payment_intent.clone().and_then(|id| sim.payment_intents.get_mut(&id)) {
        pi.status = PiStatus::Canceled;
        pi.canceled_at = Some(now);
    }
    let obj = render(sim, &sim.invoices[inv_id]);
    sim.emit("invoice.voided", obj, None, now);
}

/// `POST /v1/invoices/{id}/mark_uncollectible`.
pub fn mark_uncollectible(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let inv = get(sim, ctx.id(0))?.clone();
    if inv.status != InvoiceStatus::Open {
        return Err(ApiError::invalid_request(None, "You can only mark an open invoice as uncollectible."));
    }
    let now = sim.now_for_customer(&inv.customer);
    if let Some(i) = sim.invoices.get_mut(&inv.id) {
        i.status = InvoiceStatus::Uncollectible;
        i.marked_uncollectible_at = Some(now);
        i.next_payment_attempt = None;
    }
    let obj = render(sim, &sim.invoices[&inv.id]);
    sim.emit("invoice.marked_uncollectible", obj.clone(), None, now);
    Ok(obj)
}

/// `GET /v1/invoiceitems` (`customer`, `pending`).
pub fn list_invoice_items(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let customer = p.str("customer")?;
    let pending = p.bool("pending")?;
    let items = newest_first(
        sim.invoice_items
            .values()
            .filter(|ii| customer.is_none_or(|c| ii.customer == c) && pending.is_none_or(|pd| ii.invoice.is_none() == pd)),
        |ii| ii.seq,
        |ii| (ii.id.clone(), render_invoice_item(sim, ii)),
    );
    paginate(p, items, "/v1/invoiceitems")
}

pub fn retrieve_payment_intent(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let pi = sim.payment_intents.get(ctx.id(0)).ok_or_else(|| ApiError::no_such("payment_intent", ctx.id(0), Some("intent")))?;
    Ok(render_payment_intent(sim, pi))
}

/// `POST /v1/payment_intents/{id}/confirm`: the customer pays an invoice's payment
/// intent on-session (e.g. the first invoice of a `default_incomplete` subscription).
/// `payment_method` may be a test token, which is attached to the customer first.
pub fn confirm_payment_intent(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let pi = sim.payment_intents.get(ctx.id(0)).cloned().ok_or_else(|| ApiError::no_such("payment_intent", ctx.id(0), Some("intent")))?;
    if matches!(pi.status, PiStatus::Succeeded | PiStatus::Canceled) {
        return Err(ApiError::invalid_request(
            None,
            format!("This PaymentIntent's status is {}, so it cannot be confirmed.", pi.status.as_str()),
        )
        .with_code("payment_intent_unexpected_state"));
    }
    let now = sim.now_for_customer(&pi.customer);
    let override_pm = match p.str("payment_method")? {
        None | Some("") => None,
        Some(token) => Some(payment_methods::attach_to(sim, token, &pi.customer, "payment_method")?),
    };
    let inv = sim.invoices.get(&pi.invoice).cloned().ok_or_else(|| ApiError::internal("payment intent without invoice"))?;
    if billing::resolve_payment_method(
        sim,
        &inv.customer,
        inv.subscription.as_deref(),
        inv.default_payment_method.as_deref(),
        override_pm.as_deref(),
    )
    .is_none()
    {
        return Err(ApiError::invalid_request(
            Some("payment_method"),
            "You cannot confirm this PaymentIntent because it's missing a payment method.",
        )
        .with_code("payment_intent_unexpected_state"));
    }
    match billing::attempt_payment(sim, &inv.id, now, override_pm.as_deref(), AttemptMode::OnSession) {
        Outcome::Paid => Ok(render_payment_intent(sim, &sim.payment_intents[&pi.id])),
        Outcome::Failed(e) => {
            billing::after_failure(sim, &inv.id, now, AttemptMode::OnSession);
            Err(payment_error(&e).with_extra("payment_intent", render_payment_intent(sim, &sim.payment_intents[&pi.id])))
        }
        Outcome::NoPaymentMethod => Err(no_payment_method()),
    }
}
