//! `DELETE /users/{user_id}` and `GET /users/{user_id}/export` end to end: the real router
//! over the DynamoDB store on moto, the Stripe client against stripe-sim and the real
//! outbox delivery.

use chrono::{Duration, Utc};
use harness::admin::{claims_with_groups, AdminApi};
use serde_json::{json, Value};
use shared::{
    clock::RunClock,
    domain::{EmailContext, OutboxItem, OutboxState, SubscriptionStatus, UserId},
    store::{Change, Operation},
};
use stripe_sim::Fault;

const EMAIL: &str = "eve@example.com";
const NAME: &str = "Eve Example";
const COMMENT: &str = "Annual plan for Eve";

fn user(id: &str) -> UserId {
    UserId::parse(id).expect("valid user id")
}

/// A profile, a paid subscription with a comment, and a receipt queued but not yet sent
/// (its facts include the hosted invoice link): what an erasure must clear.
async fn subscribed_with_queued_mail(api: &AdminApi, id: &str) -> (String, String, String) {
    let profile = api.call("PUT", &format!("/users/{id}"), Some(json!({"email": EMAIL, "full_name": NAME, "username": "evelyn_x"}))).await;
    assert_eq!(profile.status.as_u16(), 201, "{}", profile.body);
    let body = json!({"tier": "premium", "duration_months": 12, "is_paid": true, "auto_renew": true, "payment_method_id": "pm_card_visa", "comment": COMMENT});
    let created = api.call("PUT", &format!("/users/{id}/subscription"), Some(body)).await;
    assert_eq!(created.status.as_u16(), 201, "{}", created.body);
    let sub = &created.body["subscription"];
    let stripe_sub = sub["stripe_subscription_id"].as_str().expect("stripe id").to_owned();
    let customer = sub["stripe_customer_id"].as_str().expect("customer").to_owned();
    let receipt = EmailContext::samples().remove(1);
    let queued = OutboxItem::email(&user(id), "in_queued", receipt, Utc::now());
    let queued_id = queued.id.clone();
    api.env.store.commit(Change { user_id: Some(user(id)), outbox: vec![queued], ..Change::default() }).await.expect("queued");
    (stripe_sub, customer, queued_id)
}

/// Every item of the table as text (attribute values included), for a search for personal data.
/// Sorted, attributes in name order: two reads of an unchanged table compare equal.
async fn table_text(api: &AdminApi) -> Vec<String> {
    let mut items: Vec<String> = api
        .table_items()
        .await
        .into_iter()
        .map(|item| format!("{:?}", item.into_iter().collect::<std::collections::BTreeMap<_, _>>()))
        .collect();
    items.sort();
    items
}

fn personal_data_in(items: &[String]) -> Vec<&String> {
    items.iter().filter(|i| [EMAIL, NAME, COMMENT, "invoice.stripe.com", "evelyn_x"].iter().any(|needle| i.contains(needle))).collect()
}

