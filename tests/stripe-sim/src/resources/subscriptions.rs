//! `/v1/subscriptions`: create, retrieve, update (price swaps with prorations, trial
//! changes, period-end cancellation), cancel, resume, list.
//!
//! In the pinned API version the billing period lives on each subscription item
//! (`items.data[].current_period_start/end`), not on the subscription.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{apply_metadata, customers, metadata_json, nested_str, newest_first, paginate, Ctx};
use crate::billing::{self, LineSpec};
use crate::error::ApiError;
use crate::fixtures::fixture;
use crate::form::{map_bool, map_i64, map_str, Param};
use crate::ids::new_id;
use crate::state::{InvoiceItem, MissingPaymentMethod, Sim, SubItem, SubStatus, Subscription};
use crate::time::{add_intervals, Interval, DAY};

pub fn render_item(sim: &Sim, sub_id: &str, item: &SubItem) -> Value {
    let (price, plan) = match sim.prices.get(&item.price) {
        Some(p) => (super::products::render_price(p), super::products::render_plan(p)),
        None => (Value::Null, Value::Null),
    };
    let mut t = fixture("subscription_item");
    t.set("id", item.id.clone())
        .set("object", "subscription_item")
        .set("billing_thresholds", Value::Null)
        .set("created", item.created)
        .set("current_period_end", item.current_period_end)
        .set("current_period_start", item.current_period_start)
        .set("current_trial", Value::Null)
        .set("discounts", json!([]))
        .set("metadata", metadata_json(&item.metadata))
        .set("plan", plan)
        .set("price", price)
        .set("quantity", item.quantity)
        .set("subscription", sub_id)
        .set("tax_rates", json!([]));
    t.into_value()
}

pub fn render(sim: &Sim, s: &Subscription) -> Value {
    let items: Vec<Value> = s.items.iter().map(|i| render_item(sim, &s.id, i)).collect();
    let mut t = fixture("subscription");
    t.set("id", s.id.clone())
        .set("object", "subscription")
        .set("application", Value::Null)
        .set("application_fee_percent", Value::Null)
        .set("automatic_tax", json!({ "disabled_reason": null, "enabled": false, "liability": null }))
        .set("billing_cycle_anchor", s.billing_cycle_anchor)
        .set("billing_cycle_anchor_config", Value::Null)
        .set("billing_mode", json!({ "type": "classic", "flexible": null }))
        .set("billing_schedules", json!([]))
        .set("billing_thresholds", Value::Null)
        .set("cancel_at", s.cancel_at)
        .set("cancel_at_period_end", s.cancel_at_period_end)
        .set("canceled_at", s.canceled_at)
        .set(
            "cancellation_details",
            json!({
                "comment": s.cancellation_comment,
                "feedback": s.cancellation_feedback,
                "feedback_option": null,
                "reason": s.cancellation_reason
            }),
        )
        .set("collection_method", "charge_automatically")
        .set("created", s.created)
        .set("currency", s.currency.clone())
        .set("customer", s.customer.clone())
        .set("customer_account", Value::Null)
        .set("days_until_due", Value::Null)
        .set("default_payment_method", s.default_payment_method.clone())
        .set("default_source", Value::Null)
        .set("default_tax_rates", json!([]))
        .set("description", s.description.clone())
        .set("discounts", json!([]))
        .set("ended_at", s.ended_at)
        .set(
            "invoice_settings",
            json!({ "account_tax_ids": null, "custom_fields": null, "description": null, "footer": null, "issuer": { "type": "self" } }),
        )
        .set(
            "items",
            json!({
                "object": "list",
                "data": items,
                "has_more": false,
                "url": format!("/v1/subscription_items?subscription={}", s.id)
            }),
        )
        .set("latest_invoice", s.latest_invoice.clone())
        .set("livemode", false)
        .set("managed_payments", Value::Null)
        .set("metadata", metadata_json(&s.metadata))
        .set("next_pending_invoice_item_invoice", Value::Null)
        .set("on_behalf_of", Value::Null)
        .set("pause_collection", Value::Null)
        .set(
            "payment_settings",
            json!({ "payment_method_options": null, "payment_method_types": null, "save_default_payment_method": "off" }),
        )
        .set("pending_invoice_item_interval", Value::Null)
        .set("pending_setup_intent", Value::Null)
        .set("pending_update", Value::Null)
        .set("schedule", Value::Null)
        .set("start_date", s.start_date)
        .set("status", s.status.as_str())
        .set("test_clock", s.test_clock.clone())
        .set("transfer_data", Value::Null)
        .set("trial_end", s.trial_end)
        .set(
            "trial_settings",
            json!({ "end_behavior": { "billing_cycle_anchor": null, "missing_payment_method": s.missing_payment_method.as_str() } }),
        )
        .set("trial_start", s.trial_start);
    t.into_value()
}

/// Renders by id (`Null` if it vanished, which the engine never does).
pub fn render_id(sim: &Sim, id: &str) -> Value {
    sim.subscriptions.get(id).map(|s| render(sim, s)).unwrap_or(Value::Null)
}

fn get<'a>(sim: &'a Sim, id: &str) -> Result<&'a Subscription, ApiError> {
    sim.subscriptions.get(id).ok_or_else(|| ApiError::no_such("subscription", id, Some("id")))
}

/// A validated `items[n]` entry of a create or update call.
struct ItemParam {
    id: Option<String>,
    price: Option<String>,
    quantity: Option<u64>,
    deleted: bool,
    metadata: Option<BTreeMap<String, Param>>,
}

