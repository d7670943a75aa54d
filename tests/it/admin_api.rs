//! The admin API end to end in process: API Gateway v2 events (with JWT claims) through
//! the real router, the real DynamoDB store on moto, the real Stripe client against
//! stripe-sim, and the real outbox delivery (moto SES + EventBridge).
//!
//! The last test (`e2e_binary_under_cargo_lambda_watch`) runs the built `admin-api`
//! binary under `cargo lambda watch` instead.

use std::time::Duration;

use chrono::{DateTime, Months, Utc};
use harness::admin::{claims_with_groups, AdminApi, ADMIN_SUB};
use serde_json::{json, Value};
use shared::domain::{EmailContext, NotificationKind, OutboxPayload, SubscriptionSource, SubscriptionStatus, Tier, UserId};

fn user(id: &str) -> UserId {
    UserId::parse(id).expect("valid user id")
}

fn paid(tier: &str, pm: &str) -> Value {
    json!({"tier": tier, "duration_months": 12, "is_paid": true, "auto_renew": true, "payment_method_id": pm, "comment": "Annual plan"})
}

fn granted(tier: &str, months: u32) -> Value {
    json!({"tier": tier, "duration_months": months, "is_paid": false, "auto_renew": false, "comment": "Pilot"})
}

fn date(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("not a date: {value}"))
}

/// Stripe objects the sim holds for a listing path, e.g. `/v1/subscriptions?status=all`.
async fn stripe_objects(api: &AdminApi, path: &str) -> Vec<Value> {
    api.sim.get(path).await["data"].as_array().cloned().unwrap_or_default()
}

async fn subscribe_visa(api: &AdminApi, id: &str) -> Value {
    api.create_profile(id).await;
    let answer = api.call("PUT", &format!("/users/{id}/subscription"), Some(paid("premium", "pm_card_visa"))).await;
    assert_eq!(answer.status.as_u16(), 201, "{}", answer.body);
    answer.body
}

