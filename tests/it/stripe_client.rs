//! `shared::stripe::StripeBilling` against stripe-sim over 127.0.0.1: every port
//! operation, the card outcomes, idempotency and the bounded retry.

use std::time::{Duration, Instant};

use chrono::{Duration as ChronoDuration, Utc};
use serde_json::Value;
use shared::billing::{
    BillingError, BillingGateway, CustomerDetails, IdempotencyKey, InvoiceStatus, NewSubscription, NewSubscriptionKind, Proration,
};
use shared::config::Secret;
use shared::domain::{StripeCustomerId, SubscriptionStatus, Tier, UserId};
use shared::stripe::{RetryPolicy, StripeBilling, StripeConfig};
use stripe_sim::{Fault, SimConfig, SimHandle};

const PRICE_PREMIUM: &str = stripe_sim::PREMIUM_MONTHLY;
const PRICE_ENTERPRISE: &str = stripe_sim::ENTERPRISE_MONTHLY;

struct Ctx {
    sim: SimHandle,
    billing: StripeBilling,
    http: reqwest::Client,
}

impl Ctx {
    async fn new() -> Self {
        let sim = stripe_sim::start(SimConfig { seed_prices: true, ..SimConfig::default() }).await.expect("stripe-sim starts");
        let config = StripeConfig {
            secret_key: Secret::new(sim.secret_key()),
            api_base: Some(sim.base_url().to_owned()),
            price_premium: PRICE_PREMIUM.into(),
            price_enterprise: PRICE_ENTERPRISE.into(),
            retry: RetryPolicy::default(),
        };
        let billing = StripeBilling::new(config).expect("client builds");
        Self { sim, billing, http: reqwest::Client::new() }
    }

    /// Reads an object straight from the sim, to check what the adapter did without
    /// trusting the adapter's own answer.
    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}/v1{path}", self.sim.base_url().trim_end_matches('/')))
            .bearer_auth(self.sim.secret_key())
            .send()
            .await
            .expect("sim answers")
            .json()
            .await
            .expect("json")
    }

    async fn customer(&self, name: &str) -> StripeCustomerId {
        self.billing.create_customer(&details(name), None, &key(&format!("customer-{name}"))).await.expect("customer").id
    }

    /// A customer created with `card` attached as default (one request); returns the
    /// customer and the pm id.
    async fn customer_with_card(&self, name: &str, card: &str) -> (StripeCustomerId, String) {
        let created =
            self.billing.create_customer(&details(name), Some(card), &key(&format!("customer-{name}"))).await.expect("card attaches");
        (created.id, created.payment_method.expect("the card's pm id"))
    }

    async fn paid(&self, name: &str, card: &str, tier: Tier) -> shared::billing::CreatedSubscription {
        let (customer, pm) = self.customer_with_card(name, card).await;
        let new = NewSubscription {
            customer,
            user_id: user(name),
            tier,
            kind: NewSubscriptionKind::Paid { payment_method: pm, cancel_at: None },
            operation_id: "op-test".into(),
        };
        self.billing.create_subscription(&new, &key(&format!("sub-{name}"))).await.expect("subscription created")
    }
}

fn user(name: &str) -> UserId {
    UserId::parse(name).expect("valid user id")
}

fn details(name: &str) -> CustomerDetails {
    CustomerDetails { user_id: user(name), email: format!("{name}@example.com"), name: Some(format!("User {name}")) }
}

fn key(raw: &str) -> IdempotencyKey {
    IdempotencyKey::new(format!("it-{raw}"))
}

