//! The billing engine: invoices, payment attempts, dunning and the subscription state
//! machine. Shared by the API handlers (create, update, pay) and by test clock
//! advancement (renewals, retries, trial ends), so both paths behave identically.
//!
//! Simplifications (documented in README.md): invoices are finalized and charged the
//! moment they are created (Stripe waits about an hour for subscription renewals), there
//! are no taxes, discounts or coupons, and all items of a subscription share one interval.

use crate::config::DunningFinalAction;
use crate::error::ApiError;
use crate::ids::new_id;
use crate::resources::{invoices, subscriptions};
use crate::state::{
    CardBehavior, Invoice, InvoiceStatus, Line, MissingPaymentMethod, PaymentError, PaymentIntent, PiStatus, Sim, SubStatus,
};
use crate::time::add_intervals;

/// One line to put on a new invoice.
#[derive(Debug, Clone)]
pub struct LineSpec {
    pub amount: i64,
    pub description: String,
    pub period_start: i64,
    pub period_end: i64,
    pub price: String,
    pub quantity: u64,
    pub subscription_item: Option<String>,
}

/// How a payment attempt was triggered; decides retries and 3DS behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptMode {
    /// By the billing engine (creation, renewal, retry): off-session, schedules retries.
    Automatic,
    /// `POST /v1/invoices/{id}/pay`: off-session, does not move the retry schedule.
    Manual,
    /// `POST /v1/payment_intents/{id}/confirm`: the customer is present, so a card that
    /// needs authentication is taken as authenticated.
    OnSession,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Paid,
    Failed(PaymentError),
    /// No payment method to charge at all.
    NoPaymentMethod,
}

/// The amount of `unit_amount × quantity` for the part `[from, end)` of `[start, end)`,
/// rounded half away from zero in integer minor units (i128 so nothing overflows).
pub fn prorate(amount: i64, start: i64, end: i64, from: i64) -> i64 {
    share(amount, (end - from).clamp(0, (end - start).max(0)), end - start)
}

/// `amount × part / whole`, rounded half away from zero in integer minor units (the
/// one rounding rule of every proration in the sim). `whole` below 1 counts as 1.
pub fn share(amount: i64, part: i64, whole: i64) -> i64 {
    let total = i128::from(whole.max(1));
    let num = i128::from(amount) * i128::from(part);
    let rounded = if num >= 0 { (2 * num + total) / (2 * total) } else { -((-2 * num + total) / (2 * total)) };
    i64::try_from(rounded).unwrap_or(0)
}

/// Lines for a period `[start, cut)` that a `cancel_at` cuts short of its natural end
/// `full_end`: each amount is the share `(cut - start) / (full_end - start)` of the
/// full price (Stripe's default `create_prorations` for the final, partial period).
pub fn shorten_lines(lines: Vec<LineSpec>, start: i64, cut: i64, full_end: i64) -> Vec<LineSpec> {
    lines
        .into_iter()
        .map(|l| LineSpec {
            amount: share(l.amount, cut - start, full_end - start),
            description: format!("{} (prorated until cancellation)", l.description),
            period_end: cut,
            ..l
        })
        .collect()
}

/// The payment method an invoice would be charged with: the override, else the
/// invoice's, else the subscription's, else the customer's default — and only if that
/// payment method is still attached to the customer.
pub fn resolve_payment_method(
    sim: &Sim,
    customer: &str,
    subscription: Option<&str>,
    invoice_pm: Option<&str>,
    override_pm: Option<&str>,
) -> Option<String> {
    let sub_pm = subscription.and_then(|s| sim.subscriptions.get(s)).and_then(|s| s.default_payment_method.as_deref());
    let cus_pm = sim.customers.get(customer).and_then(|c| c.default_payment_method.as_deref());
    let candidate = override_pm.or(invoice_pm).or(sub_pm).or(cus_pm)?;
    sim.payment_methods.get(candidate).filter(|pm| pm.customer.as_deref() == Some(customer)).map(|pm| pm.id.clone())
}