#[tokio::test]
async fn paid_subscription_is_active_with_history_confirmation_and_event() {
    let api = AdminApi::start().await;
    let body = subscribe_visa(&api, "ada").await;
    assert_eq!(body["outcome"], "created");
    let sub = &body["subscription"];
    assert_eq!((sub["tier"].as_str(), sub["status"].as_str(), sub["source"].as_str()), (Some("premium"), Some("active"), Some("paid")));
    assert_eq!((sub["has_access"].as_bool(), sub["effective_tier"].as_str()), (Some(true), Some("premium")));
    assert_eq!((sub["auto_renew"].as_bool(), sub["cancel_at_period_end"].as_bool()), (Some(true), Some(false)));
    let stripe_id = sub["stripe_subscription_id"].as_str().expect("stripe id").to_owned();
    assert!(stripe_id.starts_with("sub_"));
    assert!(sub["days_remaining"].as_i64().is_some_and(|d| (28..=31).contains(&d)), "{sub}");

    let stored = api.env.store.subscription(&user("ada")).await.unwrap().expect("stored");
    assert_eq!((stored.status, stored.tier, stored.source), (SubscriptionStatus::Active, Tier::Premium, SubscriptionSource::Paid));
    assert_eq!(stored.stripe_subscription_id.as_ref().map(|s| s.as_str()), Some(stripe_id.as_str()));

    let history = api.env.store.history(&user("ada"), 10).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].actor, format!("admin:{ADMIN_SUB}"));
    assert_eq!(history[0].comment.as_deref(), Some("Annual plan"));

    let confirmation =
        api.env.store.outbox_item(&format!("email:subscription_confirmation:{stripe_id}")).await.unwrap().expect("confirmation queued");
    match confirmation.payload {
        OutboxPayload::Email { context, .. } => {
            assert_eq!(context.kind(), NotificationKind::SubscriptionConfirmation);
            assert_eq!(context.to_value()["plan"], "premium");
        }
        other => panic!("unexpected payload {other:?}"),
    }
    // Delivered right after the commit: the activation event is on the bus.
    let mut kinds: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let found = loop {
        kinds.extend(api.env.bus_events().await.into_iter().filter_map(|e| e["detail-type"].as_str().map(str::to_owned)));
        if kinds.iter().any(|k| k == "SubscriptionActivated") {
            break true;
        }
        if tokio::time::Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(found, "no SubscriptionActivated on the bus: {kinds:?}");

    // The mappings let the webhook find the user.
    let mapped = api.env.store.user_for(&shared::store::StripeMapping::Subscription(stripe_id.clone())).await.unwrap();
    assert_eq!(mapped, Some(user("ada")));

    let got = api.call("GET", "/users/ada/subscription", None).await;
    assert_eq!(got.status.as_u16(), 200);
    assert_eq!(got.body["stripe_subscription_id"], stripe_id.as_str());
    assert!(got.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn declined_card_is_402_with_the_decline_code_and_writes_nothing() {
    let api = AdminApi::start().await;
    api.create_profile("bob").await;
    let before = api.table_keys().await;
    let answer = api.call("PUT", "/users/bob/subscription", Some(paid("premium", "pm_card_visa_chargeDeclined"))).await;
    assert_eq!(answer.status.as_u16(), 402, "{}", answer.body);
    assert_eq!(answer.body["code"], "card_declined");
    assert_eq!(answer.body["decline_code"], "generic_decline");
    assert_eq!(answer.body["type"], "https://logiscore.dev/problems/card-declined");
    assert_eq!(api.table_keys().await, before, "a decline writes nothing");
    assert_eq!(stripe_objects(&api, "/v1/subscriptions?status=all&limit=100").await.len(), 0);
}

#[tokio::test]
async fn incomplete_first_payment_is_202_with_the_payment_action_and_no_access() {
    let api = AdminApi::start().await;
    api.create_profile("cy").await;
    let answer = api.call("PUT", "/users/cy/subscription", Some(paid("premium", "pm_card_chargeCustomerFail"))).await;
    assert_eq!(answer.status.as_u16(), 202, "{}", answer.body);
    assert_eq!(answer.body["outcome"], "payment_required");
    let sub = &answer.body["subscription"];
    assert_eq!(
        (sub["status"].as_str(), sub["has_access"].as_bool(), sub["effective_tier"].as_str()),
        (Some("incomplete"), Some(false), Some("free"))
    );
    let action = &answer.body["payment_action"];
    assert!(action["status"].as_str().is_some_and(|s| s.starts_with("requires_")), "{action}");
    assert!(action["invoice_id"].as_str().is_some_and(|s| s.starts_with("in_")), "{action}");
    assert_eq!(answer.headers["location"], "/users/cy/subscription");

    let stored = api.env.store.subscription(&user("cy")).await.unwrap().expect("stored as incomplete");
    assert_eq!(stored.status, SubscriptionStatus::Incomplete);
    let stripe_id = stored.stripe_subscription_id.expect("stripe id").to_string();
    assert!(
        api.env.store.outbox_item(&format!("email:subscription_confirmation:{stripe_id}")).await.unwrap().is_none(),
        "no confirmation before payment"
    );

    // Asking again does not create a second subscription.
    let again = api.call("PUT", "/users/cy/subscription", Some(paid("premium", "pm_card_chargeCustomerFail"))).await;
    assert_eq!((again.status.as_u16(), again.body["outcome"].as_str()), (200, Some("unchanged")));
    // A different tier must wait until the pending one is resolved.
    let other = api.call("PUT", "/users/cy/subscription", Some(paid("enterprise", "pm_card_visa"))).await;
    assert_eq!((other.status.as_u16(), other.body["code"].as_str()), (409, Some("payment_pending")));
    // Cancelling it at period end makes no sense; cancelling now does.
    let later = api.call("POST", "/users/cy/subscription/cancel", None).await;
    assert_eq!((later.status.as_u16(), later.body["code"].as_str()), (409, Some("cancel_immediately")));
    let now = api.call("POST", "/users/cy/subscription/cancel", Some(json!({"immediately": true}))).await;
    assert_eq!((now.status.as_u16(), now.body["subscription"]["status"].as_str()), (200, Some("canceled")), "{}", now.body);
    // The first invoice is voided with it: the customer cannot pay for what they do not have.
    let invoice_id = action["invoice_id"].as_str().unwrap_or_default();
    let invoice = api.sim.get(&format!("/v1/invoices/{invoice_id}")).await;
    assert_eq!(invoice["status"], "void", "{invoice}");
    let (status, pay) = api.sim.post_answer(&format!("/v1/invoices/{invoice_id}/pay"), &[]).await;
    assert_eq!(
        (status.as_u16(), pay["error"]["type"].as_str()),
        (400, Some("invalid_request_error")),
        "a void invoice cannot be paid: {pay}"
    );
    assert!(stripe_objects(&api, &format!("/v1/invoices?subscription={stripe_id}&status=open")).await.is_empty());
}

#[tokio::test]
async fn granted_trial_runs_for_the_granted_months_without_a_card() {
    let api = AdminApi::start().await;
    api.create_profile("dee").await;
    let started = Utc::now();
    let answer = api.call("PUT", "/users/dee/subscription", Some(granted("enterprise", 3))).await;
    assert_eq!(answer.status.as_u16(), 201, "{}", answer.body);
    let sub = &answer.body["subscription"];
    assert_eq!(
        (sub["status"].as_str(), sub["source"].as_str(), sub["tier"].as_str()),
        (Some("trial"), Some("granted"), Some("enterprise"))
    );
    assert_eq!((sub["auto_renew"].as_bool(), sub["has_access"].as_bool()), (Some(false), Some(true)));
    let expected = started.checked_add_months(Months::new(3)).unwrap();
    let end = date(&sub["end_date"]);
    // Fixed terms start at the next full hour (identical Stripe parameters on a retry).
    let extra = (end - expected).num_seconds();
    assert!((0..=3600 + 120).contains(&extra), "trial ends {end}, expected {expected} plus under an hour");

    let stripe = api.sim.get(&format!("/v1/subscriptions/{}", sub["stripe_subscription_id"].as_str().unwrap())).await;
    assert_eq!(stripe["status"], "trialing");
    assert_eq!(stripe["trial_settings"]["end_behavior"]["missing_payment_method"], "cancel");
    assert!(stripe["default_payment_method"].is_null());

    // Granted subscriptions cancel like paid ones.
    let cancel = api.call("POST", "/users/dee/subscription/cancel", None).await;
    assert_eq!((cancel.status.as_u16(), cancel.body["outcome"].as_str()), (200, Some("cancel_scheduled")), "{}", cancel.body);
}

#[tokio::test]
async fn free_tier_is_local_only() {
    let api = AdminApi::start().await;
    api.create_profile("fay").await;
    let answer = api
        .call("PUT", "/users/fay/subscription", Some(json!({"tier": "free", "duration_months": 1, "is_paid": false, "auto_renew": false})))
        .await;
    assert_eq!(answer.status.as_u16(), 201, "{}", answer.body);
    assert_eq!(
        (answer.body["subscription"]["source"].as_str(), answer.body["subscription"]["stripe_subscription_id"].as_null()),
        (Some("free"), Some(()))
    );
    assert_eq!(api.stripe_calls("POST /v1/customers"), 0);
    // Upgrading from free creates the paid subscription and replaces the record.
    let upgrade = api.call("PUT", "/users/fay/subscription", Some(paid("premium", "pm_card_visa"))).await;
    assert_eq!((upgrade.status.as_u16(), upgrade.body["subscription"]["status"].as_str()), (201, Some("active")), "{}", upgrade.body);
}

#[tokio::test]
async fn tier_change_prorates_and_queues_plan_changed() {
    let api = AdminApi::start().await;
    let created = subscribe_visa(&api, "eve").await;
    let stripe_id = created["subscription"]["stripe_subscription_id"].as_str().unwrap().to_owned();

    let same = api.call("PUT", "/users/eve/subscription", Some(paid("premium", "pm_card_visa"))).await;
    assert_eq!((same.status.as_u16(), same.body["outcome"].as_str()), (200, Some("unchanged")));
    assert!(same.body["message"].as_str().is_some_and(|m| m.contains("already")), "{}", same.body);

    let answer = api.call("PUT", "/users/eve/subscription", Some(paid("enterprise", "pm_card_visa"))).await;
    assert_eq!(answer.status.as_u16(), 200, "{}", answer.body);
    assert_eq!((answer.body["outcome"].as_str(), answer.body["subscription"]["tier"].as_str()), (Some("tier_changed"), Some("enterprise")));
    assert_eq!(answer.body["subscription"]["stripe_subscription_id"], stripe_id.as_str(), "same Stripe subscription, new price");

    let stripe = api.sim.get(&format!("/v1/subscriptions/{stripe_id}")).await;
    assert_eq!(stripe["items"]["data"][0]["price"]["id"], stripe_sim::ENTERPRISE_MONTHLY);
    let stored = api.env.store.subscription(&user("eve")).await.unwrap().unwrap();
    assert_eq!(stored.tier, Tier::Enterprise);
    let id = format!("email:plan_changed:{stripe_id}:v{}", stored.version);
    let item = api.env.store.outbox_item(&id).await.unwrap().unwrap_or_else(|| panic!("{id} not queued"));
    match item.payload {
        OutboxPayload::Email { context: EmailContext::PlanChanged(changed), .. } => {
            assert_eq!((changed.previous_plan, changed.new_plan), (Tier::Premium, Tier::Enterprise))
        }
        other => panic!("unexpected payload {other:?}"),
    }
    let history = api.env.store.history(&user("eve"), 10).await.unwrap();
    assert_eq!(history[0].change, shared::domain::HistoryChange::TierChanged);
    assert_eq!((history[0].from_tier, history[0].to_tier), (Some(Tier::Premium), Tier::Enterprise));

    // Downgrading to free is a cancellation, not a tier change.
    let free = api
        .call("PUT", "/users/eve/subscription", Some(json!({"tier": "free", "duration_months": 1, "is_paid": false, "auto_renew": false})))
        .await;
    assert_eq!((free.status.as_u16(), free.body["code"].as_str()), (409, Some("downgrade_to_free")));
}

#[tokio::test]
async fn cancel_at_period_end_then_reactivate_then_nothing_to_reactivate() {
    let api = AdminApi::start().await;
    let created = subscribe_visa(&api, "gus").await;
    let end = date(&created["subscription"]["end_date"]);

    let cancel = api.call("POST", "/users/gus/subscription/cancel", None).await;
    assert_eq!(cancel.status.as_u16(), 200, "{}", cancel.body);
    let sub = &cancel.body["subscription"];
    assert_eq!(
        (cancel.body["outcome"].as_str(), sub["status"].as_str(), sub["cancel_at_period_end"].as_bool()),
        (Some("cancel_scheduled"), Some("active"), Some(true))
    );
    assert_eq!((sub["has_access"].as_bool(), sub["auto_renew"].as_bool()), (Some(true), Some(false)));
    assert_eq!(date(&sub["end_date"]), end, "access runs to the period end");
    let stored = api.env.store.subscription(&user("gus")).await.unwrap().unwrap();
    let stripe_id = stored.stripe_subscription_id.clone().unwrap();
    let email =
        api.env.store.outbox_item(&format!("email:cancellation_confirmed:{stripe_id}:period_end:v{}", stored.version)).await.unwrap();
    assert!(email.is_some(), "cancellation confirmation queued");
    assert_eq!(api.sim.get(&format!("/v1/subscriptions/{stripe_id}")).await["cancel_at_period_end"], true);

    let again = api.call("POST", "/users/gus/subscription/cancel", Some(json!({}))).await;
    assert_eq!((again.status.as_u16(), again.body["outcome"].as_str()), (200, Some("unchanged")));

    let reactivate = api.call("POST", "/users/gus/subscription/reactivate", None).await;
    assert_eq!(reactivate.status.as_u16(), 200, "{}", reactivate.body);
    assert_eq!(
        (reactivate.body["outcome"].as_str(), reactivate.body["subscription"]["cancel_at_period_end"].as_bool()),
        (Some("reactivated"), Some(false))
    );
    assert_eq!(reactivate.body["subscription"]["auto_renew"], true);
    assert_eq!(api.sim.get(&format!("/v1/subscriptions/{stripe_id}")).await["cancel_at_period_end"], false);

    let twice = api.call("POST", "/users/gus/subscription/reactivate", None).await;
    assert_eq!((twice.status.as_u16(), twice.body["code"].as_str()), (409, Some("no_pending_cancellation")));

    // Cancel → reactivate → cancel again is a new operation (new keys), not a replay.
    let recancel = api.call("POST", "/users/gus/subscription/cancel", None).await;
    assert_eq!((recancel.status.as_u16(), recancel.body["outcome"].as_str()), (200, Some("cancel_scheduled")), "{}", recancel.body);
    assert_eq!(api.sim.get(&format!("/v1/subscriptions/{stripe_id}")).await["cancel_at_period_end"], true);
}

#[tokio::test]
async fn cancel_now_ends_access_and_a_new_subscription_can_follow() {
    let api = AdminApi::start().await;
    subscribe_visa(&api, "hal").await;
    let answer = api.call("POST", "/users/hal/subscription/cancel", Some(json!({"immediately": true}))).await;
    assert_eq!(answer.status.as_u16(), 200, "{}", answer.body);
    let sub = &answer.body["subscription"];
    assert_eq!(
        (answer.body["outcome"].as_str(), sub["status"].as_str(), sub["has_access"].as_bool()),
        (Some("canceled"), Some("canceled"), Some(false))
    );
    assert!(sub["canceled_at"].is_string());
    let stripe_id = sub["stripe_subscription_id"].as_str().unwrap().to_owned();
    assert_eq!(api.sim.get(&format!("/v1/subscriptions/{stripe_id}")).await["status"], "canceled");
    assert!(api.env.store.outbox_item(&format!("email:cancellation_confirmed:{stripe_id}:immediate")).await.unwrap().is_some());

    let again = api.call("POST", "/users/hal/subscription/cancel", Some(json!({"immediately": true}))).await;
    assert_eq!((again.status.as_u16(), again.body["code"].as_str()), (409, Some("already_ended")));
    let reactivate = api.call("POST", "/users/hal/subscription/reactivate", None).await;
    assert_eq!((reactivate.status.as_u16(), reactivate.body["code"].as_str()), (409, Some("already_ended")));

    // The same body as the first subscription creates a new one (the ended one is replaced).
    let renewed = api.call("PUT", "/users/hal/subscription", Some(paid("premium", "pm_card_visa"))).await;
    assert_eq!(renewed.status.as_u16(), 201, "{}", renewed.body);
    assert_ne!(renewed.body["subscription"]["stripe_subscription_id"], stripe_id.as_str());
    assert_eq!(renewed.body["subscription"]["status"], "active");
}

#[tokio::test]
async fn a_subscription_ended_at_stripe_behind_our_back_is_a_409_not_a_502() {
    // The local record says active; Stripe has already canceled it (the Dashboard, or a
    // concurrent request) and its webhook has not arrived. Stripe refuses any change.
    let api = AdminApi::start().await;
    let created = subscribe_visa(&api, "ivy").await;
    let stripe_id = created["subscription"]["stripe_subscription_id"].as_str().unwrap().to_owned();
    api.sim.delete(&format!("/v1/subscriptions/{stripe_id}")).await;
    let before = api.table_items().await;

    for (method, path, body) in [
        ("PUT", "/users/ivy/subscription", Some(paid("enterprise", "pm_card_visa"))),
        ("POST", "/users/ivy/subscription/cancel", Some(json!({"immediately": false}))),
    ] {
        let answer = api.call(method, path, body).await;
        assert_eq!((answer.status.as_u16(), answer.body["code"].as_str()), (409, Some("changed_at_stripe")), "{path}: {}", answer.body);
        let detail = answer.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("canceled at Stripe") && detail.contains("not active"), "{detail}");
    }
    // Nothing was written: the webhook brings the record up to date, in order.
    assert_eq!(api.table_items().await, before);
}

#[tokio::test]
async fn retry_with_the_same_idempotency_key_makes_one_customer_and_one_subscription() {
    let api = AdminApi::start().await;
    api.create_profile("ivy").await;
    let headers = [("Idempotency-Key", "retry-7c1f")];
    let first = api.call_with("PUT", "/users/ivy/subscription", None, Some(paid("premium", "pm_card_visa")), &headers).await;
    assert_eq!(first.status.as_u16(), 201, "{}", first.body);
    let second = api.call_with("PUT", "/users/ivy/subscription", None, Some(paid("premium", "pm_card_visa")), &headers).await;
    assert_eq!((second.status.as_u16(), second.body["outcome"].as_str()), (200, Some("unchanged")), "{}", second.body);
    assert_eq!(first.body["subscription"]["stripe_subscription_id"], second.body["subscription"]["stripe_subscription_id"]);

    // Two concurrent tries with one key (a client retrying before the first answered):
    // Stripe sees one operation, and the local conflict resolves to the current state.
    api.create_profile("jon").await;
    let concurrent = [("Idempotency-Key", "retry-9a2b")];
    let (a, b) = tokio::join!(
        api.call_with("PUT", "/users/jon/subscription", None, Some(paid("premium", "pm_card_visa")), &concurrent),
        api.call_with("PUT", "/users/jon/subscription", None, Some(paid("premium", "pm_card_visa")), &concurrent),
    );
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort();
    assert!(statuses == [200, 201] || statuses == [201, 201], "{statuses:?}: {} / {}", a.body, b.body);
    assert_eq!(a.body["subscription"]["stripe_subscription_id"], b.body["subscription"]["stripe_subscription_id"]);

    for user_id in ["ivy", "jon"] {
        let customers = stripe_objects(&api, &format!("/v1/customers/search?query=metadata['user_id']:'{user_id}'")).await;
        let all_customers: Vec<Value> =
            stripe_objects(&api, "/v1/customers?limit=100").await.into_iter().filter(|c| c["metadata"]["user_id"] == user_id).collect();
        assert_eq!(all_customers.len(), 1, "{user_id}: customers {all_customers:?} (search saw {})", customers.len());
        let customer = all_customers[0]["id"].as_str().unwrap();
        let subscriptions = stripe_objects(&api, &format!("/v1/subscriptions?customer={customer}&status=all")).await;
        assert_eq!(subscriptions.len(), 1, "{user_id}: {subscriptions:?}");
    }
    assert_eq!(api.env.store.history(&user("jon"), 10).await.unwrap().len(), 1, "one history entry for one subscription");
}

#[tokio::test]
async fn invalid_requests_are_422_naming_the_field_and_write_nothing() {
    let api = AdminApi::start().await;
    api.create_profile("kim").await;
    let before = api.table_keys().await;
    let cases = [
        (json!({"tier": "gold", "duration_months": 1, "is_paid": false, "auto_renew": false}), vec!["tier"]),
        (json!({"tier": "premium", "duration_months": 0, "is_paid": false, "auto_renew": false}), vec!["duration_months"]),
        (json!({"tier": "premium", "duration_months": 1, "is_paid": true, "auto_renew": true}), vec!["payment_method_id"]),
        (
            json!({"tier": "premium", "duration_months": 1, "is_paid": true, "auto_renew": true, "payment_method_id": "card_123"}),
            vec!["payment_method_id"],
        ),
        (json!({"tier": "premium", "duration_months": 1, "auto_renew": true}), vec!["is_paid"]),
        (
            json!({"tier": "gold", "duration_months": 99, "is_paid": true, "auto_renew": true}),
            vec!["tier", "duration_months", "payment_method_id"],
        ),
    ];
    for (body, fields) in cases {
        let answer = api.call("PUT", "/users/kim/subscription", Some(body.clone())).await;
        assert_eq!(answer.status.as_u16(), 422, "{body}: {}", answer.body);
        assert_eq!(answer.body["type"], "https://logiscore.dev/problems/validation-error");
        let got: Vec<&str> = answer.body["errors"].as_array().unwrap().iter().filter_map(|e| e["field"].as_str()).collect();
        assert_eq!(got, fields, "{body}");
    }
    let profile = api.call("PUT", "/users/kim", Some(json!({"email": "not-an-address"}))).await;
    assert_eq!((profile.status.as_u16(), profile.body["errors"][0]["field"].as_str()), (422, Some("email")));
    let limit = api.call_with("GET", "/users/kim/subscription/history", Some("limit=500"), None, &[]).await;
    assert_eq!((limit.status.as_u16(), limit.body["errors"][0]["field"].as_str()), (422, Some("limit")));
    assert_eq!(api.table_keys().await, before, "rejected requests write nothing");
    assert_eq!(api.sim.handle.request_count(), 0, "and never reach Stripe");
}

#[tokio::test]
async fn unknown_users_and_missing_subscriptions_are_404() {
    let api = AdminApi::start().await;
    let answer = api.call("PUT", "/users/nobody/subscription", Some(paid("premium", "pm_card_visa"))).await;
    assert_eq!((answer.status.as_u16(), answer.body["code"].as_str()), (404, Some("user_not_found")));
    assert!(answer.body["detail"].as_str().is_some_and(|d| d.contains("PUT /users/nobody")), "{}", answer.body);
    assert_eq!(api.sim.handle.request_count(), 0);
    let get = api.call("GET", "/users/nobody/subscription", None).await;
    assert_eq!((get.status.as_u16(), get.body["code"].as_str()), (404, Some("user_not_found")));
    api.create_profile("lou").await;
    let get = api.call("GET", "/users/lou/subscription", None).await;
    assert_eq!((get.status.as_u16(), get.body["code"].as_str()), (404, Some("subscription_not_found")));
    let cancel = api.call("POST", "/users/lou/subscription/cancel", None).await;
    assert_eq!((cancel.status.as_u16(), cancel.body["code"].as_str()), (404, Some("subscription_not_found")));
    let history = api.call("GET", "/users/lou/subscription/history", None).await;
    assert_eq!((history.status.as_u16(), history.body["entries"].as_array().map(Vec::len)), (200, Some(0)));
    let history = api.call("GET", "/users/nobody/subscription/history", None).await;
    assert_eq!(history.status.as_u16(), 404);
}

#[tokio::test]
async fn only_admins_get_in() {
    let api = AdminApi::start().await;
    api.create_profile("max").await;
    let path = "/users/max/subscription";
    let cases = [
        (None, 401, "unauthenticated"),
        (Some(json!({})), 401, "unauthenticated"),
        (Some(claims_with_groups("u-1", "[users]")), 403, "forbidden"),
        (Some(claims_with_groups("u-1", "[administrators]")), 403, "forbidden"),
        (Some(claims_with_groups("u-1", "administrators")), 403, "forbidden"),
        (Some(json!({"sub": "u-1"})), 403, "forbidden"),
    ];
    for (claims, status, code) in cases {
        for (method, body) in [("GET", None), ("PUT", Some(paid("premium", "pm_card_visa")))] {
            let answer = api.call_as(claims.clone(), method, path, body).await;
            assert_eq!((answer.status.as_u16(), answer.body["code"].as_str()), (status, Some(code)), "{claims:?} {method}");
        }
    }
    for groups in ["admin", "[admin]", "[billing admin]"] {
        let answer = api.call_as(Some(claims_with_groups("u-2", groups)), "GET", path, None).await;
        assert_eq!(answer.status.as_u16(), 404, "{groups}: admins get through to the handler");
    }
    assert!(api.env.store.subscription(&user("max")).await.unwrap().is_none());
    assert_eq!(api.sim.handle.request_count(), 0);
}

#[tokio::test]
async fn stripe_down_is_503_with_retry_after_and_writes_nothing() {
    let api = AdminApi::start().await;
    api.create_profile("ned").await;
    let before = api.table_keys().await;
    api.sim.handle.set_fault(Some(stripe_sim::Fault::Status(503)));
    let answer = api.call("PUT", "/users/ned/subscription", Some(paid("premium", "pm_card_visa"))).await;
    assert_eq!(answer.status.as_u16(), 503, "{}", answer.body);
    assert_eq!(answer.body["code"], "billing_unavailable");
    assert_eq!(answer.headers["retry-after"], "5");
    let detail = answer.body["detail"].as_str().unwrap_or_default();
    assert!(!detail.contains("127.0.0.1") && !detail.contains("sk_"), "no internals: {detail}");
    assert!(answer.body["request_id"].is_string());
    assert_eq!(api.table_keys().await, before);

    // Healed, the same request goes through.
    api.sim.handle.set_fault(None);
    let retry = api.call("PUT", "/users/ned/subscription", Some(paid("premium", "pm_card_visa"))).await;
    assert_eq!(retry.status.as_u16(), 201, "{}", retry.body);
}

#[tokio::test]
async fn history_is_newest_first_and_limited() {
    let api = AdminApi::start().await;
    subscribe_visa(&api, "oli").await;
    for (method, path, body) in [
        ("PUT", "/users/oli/subscription", Some(paid("enterprise", "pm_card_visa"))),
        ("POST", "/users/oli/subscription/cancel", None),
        ("POST", "/users/oli/subscription/reactivate", None),
    ] {
        let answer = api.call(method, path, body).await;
        assert_eq!(answer.status.as_u16(), 200, "{path}: {}", answer.body);
    }
    let answer = api.call("GET", "/users/oli/subscription/history", None).await;
    assert_eq!(answer.status.as_u16(), 200);
    let changes: Vec<&str> = answer.body["entries"].as_array().unwrap().iter().filter_map(|e| e["change"].as_str()).collect();
    assert_eq!(changes, ["reactivated", "cancel_scheduled", "tier_changed", "created"]);
    let versions: Vec<u64> = answer.body["entries"].as_array().unwrap().iter().filter_map(|e| e["version"].as_u64()).collect();
    assert!(versions.windows(2).all(|w| w[0] > w[1]), "{versions:?}");
    let limited = api.call_with("GET", "/users/oli/subscription/history", Some("limit=2"), None, &[]).await;
    let changes: Vec<&str> = limited.body["entries"].as_array().unwrap().iter().filter_map(|e| e["change"].as_str()).collect();
    assert_eq!(changes, ["reactivated", "cancel_scheduled"]);
}

/// END-TO-END (slow: builds and runs a real binary). The `admin-api` binary, built by
/// cargo, run by `cargo lambda watch` (which starts it with `cargo run` on the first
/// invocation, with the watch process's environment), invoked over HTTP at
/// `/2015-03-31/functions/admin-api/invocations` with the committed `events/admin/*.json`
/// payloads, talking to moto and stripe-sim. Logs: `target/test-logs/admin-api-e2e.log`.
/// Skipped, saying so, when cargo-lambda is not installed.
#[tokio::test]
async fn e2e_binary_under_cargo_lambda_watch() {
    let Some(cargo_lambda) = cargo_lambda() else {
        eprintln!("SKIPPED e2e_binary_under_cargo_lambda_watch: cargo-lambda not found (set CARGO_LAMBDA or run `make venv`)");
        return;
    };
    let root = harness::workspace_root();
    // Build first, so a compile error fails here with cargo's message rather than as an
    // invocation timeout. (Cargo releases its build lock while tests run.)
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "admin-api", "--bin", "admin-api"])
        .current_dir(&root)
        .status()
        .expect("cargo build admin-api");
    assert!(status.success(), "cargo build -p admin-api failed");

    let env = harness::TestEnv::new().await;
    let sim = harness::sim::Sim::start().await;
    let stripe = sim.stripe_config();
    let port = harness::free_port();
    let logs = root.join("target/test-logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    let log = std::fs::File::create(logs.join("admin-api-e2e.log")).expect("log file");
    let mut command = std::process::Command::new(&cargo_lambda);
    command
        .args(["lambda", "watch", "-A", "127.0.0.1", "-P", &port.to_string()])
        .current_dir(&root)
        .env("TABLE_NAME", &env.table)
        .env("EVENT_BUS_NAME", &env.bus)
        .env("ADMIN_GROUP", "admin")
        .env_remove("STRIPE_SECRET_KEY")
        .envs(harness::secrets::stripe_vars(&env, sim.handle.secret_key(), None).await)
        .env("STRIPE_API_BASE", sim.handle.base_url())
        .env("STRIPE_PRICE_PREMIUM", &stripe.price_premium)
        .env("STRIPE_PRICE_ENTERPRISE", &stripe.price_enterprise)
        .env("MAIL_FROM", harness::env::MAIL_FROM)
        .env("APP_BASE_URL", "https://app.logiscore.test")
        .env("AWS_ENDPOINT_URL", env.moto.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log);
    let _watch = harness::process::ChildGuard::spawn(command).expect("start cargo lambda watch");
    let ready =
        harness::eventually(Duration::from_secs(60), || async move { tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() })
            .await;
    assert!(ready, "cargo lambda watch did not listen on {port}");

    // The first invocation waits for `cargo run` to start the function.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(300)).build().expect("http client");
    let invoke = |name: &'static str| {
        let http = http.clone();
        let path = root.join("events/admin").join(format!("{name}.json"));
        async move {
            let payload = std::fs::read_to_string(&path).expect("event file");
            let response = http
                .post(format!("http://127.0.0.1:{port}/2015-03-31/functions/admin-api/invocations"))
                .body(payload)
                .send()
                .await
                .expect("invoke");
            assert!(response.status().is_success(), "{name}: invoke answered {}", response.status());
            let envelope: Value = response.json().await.expect("JSON response");
            let body: Value = serde_json::from_str(envelope["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
            (envelope["statusCode"].as_u64().unwrap_or(0), body)
        }
    };
    let (status, body) = invoke("put-profile").await;
    assert!(status == 200 || status == 201, "put-profile: {status} {body}");
    let (status, body) = invoke("put-subscription").await;
    assert_eq!(status, 201, "put-subscription: {body}");
    assert_eq!(body["subscription"]["status"], "active");
    let (status, body) = invoke("get-subscription").await;
    assert_eq!((status, body["tier"].as_str()), (200, Some("premium")), "{body}");
    let (status, body) = invoke("cancel-subscription").await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("cancel_scheduled")), "{body}");
    let (status, body) = invoke("reactivate-subscription").await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("reactivated")), "{body}");
    let (status, body) = invoke("get-history").await;
    assert_eq!((status, body["entries"].as_array().map(Vec::len)), (200, Some(3)), "{body}");
    let stored = env.store.subscription(&user("user-123")).await.unwrap().expect("stored by the binary");
    assert_eq!(stored.status, SubscriptionStatus::Active);
}