fn parse_items(sim: &Sim, ctx: &Ctx) -> Result<Vec<ItemParam>, ApiError> {
    let mut out = Vec::new();
    for (n, item) in ctx.params.map_list("items")?.into_iter().enumerate() {
        let name = |f: &str| format!("items[{n}][{f}]");
        let price = map_str(item, "price", &name("price"))?.filter(|s| !s.is_empty()).map(str::to_string);
        if let Some(pr) = &price {
            let price = sim.prices.get(pr).ok_or_else(|| ApiError::no_such_param("price", pr, &name("price")))?;
            if price.recurring.is_none() {
                return Err(ApiError::invalid_request(
                    Some(&name("price")),
                    format!(
                        "The price specified is set to `type=one_time` but this field only accepts prices with `type=recurring` ({pr})."
                    ),
                ));
            }
            if !price.active {
                return Err(ApiError::invalid_request(Some(&name("price")), format!("The price specified is inactive ({pr}).")));
            }
        }
        if item.contains_key("plan") {
            return Err(ApiError::invalid_request(Some(&name("plan")), "stripe-sim supports `price`, not the legacy `plan` parameter."));
        }
        let quantity = match map_i64(item, "quantity", &name("quantity"))? {
            None => None,
            Some(q) if (1..=1_000_000).contains(&q) => Some(q as u64),
            Some(_) => return Err(ApiError::invalid_request(Some(&name("quantity")), "Invalid quantity: must be between 1 and 1000000.")),
        };
        let metadata = match item.get("metadata") {
            None => None,
            Some(Param::Map(m)) => Some(m.clone()),
            Some(Param::Value(v)) if v.is_empty() => Some(BTreeMap::new()),
            Some(_) => return Err(ApiError::invalid_request(Some(&name("metadata")), "Invalid hash.")),
        };
        out.push(ItemParam {
            id: map_str(item, "id", &name("id"))?.filter(|s| !s.is_empty()).map(str::to_string),
            price,
            quantity,
            deleted: map_bool(item, "deleted", &name("deleted"))?.unwrap_or(false),
            metadata,
        });
    }
    Ok(out)
}

fn item_metadata(src: Option<&BTreeMap<String, Param>>) -> crate::state::Metadata {
    src.map(|m| {
        m.iter()
            .filter_map(|(k, v)| match v {
                Param::Value(v) if !v.is_empty() => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect()
    })
    .unwrap_or_default()
}

/// Currency and interval shared by all `prices`, or a 400 naming the conflict.
fn common_terms(sim: &Sim, prices: &[&str]) -> Result<(String, Interval, u32), ApiError> {
    let mut terms: Option<(String, Interval, u32)> = None;
    for id in prices {
        let p = sim.prices.get(*id).ok_or_else(|| ApiError::no_such_param("price", id, "items"))?;
        let r = p.recurring.as_ref().ok_or_else(|| ApiError::invalid_request(Some("items"), "Prices must be recurring."))?;
        let t = (p.currency.clone(), r.interval, r.interval_count);
        match &terms {
            None => terms = Some(t),
            Some(existing) if existing.0 != t.0 => {
                return Err(ApiError::invalid_request(Some("items"), "All prices on a subscription must have the same currency."))
            }
            Some(existing) if (existing.1, existing.2) != (t.1, t.2) => {
                return Err(ApiError::invalid_request(
                    Some("items"),
                    "stripe-sim requires all prices on a subscription to share one billing interval.",
                ))
            }
            _ => {}
        }
    }
    terms.ok_or_else(|| ApiError::missing_param("items"))
}

fn parse_missing_pm(ctx: &Ctx) -> Result<Option<MissingPaymentMethod>, ApiError> {
    let v = nested_str(&ctx.params, &["trial_settings", "end_behavior", "missing_payment_method"])?;
    Ok(match v {
        None => None,
        Some("cancel") => Some(MissingPaymentMethod::Cancel),
        Some("pause") => Some(MissingPaymentMethod::Pause),
        Some("create_invoice") => Some(MissingPaymentMethod::CreateInvoice),
        Some(other) => {
            return Err(ApiError::invalid_request(
                Some("trial_settings[end_behavior][missing_payment_method]"),
                format!("Invalid value `{other}`: must be one of cancel, pause, create_invoice."),
            ))
        }
    })
}

/// What a create or update call asks of `cancel_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CancelAtParam {
    /// Cancel at this (future) time.
    At(i64),
    /// `cancel_at=` (empty): no scheduled cancellation.
    Clear,
}

/// `cancel_at`: a future Unix timestamp, `min_period_end` / `max_period_end` (the same
/// time in the sim, whose items share one period), or empty to clear. Refused together
/// with `cancel_at_period_end=true`, as Stripe does.
fn parse_cancel_at(ctx: &Ctx, now: i64, period_end: i64) -> Result<Option<CancelAtParam>, ApiError> {
    let p = &ctx.params;
    let parsed = match p.str("cancel_at")? {
        None => return Ok(None),
        Some("") => CancelAtParam::Clear,
        Some("min_period_end" | "max_period_end") => CancelAtParam::At(period_end),
        Some(v) => {
            let t = v.parse::<i64>().map_err(|_| {
                ApiError::invalid_request(Some("cancel_at"), format!("Invalid cancel_at `{v}`: expected a Unix timestamp."))
            })?;
            if t <= now {
                return Err(ApiError::invalid_request(
                    Some("cancel_at"),
                    format!("cancel_at must be a time in the future (the subscription's current time is {now}, got {t})."),
                ));
            }
            CancelAtParam::At(t)
        }
    };
    if parsed != CancelAtParam::Clear && p.bool("cancel_at_period_end")? == Some(true) {
        return Err(ApiError::invalid_request(
            Some("cancel_at"),
            "You may only specify one of these parameters: cancel_at, cancel_at_period_end.",
        ));
    }
    Ok(Some(parsed))
}

/// `payment_behavior`: what to do when the first (or an immediate) payment fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PaymentBehavior {
    Allow,
    Default,
    Error,
}

