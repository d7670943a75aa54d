//! Behaviour per flow, through HTTP only, with a local signature-checking webhook
//! receiver: renewals, dunning, trials, period-end cancellation, prorations,
//! incomplete subscriptions, idempotency, errors, chaos, retries, faults, counters.

mod common;

use std::time::Duration;

use common::{Api, Receiver, DAY, T0};
use serde_json::Value;
use stripe_sim::{ChaosConfig, DeliveryStatus, DunningFinalAction, Fault, SimConfig, WebhookEndpointConfig, WebhookRetry};

/// January 2025 has 31 days: the first monthly period from T0.
const JAN: i64 = 31 * DAY;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// Event types received, without the clock's and payment intents' own events.
fn billing_types(hook: &Receiver) -> Vec<String> {
    hook.types().into_iter().filter(|t| !t.starts_with("test_helpers.") && !t.starts_with("payment_intent.")).collect()
}

async fn subscribe(api: &Api, customer: &str, extra: &[(&str, &str)]) -> Value {
    let mut form = vec![("customer", customer), ("items[0][price]", "price_premium_monthly")];
    form.extend_from_slice(extra);
    api.ok("/v1/subscriptions", &form).await
}

async fn latest_invoice(api: &Api, sub: &str) -> Value {
    let sub = api.fetch(&format!("/v1/subscriptions/{sub}")).await;
    api.fetch(&format!("/v1/invoices/{}", s(&sub["latest_invoice"]))).await
}

#[tokio::test]
async fn renewal_delivers_signed_events_in_order() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let hook = Receiver::registered(&sim).await;
    let clock = api.clock(T0).await;
    let cus = api.customer(&clock, Some("pm_card_visa")).await;
    let sub = subscribe(&api, &cus, &[]).await;
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["items"]["data"][0]["current_period_end"], T0 + JAN);
    common::idle(&sim).await;
    let creation = billing_types(&hook);
    assert_eq!(
        creation,
        [
            "customer.created",
            "payment_method.attached",
            "customer.subscription.created",
            "invoice.created",
            "invoice.finalized",
            "invoice.paid",
            "invoice.payment_succeeded"
        ]
    );
    hook.clear();

    api.advance(&clock, T0 + JAN + 3600).await;
    common::idle(&sim).await;
    assert_eq!(
        billing_types(&hook),
        ["customer.subscription.updated", "invoice.created", "invoice.finalized", "invoice.paid", "invoice.payment_succeeded"]
    );
    let got = hook.received();
    assert!(got.iter().all(|r| r.signature_ok), "every delivery carries a valid Stripe-Signature");
    let now = stripe_now();
    assert!(got.iter().all(|r| (r.signature_time - now).abs() < 60), "signature time is wall-clock time");
    let updated = got.iter().find(|r| r.type_() == "customer.subscription.updated").unwrap();
    assert_eq!(updated.object()["items"]["data"][0]["current_period_start"], T0 + JAN);
    assert_eq!(updated.object()["items"]["data"][0]["current_period_end"], T0 + JAN + 28 * DAY);
    assert_eq!(updated.event["data"]["previous_attributes"]["items"]["data"][0]["current_period_start"], T0);
    assert_eq!(updated.event["created"], T0 + JAN);
    assert!(updated.event["request"]["id"].is_null(), "clock-driven events carry no request");
    let paid = got.iter().find(|r| r.type_() == "invoice.paid").unwrap();
    assert_eq!(paid.object()["billing_reason"], "subscription_cycle");
    assert_eq!(paid.object()["amount_paid"], 999);
    assert_eq!(paid.object()["parent"]["subscription_details"]["subscription"], sub["id"]);

    // Delivery order is event order: compare with the event log (newest first).
    let log = api.fetch("/v1/events?limit=100").await;
    let mut log_ids: Vec<String> = log["data"].as_array().unwrap().iter().map(|e| s(&e["id"]).to_string()).collect();
    log_ids.reverse();
    let received: Vec<String> = got.iter().map(|r| s(&r.event["id"]).to_string()).collect();
    let positions: Vec<usize> = received.iter().map(|id| log_ids.iter().position(|l| l == id).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "deliveries follow event order");
    assert!(sim.deliveries().iter().all(|d| d.status == DeliveryStatus::Delivered && d.attempts == 1));

    let invoices = api.fetch(&format!("/v1/invoices?subscription={}", s(&sub["id"]))).await;
    assert_eq!(invoices["data"].as_array().unwrap().len(), 2);
}

fn stripe_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A subscription paid by Visa whose card is then swapped for one that always fails.
async fn failing_subscription(api: &Api) -> (String, String, String) {
    let clock = api.clock(T0).await;
    let cus = api.customer(&clock, Some("pm_card_visa")).await;
    let sub = subscribe(api, &cus, &[]).await;
    let pm = api.ok("/v1/payment_methods/pm_card_chargeCustomerFail/attach", &[("customer", &cus)]).await;
    api.ok(&format!("/v1/customers/{cus}"), &[("invoice_settings[default_payment_method]", s(&pm["id"]))]).await;
    (clock, cus, s(&sub["id"]).to_string())
}

#[tokio::test]
async fn failing_card_goes_past_due_retries_then_cancels() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let hook = Receiver::registered(&sim).await;
    let (clock, _cus, sub) = failing_subscription(&api).await;
    common::idle(&sim).await;
    hook.clear();

    let renewal = T0 + JAN;
    api.advance(&clock, renewal + 60).await;
    let current = api.fetch(&format!("/v1/subscriptions/{sub}")).await;
    assert_eq!(current["status"], "past_due");
    let inv = latest_invoice(&api, &sub).await;
    assert_eq!((inv["status"].as_str(), inv["attempt_count"].as_i64()), (Some("open"), Some(1)));
    assert_eq!(inv["next_payment_attempt"], renewal + 3 * DAY);
    let inv_id = s(&inv["id"]).to_string();
    common::idle(&sim).await;
    let types = billing_types(&hook);
    assert!(types.ends_with(&["invoice.payment_failed".to_string(), "customer.subscription.updated".to_string()]), "{types:?}");
    let past_due = hook.received().into_iter().rfind(|r| r.type_() == "customer.subscription.updated").unwrap();
    assert_eq!(past_due.event["data"]["previous_attributes"]["status"], "active");

    api.advance(&clock, renewal + 3 * DAY + 60).await;
    let inv = api.fetch(&format!("/v1/invoices/{inv_id}")).await;
    assert_eq!((inv["attempt_count"].as_i64(), inv["next_payment_attempt"].as_i64()), (Some(2), Some(renewal + 8 * DAY)));

    // Through the remaining retries (+5d, +7d): the fourth failure ends it.
    api.advance(&clock, renewal + 20 * DAY).await;
    let inv = api.fetch(&format!("/v1/invoices/{inv_id}")).await;
    assert_eq!(inv["attempt_count"], 4);
    assert!(inv["next_payment_attempt"].is_null());
    let ended = api.fetch(&format!("/v1/subscriptions/{sub}")).await;
    assert_eq!(ended["status"], "canceled");
    assert_eq!(ended["ended_at"], renewal + 15 * DAY);
    assert_eq!(ended["cancellation_details"]["reason"], "payment_failed");
    common::idle(&sim).await;
    let types = billing_types(&hook);
    assert_eq!(types.iter().filter(|t| *t == "invoice.payment_failed").count(), 4);
    assert_eq!(types.last().map(String::as_str), Some("customer.subscription.deleted"));
    let customer = api.fetch(&format!("/v1/customers/{}", s(&ended["customer"]))).await;
    assert_eq!(customer["delinquent"], true);
}

