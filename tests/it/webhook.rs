//! stripe-webhook over HTTP on loopback, fed by stripe-sim (real signed deliveries) and by
//! hand-signed events, against moto server.

use std::{collections::BTreeSet, time::Duration};

use chrono::Utc;
use harness::{sim::Sim, webhook, TestEnv};
use proptest::prelude::*;
use serde_json::{json, Value};
use shared::{
    domain::{ProfileUpdate, Subscription, SubscriptionStatus, Tier, UserId},
    store::{Change, StripeMapping},
};
use stripe_webhook::signature::sign_header;

const SECRET: &str = "whsec_test_primary";
const MONTH: i64 = 31 * 86_400;
const DAY: i64 = 86_400;

struct Rig {
    env: TestEnv,
    sim: Sim,
    server: webhook::WebhookServer,
    http: reqwest::Client,
}

/// The webhook as the function builds it, over `env` and `sim`, accepting `secrets`.
fn build_webhook(env: &TestEnv, sim: &Sim, secrets: &[&str]) -> axum::Router {
    webhook::app(env, sim.stripe_config(), secrets)
}

impl Rig {
    async fn new() -> Rig {
        Self::with_sim(Sim::start().await).await
    }

    async fn with_sim(sim: Sim) -> Rig {
        let env = TestEnv::new().await;
        let webhook = build_webhook(&env, &sim, &[SECRET]);
        let server = webhook::serve(webhook.clone()).await;
        let mut endpoint = stripe_sim::WebhookEndpointConfig::new(server.url.clone(), Some(SECRET.into()));
        endpoint.chaos = None;
        sim.handle.add_webhook_endpoint(endpoint).expect("register endpoint");
        Rig { env, sim, server, http: reqwest::Client::new() }
    }

    /// A LogiScore user with a profile and a Stripe customer (on a test clock) mapped to it.
    async fn customer(&self, name: &str, clock: &str) -> (UserId, String) {
        let user = UserId::parse(name).unwrap();
        let profile =
            ProfileUpdate { email: Some(format!("{name}@example.com")), full_name: Some("Ada Lovelace".into()), ..Default::default() }
                .validate(user.clone(), Utc::now())
                .unwrap();
        self.env.store.put_profile(&profile).await.unwrap();
        let customer = self
            .sim
            .post("/v1/customers", &[("email", &format!("{name}@example.com")), ("test_clock", clock), ("metadata[user_id]", name)])
            .await;
        let id = customer["id"].as_str().unwrap().to_owned();
        self.env
            .store
            .commit(Change { user_id: Some(user.clone()), mappings: vec![StripeMapping::Customer(id.clone())], ..Change::default() })
            .await
            .unwrap();
        (user, id)
    }

    async fn attach(&self, customer: &str, token: &str) -> String {
        let pm = self.sim.post(&format!("/v1/payment_methods/{token}/attach"), &[("customer", customer)]).await;
        let pm = pm["id"].as_str().unwrap().to_owned();
        self.sim.post(&format!("/v1/customers/{customer}"), &[("invoice_settings[default_payment_method]", &pm)]).await;
        pm
    }

    async fn subscribe(&self, customer: &str, extra: &[(&str, &str)]) -> String {
        let mut form = vec![("customer", customer), ("items[0][price]", stripe_sim::PREMIUM_MONTHLY)];
        form.extend_from_slice(extra);
        let sub = self.sim.post("/v1/subscriptions", &form).await;
        self.settle().await;
        sub["id"].as_str().unwrap().to_owned()
    }

    async fn settle(&self) {
        assert!(self.sim.handle.wait_idle(Duration::from_secs(30)).await, "deliveries did not settle");
    }

    async fn local(&self, user: &UserId) -> Subscription {
        self.env.store.subscription(user).await.unwrap().expect("local subscription")
    }

    async fn outbox_ids(&self) -> BTreeSet<String> {
        outbox_ids(&self.env).await
    }