/// Whether charging `pm` off-session would succeed (used for `error_if_incomplete`).
pub fn would_pay(sim: &Sim, pm: Option<&str>) -> bool {
    pm.and_then(|id| sim.payment_methods.get(id)).is_some_and(|pm| pm.card.behavior == CardBehavior::Succeeds)
}

/// A draft invoice for `sub_id` with `lines` plus the subscription's pending invoice
/// items (prorations). Becomes the subscription's `latest_invoice`. Emits nothing.
pub fn build_subscription_invoice(
    sim: &mut Sim,
    sub_id: &str,
    billing_reason: &'static str,
    now: i64,
    period: (i64, i64),
    lines: Vec<LineSpec>,
) -> Result<String, ApiError> {
    let sub = sim.subscriptions.get(sub_id).cloned().ok_or_else(|| ApiError::internal("subscription vanished"))?;
    let customer = sim.customers.get(&sub.customer).cloned().ok_or_else(|| ApiError::internal("customer vanished"))?;
    let id = new_id("in");
    let mut inv_lines: Vec<Line> = lines
        .into_iter()
        .map(|l| Line {
            id: new_id("il"),
            amount: l.amount,
            currency: sub.currency.clone(),
            description: l.description,
            period_start: l.period_start,
            period_end: l.period_end,
            price: l.price,
            quantity: l.quantity,
            proration: false,
            subscription: Some(sub.id.clone()),
            subscription_item: l.subscription_item,
            invoice_item: None,
            metadata: Default::default(),
        })
        .collect();
    // Pending items (prorations) go on this invoice, oldest first.
    let mut pending: Vec<_> = sim
        .invoice_items
        .values()
        .filter(|ii| ii.subscription.as_deref() == Some(sub_id) && ii.invoice.is_none())
        .map(|ii| (ii.seq, ii.id.clone()))
        .collect();
    pending.sort();
    for (_, ii_id) in pending {
        if let Some(ii) = sim.invoice_items.get_mut(&ii_id) {
            ii.invoice = Some(id.clone());
            inv_lines.push(Line {
                id: new_id("il"),
                amount: ii.amount,
                currency: ii.currency.clone(),
                description: ii.description.clone(),
                period_start: ii.period_start,
                period_end: ii.period_end,
                price: ii.price.clone(),
                quantity: 1,
                proration: ii.proration,
                subscription: ii.subscription.clone(),
                subscription_item: ii.subscription_item.clone(),
                invoice_item: Some(ii.id.clone()),
                metadata: Default::default(),
            });
        }
    }
    let total: i64 = inv_lines.iter().map(|l| l.amount).sum();
    let net = total + customer.balance;
    let seq = sim.next_seq();
    let inv = Invoice {
        id: id.clone(),
        seq,
        customer: sub.customer.clone(),
        subscription: Some(sub.id.clone()),
        status: InvoiceStatus::Draft,
        billing_reason,
        created: now,
        currency: sub.currency.clone(),
        period_start: period.0,
        period_end: period.1,
        lines: inv_lines,
        total,
        starting_balance: customer.balance,
        ending_balance: None,
        amount_due: net.max(0),
        amount_paid: 0,
        attempt_count: 0,
        attempted: false,
        auto_advance: true,
        next_payment_attempt: None,
        number: None,
        finalized_at: None,
        paid_at: None,
        voided_at: None,
        marked_uncollectible_at: None,
        payment_intent: None,
        default_payment_method: None,
        metadata: Default::default(),
        subscription_metadata: Some(sub.metadata.clone()),
        test_clock: sub.test_clock.clone(),
        customer_email: customer.email.clone(),
        customer_name: customer.name.clone(),
    };
    sim.invoices.insert(id.clone(), inv);
    if let Some(s) = sim.subscriptions.get_mut(sub_id) {
        s.latest_invoice = Some(id.clone());
    }
    Ok(id)
}

