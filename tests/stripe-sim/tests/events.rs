//! The event log as the Events API serves it: `created` ranges, `delivery_success`,
//! retention, and pagination that holds its place while events are written — what a
//! missed-event replay relies on.

mod common;

use std::time::Duration;

use common::{Api, Receiver, T0};
use serde_json::Value;
use stripe_sim::{SimConfig, WebhookRetry};

fn ids(list: &Value) -> Vec<String> {
    list["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn created_ranges_select_events_by_their_time() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    let clock = api.clock(T0).await;
    api.customer(&clock, None).await;
    let first = api.fetch("/v1/events?type=customer.created&limit=100").await;
    let all = ids(&first);
    assert!(!all.is_empty());
    // Events of objects on a test clock carry the clock's time.
    let created: Vec<i64> = first["data"].as_array().unwrap().iter().map(|e| e["created"].as_i64().unwrap()).collect();
    assert!(created.iter().all(|t| *t == T0), "{created:?}");

    assert_eq!(ids(&api.fetch(&format!("/v1/events?type=customer.created&created[gte]={T0}&limit=100")).await), all);
    assert!(ids(&api.fetch(&format!("/v1/events?type=customer.created&created[gt]={T0}")).await).is_empty());
    assert!(ids(&api.fetch(&format!("/v1/events?type=customer.created&created[lt]={T0}")).await).is_empty());
    assert_eq!(ids(&api.fetch(&format!("/v1/events?type=customer.created&created[lte]={T0}&limit=100")).await), all);
    assert_eq!(ids(&api.fetch(&format!("/v1/events?type=customer.created&created={T0}&limit=100")).await), all);
    let (status, body) = api.get("/v1/events?created[after]=1").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("parameter_unknown")), "{body}");
}

#[tokio::test]
async fn delivery_success_tells_delivered_events_from_failed_and_pending_ones() {
    let retry = WebhookRetry { max_attempts: 1, ..WebhookRetry::default() };
    let sim = common::sim_with(SimConfig { webhook_retry: retry, ..SimConfig::default() }).await;
    let receiver = Receiver::registered(&sim).await;
    let api = Api::new(&sim);
    api.ok("/v1/customers", &[("email", "delivered@example.com")]).await;
    common::idle(&sim).await;
    receiver.fail_next(1);
    api.ok("/v1/customers", &[("email", "dropped@example.com")]).await;
    common::idle(&sim).await;

    let delivered = api.fetch("/v1/events?delivery_success=true&type=customer.created").await;
    let failed = api.fetch("/v1/events?delivery_success=false&type=customer.created").await;
    let email = |list: &Value| -> Vec<String> {
        list["data"].as_array().unwrap().iter().map(|e| e["data"]["object"]["email"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(email(&delivered), ["delivered@example.com"]);
    assert_eq!(email(&failed), ["dropped@example.com"], "given up after its one attempt");
}

#[tokio::test]
async fn events_past_their_retention_are_gone() {
    let sim = common::sim_with(SimConfig { event_retention: Duration::from_secs(1), ..SimConfig::default() }).await;
    let api = Api::new(&sim);
    api.ok("/v1/customers", &[("email", "old@example.com")]).await;
    let listed = ids(&api.fetch("/v1/events").await);
    assert_eq!(listed.len(), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(ids(&api.fetch("/v1/events").await).is_empty(), "listable for the retention only");
    let (status, _) = api.get(&format!("/v1/events/{}", listed[0])).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_page_cursor_keeps_its_place_while_events_are_written() {
    let sim = common::sim().await;
    let api = Api::new(&sim);
    for i in 0..5 {
        api.ok("/v1/customers", &[("email", &format!("p{i}@example.com"))]).await;
    }
    let page1 = api.fetch("/v1/events?limit=2").await;
    assert_eq!(page1["has_more"], true);
    let cursor = ids(&page1)[1].clone();
    // New events arrive in front of the list…
    api.ok("/v1/customers", &[("email", "late@example.com")]).await;
    // …and the next page still starts right after the cursor.
    let page2 = api.fetch(&format!("/v1/events?limit=10&starting_after={cursor}")).await;
    let rest = ids(&page2);
    assert_eq!(rest.len(), 3, "{rest:?}");
    let everything = ids(&api.fetch("/v1/events?limit=100").await);
    let position = everything.iter().position(|id| *id == cursor).unwrap();
    assert_eq!(rest, everything[position + 1..]);
}