#[tokio::test]
async fn a_customer_created_twice_with_one_key_is_one_customer() {
    let ctx = Ctx::new().await;
    let details = details("cust-once");
    // A retry after a lost response: the same key replays the first creation.
    let first = ctx.billing.create_customer(&details, None, &key("op-1")).await.unwrap();
    let second = ctx.billing.create_customer(&details, None, &key("op-1")).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(ctx.sim.request_count_for("POST /v1/customers"), 2, "no search before the create");
    assert_eq!(ctx.sim.request_count_for("GET /v1/customers/search"), 0);

    let found = ctx.get("/customers/search?query=metadata%5B%27user_id%27%5D%3A%27cust-once%27").await;
    assert_eq!(found["data"].as_array().map(Vec::len), Some(1), "{found}");
    let stored = ctx.get(&format!("/customers/{}", first.id)).await;
    assert_eq!(stored["email"], "cust-once@example.com");
    assert_eq!(stored["metadata"]["user_id"], "cust-once");
    assert!(first.payment_method.is_none());

    // Details change in place.
    let changed = CustomerDetails { email: "new@example.com".into(), ..details };
    ctx.billing.update_customer(&first.id, &changed, &key("op-3")).await.unwrap();
    assert_eq!(ctx.get(&format!("/customers/{}", first.id)).await["email"], "new@example.com");
}

#[tokio::test]
async fn a_customer_created_with_a_card_has_it_as_default_in_one_request() {
    let ctx = Ctx::new().await;
    let before = ctx.sim.request_count();
    let (customer, pm) = ctx.customer_with_card("attach-ok", "pm_card_visa").await;
    assert_eq!(ctx.sim.request_count() - before, 1);
    assert!(pm.starts_with("pm_") && pm != "pm_card_visa", "{pm}");
    let stored = ctx.get(&format!("/customers/{customer}")).await;
    assert_eq!(stored["invoice_settings"]["default_payment_method"], pm.as_str());
    let listed = ctx.get(&format!("/customers/{customer}/payment_methods?type=card")).await;
    assert_eq!(listed["data"][0]["id"], pm.as_str(), "{listed}");
}

#[tokio::test]
async fn a_declined_card_is_card_declined_with_its_decline_code() {
    let ctx = Ctx::new().await;
    // Attached to an existing customer, and given at creation: the same error, and the
    // failed creation leaves no customer behind.
    let customer = ctx.customer("attach-declined").await;
    let attach = ctx.billing.attach_payment_method(&customer, "pm_card_visa_chargeDeclined", &key("attach-declined")).await.unwrap_err();
    let create = ctx
        .billing
        .create_customer(&details("create-declined"), Some("pm_card_visa_chargeDeclined"), &key("create-declined"))
        .await
        .unwrap_err();
    for err in [attach, create] {
        match err {
            BillingError::CardDeclined { code, decline_code, message } => {
                assert_eq!(code.as_deref(), Some("card_declined"));
                assert_eq!(decline_code.as_deref(), Some("generic_decline"));
                assert!(!message.is_empty());
            }
            other => panic!("expected CardDeclined, got {other:?}"),
        }
    }
    let stored = ctx.get(&format!("/customers/{customer}")).await;
    assert!(stored["invoice_settings"]["default_payment_method"].is_null());
    let found = ctx.get("/customers/search?query=metadata%5B%27user_id%27%5D%3A%27create-declined%27").await;
    assert_eq!(found["data"].as_array().map(Vec::len), Some(0), "{found}");
}

#[tokio::test]
async fn a_paid_subscription_with_a_good_card_is_active_for_a_period() {
    let ctx = Ctx::new().await;
    let created = ctx.paid("paid-visa", "pm_card_visa", Tier::Premium).await;
    let snap = &created.snapshot;
    assert_eq!(snap.status, SubscriptionStatus::Active);
    assert_eq!(snap.tier, Some(Tier::Premium));
    assert!(created.payment_action.is_none());
    let period = snap.current_period_end - snap.current_period_start;
    assert!((28..=31).contains(&period.num_days()), "{period}");
    assert!(snap.latest_invoice_paid_at.is_some());
    assert!(!snap.cancel_at_period_end);

    // Reading it back gives the same state.
    assert_eq!(ctx.billing.subscription(&snap.subscription_id).await.unwrap(), *snap);
}

#[tokio::test]
async fn a_card_that_fails_to_charge_leaves_an_incomplete_subscription_with_an_action() {
    let ctx = Ctx::new().await;
    let created = ctx.paid("paid-fail", "pm_card_chargeCustomerFail", Tier::Premium).await;
    assert_eq!(created.snapshot.status, SubscriptionStatus::Incomplete);
    let action = created.payment_action.expect("payment action");
    assert!(action.invoice_id.starts_with("in_"), "{action:?}");
    assert_eq!(action.status, "requires_payment_method");
    assert!(action.message.is_some());

    let invoice = ctx.billing.invoice(&action.invoice_id).await.unwrap().invoice;
    assert_eq!(invoice.status, InvoiceStatus::Open);
    assert_eq!(invoice.amount_paid.amount, 0);
    assert!(invoice.amount_due.amount > 0);
}