fn emit_invoice(sim: &mut Sim, type_: &str, inv_id: &str, at: i64) {
    if let Some(inv) = sim.invoices.get(inv_id) {
        let obj = invoices::render(sim, inv);
        sim.emit(type_, obj, None, at);
    }
}

fn emit_payment_intent(sim: &mut Sim, type_: &str, pi_id: &str, at: i64) {
    if let Some(pi) = sim.payment_intents.get(pi_id) {
        let obj = invoices::render_payment_intent(sim, pi);
        sim.emit(type_, obj, None, at);
    }
}

/// Emits `invoice.created` for a draft built by [`build_subscription_invoice`].
pub fn announce_created(sim: &mut Sim, inv_id: &str, now: i64) {
    emit_invoice(sim, "invoice.created", inv_id, now);
}

/// Draft → open: numbers the invoice, applies the customer balance, creates the
/// payment intent and emits `invoice.finalized`. A zero-amount invoice is paid at once.
pub fn finalize(sim: &mut Sim, inv_id: &str, now: i64) {
    let Some(inv) = sim.invoices.get(inv_id).cloned() else {
        return;
    };
    if inv.status != InvoiceStatus::Draft {
        return;
    }
    let number = match sim.customers.get_mut(&inv.customer) {
        Some(c) => {
            let n = format!("{}-{:04}", c.invoice_prefix, c.next_invoice_sequence);
            c.next_invoice_sequence += 1;
            // The balance is consumed (or credit carried forward) when the invoice finalizes.
            c.balance = (inv.total + inv.starting_balance).min(0);
            n
        }
        None => format!("SIM-{:04}", inv.seq),
    };
    let mut pi_id = None;
    if inv.amount_due > 0 {
        let id = new_id("pi");
        sim.payment_intents.insert(
            id.clone(),
            PaymentIntent {
                id: id.clone(),
                created: now,
                amount: inv.amount_due,
                amount_received: 0,
                currency: inv.currency.clone(),
                customer: inv.customer.clone(),
                invoice: inv.id.clone(),
                payment_method: None,
                status: PiStatus::RequiresPaymentMethod,
                client_secret: format!("{id}_secret_{}", crate::ids::random_id("", 24).trim_start_matches('_')),
                last_payment_error: None,
                canceled_at: None,
                paid_at: None,
                invoice_payment_id: new_id("inpay"),
            },
        );
        pi_id = Some(id);
    }
    if let Some(i) = sim.invoices.get_mut(inv_id) {
        i.status = InvoiceStatus::Open;
        i.number = Some(number);
        i.finalized_at = Some(now);
        i.ending_balance = Some((i.total + i.starting_balance).min(0));
        i.payment_intent = pi_id.clone();
    }
    if let Some(pi) = &pi_id {
        emit_payment_intent(sim, "payment_intent.created", pi, now);
    }
    emit_invoice(sim, "invoice.finalized", inv_id, now);
    if inv.amount_due == 0 {
        mark_paid(sim, inv_id, now, false);
    }
}

/// Leaves an open invoice's payment intent `requires_confirmation` with `pm` on it, and the
/// invoice unattempted: nothing is charged until the client confirms or pays.
pub fn await_confirmation(sim: &mut Sim, inv_id: &str, pm: Option<&str>) {
    let Some(pi_id) = sim.invoices.get(inv_id).and_then(|i| i.payment_intent.clone()) else {
        return;
    };
    if let Some(pi) = sim.payment_intents.get_mut(&pi_id) {
        if pi.status == PiStatus::RequiresPaymentMethod {
            pi.payment_method = pm.map(str::to_string);
            pi.status = PiStatus::RequiresConfirmation;
        }
    }
}