fn parse_payment_behavior(ctx: &Ctx) -> Result<PaymentBehavior, ApiError> {
    match ctx.params.str("payment_behavior")? {
        None | Some("allow_incomplete") => Ok(PaymentBehavior::Allow),
        Some("default_incomplete") => Ok(PaymentBehavior::Default),
        Some("error_if_incomplete") => Ok(PaymentBehavior::Error),
        Some("pending_if_incomplete") => Err(ApiError::invalid_request(
            Some("payment_behavior"),
            "stripe-sim does not implement `pending_if_incomplete` (pending updates).",
        )),
        Some(other) => Err(ApiError::invalid_request(
            Some("payment_behavior"),
            format!("Invalid payment_behavior `{other}`: must be one of allow_incomplete, default_incomplete, error_if_incomplete, pending_if_incomplete."),
        )),
    }
}

fn check_default_pm(sim: &Sim, customer: &str, pm: &str) -> Result<(), ApiError> {
    let attached = sim.payment_methods.get(pm).is_some_and(|m| m.customer.as_deref() == Some(customer));
    if attached {
        Ok(())
    } else {
        Err(ApiError::invalid_request(
            Some("default_payment_method"),
            format!("The customer does not have a payment method with the ID {pm}. The payment method must be attached to the customer."),
        )
        .with_code("resource_missing"))
    }
}

/// The 402 / 400 `error_if_incomplete` answers with when the first charge would fail.
fn incomplete_error(sim: &Sim, pm: Option<&str>) -> ApiError {
    match pm.and_then(|id| sim.payment_methods.get(id)) {
        None => ApiError::invalid_request(None, "This customer has no attached payment source or default payment method.")
            .with_code("resource_missing"),
        Some(m) => match m.card.behavior {
            crate::state::CardBehavior::RequiresAuthentication => ApiError::card_declined(
                "authentication_required",
                "authentication_required",
                "Your card was declined. This transaction requires authentication.",
            ),
            crate::state::CardBehavior::ChargesFail(dc) | crate::state::CardBehavior::DeclinesOnAttach(dc) => {
                ApiError::card_declined("card_declined", dc, "Your card was declined.")
            }
            crate::state::CardBehavior::Succeeds => ApiError::internal("unexpected payment failure"),
        },
    }
}

/// Accepted on create. `collection_method` must be `charge_automatically`;
/// `off_session`, `payment_settings[…]` and `proration_behavior` are accepted and ignored.
pub const CREATE_PARAMS: &[&str] = &[
    "customer",
    "cancel_at",
    "items[][price]",
    "items[][quantity]",
    "items[][metadata][*]",
    "items[][plan]",
    "items[][id]",
    "items[][deleted]",
    "trial_period_days",
    "trial_end",
    "trial_settings[end_behavior][missing_payment_method]",
    "payment_behavior",
    "default_payment_method",
    "metadata[*]",
    "cancel_at_period_end",
    "description",
    "collection_method",
    "off_session",
    "payment_settings[*]",
    "proration_behavior",
];