#[tokio::test]
async fn exhausted_retries_can_mark_unpaid_instead() {
    let sim = common::sim_with(SimConfig {
        dunning_final_action: DunningFinalAction::MarkUnpaid,
        retry_schedule: vec![Duration::from_secs(DAY as u64)],
        ..SimConfig::default()
    })
    .await;
    let api = Api::new(&sim);
    let (clock, _cus, sub) = failing_subscription(&api).await;
    api.advance(&clock, T0 + JAN + 2 * DAY).await;
    assert_eq!(api.fetch(&format!("/v1/subscriptions/{sub}")).await["status"], "unpaid");
    // Later renewals of an unpaid subscription are left as drafts.
    api.advance(&clock, T0 + JAN + 29 * DAY).await;
    let inv = latest_invoice(&api, &sub).await;
    assert_eq!((inv["status"].as_str(), inv["billing_reason"].as_str()), (Some("draft"), Some("subscription_cycle")));
}

#[tokio::test]
async fn paying_a_past_due_invoice_with_a_new_card_reactivates() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let (clock, cus, sub) = failing_subscription(&api).await;
    api.advance(&clock, T0 + JAN + 60).await;
    let inv = latest_invoice(&api, &sub).await;
    let inv_id = s(&inv["id"]);
    // Paying with the failing default card: 402 with the decline, still open.
    let (status, err) = api.post(&format!("/v1/invoices/{inv_id}/pay"), &[]).await;
    assert_eq!(status, 402);
    assert_eq!(err["error"]["decline_code"], "generic_decline");
    let visa = api.ok("/v1/payment_methods/pm_card_mastercard/attach", &[("customer", &cus)]).await;
    let paid = api.ok(&format!("/v1/invoices/{inv_id}/pay"), &[("payment_method", s(&visa["id"]))]).await;
    assert_eq!((paid["status"].as_str(), paid["amount_remaining"].as_i64()), (Some("paid"), Some(0)));
    assert!(paid["next_payment_attempt"].is_null());
    assert_eq!(api.fetch(&format!("/v1/subscriptions/{sub}")).await["status"], "active");
    let (status, _) = api.post(&format!("/v1/invoices/{inv_id}/pay"), &[]).await;
    assert_eq!(status, 400, "an already paid invoice cannot be paid again");
}

#[tokio::test]
async fn trial_without_payment_method_cancels_after_notice() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let hook = Receiver::registered(&sim).await;
    let clock = api.clock(T0).await;
    let cus = api.customer(&clock, None).await;
    let sub =
        subscribe(&api, &cus, &[("trial_period_days", "7"), ("trial_settings[end_behavior][missing_payment_method]", "cancel")]).await;
    assert_eq!((sub["status"].as_str(), sub["trial_end"].as_i64()), (Some("trialing"), Some(T0 + 7 * DAY)));
    let first = latest_invoice(&api, s(&sub["id"])).await;
    assert_eq!((first["status"].as_str(), first["amount_due"].as_i64()), (Some("paid"), Some(0)));
    common::idle(&sim).await;
    hook.clear();

    api.advance(&clock, T0 + 5 * DAY).await;
    common::idle(&sim).await;
    assert_eq!(billing_types(&hook), ["customer.subscription.trial_will_end"]);
    assert_eq!(hook.received().iter().find(|r| r.type_().ends_with("trial_will_end")).unwrap().event["created"], T0 + 4 * DAY);

    api.advance(&clock, T0 + 8 * DAY).await;
    common::idle(&sim).await;
    assert_eq!(billing_types(&hook), ["customer.subscription.trial_will_end", "customer.subscription.deleted"]);
    let ended = api.fetch(&format!("/v1/subscriptions/{}", s(&sub["id"]))).await;
    assert_eq!((ended["status"].as_str(), ended["ended_at"].as_i64()), (Some("canceled"), Some(T0 + 7 * DAY)));
}

#[tokio::test]
async fn trial_end_with_card_pays_and_without_card_follows_end_behavior() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let hook = Receiver::registered(&sim).await;
    let clock = api.clock(T0).await;
    let with_card = api.customer(&clock, Some("pm_card_visa")).await;
    let paying = subscribe(&api, &with_card, &[("trial_period_days", "14")]).await;
    let no_card = api.customer(&clock, None).await;
    let paused =
        subscribe(&api, &no_card, &[("trial_period_days", "14"), ("trial_settings[end_behavior][missing_payment_method]", "pause")]).await;
    let invoiced = subscribe(&api, &no_card, &[("trial_period_days", "14")]).await;

    api.advance(&clock, T0 + 15 * DAY).await;
    let paying = api.fetch(&format!("/v1/subscriptions/{}", s(&paying["id"]))).await;
    assert_eq!(paying["status"], "active");
    assert_eq!(paying["items"]["data"][0]["current_period_start"], T0 + 14 * DAY);
    let inv = latest_invoice(&api, s(&paying["id"])).await;
    assert_eq!((inv["status"].as_str(), inv["amount_paid"].as_i64()), (Some("paid"), Some(999)));

    assert_eq!(api.fetch(&format!("/v1/subscriptions/{}", s(&paused["id"]))).await["status"], "paused");
    let invoiced = api.fetch(&format!("/v1/subscriptions/{}", s(&invoiced["id"]))).await;
    assert_eq!(invoiced["status"], "past_due");
    let inv = latest_invoice(&api, s(&invoiced["id"])).await;
    assert_eq!((inv["status"].as_str(), inv["amount_remaining"].as_i64()), (Some("open"), Some(999)));
    common::idle(&sim).await;
    assert!(hook.types().contains(&"customer.subscription.paused".to_string()));

    // A paused subscription resumes once the customer has a card.
    api.ok("/v1/payment_methods/pm_card_visa/attach", &[("customer", &no_card)]).await;
    let pm = api.fetch(&format!("/v1/customers/{no_card}/payment_methods")).await["data"][0]["id"].clone();
    api.ok(&format!("/v1/customers/{no_card}"), &[("invoice_settings[default_payment_method]", s(&pm))]).await;
    let resumed = api.ok(&format!("/v1/subscriptions/{}/resume", s(&paused["id"])), &[]).await;
    assert_eq!(resumed["status"], "active");
}