/// Open → paid, with `invoice.paid` (and `invoice.payment_succeeded` unless it was paid
/// out of band), then lets the subscription react (incomplete/past_due/unpaid → active).
pub fn mark_paid(sim: &mut Sim, inv_id: &str, now: i64, out_of_band: bool) {
    let Some(inv) = sim.invoices.get_mut(inv_id) else {
        return;
    };
    inv.status = InvoiceStatus::Paid;
    inv.amount_paid = if out_of_band { 0 } else { inv.amount_due };
    inv.paid_at = Some(now);
    inv.next_payment_attempt = None;
    let sub_id = inv.subscription.clone();
    emit_invoice(sim, "invoice.paid", inv_id, now);
    if !out_of_band {
        emit_invoice(sim, "invoice.payment_succeeded", inv_id, now);
    }
    if let Some(sub_id) = sub_id {
        subscription_after_paid(sim, &sub_id, now);
    }
}

fn subscription_after_paid(sim: &mut Sim, sub_id: &str, now: i64) {
    let Some(sub) = sim.subscriptions.get(sub_id) else {
        return;
    };
    if !matches!(sub.status, SubStatus::Incomplete | SubStatus::PastDue | SubStatus::Unpaid) {
        return;
    }
    // Stay past_due while another invoice of this subscription is still unpaid.
    let still_owing = sim
        .invoices
        .values()
        .any(|i| i.subscription.as_deref() == Some(sub_id) && i.status == InvoiceStatus::Open && i.amount_remaining() > 0);
    if still_owing {
        return;
    }
    let before = subscriptions::render(sim, sub);
    if let Some(s) = sim.subscriptions.get_mut(sub_id) {
        s.status = SubStatus::Active;
    }
    let after = subscriptions::render_id(sim, sub_id);
    sim.emit_updated("customer.subscription.updated", &before, after, now);
}

/// Charges an open invoice. Emits the payment intent and invoice events; on failure
/// of an automatic attempt schedules the next retry. Subscription reactions to a
/// failure are left to [`after_failure`] because they depend on the caller.
pub fn attempt_payment(sim: &mut Sim, inv_id: &str, now: i64, override_pm: Option<&str>, mode: AttemptMode) -> Outcome {
    let Some(inv) = sim.invoices.get(inv_id).cloned() else {
        return Outcome::NoPaymentMethod;
    };
    if inv.status != InvoiceStatus::Open {
        return Outcome::Paid;
    }
    let pm = resolve_payment_method(sim, &inv.customer, inv.subscription.as_deref(), inv.default_payment_method.as_deref(), override_pm);
    let behavior = pm.as_ref().and_then(|id| sim.payment_methods.get(id)).map(|p| p.card.behavior);
    let result = match behavior {
        None => Err(None),
        Some(CardBehavior::Succeeds) => Ok(()),
        Some(CardBehavior::RequiresAuthentication) if mode == AttemptMode::OnSession => Ok(()),
        Some(CardBehavior::RequiresAuthentication) => Err(Some(PaymentError {
            code: "authentication_required",
            decline_code: "authentication_required",
            message: "Your card was declined. This transaction requires authentication.".into(),
            payment_method: pm.clone(),
        })),
        Some(CardBehavior::ChargesFail(dc)) | Some(CardBehavior::DeclinesOnAttach(dc)) => Err(Some(PaymentError {
            code: "card_declined",
            decline_code: dc,
            message: "Your card was declined.".into(),
            payment_method: pm.clone(),
        })),
    };
    if let Some(i) = sim.invoices.get_mut(inv_id) {
        i.attempt_count += 1;
        i.attempted = true;
    }
    match result {
        Ok(()) => {
            if let Some(pi) = inv.payment_intent.as_ref().and_then(|p| sim.payment_intents.get_mut(p)) {
                pi.status = PiStatus::Succeeded;
                pi.amount_received = pi.amount;
                pi.payment_method = pm.clone();
                pi.last_payment_error = None;
                pi.paid_at = Some(now);
            }
            if let Some(pi) = &inv.payment_intent {
                emit_payment_intent(sim, "payment_intent.succeeded", pi, now);
            }
            mark_paid(sim, inv_id, now, false);
            Outcome::Paid
        }
        Err(error) => {
            let requires_action = error.as_ref().is_some_and(|e| e.code == "authentication_required");
            if let Some(pi) = inv.payment_intent.as_ref().and_then(|p| sim.payment_intents.get_mut(p)) {
                pi.status = if requires_action { PiStatus::RequiresAction } else { PiStatus::RequiresPaymentMethod };
                pi.payment_method = pm.clone();
                pi.last_payment_error = error.clone();
            }
            if mode == AttemptMode::Automatic {
                let next = next_retry(sim, &inv, now);
                if let Some(i) = sim.invoices.get_mut(inv_id) {
                    i.next_payment_attempt = next;
                }
            }
            if let (Some(pi), Some(_)) = (&inv.payment_intent, &error) {
                emit_payment_intent(sim, "payment_intent.payment_failed", pi, now);
            }
            if requires_action {
                emit_invoice(sim, "invoice.payment_action_required", inv_id, now);
            }
            emit_invoice(sim, "invoice.payment_failed", inv_id, now);
            match error {
                Some(e) => Outcome::Failed(e),
                None => Outcome::NoPaymentMethod,
            }
        }
    }
}