    async fn post_signed(&self, body: &[u8], header: Option<String>) -> (u16, Value) {
        let mut request = self.http.post(&self.server.url).header("content-type", "application/json").body(body.to_vec());
        if let Some(h) = header {
            request = request.header("Stripe-Signature", h);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post_event(&self, event: &Value) -> (u16, Value) {
        let body = serde_json::to_vec(event).unwrap();
        let header = sign_header(&body, SECRET, Utc::now().timestamp());
        self.post_signed(&body, Some(header)).await
    }
}

async fn outbox_ids(env: &TestEnv) -> BTreeSet<String> {
    let page = env.store.pending_outbox(Utc::now() + chrono::Duration::days(3650), 1000).await.unwrap();
    page.items.into_iter().map(|i| i.id).collect()
}

fn event(id: &str, event_type: &str, object: Value) -> Value {
    json!({"id": id, "object": "event", "type": event_type, "api_version": stripe_sim::API_VERSION, "created": Utc::now().timestamp(),
           "livemode": false, "pending_webhooks": 1, "request": {"id": null, "idempotency_key": null}, "data": {"object": object}})
}

fn start_time() -> i64 {
    // Whole seconds, a while back, so clock-driven periods are deterministic.
    1_767_225_600
}

#[tokio::test]
async fn bad_signatures_are_refused_and_write_nothing() {
    let rig = Rig::new().await;
    let body = serde_json::to_vec(&event("evt_sig_1", "payout.paid", json!({"id": "po_1"}))).unwrap();
    let now = Utc::now().timestamp();
    let before = rig.env.count_items("").await;

    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let cases = [
        ("tampered body", tampered.clone(), Some(sign_header(&body, SECRET, now))),
        ("wrong secret", body.clone(), Some(sign_header(&body, "whsec_wrong", now))),
        ("expired timestamp", body.clone(), Some(sign_header(&body, SECRET, now - 301))),
        ("missing header", body.clone(), None),
        ("malformed header", body.clone(), Some("t=abc,v1=zz".to_owned())),
    ];
    for (name, payload, header) in cases {
        let (status, problem) = rig.post_signed(&payload, header).await;
        assert_eq!(status, 400, "{name}");
        assert_eq!(problem["code"], "invalid-signature", "{name}");
    }
    assert_eq!(rig.env.count_items("").await, before, "a refused delivery writes nothing");

    // Signed but not an event: 400 too, nothing written.
    let junk = b"{\"hello\":1}";
    let (status, _) = rig.post_signed(junk, Some(sign_header(junk, SECRET, now))).await;
    assert_eq!(status, 400);
    assert_eq!(rig.env.count_items("").await, before);

    // Valid: acknowledged, ignored (unknown type), recorded in the ledger once.
    let (status, reply) = rig.post_signed(&body, Some(sign_header(&body, SECRET, now))).await;
    assert_eq!((status, reply["outcome"].as_str()), (200, Some("ignored")));
    let (status, reply) = rig.post_signed(&body, Some(sign_header(&body, SECRET, now))).await;
    assert_eq!((status, reply["outcome"].as_str()), (200, Some("duplicate")));
    assert!(rig.env.store.event_seen("evt_sig_1").await.unwrap());
}

#[tokio::test]
async fn rotated_secrets_are_all_accepted() {
    let sim = Sim::start().await;
    let env = TestEnv::new().await;
    let webhook = build_webhook(&env, &sim, &["whsec_new", "whsec_old"]);
    let server = webhook::serve(webhook).await;
    let http = reqwest::Client::new();
    for (i, secret) in ["whsec_old", "whsec_new"].iter().enumerate() {
        let body = serde_json::to_vec(&event(&format!("evt_rot_{i}"), "payout.paid", json!({"id": "po_1"}))).unwrap();
        let status = http
            .post(&server.url)
            .header("Stripe-Signature", sign_header(&body, secret, Utc::now().timestamp()))
            .body(body)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "signed with {secret}");
    }
}

#[tokio::test]
async fn a_paid_subscription_is_created_renewed_and_receipted_from_stripes_events() {
    let rig = Rig::new().await;
    let clock = rig.sim.clock(start_time()).await;
    let (user, customer) = rig.customer("renewing-user", &clock).await;
    let pm = rig.attach(&customer, "pm_card_visa").await;
    let sub_id = rig.subscribe(&customer, &[("default_payment_method", &pm)]).await;

    let local = rig.local(&user).await;
    assert_eq!((local.status, local.tier), (SubscriptionStatus::Active, Tier::Premium));
    assert_eq!(local.stripe_subscription_id.as_ref().map(|s| s.to_string()), Some(sub_id.clone()));
    let first_end = local.end_date.unwrap();
    assert!(first_end.timestamp() > start_time() + 27 * DAY);

    rig.sim.advance(&clock, first_end.timestamp() + DAY).await;
    let renewed = rig.local(&user).await;
    assert_eq!(renewed.status, SubscriptionStatus::Active);
    assert!(renewed.end_date.unwrap() > first_end, "the period moved on");

    let ids = rig.outbox_ids().await;
    let receipts = ids.iter().filter(|i| i.starts_with("email:payment_receipt:")).count();
    assert_eq!(receipts, 2, "one receipt per paid invoice: {ids:?}");
    assert!(ids.iter().any(|i| i.starts_with("event:SubscriptionActivated")), "{ids:?}");
    assert!(ids.iter().any(|i| i.starts_with("event:SubscriptionRenewed")), "{ids:?}");
    assert!(ids.iter().any(|i| i.starts_with("email:subscription_confirmation:")), "{ids:?}");
    let history = rig.env.store.history(&user, 20).await.unwrap();
    assert!(history.len() >= 2);
}

#[tokio::test]
async fn failed_renewals_go_past_due_then_cancel_with_one_email_each() {
    let rig = Rig::new().await;
    let clock = rig.sim.clock(start_time()).await;
    let (user, customer) = rig.customer("failing-user", &clock).await;
    let pm = rig.attach(&customer, "pm_card_visa").await;
    let sub_id = rig.subscribe(&customer, &[("default_payment_method", &pm)]).await;
    // The card on file starts failing before the first renewal.
    let failing = rig.attach(&customer, "pm_card_chargeCustomerFail").await;
    rig.sim.post(&format!("/v1/subscriptions/{sub_id}"), &[("default_payment_method", &failing)]).await;
    rig.settle().await;

    let end = rig.local(&user).await.end_date.unwrap().timestamp();
    rig.sim.advance(&clock, end + DAY).await;
    assert_eq!(rig.local(&user).await.status, SubscriptionStatus::PastDue);
    let ids = rig.outbox_ids().await;
    assert!(ids.iter().any(|i| i.starts_with("email:payment_failed:")), "{ids:?}");
    assert!(ids.iter().any(|i| i.starts_with("event:PaymentFailed")), "{ids:?}");

    // Through every retry: Stripe cancels, the user is told once.
    rig.sim.advance(&clock, end + 40 * DAY).await;
    let local = rig.local(&user).await;
    assert_eq!(local.status, SubscriptionStatus::Canceled);
    let ids = rig.outbox_ids().await;
    assert_eq!(ids.iter().filter(|i| i.starts_with("email:subscription_expired:ended-")).count(), 1, "{ids:?}");
    assert!(ids.iter().any(|i| i.starts_with("event:SubscriptionCanceled")), "{ids:?}");
}

/// A renewal whose card needs 3-D Secure: Stripe sends `invoice.payment_action_required`
/// and `invoice.payment_failed` for the one attempt; the user gets one mail for it.
#[tokio::test]
async fn a_renewal_that_needs_authentication_sends_one_mail_per_attempt() {
    let rig = Rig::new().await;
    let clock = rig.sim.clock(start_time()).await;
    let (user, customer) = rig.customer("sca-user", &clock).await;
    let pm = rig.attach(&customer, "pm_card_visa").await;
    let sub_id = rig.subscribe(&customer, &[("default_payment_method", &pm)]).await;
    let sca = rig.attach(&customer, "pm_card_authenticationRequired").await;
    rig.sim.post(&format!("/v1/subscriptions/{sub_id}"), &[("default_payment_method", &sca)]).await;
    rig.settle().await;

    let end = rig.local(&user).await.end_date.unwrap().timestamp();
    rig.sim.advance(&clock, end + 3_600).await;
    let types: Vec<String> = rig.sim.events().await.iter().filter_map(|e| e["type"].as_str().map(str::to_owned)).collect();
    for kind in ["invoice.payment_action_required", "invoice.payment_failed"] {
        assert!(types.iter().any(|t| t == kind), "stripe sent {kind}: {types:?}");
    }
    let ids = rig.outbox_ids().await;
    let mails: Vec<_> = ids.iter().filter(|i| i.starts_with("email:payment_failed:")).collect();
    assert_eq!(mails.len(), 1, "one mail for the one attempt: {ids:?}");
    assert_eq!(rig.local(&user).await.status, SubscriptionStatus::PastDue);
}

#[tokio::test]
async fn a_trial_without_a_card_warns_then_ends() {
    let rig = Rig::new().await;
    let clock = rig.sim.clock(start_time()).await;
    let (user, customer) = rig.customer("trial-user", &clock).await;
    rig.subscribe(&customer, &[("trial_period_days", "14"), ("trial_settings[end_behavior][missing_payment_method]", "cancel")]).await;
    assert_eq!(rig.local(&user).await.status, SubscriptionStatus::Trial);

    rig.sim.advance(&clock, start_time() + 12 * DAY).await;
    let ids = rig.outbox_ids().await;
    assert_eq!(ids.iter().filter(|i| i.starts_with("email:trial_ending:")).count(), 1, "{ids:?}");

    rig.sim.advance(&clock, start_time() + 15 * DAY).await;
    assert_eq!(rig.local(&user).await.status, SubscriptionStatus::Canceled);
}

#[tokio::test]
async fn a_trial_that_pauses_is_paused_locally() {
    let rig = Rig::new().await;
    let clock = rig.sim.clock(start_time()).await;
    let (user, customer) = rig.customer("pause-user", &clock).await;
    rig.subscribe(&customer, &[("trial_period_days", "7"), ("trial_settings[end_behavior][missing_payment_method]", "pause")]).await;
    rig.sim.advance(&clock, start_time() + 8 * DAY).await;
    assert_eq!(rig.local(&user).await.status, SubscriptionStatus::Paused);
}

#[tokio::test]
async fn cancel_at_period_end_keeps_access_until_stripe_ends_it() {
    let rig = Rig::new().await;
    let clock = rig.sim.clock(start_time()).await;
    let (user, customer) = rig.customer("leaving-user", &clock).await;
    let pm = rig.attach(&customer, "pm_card_visa").await;
    let sub_id = rig.subscribe(&customer, &[("default_payment_method", &pm)]).await;
    rig.sim.post(&format!("/v1/subscriptions/{sub_id}"), &[("cancel_at_period_end", "true")]).await;
    rig.settle().await;
    let local = rig.local(&user).await;
    assert!(local.cancel_at_period_end && !local.auto_renew);
    assert_eq!(local.status, SubscriptionStatus::Active);

    rig.sim.advance(&clock, local.end_date.unwrap().timestamp() + 60).await;
    assert_eq!(rig.local(&user).await.status, SubscriptionStatus::Canceled);
}

#[tokio::test]
async fn hand_signed_event_types_are_handled() {
    let rig = Rig::new().await;
    let clock = rig.sim.clock(start_time()).await;
    let (_user, customer) = rig.customer("types-user", &clock).await;
    let pm = rig.attach(&customer, "pm_card_visa").await;
    let sub_id = rig.subscribe(&customer, &[("default_payment_method", &pm)]).await;
    let invoice = rig.sim.get(&format!("/v1/subscriptions/{sub_id}")).await["latest_invoice"].clone();
    let invoice_id = invoice.as_str().map(str::to_owned).unwrap_or_else(|| invoice["id"].as_str().unwrap().to_owned());

    let new_shape =
        json!({"id": invoice_id, "object": "invoice", "customer": customer, "parent": {"subscription_details": {"subscription": sub_id}}});
    let old_shape = json!({"id": invoice_id, "object": "invoice", "customer": customer, "subscription": sub_id});
    let cases = [
        event("evt_h_upcoming", "invoice.upcoming", old_shape.clone()),
        event("evt_h_action", "invoice.payment_action_required", new_shape.clone()),
        event("evt_h_paid_old", "invoice.payment_succeeded", old_shape),
        event("evt_h_resumed", "customer.subscription.resumed", json!({"id": sub_id, "customer": customer})),
        event("evt_h_unknown", "radar.early_fraud_warning.created", json!({"id": "issfr_1"})),
    ];
    for e in &cases {
        let (status, reply) = rig.post_event(e).await;
        assert_eq!(status, 200, "{}: {reply}", e["type"]);
        assert!(["applied", "unchanged", "ignored"].contains(&reply["outcome"].as_str().unwrap()), "{reply}");
    }
    // The invoice is paid, so "action required" queues no failure e-mail.
    assert!(!rig.outbox_ids().await.iter().any(|i| i.contains("-action")));
}

/// An invoice event needs the invoice and its subscription's current state: one Stripe
/// request reads both (the subscription expanded into the invoice), and the record is
/// brought in line from the subscription read that way.
#[tokio::test]
async fn an_invoice_event_reads_stripe_once() {
    let rig = Rig::new().await;
    let clock = rig.sim.clock(start_time()).await;
    let (user, customer) = rig.customer("one-read-user", &clock).await;
    let pm = rig.attach(&customer, "pm_card_visa").await;
    let sub_id = rig.subscribe(&customer, &[("default_payment_method", &pm)]).await;
    let invoice = rig.sim.get(&format!("/v1/subscriptions/{sub_id}")).await["latest_invoice"].clone();
    let invoice_id = invoice.as_str().map(str::to_owned).unwrap_or_else(|| invoice["id"].as_str().unwrap().to_owned());
    let receipt = format!("email:payment_receipt:{invoice_id}");
    assert!(rig.outbox_ids().await.contains(&receipt), "the delivered invoice.paid queued the receipt");

    rig.sim.handle.reset_request_counts();
    let object = json!({"id": invoice_id, "object": "invoice", "customer": customer,
                        "parent": {"subscription_details": {"subscription": sub_id}}});
    let (status, reply) = rig.post_event(&event("evt_one_read", "invoice.paid", object)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(rig.sim.handle.request_count_for("GET /v1/invoices/{id}"), 1);
    assert_eq!(rig.sim.handle.request_count_for("GET /v1/subscriptions/{id}"), 0, "the subscription came with the invoice");
    assert_eq!(rig.sim.handle.request_count(), 1, "{:?}", rig.sim.handle.request_counts());
    // The state read that way is the subscription's: still active, premium.
    let local = rig.local(&user).await;
    assert_eq!((local.status, local.tier), (SubscriptionStatus::Active, Tier::Premium));
    assert_eq!(local.stripe_subscription_id.as_ref().map(|s| s.to_string()), Some(sub_id));
}

#[tokio::test]
async fn checkout_completion_links_a_subscription_to_its_user() {
    let rig = Rig::new().await;
    let clock = rig.sim.clock(start_time()).await;
    // A customer made by Checkout: no mapping in our table yet.
    let customer = rig.sim.post("/v1/customers", &[("email", "checkout@example.com"), ("test_clock", &clock)]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = UserId::parse("checkout-user").unwrap();
    let pm = rig.attach(&customer, "pm_card_visa").await;
    let sub_id = rig.subscribe(&customer, &[("default_payment_method", &pm)]).await;
    assert!(rig.env.store.subscription(&user).await.unwrap().is_none(), "unknown until checkout names the user");

    let session = json!({"id": "cs_test_1", "object": "checkout.session", "mode": "subscription", "subscription": sub_id,
                         "customer": customer, "client_reference_id": "checkout-user", "status": "complete"});
    let (status, reply) = rig.post_event(&event("evt_checkout_1", "checkout.session.completed", session)).await;
    assert_eq!((status, reply["outcome"].as_str()), (200, Some("applied")));
    assert_eq!(rig.local(&user).await.status, SubscriptionStatus::Active);
    assert_eq!(rig.env.store.user_for(&StripeMapping::Customer(customer)).await.unwrap(), Some(user));
}

#[tokio::test]
async fn duplicates_and_chaos_end_in_the_same_state_with_one_notification_each() {
    let chaos = stripe_sim::ChaosConfig { seed: 7, duplicate_probability: 0.5, reorder_window: 6, max_delay: Duration::from_millis(20) };
    let sim = Sim::start_with(stripe_sim::SimConfig { seed_prices: true, chaos: Some(chaos), ..stripe_sim::SimConfig::default() }).await;
    let rig = Rig::with_sim(sim).await;
    let clock = rig.sim.clock(start_time()).await;
    let (user, customer) = rig.customer("chaos-user", &clock).await;
    let pm = rig.attach(&customer, "pm_card_visa").await;
    rig.subscribe(&customer, &[("default_payment_method", &pm)]).await;
    let end = rig.local(&user).await.end_date.unwrap().timestamp();
    rig.sim.advance(&clock, end + DAY).await;
    rig.sim.advance(&clock, end + MONTH + DAY).await;

    let deliveries = rig.sim.handle.deliveries();
    let distinct: BTreeSet<_> = deliveries.iter().map(|d| d.event_id.clone()).collect();
    assert!(deliveries.len() > distinct.len(), "chaos mode delivered duplicates");

    let local = rig.local(&user).await;
    assert_eq!(local.status, SubscriptionStatus::Active);
    let ids = rig.outbox_ids().await;
    assert_eq!(ids.iter().filter(|i| i.starts_with("email:payment_receipt:")).count(), 3, "{ids:?}");
    assert_eq!(ids.iter().filter(|i| i.starts_with("event:SubscriptionRenewed")).count(), 2, "{ids:?}");
}

/// The final local record and queued notifications after delivering `events` in `order`
/// (indexes into `events`, repeats allowed) to a fresh table.
async fn replay(sim: &Sim, events: &[Value], order: &[usize], user: &UserId, customer: &str) -> (Option<Subscription>, BTreeSet<String>) {
    let env = TestEnv::new().await;
    let profile =
        ProfileUpdate { email: Some("prop@example.com".into()), ..Default::default() }.validate(user.clone(), Utc::now()).unwrap();
    env.store.put_profile(&profile).await.unwrap();
    env.store
        .commit(Change { user_id: Some(user.clone()), mappings: vec![StripeMapping::Customer(customer.to_owned())], ..Change::default() })
        .await
        .unwrap();
    let webhook = build_webhook(&env, sim, &[SECRET]);
    for &i in order {
        let body = serde_json::to_vec(&events[i]).unwrap();
        let signature = sign_header(&body, SECRET, Utc::now().timestamp());
        assert_eq!(webhook::call(&webhook, webhook::request(body, Some(signature))).await.status, 200);
    }
    // What happened when differs by run; what state it ended in must not.
    let local = crate::fixtures::normalised(env.store.subscription(user).await.unwrap());
    let ids = outbox_ids(&env).await;
    (local, ids)
}

#[test]
fn any_delivery_order_with_duplicates_ends_like_in_order_delivery() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (sim, events, user, customer) = runtime.block_on(async {
        // One subscription's life at Stripe: created, renewed twice, a card failure, recovery.
        let sim = Sim::start().await;
        let clock = sim.clock(start_time()).await;
        let customer =
            sim.post("/v1/customers", &[("email", "prop@example.com"), ("test_clock", &clock)]).await["id"].as_str().unwrap().to_owned();
        let pm = sim.post("/v1/payment_methods/pm_card_visa/attach", &[("customer", &customer)]).await["id"].as_str().unwrap().to_owned();
        let sub = sim
            .post(
                "/v1/subscriptions",
                &[("customer", &customer), ("items[0][price]", stripe_sim::PREMIUM_MONTHLY), ("default_payment_method", &pm)],
            )
            .await;
        let sub_id = sub["id"].as_str().unwrap().to_owned();
        sim.advance(&clock, start_time() + MONTH + DAY).await;
        sim.post(&format!("/v1/subscriptions/{sub_id}"), &[("cancel_at_period_end", "true")]).await;
        sim.post(&format!("/v1/subscriptions/{sub_id}"), &[("cancel_at_period_end", "false")]).await;
        sim.advance(&clock, start_time() + 2 * MONTH + DAY).await;
        let events: Vec<Value> = sim.subscription_events().await;
        (sim, events, UserId::parse("prop-user").unwrap(), customer)
    });
    assert!(events.len() >= 6, "the scenario produced {} events", events.len());
    let in_order: Vec<usize> = (0..events.len()).collect();
    let expected = runtime.block_on(replay(&sim, &events, &in_order, &user, &customer));
    assert!(expected.0.is_some());

    let n = events.len();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 12, ..ProptestConfig::default() });
    let strategy = (Just((0..n).collect::<Vec<usize>>()).prop_shuffle(), proptest::collection::vec(1usize..=3, n));
    runner
        .run(&strategy, |(order, times)| {
            let delivered: Vec<usize> = order.iter().flat_map(|&i| std::iter::repeat_n(i, times[i])).collect();
            let got = runtime.block_on(replay(&sim, &events, &delivered, &user, &customer));
            prop_assert_eq!(&got.0, &expected.0);
            prop_assert_eq!(&got.1, &expected.1);
            Ok(())
        })
        .unwrap();
    // The baseline itself: one receipt per paid invoice, one renewal event per period.
    let receipts = expected.1.iter().filter(|id| id.starts_with("email:payment_receipt:")).count();
    let paid_invoices: BTreeSet<&str> =
        events.iter().filter(|e| e["type"] == "invoice.paid").filter_map(|e| e["data"]["object"]["id"].as_str()).collect();
    assert_eq!(receipts, paid_invoices.len(), "{:?}", expected.1);
}

