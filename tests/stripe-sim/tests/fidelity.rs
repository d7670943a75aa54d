//! Fidelity: every object the sim returns deserializes into async-stripe's own types
//! (through async-stripe's real client pointed at the sim) and carries exactly the
//! top-level keys of Stripe's fixture for that resource.

mod common;

use std::collections::HashMap;

use common::{assert_fixture_keys, Api, Receiver, DAY, T0};
use serde_json::Value;
use stripe::{Client, ClientBuilder, StripeError};
use stripe_billing::invoice::{ListInvoice, PayInvoice, RetrieveInvoice};
use stripe_billing::subscription::{
    CancelSubscription, CreateSubscription, CreateSubscriptionItems, CreateSubscriptionPaymentBehavior, CreateSubscriptionTrialSettings,
    CreateSubscriptionTrialSettingsEndBehavior, CreateSubscriptionTrialSettingsEndBehaviorMissingPaymentMethod, RetrieveSubscription,
    UpdateSubscription, UpdateSubscriptionItems, UpdateSubscriptionProrationBehavior,
};
use stripe_billing::test_helpers_test_clock::{AdvanceTestHelpersTestClock, CreateTestHelpersTestClock};
use stripe_billing::{InvoiceStatus, SubscriptionStatus};
use stripe_core::customer::{CreateCustomer, DeleteCustomer, ListCustomer, RetrieveCustomer, RetrieveCustomerReturned, SearchCustomer};
use stripe_core::event::{ListEvent, RetrieveEvent};
use stripe_core::payment_intent::RetrievePaymentIntent;
use stripe_payment::payment_method::{AttachPaymentMethod, RetrievePaymentMethod};
use stripe_product::price::{CreatePrice, CreatePriceRecurring, CreatePriceRecurringInterval, ListPrice, RetrievePrice};
use stripe_product::product::{CreateProduct, RetrieveProduct};

fn client(sim: &stripe_sim::SimHandle) -> Client {
    ClientBuilder::new(sim.secret_key()).url(sim.base_url()).build().expect("client builds")
}

#[tokio::test]
async fn catalogue_objects() {
    let sim = common::sim().await;
    let c = client(&sim);
    let api = Api::new(&sim);

    let product = CreateProduct::new("Pro").description("sim product").send(&c).await.unwrap();
    assert_eq!(product.name, "Pro");
    let price = CreatePrice::new(stripe_types::Currency::USD)
        .product(product.id.as_str())
        .unit_amount(1500)
        .lookup_key("pro_monthly")
        .recurring(CreatePriceRecurring::new(CreatePriceRecurringInterval::Month))
        .send(&c)
        .await
        .unwrap();
    assert_eq!(price.unit_amount, Some(1500));
    assert_eq!(price.recurring.as_ref().map(|r| r.interval_count), Some(1));
    let listed = ListPrice::new().lookup_keys(vec!["pro_monthly".to_string(), "premium_monthly".to_string()]).send(&c).await.unwrap();
    assert_eq!(listed.data.len(), 2);
    let seeded = RetrievePrice::new("price_premium_monthly").send(&c).await.unwrap();
    assert_eq!((seeded.unit_amount, seeded.lookup_key.as_deref()), (Some(999), Some("premium_monthly")));
    RetrieveProduct::new(product.id.as_str()).send(&c).await.unwrap();

    assert_fixture_keys(&api.fetch(&format!("/v1/products/{}", product.id)).await, "product", &[]);
    assert_fixture_keys(&api.fetch(&format!("/v1/prices/{}", price.id)).await, "price", &[]);
    // An expanded price → product still has the product's key set.
    let expanded = api.fetch(&format!("/v1/prices/{}?expand[]=product", price.id)).await;
    assert_fixture_keys(&expanded["product"], "product", &[]);
}