#[tokio::test]
async fn cancel_at_period_end_deletes_at_period_end() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let hook = Receiver::registered(&sim).await;
    let clock = api.clock(T0).await;
    let cus = api.customer(&clock, Some("pm_card_visa")).await;
    let sub = subscribe(&api, &cus, &[]).await;
    let id = s(&sub["id"]).to_string();
    let pending = api.ok(&format!("/v1/subscriptions/{id}"), &[("cancel_at_period_end", "true")]).await;
    assert_eq!((pending["status"].as_str(), pending["cancel_at"].as_i64()), (Some("active"), Some(T0 + JAN)));
    common::idle(&sim).await;
    let update = hook.received().into_iter().rfind(|r| r.type_() == "customer.subscription.updated").unwrap();
    assert_eq!(update.event["data"]["previous_attributes"]["cancel_at_period_end"], false);
    hook.clear();

    api.advance(&clock, T0 + JAN - DAY).await;
    assert_eq!(api.fetch(&format!("/v1/subscriptions/{id}")).await["status"], "active");
    api.advance(&clock, T0 + JAN + 3600).await;
    let ended = api.fetch(&format!("/v1/subscriptions/{id}")).await;
    assert_eq!((ended["status"].as_str(), ended["ended_at"].as_i64()), (Some("canceled"), Some(T0 + JAN)));
    common::idle(&sim).await;
    assert_eq!(billing_types(&hook), ["customer.subscription.deleted"]);
    let invoices = api.fetch(&format!("/v1/invoices?subscription={id}")).await;
    assert_eq!(invoices["data"].as_array().unwrap().len(), 1, "no renewal invoice after cancellation");
    // Ended subscriptions are hidden from the default list, shown with status=canceled.
    assert_eq!(api.fetch(&format!("/v1/subscriptions?customer={cus}")).await["data"].as_array().unwrap().len(), 0);
    assert_eq!(api.fetch(&format!("/v1/subscriptions?customer={cus}&status=canceled")).await["data"].as_array().unwrap().len(), 1);
    // Reactivating is refused once it ended; immediate cancel is refused twice.
    let (status, err) = api.post(&format!("/v1/subscriptions/{id}"), &[("cancel_at_period_end", "false")]).await;
    assert_eq!((status, s(&err["error"]["param"])), (400, "cancel_at_period_end"));
}

/// Rounds `amount × part / whole` half away from zero, independently of the sim.
fn share(amount: i64, part: i64, whole: i64) -> i64 {
    let n = amount as i128 * part as i128;
    let w = whole as i128;
    (if n >= 0 { (2 * n + w) / (2 * w) } else { -((-2 * n + w) / (2 * w)) }) as i64
}

#[tokio::test]
async fn proration_swap_amounts() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let clock = api.clock(T0).await;
    let cus = api.customer(&clock, Some("pm_card_visa")).await;
    let sub = subscribe(&api, &cus, &[]).await;
    let id = s(&sub["id"]).to_string();
    let item = s(&sub["items"]["data"][0]["id"]).to_string();
    api.advance(&clock, T0 + 10 * DAY).await;

    let swapped = api
        .ok(
            &format!("/v1/subscriptions/{id}"),
            &[("items[0][id]", &item), ("items[0][price]", "price_enterprise_monthly"), ("proration_behavior", "create_prorations")],
        )
        .await;
    assert_eq!(swapped["items"]["data"][0]["price"]["id"], "price_enterprise_monthly");
    assert_eq!(swapped["items"]["data"][0]["current_period_end"], T0 + JAN, "same interval keeps the period");
    let remaining = JAN - 10 * DAY;
    let credit = -share(999, remaining, JAN);
    let debit = share(4999, remaining, JAN);
    assert_eq!((credit, debit), (-677, 3386));
    let pending = api.fetch(&format!("/v1/invoiceitems?customer={cus}&pending=true")).await;
    let mut amounts: Vec<i64> = pending["data"].as_array().unwrap().iter().map(|i| i["amount"].as_i64().unwrap()).collect();
    amounts.sort();
    assert_eq!(amounts, vec![credit, debit]);
    assert!(pending["data"].as_array().unwrap().iter().all(|i| i["proration"] == true));

    // The prorations ride on the renewal invoice.
    api.advance(&clock, T0 + JAN + 60).await;
    let inv = latest_invoice(&api, &id).await;
    assert_eq!(inv["billing_reason"], "subscription_cycle");
    assert_eq!(inv["total"], 4999 + credit + debit);
    assert_eq!(inv["amount_paid"], 4999 + credit + debit);
    let lines = inv["lines"]["data"].as_array().unwrap();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines.iter().filter(|l| l["parent"]["subscription_item_details"]["proration"] == true).count(), 2);
    assert!(api.fetch(&format!("/v1/invoiceitems?customer={cus}&pending=true")).await["data"].as_array().unwrap().is_empty());

    // always_invoice: downgrade mid-period, invoiced now; the net credit goes to the balance.
    api.advance(&clock, T0 + JAN + 14 * DAY).await;
    let period = (T0 + JAN, T0 + JAN + 28 * DAY);
    let down = api
        .ok(
            &format!("/v1/subscriptions/{id}"),
            &[("items[0][id]", &item), ("items[0][price]", "price_premium_monthly"), ("proration_behavior", "always_invoice")],
        )
        .await;
    let inv = latest_invoice(&api, s(&down["id"])).await;
    let rem = period.1 - (T0 + JAN + 14 * DAY);
    let net = share(999, rem, period.1 - period.0) - share(4999, rem, period.1 - period.0);
    assert_eq!((inv["billing_reason"].as_str(), inv["total"].as_i64()), (Some("subscription_update"), Some(net)));
    assert_eq!((inv["amount_due"].as_i64(), inv["status"].as_str()), (Some(0), Some("paid")));
    assert_eq!(api.fetch(&format!("/v1/customers/{cus}")).await["balance"], net, "credit kept on the customer balance");

    // proration_behavior=none changes the price without any proration.
    let before = api.fetch(&format!("/v1/invoiceitems?customer={cus}")).await["data"].as_array().unwrap().len();
    api.ok(
        &format!("/v1/subscriptions/{id}"),
        &[("items[0][id]", &item), ("items[0][price]", "price_enterprise_monthly"), ("proration_behavior", "none")],
    )
    .await;
    assert_eq!(api.fetch(&format!("/v1/invoiceitems?customer={cus}")).await["data"].as_array().unwrap().len(), before);
}