/// The admin API creates at Stripe first and commits locally after; Stripe sends the new
/// subscription's events at once, so they can arrive before that commit has written the
/// id mappings. They are applied from the subscription's `metadata.user_id` (set by the
/// project's own adapter), not recorded as "unknown" and lost — paid and granted alike.
#[tokio::test]
async fn events_that_beat_the_creating_commit_are_applied_from_the_metadata() {
    use shared::billing::{BillingGateway, CustomerDetails, IdempotencyKey, NewSubscription, NewSubscriptionKind};
    use shared::domain::SubscriptionSource;
    let rig = Rig::new().await;
    let billing = rig.sim.billing();
    for (name, paid) in [("early-paid", true), ("early-granted", false)] {
        let user = UserId::parse(name).unwrap();
        let profile =
            ProfileUpdate { email: Some(format!("{name}@example.com")), ..Default::default() }.validate(user.clone(), Utc::now()).unwrap();
        rig.env.store.put_profile(&profile).await.unwrap();
        // What the admin API's create does at Stripe, through the same adapter; the local
        // commit that would follow never comes (the function died, or is still running).
        let key = |step: &str| IdempotencyKey::new(format!("{name}-{step}"));
        let details = CustomerDetails { user_id: user.clone(), email: format!("{name}@example.com"), name: None };
        let customer = billing.create_customer(&details, None, &key("customer")).await.unwrap().id;
        let kind = if paid {
            let payment_method = billing.attach_payment_method(&customer, "pm_card_visa", &key("card")).await.unwrap();
            NewSubscriptionKind::Paid { payment_method, cancel_at: None }
        } else {
            NewSubscriptionKind::Granted { trial_end: Utc::now() + chrono::Duration::days(30) }
        };
        let new = NewSubscription {
            customer: customer.clone(),
            user_id: user.clone(),
            tier: Tier::Premium,
            kind,
            operation_id: "op-test".into(),
        };
        let created = billing.create_subscription(&new, &key("subscription")).await.unwrap();
        rig.settle().await;

        let local = rig.local(&user).await;
        assert_eq!(local.stripe_subscription_id.as_ref(), Some(&created.snapshot.subscription_id), "{name}");
        let (status, source) = if paid {
            (SubscriptionStatus::Active, SubscriptionSource::Paid)
        } else {
            (SubscriptionStatus::Trial, SubscriptionSource::Granted)
        };
        assert_eq!((local.status, local.source, local.tier), (status, source, Tier::Premium), "{name}");
        assert_eq!(local.auto_renew, paid, "{name}: a granted trial never renews into a charge");
        // The webhook's commit wrote the mappings the admin commit would have.
        let mapped = rig.env.store.user_for(&StripeMapping::Subscription(created.snapshot.subscription_id.to_string())).await.unwrap();
        assert_eq!(mapped.as_ref(), Some(&user), "{name}");
        assert_eq!(rig.env.store.user_for(&StripeMapping::Customer(customer.to_string())).await.unwrap().as_ref(), Some(&user));
    }
    let ids = rig.outbox_ids().await;
    let confirmations = ids.iter().filter(|i| i.starts_with("email:subscription_confirmation:")).count();
    assert_eq!(confirmations, 2, "one confirmation per subscription: {ids:?}");
    assert_eq!(ids.iter().filter(|i| i.starts_with("email:payment_receipt:")).count(), 1, "the paid one's first invoice: {ids:?}");
}