pub fn create(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let customer = customers::live(sim, p.required_str("customer")?, Some("customer"))?.clone();
    let now = sim.now_in_clock(customer.test_clock.as_deref());
    let items = parse_items(sim, ctx)?;
    if items.is_empty() {
        return Err(ApiError::missing_param("items"));
    }
    let mut price_ids = Vec::new();
    for (n, it) in items.iter().enumerate() {
        if it.id.is_some() || it.deleted {
            return Err(ApiError::invalid_request(
                Some(&format!("items[{n}][id]")),
                "Items of a new subscription cannot name an existing item.",
            ));
        }
        price_ids.push(it.price.clone().ok_or_else(|| ApiError::missing_param(&format!("items[{n}][price]")))?);
    }
    let refs: Vec<&str> = price_ids.iter().map(String::as_str).collect();
    let (currency, interval, count) = common_terms(sim, &refs)?;
    if let Some(c) = &customer.currency {
        if *c != currency {
            return Err(ApiError::invalid_request(
                Some("currency"),
                format!("The customer is billed in {c}; prices in {currency} cannot be combined."),
            ));
        }
    }
    if let Some(method) = p.str("collection_method")? {
        if method != "charge_automatically" {
            return Err(ApiError::invalid_request(Some("collection_method"), "stripe-sim implements only `charge_automatically`."));
        }
    }
    let behavior = parse_payment_behavior(ctx)?;
    let default_pm = match p.str("default_payment_method")? {
        None | Some("") => None,
        Some(pm) => {
            check_default_pm(sim, &customer.id, pm)?;
            Some(pm.to_string())
        }
    };
    // Trial: `trial_end` (a time or `now`, which means no trial) or `trial_period_days`.
    let trial_end = match (p.timestamp_or_now("trial_end", now)?, p.i64("trial_period_days")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_request(
                Some("trial_end"),
                "You may only specify one of these parameters: trial_end, trial_period_days.",
            ))
        }
        (Some(crate::form::TimeOrNow::Now(_)), None) => None,
        (Some(crate::form::TimeOrNow::At(t)), None) => {
            if t <= now {
                return Err(ApiError::invalid_request(
                    Some("trial_end"),
                    "Invalid timestamp: must be an integer Unix timestamp in the future.",
                ));
            }
            if t > now + 730 * DAY {
                return Err(ApiError::invalid_request(Some("trial_end"), "Trials can be at most 730 days long."));
            }
            Some(t)
        }
        (None, Some(days)) if (0..=730).contains(&days) => (days > 0).then_some(now + days * DAY),
        (None, Some(_)) => {
            return Err(ApiError::invalid_request(Some("trial_period_days"), "trial_period_days must be between 0 and 730."))
        }
        (None, None) => None,
    };
    let missing_pm = parse_missing_pm(ctx)?.unwrap_or(MissingPaymentMethod::CreateInvoice);
    let cancel_at_period_end = p.bool("cancel_at_period_end")?.unwrap_or(false);
    let natural_end = match trial_end {
        Some(t) => t,
        None => add_intervals(now, interval, count, 1).ok_or_else(|| ApiError::internal("period overflow"))?,
    };
    let cancel_at = match parse_cancel_at(ctx, now, natural_end)? {
        Some(CancelAtParam::At(t)) => Some(t),
        Some(CancelAtParam::Clear) | None => cancel_at_period_end.then_some(natural_end),
    };
    let cancel_requested = cancel_at.is_some();
    let mut metadata = Default::default();
    apply_metadata(&mut metadata, p)?;

    let pm = billing::resolve_payment_method(sim, &customer.id, None, None, default_pm.as_deref());
    let pays = billing::would_pay(sim, pm.as_deref());
    if trial_end.is_none() && behavior == PaymentBehavior::Error && !pays {
        let total: i64 = refs.iter().filter_map(|id| sim.prices.get(*id)).map(|p| p.unit_amount).sum();
        if total > 0 {
            return Err(incomplete_error(sim, pm.as_deref()));
        }
    }

    let anchor = trial_end.unwrap_or(now);
    // A cancel_at inside the first period (or trial) ends that period there.
    let period_end = cancel_at.map_or(natural_end, |c| c.min(natural_end));
    let sub_id = new_id("sub");
    let sub_items: Vec<SubItem> = items
        .iter()
        .zip(&price_ids)
        .map(|(it, price)| SubItem {
            id: new_id("si"),
            created: now,
            price: price.clone(),
            quantity: it.quantity.unwrap_or(1),
            metadata: item_metadata(it.metadata.as_ref()),
            current_period_start: now,
            current_period_end: period_end,
        })
        .collect();
    // With allow_incomplete / error_if_incomplete and a card that pays, Stripe creates the
    // subscription already active; default_incomplete starts incomplete (see README).
    let status = if trial_end.is_some() {
        SubStatus::Trialing
    } else if pays && behavior != PaymentBehavior::Default {
        SubStatus::Active
    } else {
        SubStatus::Incomplete
    };
    let seq = sim.next_seq();
    sim.subscriptions.insert(
        sub_id.clone(),
        Subscription {
            id: sub_id.clone(),
            seq,
            customer: customer.id.clone(),
            created: now,
            start_date: now,
            status,
            items: sub_items,
            currency: currency.clone(),
            billing_cycle_anchor: anchor,
            cancel_at_period_end,
            cancel_at,
            canceled_at: cancel_requested.then_some(now),
            ended_at: None,
            cancellation_reason: cancel_requested.then_some("cancellation_requested"),
            cancellation_comment: None,
            cancellation_feedback: None,
            trial_start: trial_end.map(|_| now),
            trial_end,
            missing_payment_method: missing_pm,
            trial_will_end_sent: false,
            default_payment_method: default_pm,
            latest_invoice: None,
            metadata,
            description: super::optional_string(p, "description")?.flatten(),
            test_clock: customer.test_clock.clone(),
        },
    );
    if let Some(c) = sim.customers.get_mut(&customer.id) {
        c.currency.get_or_insert(currency);
    }
    let lines = if trial_end.is_some() {
        // A trial starts with a zero-amount invoice, as in Stripe.
        billing::item_lines(sim, &sub_id, now, period_end)
            .into_iter()
            .map(|l| LineSpec {
                amount: 0,
                description: format!("Trial period for {}", l.description.split(" (at").next().unwrap_or("")),
                ..l
            })
            .collect()
    } else if period_end < natural_end {
        billing::shorten_lines(billing::item_lines(sim, &sub_id, now, natural_end), now, period_end, natural_end)
    } else {
        billing::item_lines(sim, &sub_id, now, period_end)
    };
    let inv_id = billing::build_subscription_invoice(sim, &sub_id, "subscription_create", now, (now, now), lines)?;
    let obj = render_id(sim, &sub_id);
    sim.emit("customer.subscription.created", obj, None, now);
    trial_will_end_if_due(sim, &sub_id, now);
    billing::announce_created(sim, &inv_id, now);
    billing::finalize(sim, &inv_id, now);
    let open = sim.invoices.get(&inv_id).is_some_and(|i| i.status == crate::state::InvoiceStatus::Open);
    // With nothing to charge, the first invoice simply waits for a payment method
    // (the client confirms its payment intent or pays the invoice). Under
    // default_incomplete Stripe charges nothing either: the payment intent waits, with
    // the payment method it would use, for the client to confirm it or pay the invoice.
    if open && pm.is_some() {
        if behavior == PaymentBehavior::Default {
            billing::await_confirmation(sim, &inv_id, pm.as_deref());
        } else {
            billing::attempt_payment(sim, &inv_id, now, None, billing::AttemptMode::Automatic);
        }
    }
    Ok(render_id(sim, &sub_id))
}