#[tokio::test]
async fn default_incomplete_with_failing_card_stays_incomplete_then_expires() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let clock = api.clock(T0).await;
    let cus = api.customer(&clock, Some("pm_card_chargeCustomerFail")).await;
    let sub = subscribe(&api, &cus, &[("payment_behavior", "default_incomplete"), ("expand[]", "latest_invoice.payments")]).await;
    assert_eq!(sub["status"], "incomplete");
    let inv = &sub["latest_invoice"];
    // Nothing is charged before the client confirms.
    assert_eq!(
        (inv["status"].as_str(), inv["attempt_count"].as_i64(), inv["amount_remaining"].as_i64()),
        (Some("open"), Some(0), Some(999))
    );
    let payment = &inv["payments"]["data"][0];
    assert_eq!(payment["status"], "open");
    let pi_id = s(&payment["payment"]["payment_intent"]).to_string();
    let pi = api.fetch(&format!("/v1/payment_intents/{pi_id}")).await;
    assert_eq!(pi["status"], "requires_confirmation");
    assert!(pi["last_payment_error"].is_null());
    // Confirming charges the card, which declines.
    let (status, err) = api.post(&format!("/v1/payment_intents/{pi_id}/confirm"), &[]).await;
    assert_eq!((status, s(&err["error"]["decline_code"])), (402, "generic_decline"));
    let inv = latest_invoice(&api, s(&sub["id"])).await;
    assert_eq!((inv["status"].as_str(), inv["attempt_count"].as_i64()), (Some("open"), Some(1)));
    assert!(inv["next_payment_attempt"].is_null(), "the first invoice is not retried");
    let pi = api.fetch(&format!("/v1/payment_intents/{pi_id}")).await;
    assert_eq!(pi["status"], "requires_payment_method");
    assert_eq!(pi["last_payment_error"]["decline_code"], "generic_decline");
    assert_eq!(api.fetch(&format!("/v1/subscriptions/{}", s(&sub["id"]))).await["status"], "incomplete");

    // error_if_incomplete refuses up front and creates nothing.
    let (status, err) = api
        .post(
            "/v1/subscriptions",
            &[("customer", &cus), ("items[0][price]", "price_premium_monthly"), ("payment_behavior", "error_if_incomplete")],
        )
        .await;
    assert_eq!((status, s(&err["error"]["code"])), (402, "card_declined"));
    assert_eq!(api.fetch(&format!("/v1/subscriptions?customer={cus}&status=all")).await["data"].as_array().unwrap().len(), 1);

    api.advance(&clock, T0 + 24 * 3600).await;
    let expired = api.fetch(&format!("/v1/subscriptions/{}", s(&sub["id"]))).await;
    assert_eq!(expired["status"], "incomplete_expired");
    assert_eq!(latest_invoice(&api, s(&sub["id"])).await["status"], "void");
}

#[tokio::test]
async fn confirming_the_first_payment_intent_activates() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let clock = api.clock(T0).await;
    let cus = api.customer(&clock, None).await;
    let sub =
        subscribe(&api, &cus, &[("payment_behavior", "default_incomplete"), ("expand[]", "latest_invoice.confirmation_secret")]).await;
    assert_eq!(sub["status"], "incomplete");
    let secret = s(&sub["latest_invoice"]["confirmation_secret"]["client_secret"]);
    let pi_id = secret.split("_secret_").next().unwrap();
    assert_eq!(sub["latest_invoice"]["attempt_count"], 0, "nothing to charge without a payment method");
    let pi = api.ok(&format!("/v1/payment_intents/{pi_id}/confirm"), &[("payment_method", "pm_card_authenticationRequired")]).await;
    assert_eq!(pi["status"], "succeeded", "on-session confirmation passes authentication");
    assert_eq!(api.fetch(&format!("/v1/subscriptions/{}", s(&sub["id"]))).await["status"], "active");
}

#[tokio::test]
async fn idempotency_replays_and_rejects_mismatches() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let (s1, b1, _) = api.post_idem("/v1/customers", "key-1", &[("email", "idem@example.com")]).await;
    let (s2, b2, h2) = api.post_idem("/v1/customers", "key-1", &[("email", "idem@example.com")]).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(b1, b2, "a replay returns the first response exactly");
    assert_eq!(h2.get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    assert_eq!(api.fetch("/v1/customers?email=idem@example.com").await["data"].as_array().unwrap().len(), 1);

    let (s3, b3, _) = api.post_idem("/v1/customers", "key-1", &[("email", "other@example.com")]).await;
    assert_eq!(s3, 400);
    assert_eq!(b3["error"]["type"], "idempotency_error");

    // A request rejected by validation is not remembered: the corrected retry runs.
    let (s4, _, _) = api.post_idem("/v1/prices", "key-2", &[("unit_amount", "100")]).await;
    assert_eq!(s4, 400);
    let (s5, b5, _) =
        api.post_idem("/v1/prices", "key-2", &[("unit_amount", "100"), ("currency", "usd"), ("product", "prod_logiscore_premium")]).await;
    assert_eq!((s5, b5["unit_amount"].as_i64()), (200, Some(100)));

    // A card decline is a result and is replayed as such.
    let cus = s(&b1["id"]).to_string();
    let path = "/v1/payment_methods/pm_card_visa_chargeDeclined/attach";
    let (d1, e1, _) = api.post_idem(path, "key-3", &[("customer", &cus)]).await;
    let (d2, e2, _) = api.post_idem(path, "key-3", &[("customer", &cus)]).await;
    assert_eq!((d1, d2), (402, 402));
    assert_eq!(e1, e2);
}