/// When the next automatic attempt happens after a failed one, or `None` when the
/// schedule is used up. The first invoice of a subscription is never retried: the
/// subscription stays `incomplete` until the customer pays or it expires.
fn next_retry(sim: &Sim, inv: &Invoice, now: i64) -> Option<i64> {
    if inv.subscription.is_none() || inv.billing_reason == "subscription_create" {
        return None;
    }
    // attempt_count already counts the attempt that just failed.
    let index = usize::try_from(inv.attempt_count).ok()?;
    let delay = sim.config.retry_schedule.get(index)?;
    Some(now + i64::try_from(delay.as_secs()).unwrap_or(i64::MAX / 4))
}

/// How a subscription reacts to a failed automatic or manual payment of one of its
/// invoices: a renewal failure makes an active subscription `past_due`; the last failed
/// retry applies [`DunningFinalAction`].
pub fn after_failure(sim: &mut Sim, inv_id: &str, now: i64, mode: AttemptMode) {
    let Some(inv) = sim.invoices.get(inv_id).cloned() else {
        return;
    };
    let Some(sub_id) = inv.subscription.clone() else {
        return;
    };
    let Some(sub) = sim.subscriptions.get(&sub_id) else {
        return;
    };
    if inv.billing_reason == "subscription_create" || sub.status.is_ended() {
        return;
    }
    if matches!(sub.status, SubStatus::Active | SubStatus::Trialing) {
        let before = subscriptions::render(sim, sub);
        if let Some(s) = sim.subscriptions.get_mut(&sub_id) {
            s.status = SubStatus::PastDue;
        }
        let after = subscriptions::render_id(sim, &sub_id);
        sim.emit_updated("customer.subscription.updated", &before, after, now);
    }
    let exhausted = mode == AttemptMode::Automatic
        && sim.invoices.get(inv_id).is_some_and(|i| i.status == InvoiceStatus::Open && i.next_payment_attempt.is_none());
    if !exhausted {
        return;
    }
    match sim.config.dunning_final_action {
        DunningFinalAction::Cancel => cancel_now(sim, &sub_id, now, Some("payment_failed")),
        DunningFinalAction::MarkUnpaid => set_status(sim, &sub_id, SubStatus::Unpaid, now),
        DunningFinalAction::LeavePastDue => {}
    }
}