pub fn retrieve(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let s = get(sim, ctx.id(0))?;
    Ok(render(sim, s))
}

/// A change to one item, for prorations.
struct ItemChange {
    item_id: String,
    old: Option<(String, i64)>,
    new: Option<(String, i64)>,
}

fn product_name(sim: &Sim, price: &str) -> String {
    sim.prices.get(price).and_then(|p| sim.products.get(&p.product)).map(|p| p.name.clone()).unwrap_or_else(|| price.to_string())
}

fn item_amount(sim: &Sim, price: &str, qty: u64) -> i64 {
    sim.prices.get(price).map(|p| p.unit_amount.saturating_mul(i64::try_from(qty).unwrap_or(i64::MAX))).unwrap_or(0)
}

/// Accepted on update (`off_session` is accepted and ignored).
pub const UPDATE_PARAMS: &[&str] = &[
    "items[][id]",
    "items[][price]",
    "items[][quantity]",
    "items[][deleted]",
    "items[][metadata][*]",
    "items[][plan]",
    "cancel_at",
    "proration_behavior",
    "proration_date",
    "payment_behavior",
    "default_payment_method",
    "metadata[*]",
    "cancel_at_period_end",
    "cancellation_details[comment]",
    "cancellation_details[feedback]",
    "trial_end",
    "trial_settings[end_behavior][missing_payment_method]",
    "description",
    "off_session",
];

/// Accepted by `DELETE` (`invoice_now` and `prorate` are accepted and ignored).
pub const CANCEL_PARAMS: &[&str] = &["cancellation_details[comment]", "cancellation_details[feedback]", "invoice_now", "prorate"];