#[tokio::test]
async fn error_shapes() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let cus = api.ok("/v1/customers", &[]).await;
    let cus = s(&cus["id"]);

    let (status, e) = api.post("/v1/payment_methods/pm_card_visa_chargeDeclined/attach", &[("customer", cus)]).await;
    assert_eq!(status, 402);
    assert_eq!(
        (s(&e["error"]["type"]), s(&e["error"]["code"]), s(&e["error"]["decline_code"])),
        ("card_error", "card_declined", "generic_decline")
    );
    assert!(api.fetch(&format!("/v1/customers/{cus}/payment_methods")).await["data"].as_array().unwrap().is_empty());

    let (status, e) = api.get("/v1/subscriptions/sub_nope").await;
    assert_eq!(status, 404);
    assert_eq!((s(&e["error"]["type"]), s(&e["error"]["code"])), ("invalid_request_error", "resource_missing"));
    assert_eq!(e["error"]["message"], "No such subscription: 'sub_nope'");

    let (status, e) = api.post("/v1/subscriptions", &[("items[0][price]", "price_premium_monthly")]).await;
    assert_eq!((status, s(&e["error"]["param"]), s(&e["error"]["code"])), (400, "customer", "parameter_missing"));
    let (status, e) = api.post("/v1/subscriptions", &[("customer", cus), ("items[0][price]", "price_missing")]).await;
    assert_eq!((status, s(&e["error"]["param"])), (400, "items[0][price]"));
    let (status, e) =
        api.post("/v1/subscriptions", &[("customer", cus), ("items[0][price]", "price_premium_monthly"), ("trial_end", "soon")]).await;
    assert_eq!((status, s(&e["error"]["param"])), (400, "trial_end"));
    let (status, e) = api.post("/v1/customers", &[("metadata", "x"), ("metadata[a]", "b")]).await;
    assert_eq!((status, s(&e["error"]["type"])), (400, "invalid_request_error"));
    let (status, e) = api.get("/v1/customers?limit=1000").await;
    assert_eq!((status, s(&e["error"]["param"])), (400, "limit"));
    let (status, _) = api.get("/v1/nothing/here").await;
    assert_eq!(status, 404);

    let raw = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = raw.get(format!("{}/v1/customers", sim.base_url())).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let resp = raw.get(format!("{}/v1/customers", sim.base_url())).bearer_auth("sk_live_nope").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = raw
        .post(format!("{}/v1/customers", sim.base_url()))
        .bearer_auth(sim.secret_key())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=a&metadata[=broken")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
}

#[tokio::test]
async fn chaos_mode_duplicates_and_still_delivers_everything() {
    let sim = common::sim_with(SimConfig {
        chaos: Some(ChaosConfig { seed: 7, duplicate_probability: 0.5, reorder_window: 4, max_delay: Duration::from_millis(3) }),
        ..SimConfig::default()
    })
    .await;
    let api = Api::new(&sim);
    let hook = Receiver::registered(&sim).await;
    for i in 0..12 {
        api.ok("/v1/customers", &[("email", &format!("chaos{i}@example.com"))]).await;
    }
    common::idle(&sim).await;
    let got = hook.received();
    assert!(got.iter().all(|r| r.signature_ok));
    let ids: Vec<String> = got.iter().map(|r| s(&r.event["id"]).to_string()).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 12, "every event arrives at least once");
    assert!(ids.len() > 12, "chaos mode sends duplicates");
    assert!(sim.deliveries().iter().any(|d| d.duplicate));
}

#[tokio::test]
async fn webhook_retries_until_success_and_gives_up_eventually() {
    let sim = common::sim_with(SimConfig {
        webhook_retry: WebhookRetry {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(20),
            timeout: Duration::from_secs(2),
        },
        ..SimConfig::default()
    })
    .await;
    let api = Api::new(&sim);
    let hook = Receiver::registered(&sim).await;
    hook.fail_next(2);
    // Nothing listens on the discard port of a fresh listener we close straight away.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}/gone", dead.local_addr().unwrap());
    drop(dead);
    sim.add_webhook_endpoint(WebhookEndpointConfig {
        enabled_events: vec!["customer.created".into()],
        ..WebhookEndpointConfig::new(dead_url.clone(), None)
    })
    .unwrap();
    api.ok("/v1/customers", &[]).await;
    common::idle(&sim).await;
    let deliveries = sim.deliveries();
    let ok = deliveries.iter().find(|d| d.url == hook.url).unwrap();
    assert_eq!((ok.status, ok.attempts, ok.http_status), (DeliveryStatus::Delivered, 3, Some(200)));
    let failed = deliveries.iter().find(|d| d.url == dead_url).unwrap();
    assert_eq!((failed.status, failed.attempts), (DeliveryStatus::Failed, 3));
    assert!(failed.error.is_some());
    assert_eq!(hook.received().len(), 1);
}