#[tokio::test]
async fn a_card_that_needs_authentication_asks_for_action() {
    let ctx = Ctx::new().await;
    let created = ctx.paid("paid-3ds", "pm_card_authenticationRequired", Tier::Premium).await;
    assert_eq!(created.snapshot.status, SubscriptionStatus::Incomplete);
    assert_eq!(created.payment_action.expect("payment action").status, "requires_action");
}

#[tokio::test]
async fn a_granted_trial_has_no_card_and_charges_nothing() {
    let ctx = Ctx::new().await;
    let customer = ctx.customer("granted").await;
    let trial_end = Utc::now() + ChronoDuration::days(30);
    let new = NewSubscription {
        customer,
        user_id: user("granted"),
        tier: Tier::Enterprise,
        kind: NewSubscriptionKind::Granted { trial_end },
        operation_id: "op-test".into(),
    };
    let created = ctx.billing.create_subscription(&new, &key("granted")).await.unwrap();
    let snap = created.snapshot;
    assert_eq!(snap.status, SubscriptionStatus::Trial);
    assert_eq!(snap.tier, Some(Tier::Enterprise));
    assert_eq!(snap.trial_end.map(|t| t.timestamp()), Some(trial_end.timestamp()));
    assert!(created.payment_action.is_none());

    let raw = ctx.get(&format!("/subscriptions/{}", snap.subscription_id)).await;
    assert_eq!(raw["trial_settings"]["end_behavior"]["missing_payment_method"], "cancel");
    assert!(raw["default_payment_method"].is_null());
    if let Some(invoice_id) = raw["latest_invoice"].as_str() {
        let invoice = ctx.billing.invoice(invoice_id).await.unwrap().invoice;
        assert_eq!(invoice.amount_paid.amount, 0);
        assert_eq!(invoice.amount_due.amount, 0);
    }
}

#[tokio::test]
async fn cancel_at_period_end_can_be_set_and_withdrawn() {
    let ctx = Ctx::new().await;
    let id = ctx.paid("cancel-later", "pm_card_visa", Tier::Premium).await.snapshot.subscription_id;
    let set = ctx.billing.set_cancel_at_period_end(&id, true, &key("cancel-later-1")).await.unwrap();
    assert!(set.cancel_at_period_end);
    assert_eq!(set.status, SubscriptionStatus::Active);
    let unset = ctx.billing.set_cancel_at_period_end(&id, false, &key("cancel-later-2")).await.unwrap();
    assert!(!unset.cancel_at_period_end);
    assert_eq!(ctx.billing.subscription(&id).await.unwrap(), unset);
}

#[tokio::test]
async fn changing_tier_swaps_the_price_in_place() {
    let ctx = Ctx::new().await;
    let id = ctx.paid("upgrade", "pm_card_visa", Tier::Premium).await.snapshot.subscription_id;
    let snap = ctx.billing.change_tier(&id, Tier::Enterprise, Proration::CreateProrations, &key("upgrade")).await.unwrap();
    assert_eq!(snap.tier, Some(Tier::Enterprise));
    assert_eq!(snap.status, SubscriptionStatus::Active);
    let raw = ctx.get(&format!("/subscriptions/{id}")).await;
    let items = raw["items"]["data"].as_array().expect("items");
    assert_eq!(items.len(), 1, "the price is swapped, not added");
    assert_eq!(items[0]["price"]["id"], PRICE_ENTERPRISE);
    // Free has no price: refused before anything reaches Stripe.
    let err = ctx.billing.change_tier(&id, Tier::Free, Proration::None, &key("downgrade")).await.unwrap_err();
    assert!(matches!(err, BillingError::InvalidRequest { .. }), "{err:?}");
}