pub fn update(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let sub = get(sim, ctx.id(0))?.clone();
    let now = sim.now_for_customer(&sub.customer);
    if sub.status.is_ended() {
        if let Some(bad) = p.keys().find(|k| !["metadata", "cancellation_details", "expand"].contains(k)) {
            return Err(ApiError::invalid_request(
                Some(bad),
                "A canceled subscription can only update its cancellation_details and metadata.",
            ));
        }
    }
    let proration = match p.str("proration_behavior")? {
        None | Some("create_prorations") => "create_prorations",
        Some("none") => "none",
        Some("always_invoice") => "always_invoice",
        Some(other) => {
            return Err(ApiError::invalid_request(
                Some("proration_behavior"),
                format!("Invalid proration_behavior `{other}`: must be one of always_invoice, create_prorations, none."),
            ))
        }
    };
    let behavior = parse_payment_behavior(ctx)?;
    let (period_start, period_end) = sub.period();
    let proration_date = match p.i64("proration_date")? {
        None => now,
        Some(t) if (period_start..=period_end).contains(&t) => t,
        Some(_) => {
            return Err(ApiError::invalid_request(Some("proration_date"), "proration_date must be within the current billing period."))
        }
    };

    let mut next = sub.clone();
    apply_metadata(&mut next.metadata, p)?;
    if let Some(d) = super::optional_string(p, "description")? {
        next.description = d;
    }
    if let Some(c) = nested_str(p, &["cancellation_details", "comment"])? {
        next.cancellation_comment = (!c.is_empty()).then(|| c.to_string());
    }
    if let Some(f) = nested_str(p, &["cancellation_details", "feedback"])? {
        next.cancellation_feedback = (!f.is_empty()).then(|| f.to_string());
    }
    if let Some(mpm) = parse_missing_pm(ctx)? {
        next.missing_payment_method = mpm;
    }
    match p.str("default_payment_method")? {
        None => {}
        Some("") => next.default_payment_method = None,
        Some(pm) => {
            check_default_pm(sim, &sub.customer, pm)?;
            next.default_payment_method = Some(pm.to_string());
        }
    }
    // Scheduled cancellation. A `cancel_at` inside the current period moves its end
    // there; clearing one that did restores the period's natural end.
    let natural_end = natural_period_end(sim, &sub);
    let mut new_current_end: Option<i64> = None;
    match (parse_cancel_at(ctx, now, period_end)?, p.bool("cancel_at_period_end")?) {
        (Some(CancelAtParam::At(t)), _) => {
            next.cancel_at_period_end = false;
            next.cancel_at = Some(t);
            next.canceled_at = Some(now);
            next.cancellation_reason = Some("cancellation_requested");
            new_current_end = Some(t.min(natural_end));
        }
        (_, Some(true)) => {
            next.cancel_at_period_end = true;
            next.cancel_at = Some(period_end);
            next.canceled_at = Some(now);
            next.cancellation_reason = Some("cancellation_requested");
        }
        (Some(CancelAtParam::Clear), _) | (None, Some(false)) => {
            next.cancel_at_period_end = false;
            next.cancel_at = None;
            next.canceled_at = None;
            next.cancellation_reason = None;
            new_current_end = Some(natural_end);
        }
        (None, None) => {}
    }
    let new_current_end = new_current_end.filter(|e| *e != period_end);

    // Items: change price/quantity of existing ones, add new ones, delete.
    let item_params = parse_items(sim, ctx)?;
    let mut changes: Vec<ItemChange> = Vec::new();
    for (n, it) in item_params.iter().enumerate() {
        match &it.id {
            Some(id) => {
                let idx = next.items.iter().position(|i| &i.id == id).ok_or_else(|| {
                    ApiError::invalid_request(Some(&format!("items[{n}][id]")), format!("No such subscription item: '{id}'"))
                        .with_code("resource_missing")
                })?;
                let old = next.items[idx].clone();
                let old_amount = (old.price.clone(), item_amount(sim, &old.price, old.quantity));
                if it.deleted {
                    next.items.remove(idx);
                    changes.push(ItemChange { item_id: old.id, old: Some(old_amount), new: None });
                    continue;
                }
                let item = &mut next.items[idx];
                if let Some(price) = &it.price {
                    item.price = price.clone();
                }
                if let Some(q) = it.quantity {
                    item.quantity = q;
                }
                if let Some(m) = &it.metadata {
                    item.metadata = item_metadata(Some(m));
                }
                let new_amount = (item.price.clone(), item_amount(sim, &item.price, item.quantity));
                if new_amount != old_amount {
                    changes.push(ItemChange { item_id: item.id.clone(), old: Some(old_amount), new: Some(new_amount) });
                }
            }
            None => {
                if it.deleted {
                    return Err(ApiError::missing_param(&format!("items[{n}][id]")));
                }
                let price = it.price.clone().ok_or_else(|| ApiError::missing_param(&format!("items[{n}][price]")))?;
                if next.items.iter().any(|i| i.price == price) {
                    return Err(ApiError::invalid_request(
                        Some(&format!("items[{n}][price]")),
                        "Cannot add multiple subscription items with the same price.",
                    ));
                }
                let item = SubItem {
                    id: new_id("si"),
                    created: now,
                    quantity: it.quantity.unwrap_or(1),
                    metadata: item_metadata(it.metadata.as_ref()),
                    current_period_start: period_start,
                    current_period_end: period_end,
                    price,
                };
                changes.push(ItemChange {
                    item_id: item.id.clone(),
                    old: None,
                    new: Some((item.price.clone(), item_amount(sim, &item.price, item.quantity))),
                });
                next.items.push(item);
            }
        }
    }
    if next.items.is_empty() {
        return Err(ApiError::invalid_request(Some("items"), "A subscription must keep at least one item."));
    }
    let refs: Vec<String> = next.items.iter().map(|i| i.price.clone()).collect();
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    let (currency, interval, count) = common_terms(sim, &refs)?;
    if currency != sub.currency {
        return Err(ApiError::invalid_request(Some("items"), "A subscription's currency cannot change."));
    }
    let old_terms = billing::sub_interval(sim, &sub.id);
    let interval_changed = !changes.is_empty() && old_terms != Some((interval, count));

    // Trial changes.
    let trial = p.timestamp_or_now("trial_end", now)?;
    let mut end_trial_now = false;
    match trial {
        None => {}
        Some(crate::form::TimeOrNow::Now(_)) if sub.status == SubStatus::Trialing => end_trial_now = true,
        Some(crate::form::TimeOrNow::Now(_)) => {}
        Some(crate::form::TimeOrNow::At(t)) => {
            if t <= now {
                return Err(ApiError::invalid_request(Some("trial_end"), "Invalid timestamp: must be in the future, or `now`."));
            }
            if sub.status != SubStatus::Trialing {
                return Err(ApiError::invalid_request(
                    Some("trial_end"),
                    "stripe-sim can only move the trial end of a trialing subscription.",
                ));
            }
            next.trial_end = Some(t);
            next.billing_cycle_anchor = t;
            next.trial_will_end_sent = false;
            for item in &mut next.items {
                item.current_period_end = t;
            }
        }
    }

    // Whether this call invoices right away, and so whether error_if_incomplete applies.
    let prorate = !changes.is_empty() && proration != "none" && next.status != SubStatus::Trialing && !end_trial_now;
    // A new interval (outside a trial) or an ended trial starts a new period now,
    // billed in full at once, as Stripe does when the billing cycle anchor resets.
    let reset_period = end_trial_now || (interval_changed && next.status != SubStatus::Trialing);
    // Moving the current period's end (cancel_at) credits or charges the difference.
    let period_prorations = new_current_end.is_some() && proration != "none" && next.status != SubStatus::Trialing && !reset_period;
    let invoice_now = reset_period || ((prorate || period_prorations) && proration == "always_invoice");
    if invoice_now && behavior == PaymentBehavior::Error {
        let pm = billing::resolve_payment_method(sim, &sub.customer, None, None, next.default_payment_method.as_deref());
        if !billing::would_pay(sim, pm.as_deref()) {
            return Err(incomplete_error(sim, pm.as_deref()));
        }
    }

    // Everything is valid: commit.
    let before = render(sim, &sub);
    let sub_id = sub.id.clone();
    // A trial ended now without a payment method follows its end behaviour, as at the
    // natural trial end: `cancel` ends the subscription, `pause` pauses it.
    let has_pm = billing::resolve_payment_method(sim, &sub.customer, None, None, next.default_payment_method.as_deref()).is_some();
    if end_trial_now && !has_pm && next.missing_payment_method != MissingPaymentMethod::CreateInvoice {
        next.trial_end = Some(now);
        let pause = next.missing_payment_method == MissingPaymentMethod::Pause;
        if pause {
            next.status = SubStatus::Paused;
        }
        sim.subscriptions.insert(sub_id.clone(), next);
        if pause {
            let after = render_id(sim, &sub_id);
            sim.emit("customer.subscription.paused", after.clone(), None, now);
            sim.emit_updated("customer.subscription.updated", &before, after, now);
        } else {
            billing::cancel_now(sim, &sub_id, now, Some("cancellation_requested"));
        }
        return Ok(render_id(sim, &sub_id));
    }
    let new_period_end = if reset_period {
        add_intervals(now, interval, count, 1).ok_or_else(|| ApiError::internal("period overflow"))?
    } else {
        period_end
    };
    // A cancel_at before the end of a period that starts now cuts it short.
    let reset_end = match next.cancel_at {
        Some(c) if reset_period && !next.cancel_at_period_end && c < new_period_end => c,
        _ => new_period_end,
    };
    if reset_period {
        next.billing_cycle_anchor = now;
        for item in &mut next.items {
            item.current_period_start = now;
            item.current_period_end = reset_end;
        }
        if next.cancel_at_period_end {
            next.cancel_at = Some(new_period_end);
        }
    } else if let Some(end) = new_current_end {
        for item in &mut next.items {
            item.current_period_end = end;
        }
    }
    if end_trial_now {
        next.trial_end = Some(now);
        next.status = SubStatus::Active;
    }
    sim.subscriptions.insert(sub_id.clone(), next);

    let mut created_items = Vec::new();
    if prorate {
        let date = proration_date;
        for ch in &changes {
            if let Some((price, amount)) = &ch.old {
                let credit = -billing::prorate(*amount, period_start, period_end, date);
                if credit != 0 {
                    created_items.push(add_invoice_item(
                        sim,
                        &sub_id,
                        &ch.item_id,
                        price,
                        credit,
                        date,
                        period_end,
                        format!("Unused time on {}", product_name(sim, price)),
                    ));
                }
            }
            // With a new interval the new price is billed in full on the new period instead.
            if !interval_changed {
                if let Some((price, amount)) = &ch.new {
                    let debit = billing::prorate(*amount, period_start, period_end, date);
                    if debit != 0 {
                        created_items.push(add_invoice_item(
                            sim,
                            &sub_id,
                            &ch.item_id,
                            price,
                            debit,
                            date,
                            period_end,
                            format!("Remaining time on {}", product_name(sim, price)),
                        ));
                    }
                }
            }
        }
    }
    if let (true, Some(end)) = (period_prorations, new_current_end) {
        let items: Vec<SubItem> = sim.subscriptions.get(&sub_id).map(|s| s.items.clone()).unwrap_or_default();
        for item in items {
            let amount = item_amount(sim, &item.price, item.quantity);
            let delta = billing::share(amount, end - period_end, natural_end - period_start);
            if delta == 0 {
                continue;
            }
            let (from, to, what) = if delta < 0 { (end, period_end, "Unused time on") } else { (period_end, end, "Remaining time on") };
            created_items.push(add_invoice_item(
                sim,
                &sub_id,
                &item.id,
                &item.price,
                delta,
                from,
                to,
                format!("{what} {} (cancel_at changed)", product_name(sim, &item.price)),
            ));
        }
    }
    let inv_id = if invoice_now {
        let lines = if reset_period {
            let full = billing::item_lines(sim, &sub_id, now, new_period_end);
            if reset_end < new_period_end {
                billing::shorten_lines(full, now, reset_end, new_period_end)
            } else {
                full
            }
        } else {
            Vec::new()
        };
        Some(billing::build_subscription_invoice(sim, &sub_id, "subscription_update", now, (now, now), lines)?)
    } else {
        None
    };
    let after = render_id(sim, &sub_id);
    sim.emit_updated("customer.subscription.updated", &before, after, now);
    trial_will_end_if_due(sim, &sub_id, now);
    for ii in created_items {
        if let Some(item) = sim.invoice_items.get(&ii) {
            let obj = super::invoices::render_invoice_item(sim, item);
            sim.emit("invoiceitem.created", obj, None, now);
        }
    }
    if let Some(inv_id) = inv_id {
        billing::announce_created(sim, &inv_id, now);
        billing::finalize_and_charge(sim, &inv_id, now);
    }
    Ok(render_id(sim, &sub_id))
}