#[tokio::test]
async fn webhook_endpoints_via_api_filter_events() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let hook = Receiver::start().await;
    let ep = api.ok("/v1/webhook_endpoints", &[("url", &hook.url), ("enabled_events[]", "customer.updated")]).await;
    hook.set_secret(s(&ep["secret"]));
    let cus = api.ok("/v1/customers", &[("name", "A")]).await;
    api.ok(&format!("/v1/customers/{}", s(&cus["id"])), &[("name", "B")]).await;
    common::idle(&sim).await;
    let got = hook.received();
    assert_eq!(hook.types(), ["customer.updated"]);
    assert_eq!(got[0].event["data"]["previous_attributes"]["name"], "A");
    assert!(got[0].signature_ok);
    assert_eq!(api.fetch("/v1/webhook_endpoints").await["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn faults_and_request_counters() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    sim.set_fault(Some(Fault::Status(503)));
    let resp = api.http.get(format!("{}/v1/customers", sim.base_url())).bearer_auth(sim.secret_key()).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers().get("stripe-should-retry").and_then(|v| v.to_str().ok()), Some("true"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "api_error");
    sim.set_fault(None);

    sim.reset_request_counts();
    let cus = api.ok("/v1/customers", &[]).await;
    api.ok("/v1/customers", &[]).await;
    api.fetch(&format!("/v1/customers/{}", s(&cus["id"]))).await;
    assert_eq!(sim.request_count(), 3);
    assert_eq!(sim.request_count_for("POST /v1/customers"), 2);
    assert_eq!(sim.request_count_for("GET /v1/customers/{id}"), 1);
}

#[tokio::test]
async fn customer_search_list_and_pagination() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    for user in ["u1", "u2", "u3"] {
        api.ok("/v1/customers", &[("email", &format!("{user}@example.com")), ("metadata[user_id]", user)]).await;
    }
    let found = api.fetch("/v1/customers/search?query=metadata%5B%27user_id%27%5D%3A%27u2%27").await;
    assert_eq!(found["object"], "search_result");
    assert_eq!(found["data"].as_array().unwrap().len(), 1);
    assert_eq!(found["data"][0]["email"], "u2@example.com");
    let (status, e) = api.get("/v1/customers/search?query=nonsense").await;
    assert_eq!((status, s(&e["error"]["param"])), (400, "query"));

    let page1 = api.fetch("/v1/customers?limit=2").await;
    assert_eq!((page1["data"].as_array().unwrap().len(), page1["has_more"].as_bool()), (2, Some(true)));
    assert_eq!(page1["data"][0]["email"], "u3@example.com", "newest first");
    let last = s(&page1["data"][1]["id"]);
    let page2 = api.fetch(&format!("/v1/customers?limit=2&starting_after={last}")).await;
    assert_eq!((page2["data"].as_array().unwrap().len(), page2["has_more"].as_bool()), (1, Some(false)));
    assert_eq!(page2["url"], "/v1/customers");
    let by_email = api.fetch("/v1/customers?email=u1@example.com").await;
    assert_eq!(by_email["data"].as_array().unwrap().len(), 1);

    let events = api.fetch("/v1/events?type=customer.created").await;
    assert_eq!(events["data"].as_array().unwrap().len(), 3);
    let (status, _) = api.get("/v1/events/evt_missing").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn seeded_prices_and_lookup_keys() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let prices = api.fetch("/v1/prices?lookup_keys[]=premium_monthly&lookup_keys[]=enterprise_monthly").await;
    let mut got: Vec<(String, i64)> =
        prices["data"].as_array().unwrap().iter().map(|p| (s(&p["id"]).to_string(), p["unit_amount"].as_i64().unwrap())).collect();
    got.sort();
    assert_eq!(got, vec![("price_enterprise_monthly".into(), 4999), ("price_premium_monthly".into(), 999)]);
    // Seeding again is harmless.
    assert_eq!(sim.seed_prices().premium_monthly, "price_premium_monthly");
    let created = api
        .ok(
            "/v1/prices",
            &[
                ("currency", "usd"),
                ("unit_amount", "100"),
                ("recurring[interval]", "year"),
                ("product_data[name]", "Yearly"),
                ("lookup_key", "yearly"),
            ],
        )
        .await;
    assert_eq!(created["recurring"]["interval"], "year");
    let (status, e) = api
        .post("/v1/prices", &[("currency", "usd"), ("unit_amount", "100"), ("product", "prod_logiscore_premium"), ("lookup_key", "yearly")])
        .await;
    assert_eq!((status, s(&e["error"]["param"])), (400, "lookup_key"));
}

#[tokio::test]
async fn expand_paths() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let clock = api.clock(T0).await;
    let cus = api.customer(&clock, Some("pm_card_visa")).await;
    let sub = subscribe(&api, &cus, &[]).await;
    let id = s(&sub["id"]);
    let x =
        api.fetch(&format!("/v1/subscriptions/{id}?expand[]=customer&expand[]=latest_invoice.payments.data.payment.payment_intent")).await;
    assert_eq!(x["customer"]["object"], "customer");
    assert_eq!(x["latest_invoice"]["payments"]["data"][0]["payment"]["payment_intent"]["object"], "payment_intent");
    let listed = api.fetch(&format!("/v1/subscriptions?customer={cus}&expand[]=data.latest_invoice")).await;
    assert_eq!(listed["data"][0]["latest_invoice"]["object"], "invoice");
    let cus_x = api.fetch(&format!("/v1/customers/{cus}?expand[]=invoice_settings.default_payment_method")).await;
    assert_eq!(cus_x["invoice_settings"]["default_payment_method"]["object"], "payment_method");
    // The pinned API version has no invoice.payment_intent: expanding it is a 400.
    let (status, e) = api.get(&format!("/v1/subscriptions/{id}?expand[]=latest_invoice.payment_intent")).await;
    assert_eq!((status, s(&e["error"]["param"])), (400, "expand"));
}

#[tokio::test]
async fn concurrent_requests_with_one_idempotency_key_create_once() {
    let sim = common::sim().await;
    let api = std::sync::Arc::new(Api::new(&sim));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move { api.post_idem("/v1/customers", "race", &[("email", "race@example.com")]).await }));
    }
    let mut bodies = Vec::new();
    for t in tasks {
        let (status, body, _) = t.await.unwrap();
        assert_eq!(status, 200);
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(api.fetch("/v1/customers?email=race@example.com").await["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn interval_change_and_ending_a_trial_now_invoice_immediately() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let yearly = api
        .ok(
            "/v1/prices",
            &[("currency", "usd"), ("unit_amount", "9990"), ("recurring[interval]", "year"), ("product", "prod_logiscore_premium")],
        )
        .await;
    let clock = api.clock(T0).await;
    let cus = api.customer(&clock, Some("pm_card_visa")).await;
    let sub = subscribe(&api, &cus, &[]).await;
    let id = s(&sub["id"]).to_string();
    api.advance(&clock, T0 + 10 * DAY).await;
    let now = T0 + 10 * DAY;
    let changed = api
        .ok(
            &format!("/v1/subscriptions/{id}"),
            &[("items[0][id]", s(&sub["items"]["data"][0]["id"])), ("items[0][price]", s(&yearly["id"]))],
        )
        .await;
    assert_eq!(changed["billing_cycle_anchor"], now);
    assert_eq!(changed["items"]["data"][0]["current_period_start"], now);
    assert_eq!(changed["items"]["data"][0]["current_period_end"], now + 365 * DAY);
    let inv = latest_invoice(&api, &id).await;
    let credit = -share(999, JAN - 10 * DAY, JAN);
    assert_eq!(
        (inv["billing_reason"].as_str(), inv["total"].as_i64(), inv["status"].as_str()),
        (Some("subscription_update"), Some(9990 + credit), Some("paid"))
    );

    let trial = subscribe(&api, &cus, &[("trial_period_days", "30")]).await;
    let ended = api.ok(&format!("/v1/subscriptions/{}", s(&trial["id"])), &[("trial_end", "now")]).await;
    assert_eq!((ended["status"].as_str(), ended["trial_end"].as_i64()), (Some("active"), Some(now)));
    let inv = latest_invoice(&api, s(&trial["id"])).await;
    assert_eq!((inv["amount_paid"].as_i64(), inv["billing_reason"].as_str()), (Some(999), Some("subscription_update")));
}

/// Start of the 2nd, 3rd and 4th monthly periods from T0 (Feb, Mar, Apr 2025).
const FEB1: i64 = T0 + JAN;
const MAR1: i64 = FEB1 + 28 * DAY;
const APR1: i64 = MAR1 + 31 * DAY;

fn invoices_of(list: &Value) -> Vec<(String, i64, String)> {
    let mut v: Vec<(String, i64, String)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (s(&i["billing_reason"]).to_string(), i["amount_paid"].as_i64().unwrap(), s(&i["status"]).to_string()))
        .collect();
    v.reverse();
    v
}

#[tokio::test]
async fn cancel_at_on_the_third_period_end_bills_three_periods_then_cancels() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let hook = Receiver::registered(&sim).await;
    let clock = api.clock(T0).await;
    let cus = api.customer(&clock, Some("pm_card_visa")).await;
    let sub = subscribe(&api, &cus, &[("cancel_at", &APR1.to_string())]).await;
    let id = s(&sub["id"]).to_string();
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["cancel_at"], APR1);
    assert_eq!(sub["cancel_at_period_end"], false, "a cancel_at timestamp is not the period-end flag");
    assert_eq!(sub["canceled_at"], T0);
    assert_eq!(sub["cancellation_details"]["reason"], "cancellation_requested");
    assert_eq!(sub["items"]["data"][0]["current_period_end"], FEB1, "the first period is a full month");

    // Two renewals happen as usual; the third period ends exactly at cancel_at.
    api.advance(&clock, MAR1 + 3600).await;
    let mid = api.fetch(&format!("/v1/subscriptions/{id}")).await;
    assert_eq!(mid["status"], "active");
    assert_eq!(mid["items"]["data"][0]["current_period_end"], APR1);
    common::idle(&sim).await;
    hook.clear();
    api.advance(&clock, APR1 + 40 * DAY).await;
    let ended = api.fetch(&format!("/v1/subscriptions/{id}")).await;
    assert_eq!((ended["status"].as_str(), ended["ended_at"].as_i64()), (Some("canceled"), Some(APR1)));
    assert_eq!(ended["canceled_at"], T0);
    common::idle(&sim).await;
    assert_eq!(billing_types(&hook), ["customer.subscription.deleted"], "no fourth invoice");
    let invoices = invoices_of(&api.fetch(&format!("/v1/invoices?subscription={id}")).await);
    assert_eq!(
        invoices,
        [
            ("subscription_create".to_string(), 999, "paid".to_string()),
            ("subscription_cycle".to_string(), 999, "paid".to_string()),
            ("subscription_cycle".to_string(), 999, "paid".to_string()),
        ]
    );
}

