//! Stripe's timing, with the admin API and the webhook running together over one table:
//! webhooks that arrive before the API call that caused them has returned, a customer
//! search that lags behind creation. The admin router is the function's own, the webhook
//! is served over loopback and registered at stripe-sim, which delivers to it.

use std::{collections::BTreeSet, time::Duration};

use harness::{
    admin::{AdminApi, ADMIN_SUB},
    sim::Sim,
    webhook::{self, WebhookServer},
    TestEnv,
};
use serde_json::{json, Value};
use shared::domain::{HistoryChange, UserId};

const SECRET: &str = "whsec_timing";

/// The admin API and a webhook receiver over one table and one sim started with `config`.
struct Both {
    api: AdminApi,
    _webhook: WebhookServer,
}

async fn both(config: stripe_sim::SimConfig) -> Both {
    let env = TestEnv::new().await;
    let sim = Sim::start_with(stripe_sim::SimConfig { seed_prices: true, ..config }).await;
    let server = webhook::serve(webhook::app(&env, sim.stripe_config(), &[SECRET])).await;
    let mut endpoint = stripe_sim::WebhookEndpointConfig::new(server.url.clone(), Some(SECRET.into()));
    endpoint.chaos = None;
    sim.handle.add_webhook_endpoint(endpoint).expect("register endpoint");
    Both { api: AdminApi::over(env, sim), _webhook: server }
}

impl Both {
    async fn settle(&self) {
        assert!(self.api.sim.handle.wait_idle(Duration::from_secs(30)).await, "deliveries did not settle");
    }

    /// Every outbox id written so far, delivered or not.
    async fn outbox(&self) -> BTreeSet<String> {
        let text = |item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>, name: &str| {
            item.get(name).and_then(|v| v.as_s().ok()).cloned()
        };
        let items = self.api.table_items().await;
        items.iter().filter(|item| text(item, "entity").as_deref() == Some("outbox")).filter_map(|item| text(item, "id")).collect()
    }