fn cargo_lambda() -> Option<std::path::PathBuf> {
    let candidates = [
        std::env::var("CARGO_LAMBDA").ok().map(std::path::PathBuf::from),
        Some(harness::workspace_root().join(".venv/bin/cargo-lambda")),
        Some(std::path::PathBuf::from("/tmp/venvtest/v/bin/cargo-lambda")),
    ];
    candidates.into_iter().flatten().find(|p| p.exists())
}

#[tokio::test]
async fn profile_changes_reach_the_stripe_customer() {
    let api = AdminApi::start().await;
    let created = subscribe_visa(&api, "pia").await;
    let customer = created["subscription"]["stripe_customer_id"].as_str().expect("customer").to_owned();
    let answer = api.call("PUT", "/users/pia", Some(json!({"email": "pia.new@example.com", "full_name": "Pia New"}))).await;
    assert_eq!(answer.status.as_u16(), 200, "{}", answer.body);
    assert_eq!(answer.body["email"], "pia.new@example.com");
    let stripe = api.sim.get(&format!("/v1/customers/{customer}")).await;
    assert_eq!((stripe["email"].as_str(), stripe["name"].as_str()), (Some("pia.new@example.com"), Some("Pia New")));

    // Stripe down: the profile stays as it was.
    api.sim.handle.set_fault(Some(stripe_sim::Fault::Status(503)));
    let failed = api.call("PUT", "/users/pia", Some(json!({"email": "pia.third@example.com"}))).await;
    assert_eq!(failed.status.as_u16(), 503, "{}", failed.body);
    let stored = api.env.store.profile(&user("pia")).await.unwrap().unwrap();
    assert_eq!(stored.email.as_str(), "pia.new@example.com");
}