#[tokio::test]
async fn cancel_at_inside_a_period_prorates_the_final_invoice() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let clock = api.clock(T0).await;
    let cus = api.customer(&clock, Some("pm_card_visa")).await;
    let sub = subscribe(&api, &cus, &[]).await;
    let id = s(&sub["id"]).to_string();
    // Scheduled later by update, for the middle of March.
    let cancel_at = MAR1 + 14 * DAY;
    api.advance(&clock, T0 + 5 * DAY).await;
    let updated = api.ok(&format!("/v1/subscriptions/{id}"), &[("cancel_at", &cancel_at.to_string())]).await;
    assert_eq!((updated["cancel_at"].as_i64(), updated["cancel_at_period_end"].as_bool()), (Some(cancel_at), Some(false)));
    assert_eq!(updated["canceled_at"], T0 + 5 * DAY);
    assert_eq!(updated["items"]["data"][0]["current_period_end"], FEB1, "a later period is not touched yet");

    api.advance(&clock, MAR1 + 3600).await;
    let cut = api.fetch(&format!("/v1/subscriptions/{id}")).await;
    assert_eq!(cut["items"]["data"][0]["current_period_start"], MAR1);
    assert_eq!(cut["items"]["data"][0]["current_period_end"], cancel_at, "the last period ends at cancel_at");
    let last = latest_invoice(&api, &id).await;
    let expected = share(999, 14 * DAY, 31 * DAY);
    assert_eq!(expected, 451);
    assert_eq!((last["amount_paid"].as_i64(), last["billing_reason"].as_str()), (Some(expected), Some("subscription_cycle")));
    assert_eq!(last["lines"]["data"][0]["period"]["end"], cancel_at);

    api.advance(&clock, APR1 + DAY).await;
    let ended = api.fetch(&format!("/v1/subscriptions/{id}")).await;
    assert_eq!((ended["status"].as_str(), ended["ended_at"].as_i64()), (Some("canceled"), Some(cancel_at)));
    let invoices = invoices_of(&api.fetch(&format!("/v1/invoices?subscription={id}")).await);
    assert_eq!(invoices.iter().map(|i| i.1).collect::<Vec<_>>(), [999, 999, expected]);
}

#[tokio::test]
async fn cancel_at_cleared_by_update_keeps_billing() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let clock = api.clock(T0).await;
    let cus = api.customer(&clock, Some("pm_card_visa")).await;
    let sub = subscribe(&api, &cus, &[("cancel_at", &(FEB1 + 10 * DAY).to_string())]).await;
    let id = s(&sub["id"]).to_string();
    let cleared = api.ok(&format!("/v1/subscriptions/{id}"), &[("cancel_at", "")]).await;
    assert!(cleared["cancel_at"].is_null());
    assert!(cleared["canceled_at"].is_null());
    assert!(cleared["cancellation_details"]["reason"].is_null());
    api.advance(&clock, MAR1 + 3600).await;
    let later = api.fetch(&format!("/v1/subscriptions/{id}")).await;
    assert_eq!(later["status"], "active");
    assert_eq!(later["items"]["data"][0]["current_period_end"], APR1);
    let invoices = invoices_of(&api.fetch(&format!("/v1/invoices?subscription={id}")).await);
    assert_eq!(invoices.iter().map(|i| i.1).collect::<Vec<_>>(), [999, 999, 999]);

    // cancel_at_period_end=false clears a timestamp too; both together are refused.
    api.ok(&format!("/v1/subscriptions/{id}"), &[("cancel_at", &(APR1 + DAY).to_string())]).await;
    let off = api.ok(&format!("/v1/subscriptions/{id}"), &[("cancel_at_period_end", "false")]).await;
    assert!(off["cancel_at"].is_null());
    let (status, err) =
        api.post(&format!("/v1/subscriptions/{id}"), &[("cancel_at", &(APR1 + DAY).to_string()), ("cancel_at_period_end", "true")]).await;
    assert_eq!((status, s(&err["error"]["param"])), (400, "cancel_at"));
    // Setting the period-end flag afterwards still schedules cancel_at at the period end.
    let flagged = api.ok(&format!("/v1/subscriptions/{id}"), &[("cancel_at_period_end", "true")]).await;
    assert_eq!((flagged["cancel_at"].as_i64(), flagged["cancel_at_period_end"].as_bool()), (Some(APR1), Some(true)));
}