#[tokio::test]
async fn cancel_now_cancels_and_is_safe_to_repeat() {
    let ctx = Ctx::new().await;
    let id = ctx.paid("cancel-now", "pm_card_visa", Tier::Premium).await.snapshot.subscription_id;
    let snap = ctx.billing.cancel_now(&id, &key("cancel-now")).await.unwrap();
    assert_eq!(snap.status, SubscriptionStatus::Canceled);
    assert!(snap.canceled_at.is_some());
    // A retry after a lost response (even under a new key) still reports canceled.
    let again = ctx.billing.cancel_now(&id, &key("cancel-now-retry")).await.unwrap();
    assert_eq!(again.status, SubscriptionStatus::Canceled);
}

#[tokio::test]
async fn invoice_amounts_are_integer_minor_units() {
    let ctx = Ctx::new().await;
    let created = ctx.paid("invoice", "pm_card_visa", Tier::Premium).await;
    let raw = ctx.get(&format!("/subscriptions/{}", created.snapshot.subscription_id)).await;
    let invoice_id = raw["latest_invoice"].as_str().expect("latest invoice id");
    let price = ctx.get(&format!("/prices/{PRICE_PREMIUM}")).await;
    let unit_amount = price["unit_amount"].as_i64().expect("unit amount");

    let invoice = ctx.billing.invoice(invoice_id).await.unwrap().invoice;
    assert_eq!(invoice.id, invoice_id);
    assert_eq!(invoice.status, InvoiceStatus::Paid);
    assert_eq!(invoice.amount_paid.amount, unit_amount);
    assert_eq!(invoice.amount_due.amount, unit_amount);
    assert_eq!(invoice.amount_paid.currency.code(), price["currency"].as_str().expect("currency"));
    assert_eq!(invoice.customer_id, created.snapshot.customer_id);
    assert_eq!(invoice.subscription_id.as_ref(), Some(&created.snapshot.subscription_id));
    assert_eq!(invoice.billing_reason.as_deref(), Some("subscription_create"));
    assert!(invoice.paid_at.is_some());

    let err = ctx.billing.invoice("in_does_not_exist").await.unwrap_err();
    assert!(matches!(err, BillingError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn the_same_idempotency_key_creates_one_subscription() {
    let ctx = Ctx::new().await;
    let (customer, pm) = ctx.customer_with_card("idem", "pm_card_visa").await;
    let new = NewSubscription {
        customer: customer.clone(),
        user_id: user("idem"),
        tier: Tier::Premium,
        kind: NewSubscriptionKind::Paid { payment_method: pm, cancel_at: None },
        operation_id: "op-test".into(),
    };
    let k = key("idem-sub");
    let first = ctx.billing.create_subscription(&new, &k).await.unwrap();
    let second = ctx.billing.create_subscription(&new, &k).await.unwrap();
    assert_eq!(first.snapshot.subscription_id, second.snapshot.subscription_id);
    let listed = ctx.get(&format!("/subscriptions?customer={customer}&status=all")).await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");
}

#[tokio::test]
async fn deleting_a_customer_is_idempotent() {
    let ctx = Ctx::new().await;
    let customer = ctx.customer("delete-me").await;
    ctx.billing.delete_customer(&customer, &key("delete-1")).await.unwrap();
    assert_eq!(ctx.get(&format!("/customers/{customer}")).await["deleted"], true);
    ctx.billing.delete_customer(&customer, &key("delete-2")).await.unwrap();
}

#[tokio::test]
async fn a_persistent_503_is_unavailable_after_three_attempts() {
    let ctx = Ctx::new().await;
    let id = ctx.paid("fault-503", "pm_card_visa", Tier::Premium).await.snapshot.subscription_id;
    let before = ctx.sim.request_count();
    ctx.sim.set_fault(Some(Fault::Status(503)));
    let started = Instant::now();
    let err = ctx.billing.subscription(&id).await.unwrap_err();
    let elapsed = started.elapsed();
    ctx.sim.set_fault(None);
    assert!(matches!(err, BillingError::Unavailable(_)), "{err:?}");
    assert_eq!(ctx.sim.request_count() - before, 3, "three attempts, no more");
    // Two backoffs of at least half of 200 ms and 800 ms; far less than the timeouts.
    assert!(elapsed >= Duration::from_millis(500) && elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn transient_faults_are_retried_with_the_same_key() {
    let ctx = Ctx::new().await;
    let (customer, pm) = ctx.customer_with_card("fault-then-ok", "pm_card_visa").await;
    let new = NewSubscription {
        customer: customer.clone(),
        user_id: user("fault-then-ok"),
        tier: Tier::Premium,
        kind: NewSubscriptionKind::Paid { payment_method: pm, cancel_at: None },
        operation_id: "op-test".into(),
    };
    ctx.sim.set_fault(Some(Fault::StatusTimes { status: 429, times: 2 }));
    let created = ctx.billing.create_subscription(&new, &key("fault-then-ok")).await.unwrap();
    assert_eq!(created.snapshot.status, SubscriptionStatus::Active);
    let listed = ctx.get(&format!("/subscriptions?customer={customer}&status=all")).await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let ctx = Ctx::new().await;
    let before = ctx.sim.request_count();
    let missing = shared::domain::StripeSubscriptionId::parse("sub_missing").unwrap();
    let err = ctx.billing.subscription(&missing).await.unwrap_err();
    assert!(matches!(err, BillingError::NotFound(_)), "{err:?}");
    assert_eq!(ctx.sim.request_count() - before, 1);
}

#[tokio::test]
async fn an_unreachable_stripe_is_unavailable() {
    // A port nothing listens on: connection refused on every attempt.
    let config = StripeConfig {
        secret_key: Secret::new("sk_test_unreachable"),
        api_base: Some("http://127.0.0.1:9".into()),
        price_premium: PRICE_PREMIUM.into(),
        price_enterprise: PRICE_ENTERPRISE.into(),
        retry: RetryPolicy { base_delay: Duration::from_millis(10), ..RetryPolicy::default() },
    };
    let billing = StripeBilling::new(config).unwrap();
    let err = billing.create_customer(&details("nobody"), None, &key("nobody")).await.unwrap_err();
    assert!(matches!(err, BillingError::Unavailable(_)), "{err:?}");
}

/// async-stripe's own client opens a connection per call; ours keeps them. A create and its
/// follow-up reads, one after another, go over one connection, counted at a TCP forwarder.
#[tokio::test]
async fn sequential_calls_share_one_connection() {
    let ctx = Ctx::new().await;
    let forwarder = harness::tcp::Forwarder::start(ctx.sim.base_url()).await;
    let config = StripeConfig { api_base: Some(format!("http://{}", forwarder.addr)), ..ctx.billing.config().clone() };
    let billing = StripeBilling::new(config).expect("client builds");
    let created = billing.create_customer(&details("pooled"), None, &key("pooled")).await.expect("customer");
    for i in 0..3 {
        billing.update_customer(&created.id, &details("pooled"), &key(&format!("pooled-update-{i}"))).await.expect("update");
    }
    assert_eq!(forwarder.accepted(), 1, "four calls opened {} connections", forwarder.accepted());
}

/// A proxy's or load balancer's page instead of a Stripe error: a 502 is retried (and
/// ends as unavailable), a 400 is not.
#[tokio::test]
async fn answers_without_a_stripe_error_body_are_retried_only_when_5xx() {
    use std::sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    };
    for (status, attempts) in [(502u16, 3u32), (400, 1)] {
        let hits = Arc::new(AtomicU32::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().fallback(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { (axum::http::StatusCode::from_u16(status).unwrap(), "<html><body>Bad gateway</body></html>") }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let policy = RetryPolicy { base_delay: Duration::from_millis(1), ..RetryPolicy::default() };
        let billing = StripeBilling::new(StripeConfig {
            secret_key: Secret::new("sk_test_pages"),
            api_base: Some(base),
            price_premium: PRICE_PREMIUM.into(),
            price_enterprise: PRICE_ENTERPRISE.into(),
            retry: policy,
        })
        .unwrap();
        let error = billing.invoice("in_page").await.unwrap_err();
        assert_eq!(hits.load(Ordering::SeqCst), attempts, "HTTP {status}: {error}");
        match status {
            502 => assert!(matches!(error, BillingError::Unavailable(_)), "{error}"),
            _ => assert!(matches!(error, BillingError::Unexpected(_)), "{error}"),
        }
    }
}