/// Changes the status and emits `customer.subscription.updated`.
pub fn set_status(sim: &mut Sim, sub_id: &str, status: SubStatus, now: i64) {
    let Some(sub) = sim.subscriptions.get(sub_id) else {
        return;
    };
    let before = subscriptions::render(sim, sub);
    if let Some(s) = sim.subscriptions.get_mut(sub_id) {
        s.status = status;
    }
    let after = subscriptions::render_id(sim, sub_id);
    sim.emit_updated("customer.subscription.updated", &before, after, now);
}

/// Ends the subscription now: `canceled`, `ended_at`, `customer.subscription.deleted`.
pub fn cancel_now(sim: &mut Sim, sub_id: &str, now: i64, reason: Option<&'static str>) {
    let Some(s) = sim.subscriptions.get_mut(sub_id) else {
        return;
    };
    if s.status.is_ended() {
        return;
    }
    s.status = SubStatus::Canceled;
    s.canceled_at = Some(s.canceled_at.unwrap_or(now));
    s.ended_at = Some(now);
    s.cancellation_reason = reason.or(s.cancellation_reason);
    let obj = subscriptions::render_id(sim, sub_id);
    sim.emit("customer.subscription.deleted", obj, None, now);
}

/// Finalizes the new invoice of a subscription and charges it automatically, then
/// applies the failure reaction. Returns the outcome for callers that need it.
pub fn finalize_and_charge(sim: &mut Sim, inv_id: &str, now: i64) -> Outcome {
    finalize(sim, inv_id, now);
    let open = sim.invoices.get(inv_id).is_some_and(|i| i.status == InvoiceStatus::Open);
    if !open {
        return Outcome::Paid;
    }
    let outcome = attempt_payment(sim, inv_id, now, None, AttemptMode::Automatic);
    if !matches!(outcome, Outcome::Paid) {
        after_failure(sim, inv_id, now, AttemptMode::Automatic);
    }
    outcome
}

/// Full-price lines for every item of a subscription over `[start, end)`.
pub fn item_lines(sim: &Sim, sub_id: &str, start: i64, end: i64) -> Vec<LineSpec> {
    let Some(sub) = sim.subscriptions.get(sub_id) else {
        return Vec::new();
    };
    sub.items
        .iter()
        .filter_map(|item| {
            let price = sim.prices.get(&item.price)?;
            let product = sim.products.get(&price.product).map(|p| p.name.clone()).unwrap_or_default();
            let qty = i64::try_from(item.quantity).unwrap_or(i64::MAX);
            Some(LineSpec {
                amount: price.unit_amount.saturating_mul(qty),
                description: format!(
                    "{} × {} (at {})",
                    item.quantity,
                    product,
                    crate::resources::format_money(price.unit_amount, &price.currency)
                ),
                period_start: start,
                period_end: end,
                price: price.id.clone(),
                quantity: item.quantity,
                subscription_item: Some(item.id.clone()),
            })
        })
        .collect()
}

/// The subscription's interval (all items share it).
pub fn sub_interval(sim: &Sim, sub_id: &str) -> Option<(crate::time::Interval, u32)> {
    let sub = sim.subscriptions.get(sub_id)?;
    let price = sim.prices.get(&sub.items.first()?.price)?;
    let r = price.recurring.as_ref()?;
    Some((r.interval, r.interval_count))
}