#[tokio::test]
async fn a_paid_fixed_term_ends_at_its_term_bills_monthly_until_then_and_can_be_made_renewing() {
    let api = AdminApi::start().await;
    api.create_profile("tess").await;
    let body = json!({"tier": "premium", "duration_months": 3, "is_paid": true, "auto_renew": false, "payment_method_id": "pm_card_visa"});
    let created = api.call("PUT", "/users/tess/subscription", Some(body)).await;
    assert_eq!(created.status.as_u16(), 201, "{}", created.body);
    let sub = &created.body["subscription"];
    let stripe_id = sub["stripe_subscription_id"].as_str().unwrap().to_owned();
    let at_stripe = api.sim.get(&format!("/v1/subscriptions/{stripe_id}")).await;
    let cancel_at = at_stripe["cancel_at"].as_i64().expect("a fixed term is Stripe's cancel_at");
    let period_end = at_stripe["items"]["data"][0]["current_period_end"].as_i64().expect("period end");
    assert_eq!(at_stripe["cancel_at_period_end"], false, "{at_stripe}");
    // Three monthly periods: the term ends within the hour before the third period's end, never after it.
    let third_end = DateTime::from_timestamp(period_end, 0).unwrap().checked_add_months(Months::new(2)).unwrap().timestamp();
    assert!((third_end - 3_600..=third_end).contains(&cancel_at), "cancel_at {cancel_at}, third period ends {third_end}");
    // Locally: access to the term's end, no renewal, but the next monthly charge is known.
    assert_eq!(date(&sub["end_date"]).timestamp(), cancel_at, "{sub}");
    assert_eq!((sub["auto_renew"].as_bool(), sub["cancel_at_period_end"].as_bool()), (Some(false), Some(false)));
    assert_eq!(date(&sub["next_billing_date"]).timestamp(), period_end);
    let confirmation = api.env.store.outbox_item(&format!("email:subscription_confirmation:{stripe_id}")).await.unwrap().expect("queued");
    match confirmation.payload {
        OutboxPayload::Email { context: EmailContext::SubscriptionConfirmation(confirmed), .. } => {
            assert_eq!(confirmed.period_end.map(|end| end.timestamp()), Some(cancel_at), "names the term's end")
        }
        other => panic!("{other:?}"),
    }

    // Reactivating turns the term into a renewing subscription.
    let reactivated = api.call("POST", "/users/tess/subscription/reactivate", None).await;
    assert_eq!((reactivated.status.as_u16(), reactivated.body["outcome"].as_str()), (200, Some("reactivated")), "{}", reactivated.body);
    assert_eq!(api.sim.get(&format!("/v1/subscriptions/{stripe_id}")).await["cancel_at"], Value::Null);
    let sub = &reactivated.body["subscription"];
    assert_eq!((sub["auto_renew"].as_bool(), date(&sub["end_date"]).timestamp()), (Some(true), period_end));
}