#[tokio::test]
async fn billing_objects_through_a_whole_cycle() {
    let sim = common::sim().await;
    let c = client(&sim);
    let api = Api::new(&sim);
    let hook = Receiver::registered(&sim).await;

    let clock = CreateTestHelpersTestClock::new(T0).name("fidelity").send(&c).await.unwrap();
    assert_fixture_keys(&api.fetch(&format!("/v1/test_helpers/test_clocks/{}", clock.id)).await, "test_helpers.test_clock", &[]);

    let mut meta = HashMap::new();
    meta.insert("user_id".to_string(), "u1".to_string());
    let customer = CreateCustomer::new().email("fidelity@example.com").metadata(meta).test_clock(clock.id.as_str()).send(&c).await.unwrap();
    assert_eq!(customer.test_clock.as_ref().map(|t| t.id().as_str().to_string()), Some(clock.id.as_str().to_string()));
    let pm = AttachPaymentMethod::new("pm_card_visa").customer(customer.id.as_str()).send(&c).await.unwrap();
    assert!(pm.id.as_str().starts_with("pm_") && pm.id.as_str() != "pm_card_visa");
    assert_eq!(pm.card.as_ref().map(|c| c.last4.as_str()), Some("4242"));
    RetrievePaymentMethod::new(pm.id.as_str()).send(&c).await.unwrap();
    assert_fixture_keys(&api.fetch(&format!("/v1/payment_methods/{}", pm.id)).await, "payment_method", &[]);

    let sub = CreateSubscription::new()
        .customer(customer.id.as_str())
        .items(vec![CreateSubscriptionItems { price: Some("price_premium_monthly".into()), ..CreateSubscriptionItems::new() }])
        .default_payment_method(pm.id.as_str())
        .payment_behavior(CreateSubscriptionPaymentBehavior::DefaultIncomplete)
        .expand(vec!["latest_invoice.payments".to_string(), "latest_invoice.confirmation_secret".to_string()])
        .send(&c)
        .await
        .unwrap();
    // default_incomplete: nothing is charged until the invoice is paid or its intent confirmed.
    assert_eq!(sub.status, SubscriptionStatus::Incomplete);
    assert_eq!(sub.items.data[0].current_period_start, T0);
    let invoice = sub.latest_invoice.as_ref().and_then(|i| i.as_object()).expect("latest_invoice expanded");
    assert_eq!(invoice.status, Some(InvoiceStatus::Open));
    assert_eq!((invoice.amount_paid, invoice.attempt_count, invoice.attempted), (0, 0, false));
    let payments = invoice.payments.as_ref().expect("payments included");
    assert_eq!(payments.data.len(), 1);
    assert_eq!(payments.data[0].status, "open");
    let pi_id = payments.data[0].payment.payment_intent.as_ref().expect("payment intent").id().clone();
    let secret = invoice.confirmation_secret.as_ref().expect("confirmation secret");
    assert!(secret.client_secret.starts_with(pi_id.as_str()));
    let pi = RetrievePaymentIntent::new(pi_id.as_str()).send(&c).await.unwrap();
    assert_eq!(pi.status.as_str(), "requires_confirmation");
    assert_eq!(pi.payment_method.as_ref().map(|p| p.id().as_str().to_string()), Some(pm.id.as_str().to_string()));

    let paid = PayInvoice::new(invoice.id.as_ref().unwrap().as_str()).send(&c).await.unwrap();
    assert_eq!((paid.status, paid.amount_paid), (Some(InvoiceStatus::Paid), 999));
    assert_eq!(RetrieveSubscription::new(sub.id.as_str()).send(&c).await.unwrap().status, SubscriptionStatus::Active);
    let pi = RetrievePaymentIntent::new(pi_id.as_str()).send(&c).await.unwrap();
    assert_eq!(pi.status.as_str(), "succeeded");
    assert_eq!(pi.amount, 999);
    assert_fixture_keys(&api.fetch(&format!("/v1/payment_intents/{pi_id}")).await, "payment_intent", &[]);

    // Raw JSON: exact key sets, with the includable invoice fields only when expanded.
    let raw_sub = api.fetch(&format!("/v1/subscriptions/{}", sub.id)).await;
    assert_fixture_keys(&raw_sub, "subscription", &[]);
    assert_fixture_keys(&raw_sub["items"]["data"][0], "subscription_item", &[]);
    assert_fixture_keys(&raw_sub["items"]["data"][0]["price"], "price", &[]);
    assert_fixture_keys(&raw_sub["items"]["data"][0]["plan"], "plan", &[]);
    let inv_id = raw_sub["latest_invoice"].as_str().unwrap();
    let raw_inv = api.fetch(&format!("/v1/invoices/{inv_id}")).await;
    assert_fixture_keys(&raw_inv, "invoice", &[]);
    assert_fixture_keys(&raw_inv["lines"]["data"][0], "line_item", &[]);
    let raw_inv = api.fetch(&format!("/v1/invoices/{inv_id}?expand[]=payments&expand[]=confirmation_secret")).await;
    assert_fixture_keys(&raw_inv, "invoice", &["confirmation_secret", "payments"]);
    assert_fixture_keys(&raw_inv["payments"]["data"][0], "invoice_payment", &[]);
    let raw_cus = api.fetch(&format!("/v1/customers/{}?expand[]=test_clock", customer.id)).await;
    assert_fixture_keys(&raw_cus, "customer", &[]);
    assert_fixture_keys(&raw_cus["test_clock"], "test_helpers.test_clock", &[]);

    // A month later: renewal invoice, all through async-stripe.
    let advanced = AdvanceTestHelpersTestClock::new(clock.id.as_str(), T0 + 32 * DAY).send(&c).await.unwrap();
    assert_eq!(advanced.frozen_time, T0 + 32 * DAY);
    let sub = RetrieveSubscription::new(sub.id.as_str()).send(&c).await.unwrap();
    assert!(sub.items.data[0].current_period_start > T0);
    let invoices = ListInvoice::new().subscription(sub.id.as_str()).send(&c).await.unwrap();
    assert_eq!(invoices.data.len(), 2);
    assert_eq!(invoices.data[0].billing_reason, Some(stripe_shared::InvoiceBillingReason::SubscriptionCycle));
    let first = RetrieveInvoice::new(invoices.data[0].id.clone().unwrap()).expand(vec!["payments".to_string()]).send(&c).await.unwrap();
    assert_eq!(first.status, Some(InvoiceStatus::Paid));

    // Price swap with an immediate invoice: proration lines deserialize too.
    let item_id = sub.items.data[0].id.as_str().to_string();
    let updated = UpdateSubscription::new(sub.id.as_str())
        .items(vec![UpdateSubscriptionItems {
            id: Some(item_id),
            price: Some("price_enterprise_monthly".into()),
            ..UpdateSubscriptionItems::new()
        }])
        .proration_behavior(UpdateSubscriptionProrationBehavior::AlwaysInvoice)
        .expand(vec!["latest_invoice".to_string()])
        .send(&c)
        .await
        .unwrap();
    let swap_inv = updated.latest_invoice.as_ref().and_then(|i| i.as_object()).unwrap();
    assert_eq!(swap_inv.billing_reason, Some(stripe_shared::InvoiceBillingReason::SubscriptionUpdate));
    assert!(swap_inv.lines.data.iter().all(|l| l
        .parent
        .as_ref()
        .and_then(|p| p.subscription_item_details.as_ref())
        .is_some_and(|d| d.proration)));
    let pending = api.fetch(&format!("/v1/invoiceitems?customer={}", customer.id)).await;
    assert_fixture_keys(&pending["data"][0], "invoiceitem", &[]);

    // Events: list + retrieve, typed.
    let events = ListEvent::new().limit(100).send(&c).await.unwrap();
    assert!(events.data.len() > 20);
    for e in &events.data {
        assert_eq!(e.api_version.as_deref(), Some(stripe_sim::API_VERSION));
        assert!(!matches!(e.type_, stripe_shared::EventType::Unknown(_)), "unknown event type {:?}", e.type_);
    }
    let one = RetrieveEvent::new(events.data[0].id.clone()).send(&c).await.unwrap();
    assert_eq!(one.id, events.data[0].id);
    let raw_events = api.fetch("/v1/events?limit=100").await;
    for e in raw_events["data"].as_array().unwrap() {
        assert_fixture_keys(e, "event", &[]);
    }

    let canceled = CancelSubscription::new(sub.id.as_str()).send(&c).await.unwrap();
    assert_eq!(canceled.status, SubscriptionStatus::Canceled);

    // Search and list shapes.
    let found = SearchCustomer::new("metadata['user_id']:'u1'").send(&c).await.unwrap();
    assert_eq!(found.data.len(), 1);
    let listed = ListCustomer::new().email("fidelity@example.com").send(&c).await.unwrap();
    assert_eq!(listed.data.len(), 1);

    let deleted = DeleteCustomer::new(customer.id.as_str()).send(&c).await.unwrap();
    assert_eq!(deleted.id, customer.id);
    let other = api.ok("/v1/customers", &[("email", "other@example.com")]).await;
    let (status, raw_deleted) = api.delete(&format!("/v1/customers/{}", other["id"].as_str().unwrap())).await;
    assert_eq!(status, 200);
    assert_fixture_keys(&raw_deleted, "deleted_customer", &[]);
    match RetrieveCustomer::new(customer.id.as_str()).send(&c).await.unwrap() {
        RetrieveCustomerReturned::DeletedCustomer(d) => assert_eq!(d.id, customer.id),
        RetrieveCustomerReturned::Customer(_) => panic!("customer should be deleted"),
    }
    assert_fixture_keys(&api.fetch(&format!("/v1/customers/{}", customer.id)).await, "deleted_customer", &[]);

    // Webhook payloads are events with the same shape.
    common::idle(&sim).await;
    let received = hook.received();
    assert!(!received.is_empty());
    for r in &received {
        assert!(r.signature_ok);
        assert_fixture_keys(&r.event, "event", &[]);
    }
}