#[tokio::test]
async fn delete_then_export_leaves_no_personal_data_and_nothing_at_stripe() {
    let api = AdminApi::start().await;
    let (stripe_sub, customer, queued_id) = subscribed_with_queued_mail(&api, "eve").await;
    assert!(!personal_data_in(&table_text(&api).await).is_empty(), "the scan sees the personal data before the erasure");
    let mails_before = api.env.mail_to(EMAIL).len();

    let erased = api.call("DELETE", "/users/eve", None).await;
    assert_eq!(erased.status.as_u16(), 200, "{}", erased.body);
    assert_eq!(erased.body["outcome"], "erased");
    assert_eq!(erased.body["subscriptions_canceled"], 1);
    assert_eq!(erased.body["stripe_customer_deleted"], true);
    assert_eq!(erased.body["mails_stopped"], 1);
    assert!(erased.body["erased_at"].is_string(), "{}", erased.body);

    // Stripe: the subscription was cancelled by us (not only by the customer's deletion), the customer is gone.
    assert_eq!(api.stripe_calls("DELETE /v1/subscriptions/{id}"), 1);
    assert_eq!(api.sim.get(&format!("/v1/subscriptions/{stripe_sub}")).await["status"], "canceled");
    assert_eq!(api.sim.get(&format!("/v1/customers/{customer}")).await["deleted"], true);

    // Locally: no item of the table holds the address, the names, the comment or the invoice link.
    let left = table_text(&api).await;
    assert!(personal_data_in(&left).is_empty(), "personal data left: {:#?}", personal_data_in(&left));

    // The export shows the anonymised record that stays.
    let export = api.call("GET", "/users/eve/export", None).await;
    assert_eq!(export.status.as_u16(), 200, "{}", export.body);
    let body = &export.body;
    assert!(body["profile"].is_null(), "{body}");
    assert!(body["erasure"]["finished_at"].is_string(), "{body}");
    assert_eq!(body["stripe_customer_id"], customer.as_str());
    assert_eq!((body["subscription"]["status"].as_str(), body["subscription"]["tier"].as_str()), (Some("canceled"), Some("premium")));
    assert!(body["subscription"]["comment"].is_null());
    let history = body["history"].as_array().expect("history");
    assert_eq!(history.iter().map(|h| h["change"].as_str().unwrap()).collect::<Vec<_>>(), ["canceled", "created"]);
    assert!(history.iter().all(|h| h["comment"].is_null()), "{history:?}");
    let outbox = body["outbox"].as_array().expect("outbox");
    let receipt = outbox.iter().find(|o| o["id"] == queued_id.as_str()).expect("the queued receipt is exported");
    assert_eq!(receipt["state"], "erased");
    assert!(receipt["payload"]["context"]["hosted_invoice_url"].is_null());
    assert_eq!(receipt["payload"]["context"]["amount"], EmailContext::samples()[1].to_value()["amount"], "amounts stay");
    assert!(outbox.iter().any(|o| o["kind"] == "subscription_confirmation"), "{outbox:?}");
    assert!(outbox.iter().all(|o| o["state"] != "pending" || o["kind"] == "domain_event"), "{outbox:?}");

    // The queued receipt is never sent, whatever the sweep finds due.
    let later = RunClock::starting_at(Utc::now() + Duration::hours(1));
    harness::admin::delivery(&api.env).deliver_pending(&later, 50).await.expect("sweep");
    assert_eq!(api.env.store.outbox_item(&queued_id).await.unwrap().expect("kept").state, OutboxState::Erased);
    assert_eq!(api.env.mail_to(EMAIL).len(), mails_before, "no mail after the erasure");

    // A second DELETE is a no-op: same answer shape, nothing written, no Stripe call.
    let items = table_text(&api).await;
    let stripe_requests = api.sim.handle.request_count();
    let again = api.call("DELETE", "/users/eve", None).await;
    assert_eq!((again.status.as_u16(), again.body["outcome"].as_str()), (200, Some("already_erased")), "{}", again.body);
    assert_eq!(again.body["erased_at"], erased.body["erased_at"]);
    assert_eq!(table_text(&api).await, items);
    assert_eq!(api.sim.handle.request_count(), stripe_requests);

    // The id is retired: no profile, no subscription under it again.
    let profile = api.call("PUT", "/users/eve", Some(json!({"email": "new@example.com"}))).await;
    assert_eq!((profile.status.as_u16(), profile.body["code"].as_str()), (410, Some("user_erased")), "{}", profile.body);
    let sub = api
        .call(
            "PUT",
            "/users/eve/subscription",
            Some(json!({"tier": "premium", "duration_months": 1, "is_paid": false, "auto_renew": false})),
        )
        .await;
    assert_eq!((sub.status.as_u16(), sub.body["code"].as_str()), (410, Some("user_erased")), "{}", sub.body);
    assert!(personal_data_in(&table_text(&api).await).is_empty());
    assert_eq!(api.stripe_calls("POST /v1/customers"), 1, "no customer was made for the retired id");
}