/// Sends `customer.subscription.trial_will_end` at once for a trial that ends within the
/// notice period (3 days by default), as Stripe does for short trials; longer trials get
/// it from the test clock.
fn trial_will_end_if_due(sim: &mut Sim, sub_id: &str, now: i64) {
    let notice = i64::try_from(sim.config.trial_will_end_notice.as_secs()).unwrap_or(0);
    let due = sim
        .subscriptions
        .get(sub_id)
        .is_some_and(|s| s.status == SubStatus::Trialing && !s.trial_will_end_sent && s.trial_end.is_some_and(|t| t - now <= notice));
    if !due {
        return;
    }
    if let Some(s) = sim.subscriptions.get_mut(sub_id) {
        s.trial_will_end_sent = true;
    }
    let obj = render_id(sim, sub_id);
    sim.emit("customer.subscription.trial_will_end", obj, None, now);
}

/// Where the current period would end without a `cancel_at`: the trial end while
/// trialing, else the next billing-cycle boundary after the period start.
fn natural_period_end(sim: &Sim, sub: &Subscription) -> i64 {
    let (start, end) = sub.period();
    if sub.status == SubStatus::Trialing {
        return sub.trial_end.unwrap_or(end).max(end);
    }
    billing::sub_interval(sim, &sub.id)
        .and_then(|(interval, count)| crate::time::next_period_end(sub.billing_cycle_anchor, interval, count, start))
        .map_or(end, |natural| natural.max(end))
}