/// What happens at the end of a subscription's current period (driven by a test clock):
/// period-end cancellation, trial end, or a renewal with a new invoice.
pub fn period_end(sim: &mut Sim, sub_id: &str, at: i64) {
    let Some(sub) = sim.subscriptions.get(sub_id).cloned() else {
        return;
    };
    // `cancel_at_period_end` keeps `cancel_at` on the period end; a `cancel_at` timestamp
    // has already cut the period that contains it short, so it ends here too.
    if sub.cancel_at_period_end || sub.cancel_at.is_some_and(|c| c <= at) {
        cancel_now(sim, sub_id, at, Some("cancellation_requested"));
        return;
    }
    let was_trialing = sub.status == SubStatus::Trialing;
    if was_trialing {
        let has_pm = resolve_payment_method(sim, &sub.customer, Some(sub_id), None, None).is_some();
        if !has_pm {
            match sub.missing_payment_method {
                MissingPaymentMethod::Cancel => {
                    cancel_now(sim, sub_id, at, Some("cancellation_requested"));
                    return;
                }
                MissingPaymentMethod::Pause => {
                    let before = subscriptions::render(sim, &sub);
                    if let Some(s) = sim.subscriptions.get_mut(sub_id) {
                        s.status = SubStatus::Paused;
                    }
                    let after = subscriptions::render_id(sim, sub_id);
                    sim.emit("customer.subscription.paused", after.clone(), None, at);
                    sim.emit_updated("customer.subscription.updated", &before, after, at);
                    return;
                }
                MissingPaymentMethod::CreateInvoice => {}
            }
        }
    }
    renew(sim, sub_id, at, was_trialing);
}

/// Starts the next period at `at`: new item periods, `customer.subscription.updated`,
/// and a `subscription_cycle` invoice that is finalized and charged (drafts only for
/// `unpaid` subscriptions, as Stripe does).
fn renew(sim: &mut Sim, sub_id: &str, at: i64, ending_trial: bool) {
    let Some(sub) = sim.subscriptions.get(sub_id).cloned() else {
        return;
    };
    let Some((interval, count)) = sub_interval(sim, sub_id) else {
        return;
    };
    let (old_start, old_end) = sub.period();
    let anchor = sub.billing_cycle_anchor;
    let full_end = crate::time::next_period_end(anchor, interval, count, at)
        .or_else(|| add_intervals(at, interval, count, 1))
        .unwrap_or(at + crate::time::DAY * 30);
    // The period that contains `cancel_at` ends there, and is billed for its part only.
    let new_end = match sub.cancel_at {
        Some(c) if c > at && c < full_end => c,
        _ => full_end,
    };
    let before = subscriptions::render(sim, &sub);
    if let Some(s) = sim.subscriptions.get_mut(sub_id) {
        for item in &mut s.items {
            item.current_period_start = at;
            item.current_period_end = new_end;
        }
        if ending_trial {
            s.status = SubStatus::Active;
        }
    }
    let mut lines = item_lines(sim, sub_id, at, new_end);
    if new_end < full_end {
        lines = shorten_lines(lines, at, new_end, full_end);
    }
    // The cycle invoice covers the new period for licensed (in-advance) prices.
    let inv_id = match build_subscription_invoice(sim, sub_id, "subscription_cycle", at, (old_start, old_end), lines) {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = ?e, "renewal invoice could not be built");
            return;
        }
    };
    let after = subscriptions::render_id(sim, sub_id);
    sim.emit_updated("customer.subscription.updated", &before, after, at);
    announce_created(sim, &inv_id, at);
    if sub.status == SubStatus::Unpaid {
        if let Some(i) = sim.invoices.get_mut(&inv_id) {
            i.auto_advance = false;
        }
        return;
    }
    finalize_and_charge(sim, &inv_id, at);
}

#[cfg(test)]
mod tests {
    use super::prorate;

    #[test]
    fn proration_is_integer_and_rounds_half_away_from_zero() {
        // Half of a 999 period is 499.5 → 500.
        assert_eq!(prorate(999, 0, 100, 50), 500);
        assert_eq!(prorate(-999, 0, 100, 50), -500);
        assert_eq!(prorate(4999, 0, 30, 10), 3333);
        assert_eq!(prorate(1000, 0, 100, 0), 1000);
        assert_eq!(prorate(1000, 0, 100, 100), 0);
        // Times outside the period clamp instead of going negative or above full price.
        assert_eq!(prorate(1000, 0, 100, 150), 0);
        assert_eq!(prorate(1000, 0, 100, -10), 1000);
        assert_eq!(prorate(i64::MAX, 0, 3, 1), i64::MAX / 3 * 2 + 1);
    }
}