#[tokio::test]
async fn webhook_endpoint_and_deleted_shapes() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let created = api.ok("/v1/webhook_endpoints", &[("url", "http://127.0.0.1:9/hook"), ("enabled_events[]", "invoice.paid")]).await;
    // `secret` is returned on create only, the one key beyond the fixture.
    assert_fixture_keys(&created, "webhook_endpoint", &["secret"]);
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    let id = created["id"].as_str().unwrap();
    assert_fixture_keys(&api.fetch(&format!("/v1/webhook_endpoints/{id}")).await, "webhook_endpoint", &[]);
    let (status, deleted) = api.delete(&format!("/v1/webhook_endpoints/{id}")).await;
    assert_eq!(status, 200);
    assert_fixture_keys(&deleted, "deleted_webhook_endpoint", &[]);
    let clock = api.clock(T0).await;
    let (_, deleted) = api.delete(&format!("/v1/test_helpers/test_clocks/{clock}")).await;
    assert_fixture_keys(&deleted, "deleted_test_helpers.test_clock", &[]);
}

#[tokio::test]
async fn errors_parse_as_stripe_errors() {
    let sim = common::sim().await;
    let c = client(&sim);
    match RetrieveInvoice::new("in_missing").send(&c).await {
        Err(StripeError::Stripe(e, 404)) => {
            assert_eq!(e.code, Some(stripe_shared::ApiErrorsCode::ResourceMissing));
            assert_eq!(e.type_, stripe_shared::ApiErrorsType::InvalidRequestError);
        }
        other => panic!("expected a 404 Stripe error, got {other:?}"),
    }
    let customer = CreateCustomer::new().send(&c).await.unwrap();
    match AttachPaymentMethod::new("pm_card_visa_chargeDeclined").customer(customer.id.as_str()).send(&c).await {
        Err(StripeError::Stripe(e, 402)) => {
            assert_eq!(e.type_, stripe_shared::ApiErrorsType::CardError);
            assert_eq!(e.code, Some(stripe_shared::ApiErrorsCode::CardDeclined));
            assert_eq!(e.decline_code.as_deref(), Some("generic_decline"));
        }
        other => panic!("expected a 402 card error, got {other:?}"),
    }
    match PayInvoice::new("in_missing").send(&c).await {
        Err(StripeError::Stripe(_, 404)) => {}
        other => panic!("expected 404, got {other:?}"),
    }
    sim.set_fault(Some(stripe_sim::Fault::StatusTimes { status: 429, times: 1 }));
    match RetrieveProduct::new("prod_logiscore_premium").send(&c).await {
        Err(StripeError::Stripe(e, 429)) => {
            assert_eq!(e.code, Some(stripe_shared::ApiErrorsCode::RateLimit))
        }
        other => panic!("expected 429, got {other:?}"),
    }
    RetrieveProduct::new("prod_logiscore_premium").send(&c).await.expect("fault cleared after one use");
}