    /// The user's Stripe subscriptions that are not ended.
    async fn live_at_stripe(&self, customer: &str) -> Vec<Value> {
        let listed = self.api.sim.get(&format!("/v1/subscriptions?customer={customer}&status=all")).await;
        listed["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s["status"] != "canceled" && s["status"] != "incomplete_expired")
            .collect()
    }

    async fn customers_of(&self, user: &str) -> Vec<Value> {
        let listed = self.api.sim.get("/v1/customers?limit=100").await;
        listed["data"].as_array().cloned().unwrap_or_default().into_iter().filter(|c| c["metadata"]["user_id"] == user).collect()
    }
}

fn paid(tier: &str, pm: &str, comment: &str) -> Value {
    json!({"tier": tier, "duration_months": 1, "is_paid": true, "auto_renew": true, "payment_method_id": pm, "comment": comment})
}

fn count(ids: &BTreeSet<String>, prefix: &str) -> usize {
    ids.iter().filter(|id| id.starts_with(prefix)).count()
}

/// Stripe may deliver a request's webhooks before its response: here every one of them is
/// handled before the admin API hears back. The webhook records the subscription from its
/// metadata first; the admin's commit then finds it recorded. One record, one mail per
/// transition, and the admin's answer and history as if it had been first.
#[tokio::test]
async fn webhooks_that_beat_the_response_leave_one_record_and_one_mail_per_transition() {
    let rig = both(stripe_sim::SimConfig { webhooks_before_response: true, ..stripe_sim::SimConfig::default() }).await;
    let api = &rig.api;
    api.create_profile("tia").await;

    let created = api.call("PUT", "/users/tia/subscription", Some(paid("premium", "pm_card_visa", "Signed at the fair"))).await;
    assert_eq!((created.status.as_u16(), created.body["outcome"].as_str()), (201, Some("created")), "{}", created.body);
    let sub = &created.body["subscription"];
    assert_eq!(sub["status"], "active", "{sub}");
    let stripe_id = sub["stripe_subscription_id"].as_str().unwrap().to_owned();
    let customer = sub["stripe_customer_id"].as_str().unwrap().to_owned();
    rig.settle().await;

    let local = api.env.store.subscription(&UserId::parse("tia").unwrap()).await.unwrap().unwrap();
    assert_eq!(local.stripe_subscription_id.as_ref().map(|s| s.as_str()), Some(stripe_id.as_str()));
    assert_eq!(local.comment.as_deref(), Some("Signed at the fair"), "the admin's comment is on the record");
    let history = api.env.store.history(&local.user_id, 10).await.unwrap();
    assert!(
        history.iter().any(|h| h.actor == "stripe" && h.change == HistoryChange::Created),
        "the webhook recorded it first (else this test saw no early webhook): {history:?}"
    );
    assert!(
        history.iter().any(|h| h.actor == format!("admin:{ADMIN_SUB}") && h.comment.as_deref() == Some("Signed at the fair")),
        "the admin's request is in the history: {history:?}"
    );
    assert_eq!(rig.live_at_stripe(&customer).await.len(), 1);
    assert_eq!(rig.customers_of("tia").await.len(), 1);
    let ids = rig.outbox().await;
    assert_eq!(count(&ids, "email:subscription_confirmation:"), 1, "{ids:?}");
    assert_eq!(count(&ids, "email:payment_receipt:"), 1, "{ids:?}");

    // Cancelling now: `customer.subscription.deleted` is applied by the webhook first.
    let canceled = api.call("POST", "/users/tia/subscription/cancel", Some(json!({"immediately": true}))).await;
    assert_eq!(canceled.status.as_u16(), 200, "{}", canceled.body);
    assert_eq!(canceled.body["subscription"]["status"], "canceled", "{}", canceled.body);
    rig.settle().await;
    let ids = rig.outbox().await;
    assert!(ids.contains(&format!("email:cancellation_confirmed:{stripe_id}:immediate")), "told it was cancelled: {ids:?}");
    assert_eq!(count(&ids, "email:cancellation_confirmed:"), 1, "{ids:?}");
    assert_eq!(count(&ids, "email:subscription_expired:"), 0, "not also told it ran out: {ids:?}");
    assert!(rig.live_at_stripe(&customer).await.is_empty());
    let history = api.env.store.history(&local.user_id, 10).await.unwrap();
    assert_eq!(history[0].change, HistoryChange::Canceled, "{history:?}");
    assert_eq!(history[0].actor, "stripe", "the webhook applied the cancel before the admin's commit: {history:?}");
}

/// Stripe's customer search lags creation (up to about a minute), so nothing relies on
/// it: a declined card makes no customer (it is given at the customer's creation, which
/// Stripe refuses whole); the admin edits the profile and tries again at once: one
/// customer, created with the card in one request and recorded on the profile, and not
/// one search.
#[tokio::test]
async fn a_lagging_customer_search_never_makes_a_second_customer() {
    let rig = both(stripe_sim::SimConfig { search_delay: Some(Duration::from_secs(120)), ..stripe_sim::SimConfig::default() }).await;
    let api = &rig.api;
    api.create_profile("uma").await;
    let declined = api.call("PUT", "/users/uma/subscription", Some(paid("premium", "pm_card_chargeDeclined", "first try"))).await;
    assert_eq!(declined.status.as_u16(), 402, "{}", declined.body);
    assert_eq!(rig.customers_of("uma").await.len(), 0, "a declined card creates no customer");

    let renamed = api.call("PUT", "/users/uma", Some(json!({"email": "uma@example.com", "full_name": "Uma Renamed"}))).await;
    assert!(renamed.status.is_success(), "{}", renamed.body);
    let creates = api.stripe_calls("POST /v1/customers");
    let answer = api.call("PUT", "/users/uma/subscription", Some(paid("premium", "pm_card_visa", "second try"))).await;
    assert_eq!(answer.status.as_u16(), 201, "{}", answer.body);
    assert_eq!(api.stripe_calls("POST /v1/customers"), creates + 1, "one creation, card included");
    assert_eq!(api.stripe_calls("POST /v1/payment_methods/{id}/attach"), 0, "no separate attach");
    assert_eq!(api.stripe_calls("GET /v1/customers/search"), 0, "no search, ever");
    let customers = rig.customers_of("uma").await;
    assert_eq!(customers.len(), 1, "{customers:?}");
    assert_eq!(answer.body["subscription"]["stripe_customer_id"], customers[0]["id"]);
    assert_eq!(customers[0]["name"], "Uma Renamed");
    let profile = api.env.store.profile(&UserId::parse("uma").unwrap()).await.unwrap().unwrap();
    assert_eq!(
        profile.stripe_customer_id.map(|c| c.to_string()).as_deref(),
        customers[0]["id"].as_str(),
        "recorded for the next operation"
    );
}

/// A first payment that fails leaves the subscription incomplete; when the customer pays
/// its invoice later (another card, on the hosted page), the webhook activates it and the
/// user gets the confirmation then — once, with the receipt.
#[tokio::test]
async fn an_incomplete_subscription_paid_later_is_confirmed_once() {
    let rig = both(stripe_sim::SimConfig::default()).await;
    let api = &rig.api;
    api.create_profile("val").await;
    let answer = api.call("PUT", "/users/val/subscription", Some(paid("premium", "pm_card_chargeCustomerFail", "card trouble"))).await;
    assert_eq!(answer.status.as_u16(), 202, "{}", answer.body);
    let invoice = answer.body["payment_action"]["invoice_id"].as_str().unwrap().to_owned();
    let customer = answer.body["subscription"]["stripe_customer_id"].as_str().unwrap().to_owned();
    rig.settle().await;
    assert_eq!(count(&rig.outbox().await, "email:subscription_confirmation:"), 0, "not before it is paid");

    let card = api.sim.post("/v1/payment_methods/pm_card_visa/attach", &[("customer", &customer)]).await;
    let paid_invoice = api.sim.post(&format!("/v1/invoices/{invoice}/pay"), &[("payment_method", card["id"].as_str().unwrap())]).await;
    assert_eq!(paid_invoice["status"], "paid", "{paid_invoice}");
    rig.settle().await;

    let local = api.env.store.subscription(&UserId::parse("val").unwrap()).await.unwrap().unwrap();
    assert_eq!(local.status, shared::domain::SubscriptionStatus::Active);
    let ids = rig.outbox().await;
    assert_eq!(count(&ids, "email:subscription_confirmation:"), 1, "{ids:?}");
    assert_eq!(count(&ids, &format!("email:payment_receipt:{invoice}")), 1, "{ids:?}");
}