#[tokio::test]
async fn cancel_at_in_the_past_is_rejected_naming_the_param() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let clock = api.clock(T0).await;
    let cus = api.customer(&clock, Some("pm_card_visa")).await;
    for bad in [T0 - DAY, T0] {
        let (status, err) = api
            .post("/v1/subscriptions", &[("customer", &cus), ("items[0][price]", "price_premium_monthly"), ("cancel_at", &bad.to_string())])
            .await;
        assert_eq!(status, 400, "{err}");
        assert_eq!(err["error"]["type"], "invalid_request_error");
        assert_eq!(err["error"]["param"], "cancel_at");
    }
    let sub = subscribe(&api, &cus, &[]).await;
    api.advance(&clock, T0 + 3 * DAY).await;
    let (status, err) = api.post(&format!("/v1/subscriptions/{}", s(&sub["id"])), &[("cancel_at", &(T0 + DAY).to_string())]).await;
    assert_eq!((status, s(&err["error"]["param"])), (400, "cancel_at"));
    let (status, err) = api.post(&format!("/v1/subscriptions/{}", s(&sub["id"])), &[("cancel_at", "soon")]).await;
    assert_eq!((status, s(&err["error"]["param"])), (400, "cancel_at"));
    // Nothing was created by the rejected calls.
    assert_eq!(api.fetch(&format!("/v1/subscriptions?customer={cus}")).await["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn incomplete_subscription_with_cancel_at_is_canceled_then() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let clock = api.clock(T0).await;
    let cus = api.customer(&clock, None).await;
    let sub = subscribe(&api, &cus, &[("cancel_at", &(T0 + 3600).to_string())]).await;
    assert_eq!(sub["status"], "incomplete");
    let first = latest_invoice(&api, s(&sub["id"])).await;
    assert_eq!(first["amount_due"], share(999, 3600, JAN), "the one-hour period is prorated");
    api.advance(&clock, T0 + 2 * 3600).await;
    let ended = api.fetch(&format!("/v1/subscriptions/{}", s(&sub["id"]))).await;
    assert_eq!((ended["status"].as_str(), ended["ended_at"].as_i64()), (Some("canceled"), Some(T0 + 3600)));
}

#[tokio::test]
async fn unknown_parameters_are_rejected_by_name() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let clock = api.clock(T0).await;
    let cus = api.customer(&clock, Some("pm_card_visa")).await;
    let expect_unknown = |(status, err): (u16, Value), name: &str| {
        assert_eq!(status, 400, "{err}");
        assert_eq!(err["error"]["type"], "invalid_request_error");
        assert_eq!(err["error"]["code"], "parameter_unknown");
        assert_eq!(err["error"]["param"], name);
        assert_eq!(err["error"]["message"], format!("Received unknown parameter: {name}"));
    };
    let create = [("customer", cus.as_str()), ("items[0][price]", "price_premium_monthly"), ("items[0][colour]", "red")];
    expect_unknown(api.post("/v1/subscriptions", &create).await, "items[0][colour]");
    assert_eq!(api.fetch(&format!("/v1/subscriptions?customer={cus}")).await["data"].as_array().unwrap().len(), 0, "nothing created");
    expect_unknown(api.post("/v1/customers", &[("email", "a@example.com"), ("shoe_size", "44")]).await, "shoe_size");
    expect_unknown(api.post(&format!("/v1/customers/{cus}"), &[("invoice_settings[footer]", "x")]).await, "invoice_settings[footer]");
    expect_unknown(api.get("/v1/invoices?customer=x&colour=red").await, "colour");
    expect_unknown(api.get(&format!("/v1/customers/{cus}?limit=1")).await, "limit");
    let sub = subscribe(&api, &cus, &[("metadata[free_form]", "yes"), ("expand[]", "latest_invoice")]).await;
    expect_unknown(
        api.post(&format!("/v1/subscriptions/{}", s(&sub["id"])), &[("pause_collection[behavior]", "void")]).await,
        "pause_collection[behavior]",
    );
    expect_unknown(api.delete(&format!("/v1/subscriptions/{}?reason=x", s(&sub["id"]))).await, "reason");
}

#[tokio::test]
async fn ending_a_trial_now_without_a_card_follows_the_end_behavior() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let clock = api.clock(T0).await;
    for (behavior, status, event) in
        [("cancel", "canceled", "customer.subscription.deleted"), ("pause", "paused", "customer.subscription.paused")]
    {
        let cus = api.customer(&clock, None).await;
        let sub =
            subscribe(&api, &cus, &[("trial_period_days", "14"), ("trial_settings[end_behavior][missing_payment_method]", behavior)]).await;
        assert_eq!(sub["status"], "trialing");
        let ended = api.ok(&format!("/v1/subscriptions/{}", s(&sub["id"])), &[("trial_end", "now")]).await;
        assert_eq!(ended["status"], status, "{behavior}");
        assert_eq!(ended["trial_end"], T0);
        let types = api.event_types().await;
        let tail: Vec<&str> = types.iter().rev().take(2).map(String::as_str).collect();
        assert!(tail.contains(&event), "{behavior}: {types:?}");
        let invoices = api.fetch(&format!("/v1/invoices?subscription={}", s(&sub["id"]))).await;
        assert_eq!(invoices["data"].as_array().unwrap().len(), 1, "{behavior}: only the trial's zero invoice");
    }
}

#[tokio::test]
async fn short_trials_get_trial_will_end_at_once() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let hook = Receiver::registered(&sim).await;
    let clock = api.clock(T0).await;
    let cus = api.customer(&clock, Some("pm_card_visa")).await;
    subscribe(&api, &cus, &[("trial_period_days", "2")]).await;
    common::idle(&sim).await;
    let types = billing_types(&hook);
    let created = types.iter().position(|t| t == "customer.subscription.created").unwrap();
    let notice = types.iter().position(|t| t == "customer.subscription.trial_will_end").expect("notice sent at creation");
    assert!(created < notice);
    // Sent once: advancing into the trial's end does not repeat it.
    api.advance(&clock, T0 + 3 * DAY).await;
    common::idle(&sim).await;
    assert_eq!(billing_types(&hook).iter().filter(|t| *t == "customer.subscription.trial_will_end").count(), 1);

    // A 10-day trial waits for the clock.
    hook.clear();
    subscribe(&api, &cus, &[("trial_period_days", "10")]).await;
    common::idle(&sim).await;
    assert!(!billing_types(&hook).contains(&"customer.subscription.trial_will_end".to_string()));
}