#[tokio::test]
async fn trialing_subscription_via_async_stripe() {
    let sim = common::sim().await;
    let c = client(&sim);
    let clock = CreateTestHelpersTestClock::new(T0).send(&c).await.unwrap();
    let customer = CreateCustomer::new().test_clock(clock.id.as_str()).send(&c).await.unwrap();
    let sub = CreateSubscription::new()
        .customer(customer.id.as_str())
        .items(vec![CreateSubscriptionItems { price: Some("price_premium_monthly".into()), ..CreateSubscriptionItems::new() }])
        .trial_period_days(14u32)
        .trial_settings(CreateSubscriptionTrialSettings {
            end_behavior: CreateSubscriptionTrialSettingsEndBehavior {
                missing_payment_method: Some(CreateSubscriptionTrialSettingsEndBehaviorMissingPaymentMethod::Pause),
                ..Default::default()
            },
        })
        .send(&c)
        .await
        .unwrap();
    assert_eq!(sub.status, SubscriptionStatus::Trialing);
    assert_eq!(sub.trial_end, Some(T0 + 14 * DAY));
    AdvanceTestHelpersTestClock::new(clock.id.as_str(), T0 + 15 * DAY).send(&c).await.unwrap();
    let sub = RetrieveSubscription::new(sub.id.as_str()).send(&c).await.unwrap();
    assert_eq!(sub.status, SubscriptionStatus::Paused);
}