#[tokio::test]
async fn an_erasure_cut_short_by_stripe_is_finished_by_the_retry() {
    let api = AdminApi::start().await;
    let (stripe_sub, customer, queued_id) = subscribed_with_queued_mail(&api, "eve").await;

    api.sim.handle.set_fault(Some(Fault::Status(503)));
    let failed = api.call("DELETE", "/users/eve", None).await;
    assert_eq!((failed.status.as_u16(), failed.body["code"].as_str()), (503, Some("erasure_unfinished")), "{}", failed.body);
    assert!(!failed.body["detail"].as_str().unwrap().contains("Nothing was changed"), "{}", failed.body);
    // Started: the user is already unreachable and nothing can be created for them ...
    assert!(api.env.store.profile(&user("eve")).await.unwrap().is_none());
    api.sim.handle.set_fault(None);
    let sub = api
        .call(
            "PUT",
            "/users/eve/subscription",
            Some(json!({"tier": "enterprise", "duration_months": 1, "is_paid": false, "auto_renew": false})),
        )
        .await;
    assert_eq!((sub.status.as_u16(), sub.body["code"].as_str()), (410, Some("user_erased")), "{}", sub.body);
    let export = api.call("GET", "/users/eve/export", None).await;
    assert!(export.body["erasure"]["finished_at"].is_null(), "{}", export.body);
    // ... while the queued mail cannot go out meanwhile: there is no address to send it to.
    harness::admin::delivery(&api.env).deliver_pending(&RunClock::starting_at(Utc::now()), 50).await.expect("sweep");
    let subjects: Vec<String> = api.env.mail_to(EMAIL).into_iter().map(|m| m.subject).collect();
    assert!(subjects.iter().all(|s| !s.to_lowercase().contains("receipt") && !s.to_lowercase().contains("payment")), "{subjects:?}");
    assert_ne!(api.env.store.outbox_item(&queued_id).await.unwrap().unwrap().state, OutboxState::Sent);

    // The retry continues at once (the same operation) and finishes.
    let retried = api.call("DELETE", "/users/eve", None).await;
    assert_eq!((retried.status.as_u16(), retried.body["outcome"].as_str()), (200, Some("erased")), "{}", retried.body);
    assert_eq!(api.sim.get(&format!("/v1/subscriptions/{stripe_sub}")).await["status"], "canceled");
    assert_eq!(api.sim.get(&format!("/v1/customers/{customer}")).await["deleted"], true);
    assert!(personal_data_in(&table_text(&api).await).is_empty());
    assert_eq!(api.env.store.subscription(&user("eve")).await.unwrap().unwrap().status, SubscriptionStatus::Canceled);
}

#[tokio::test]
async fn a_subscribe_in_progress_holds_off_the_erasure_and_changes_nothing() {
    let api = AdminApi::start().await;
    api.create_profile("sam").await;
    let now = Utc::now();
    let op = Operation {
        user_id: user("sam"),
        op_id: "subscribe-op".into(),
        started_at: now,
        lease_until: now + Duration::seconds(60),
        open: true,
    };
    api.env.store.begin_operation(&op).await.expect("a subscribe holds the operation");
    let before = table_text(&api).await;
    let answer = api.call("DELETE", "/users/sam", None).await;
    assert_eq!((answer.status.as_u16(), answer.body["code"].as_str()), (409, Some("operation_in_progress")), "{}", answer.body);
    assert_eq!(table_text(&api).await, before, "nothing changed");
    assert!(api.env.store.profile(&user("sam")).await.unwrap().is_some());

    api.env.store.close_operation(&user("sam"), "subscribe-op").await.unwrap();
    let answer = api.call("DELETE", "/users/sam", None).await;
    assert_eq!((answer.status.as_u16(), answer.body["outcome"].as_str()), (200, Some("erased")), "{}", answer.body);
    // A user without a Stripe customer has nothing to delete there.
    assert_eq!(answer.body["stripe_customer_deleted"], false);
    assert_eq!(api.stripe_calls("DELETE /v1/customers/{id}"), 0);
}

#[tokio::test]
async fn unknown_users_are_404_and_non_admins_get_401_or_403() {
    let api = AdminApi::start().await;
    for (method, path) in [("DELETE", "/users/nobody"), ("GET", "/users/nobody/export")] {
        let answer = api.call(method, path, None).await;
        assert_eq!((answer.status.as_u16(), answer.body["code"].as_str()), (404, Some("user_not_found")), "{method} {path}");
    }
    api.create_profile("ann").await;
    let before = table_text(&api).await;
    for (method, path) in [("DELETE", "/users/ann"), ("GET", "/users/ann/export")] {
        let anonymous = api.call_as(None, method, path, None).await;
        assert_eq!(anonymous.status.as_u16(), 401, "{method} {path}");
        let member = api.call_as(Some(claims_with_groups("u-1", "[users]")), method, path, None).await;
        assert_eq!(member.status.as_u16(), 403, "{method} {path}");
    }
    assert_eq!(table_text(&api).await, before, "refused requests change nothing");

    let export = api.call("GET", "/users/ann/export", None).await;
    assert_eq!(export.status.as_u16(), 200);
    let expected: Value = json!({"email": "ann@example.com", "full_name": "Test User"});
    assert_eq!((&export.body["profile"]["email"], &export.body["profile"]["full_name"]), (&expected["email"], &expected["full_name"]));
    assert!(export.body["erasure"].is_null() && export.body["subscription"].is_null(), "{}", export.body);
}