#[allow(clippy::too_many_arguments)]
fn add_invoice_item(
    sim: &mut Sim,
    sub_id: &str,
    item_id: &str,
    price: &str,
    amount: i64,
    from: i64,
    to: i64,
    description: String,
) -> String {
    let Some(sub) = sim.subscriptions.get(sub_id).cloned() else {
        return String::new();
    };
    let id = new_id("ii");
    let seq = sim.next_seq();
    let ii = InvoiceItem {
        id: id.clone(),
        seq,
        customer: sub.customer,
        subscription: Some(sub_id.to_string()),
        subscription_item: Some(item_id.to_string()),
        price: price.to_string(),
        amount,
        currency: sub.currency,
        description,
        period_start: from,
        period_end: to,
        proration: true,
        date: from,
        invoice: None,
        test_clock: sub.test_clock,
    };
    sim.invoice_items.insert(id.clone(), ii);
    id
}

/// `DELETE /v1/subscriptions/{id}`: cancel now.
pub fn cancel(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let sub = get(sim, ctx.id(0))?.clone();
    if sub.status.is_ended() {
        return Err(ApiError::invalid_request(None, format!("The subscription {} has already been canceled.", sub.id)));
    }
    let now = sim.now_for_customer(&sub.customer);
    if let Some(s) = sim.subscriptions.get_mut(&sub.id) {
        if let Some(c) = nested_str(p, &["cancellation_details", "comment"])? {
            s.cancellation_comment = (!c.is_empty()).then(|| c.to_string());
        }
        if let Some(f) = nested_str(p, &["cancellation_details", "feedback"])? {
            s.cancellation_feedback = (!f.is_empty()).then(|| f.to_string());
        }
        // An explicit cancel replaces any earlier period-end request.
        s.canceled_at = Some(now);
    }
    billing::cancel_now(sim, &sub.id, now, Some("cancellation_requested"));
    Ok(render_id(sim, &sub.id))
}

/// `POST /v1/subscriptions/{id}/resume` for a `paused` subscription: a new period
/// starts now and is invoiced at once.
pub fn resume(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let sub = get(sim, ctx.id(0))?.clone();
    if sub.status != SubStatus::Paused {
        return Err(ApiError::invalid_request(None, "Only a paused subscription can be resumed."));
    }
    match ctx.params.str("billing_cycle_anchor")? {
        None | Some("now") => {}
        Some(_) => {
            return Err(ApiError::invalid_request(Some("billing_cycle_anchor"), "stripe-sim resumes with `billing_cycle_anchor=now` only."))
        }
    }
    let now = sim.now_for_customer(&sub.customer);
    let (interval, count) =
        billing::sub_interval(sim, &sub.id).ok_or_else(|| ApiError::internal("subscription without a recurring price"))?;
    let end = add_intervals(now, interval, count, 1).ok_or_else(|| ApiError::internal("period overflow"))?;
    let before = render(sim, &sub);
    if let Some(s) = sim.subscriptions.get_mut(&sub.id) {
        s.status = SubStatus::Active;
        s.billing_cycle_anchor = now;
        for item in &mut s.items {
            item.current_period_start = now;
            item.current_period_end = end;
        }
    }
    let lines = billing::item_lines(sim, &sub.id, now, end);
    let inv_id = billing::build_subscription_invoice(sim, &sub.id, "subscription_update", now, (now, now), lines)?;
    let after = render_id(sim, &sub.id);
    sim.emit("customer.subscription.resumed", after.clone(), None, now);
    sim.emit_updated("customer.subscription.updated", &before, after, now);
    billing::announce_created(sim, &inv_id, now);
    billing::finalize_and_charge(sim, &inv_id, now);
    Ok(render_id(sim, &sub.id))
}

/// `GET /v1/subscriptions` with `customer`, `price`, `status` (default: all but
/// canceled/incomplete_expired; `all`; `ended`), `test_clock`.
pub fn list(sim: &mut Sim, ctx: &Ctx) -> Result<Value, ApiError> {
    let p = &ctx.params;
    let customer = p.str("customer")?;
    let price = p.str("price")?;
    let clock = p.str("test_clock")?;
    let status = p.str("status")?;
    if let Some(s) = status {
        if !["all", "ended"].contains(&s) && SubStatus::parse(s).is_none() {
            return Err(ApiError::invalid_request(Some("status"), format!("Invalid status: {s}")));
        }
    }
    let items = newest_first(
        sim.subscriptions.values().filter(|s| {
            customer.is_none_or(|c| s.customer == c)
                && price.is_none_or(|pr| s.items.iter().any(|i| i.price == pr))
                && clock.is_none_or(|k| s.test_clock.as_deref() == Some(k))
                && match status {
                    None => !s.status.is_ended(),
                    Some("all") => true,
                    Some("ended") => s.status.is_ended(),
                    Some(st) => s.status.as_str() == st,
                }
        }),
        |s| s.seq,
        |s| (s.id.clone(), render(sim, s)),
    );
    paginate(p, items, "/v1/subscriptions")
}