/// What API 2026-09-30.endive changed against fixtures3.json in the kept resources, as the
/// published types declare it (the conformance test checks the result): fields it added
/// (kept as null) and fields it removed.
const VERSION_ADDED: &[(&str, &[&str])] = &[
    ("product", &["tax_details"]),
    ("subscription_item", &["current_trial"]),
    ("payment_intent", &["allowed_payment_method_types"]),
    ("payment_intent", &["payment_record"]),
    ("subscription", &["cancellation_details", "feedback_option"]),
    ("subscription", &["trial_settings", "end_behavior", "billing_cycle_anchor"]),
    ("subscription", &["pending_update", "cancel_at_period_end"]),
];
const VERSION_REMOVED: &[(&str, &[&str])] = &[("invoice", &["subscription"])];

/// The trimmed fixture file is Stripe's fixtures3.json, resource for resource, changed only
/// by the API version's additions and removals above.
#[test]
fn kept_fixtures_match_the_shared_originals() {
    let original = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/stripe/fixtures3.json");
    let Ok(text) = std::fs::read_to_string(&original) else {
        eprintln!("skipping: {} not present", original.display());
        return;
    };
    let original: Value = serde_json::from_str(&text).unwrap();
    let kept: Value = serde_json::from_str(include_str!("../fixtures/stripe-fixtures.json")).unwrap();
    fn parent<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut serde_json::Map<String, Value> {
        let mut cur = v;
        for k in &path[..path.len() - 1] {
            cur = cur.get_mut(*k).unwrap_or_else(|| panic!("fixtures3.json has no `{k}` on the way to {path:?}"));
        }
        cur.as_object_mut().unwrap()
    }
    for (name, obj) in kept["resources"].as_object().unwrap() {
        let mut expected = original["resources"].get(name).cloned().unwrap_or_else(|| panic!("fixtures3.json has no {name}"));
        for (_, path) in VERSION_ADDED.iter().filter(|(r, _)| r == name) {
            let last = path[path.len() - 1];
            let slot = parent(&mut expected, path);
            assert!(!slot.contains_key(last), "fixtures3.json already has {name}.{}", path.join("."));
            slot.insert(last.to_string(), Value::Null);
        }
        for (_, path) in VERSION_REMOVED.iter().filter(|(r, _)| r == name) {
            let removed = parent(&mut expected, path).remove(path[path.len() - 1]);
            assert!(removed.is_some(), "fixtures3.json has no {name}.{}", path.join("."));
        }
        assert_eq!(obj, &expected, "fixture {name} differs from fixtures3.json beyond the version's changes");
    }
}
