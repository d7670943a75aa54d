//! Outbox delivery: e-mails through SES and domain events through EventBridge, on moto.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{Duration, Utc};
use harness::{env::email_config, records::put_profile_with, Moto, TestEnv};
use shared::{
    clock::RunClock,
    config::AwsClients,
    delivery::{Deliver, DeliveryPolicy, Mailing, OutboxDelivery},
    domain::{DomainEvent, DomainEventKind, EmailContext, OutboxState, SubscriptionStatus, TrialEndingContext, UserId},
    email::{EmailConfig, RetryPolicy},
    store::{keys, Change},
};

use crate::fixtures::{day, subscription};

/// The production delivery wiring over `env`, with SES reached through `ses_config`.
fn delivery(env: &TestEnv, ses_config: &aws_config::SdkConfig, policy: DeliveryPolicy) -> OutboxDelivery {
    delivery_from(env, ses_config, &email_config(), policy)
}

fn delivery_from(env: &TestEnv, ses_config: &aws_config::SdkConfig, email: &EmailConfig, policy: DeliveryPolicy) -> OutboxDelivery {
    let aws = AwsClients::with_ses(&env.config, ses_config);
    let mailing = Mailing { email: email.clone(), mail_retry: RetryPolicy::default(), policy };
    OutboxDelivery::over_aws(env.store.clone(), &aws, &env.bus, &mailing).unwrap()
}

fn policy() -> DeliveryPolicy {
    DeliveryPolicy { sends_per_second: None, ..DeliveryPolicy::default() }
}

async fn queue_trial_ending(env: &TestEnv, user: &UserId) -> String {
    let sub = subscription(user, SubscriptionStatus::Trial, day(10));
    let email = EmailContext::from(TrialEndingContext { plan: sub.tier, days_remaining: 3, trial_end: day(10), has_payment_method: false })
        .outbox_item(user, &format!("trial-{user}"), day(7));
    let event = shared::domain::OutboxItem::event(DomainEvent::of(DomainEventKind::SubscriptionActivated, &sub, "x", day(7)), day(7));
    let id = email.id.clone();
    env.store.commit(Change { user_id: Some(user.clone()), outbox: vec![email, event], ..Change::default() }).await.unwrap();
    id
}

#[tokio::test]
async fn pending_items_are_sent_once_to_the_current_address() {
    let env = TestEnv::new().await;
    let user = UserId::parse("deliver-1").unwrap();
    put_profile_with(env.store.as_ref(), &user, "old-address@example.com").await;
    let email_id = queue_trial_ending(&env, &user).await;
    // The user changes address after the mail was queued: the new one receives it.
    put_profile_with(env.store.as_ref(), &user, "new-address@example.com").await;

    let delivery = delivery(&env, &env.ses_config, policy());
    let (report, scanned) = delivery.deliver_pending(&RunClock::starting_at(Utc::now()), 100).await.unwrap();
    assert_eq!((report.sent, report.failed, report.retry_later), (2, 0, 0));
    assert_eq!(scanned, 2);

    let sent = env.mail_to("new-address@example.com");
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(env.mail_to("old-address@example.com").len(), 0);
    let item = env.store.outbox_item(&email_id).await.unwrap().unwrap();
    assert_eq!(item.state, OutboxState::Sent);
    assert!(!sent[0].message_id.is_empty());
    assert_eq!(item.delivery_id.as_deref(), Some(sent[0].message_id.as_str()), "the SES message id is stored");

    let events = env.bus_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["detail-type"], "SubscriptionActivated");
    assert_eq!(events[0]["source"], "logiscore.subscriptions");

    // A second sweep finds nothing to do and sends nothing.
    let (again, scanned) = delivery.deliver_pending(&RunClock::starting_at(Utc::now()), 100).await.unwrap();
    assert_eq!((again.sent, scanned), (0, 0));
    assert_eq!(env.mail_to("new-address@example.com").len(), 1);
    // Delivering an already-sent item directly is skipped too.
    let report = delivery.deliver(&[item]).await;
    assert_eq!((report.sent, report.skipped), (0, 1));
}

#[tokio::test]
async fn ses_outages_leave_items_pending_and_dead_letter_after_the_limit() {
    let env = TestEnv::new().await;
    let user = UserId::parse("deliver-2").unwrap();
    put_profile_with(env.store.as_ref(), &user, "outage@example.com").await;
    let email_id = queue_trial_ending(&env, &user).await;

    // SES (only) points at a server that is down.
    let dead = Moto::start().await;
    let dead_config = dead.sdk_config().await;
    dead.stop();
    let policy = DeliveryPolicy { max_attempts: 2, base_backoff: Duration::minutes(1), ..policy() };
    let broken = delivery(&env, &dead_config, policy.clone());

    let now = Utc::now();
    let (report, _) = broken.deliver_pending(&RunClock::starting_at(now), 100).await.unwrap();
    assert_eq!((report.sent, report.retry_later), (1, 1), "the event went out, the e-mail waits");
    let item = env.store.outbox_item(&email_id).await.unwrap().unwrap();
    assert_eq!((item.state, item.attempts), (OutboxState::Pending, 1));
    assert!(item.next_attempt_at > now, "backed off");

    // Not due yet: the next sweep leaves it alone.
    let (report, _) = broken.deliver_pending(&RunClock::starting_at(now), 100).await.unwrap();
    assert_eq!(report.retry_later + report.sent + report.dead_lettered, 0);

    // SES is back: a later run delivers it.
    let healthy = delivery(&env, &env.ses_config, policy.clone());
    let (report, _) = healthy.deliver_pending(&RunClock::starting_at(now + Duration::minutes(5)), 100).await.unwrap();
    assert_eq!(report.sent, 1);
    assert_eq!(env.mail_to("outage@example.com").len(), 1);

    // Another item that never gets through is dead-lettered after max_attempts.
    let user3 = UserId::parse("deliver-3").unwrap();
    put_profile_with(env.store.as_ref(), &user3, "doomed@example.com").await;
    let doomed = queue_trial_ending(&env, &user3).await;
    let (r1, _) = broken.deliver_pending(&RunClock::starting_at(now), 100).await.unwrap();
    let (r2, _) = broken.deliver_pending(&RunClock::starting_at(now + Duration::hours(1)), 100).await.unwrap();
    assert_eq!((r1.retry_later, r2.dead_lettered), (1, 1));
    assert_eq!(env.store.outbox_item(&doomed).await.unwrap().unwrap().state, OutboxState::DeadLettered);
    let (r3, scanned) = healthy.deliver_pending(&RunClock::starting_at(now + Duration::days(2)), 100).await.unwrap();
    assert_eq!((r3.sent, scanned), (0, 0), "dead-lettered items are out of the sweep");
}

#[tokio::test]
async fn a_rejected_recipient_is_failed_for_good_not_retried() {
    let env = TestEnv::new().await;
    // No SES identity for this sender: moto refuses the message as MessageRejected.
    let config = EmailConfig { mail_from: "unverified@nowhere.test".into(), ..email_config() };
    let delivery = delivery_from(&env, &env.ses_config, &config, policy());
    let user = UserId::parse("deliver-4").unwrap();
    put_profile_with(env.store.as_ref(), &user, "someone@example.com").await;
    let id = queue_trial_ending(&env, &user).await;

    let (report, _) = delivery.deliver_pending(&RunClock::starting_at(Utc::now()), 100).await.unwrap();
    assert_eq!(report.failed, 1);
    let item = env.store.outbox_item(&id).await.unwrap().unwrap();
    assert_eq!((item.state, item.attempts), (OutboxState::Failed, 1));
    assert!(item.last_error.unwrap().contains("MessageRejected"));
    assert!(env.mail().sent().is_empty(), "SES accepted nothing");
    let (again, scanned) = delivery.deliver_pending(&RunClock::starting_at(Utc::now() + Duration::days(1)), 100).await.unwrap();
    assert_eq!((again.sent + again.failed, scanned), (0, 0));
}

/// Two sweeps that overlap, as a long deliver-pending run and the next scheduled one do:
/// the lease of an item is counted from its claim, not from the start of the run that
/// claimed it, so the second sweep never takes an item the first is still sending.
#[tokio::test]
async fn overlapping_sweeps_never_send_one_item_twice() {
    let env = TestEnv::new().await;
    let n = 24;
    let mut addresses = Vec::new();
    for i in 0..n {
        let user = UserId::parse(&format!("overlap-{i}")).unwrap();
        let address = format!("overlap-{i}@example.com");
        put_profile_with(env.store.as_ref(), &user, &address).await;
        queue_trial_ending(&env, &user).await;
        addresses.push(address);
    }
    // Paced at 4 e-mails/s, four at a time: the first sweep needs ~6 s, each claim is sent
    // within ~1 s, and the 3 s lease is shorter than the sweep (as 2 min is shorter than a
    // production run of up to ~5 min) but longer than a claim's wait to be sent.
    let policy = DeliveryPolicy { lease: Duration::seconds(3), sends_per_second: Some(4), concurrency: 4, ..policy() };
    let first = delivery(&env, &env.ses_config, policy.clone());
    let second = delivery(&env, &env.ses_config, policy);
    let start = Utc::now();
    let (a, b) = tokio::join!(async { first.deliver_pending(&RunClock::starting_at(start), 100).await.unwrap().0 }, async {
        tokio::time::sleep(std::time::Duration::from_millis(3_500)).await;
        second.deliver_pending(&RunClock::starting_at(Utc::now()), 100).await.unwrap().0
    });
    for address in &addresses {
        assert_eq!(env.mail_to(address).len(), 1, "{address}: first sweep {a:?}, second {b:?}");
    }
    assert!(b.sent > 0 || b.skipped > 0, "the second sweep overlapped the first: {b:?}");
    assert_eq!(env.mail().sent().len(), n);
}

/// An item whose payload this deploy cannot read (queued by a newer one with a kind it does
/// not know, or damaged) is failed for good, with its stored payload left as it was; the
/// items behind it in the same sweep are delivered as usual.
#[tokio::test]
async fn an_unreadable_item_is_failed_without_stopping_the_sweep() {
    let env = TestEnv::new().await;
    let user = UserId::parse("deliver-5").unwrap();
    put_profile_with(env.store.as_ref(), &user, "reader@example.com").await;
    let good = queue_trial_ending(&env, &user).await;

    // A copy of the queued e-mail under another id, with a payload from a newer deploy.
    let key = |id: &str| {
        std::collections::HashMap::from([
            ("pk".to_owned(), AttributeValue::S(keys::outbox_pk(id))),
            ("sk".to_owned(), AttributeValue::S(keys::OUTBOX_SK.to_owned())),
        ])
    };
    let stored = env.ddb.get_item().table_name(&env.table).set_key(Some(key(&good))).send().await.unwrap().item.unwrap();
    let odd_id = "email:loyalty_bonus:deliver-5";
    let odd_payload = r#"{"type":"email","kind":"loyalty_bonus","user_id":"deliver-5","context":{"points":7}}"#;
    let mut odd = stored.clone();
    odd.extend(key(odd_id));
    odd.insert("id".into(), AttributeValue::S(odd_id.into()));
    odd.insert("payload".into(), AttributeValue::S(odd_payload.into()));
    let (pend_pk, pend_sk) = keys::pending_keys(odd_id, day(7));
    odd.insert("pend_pk".into(), AttributeValue::S(pend_pk));
    odd.insert("pend_sk".into(), AttributeValue::S(pend_sk));
    env.ddb.put_item().table_name(&env.table).set_item(Some(odd)).send().await.unwrap();

    let delivery = delivery(&env, &env.ses_config, policy());
    let (report, _) = delivery.deliver_pending(&RunClock::starting_at(Utc::now()), 100).await.unwrap();
    assert_eq!((report.sent, report.failed, report.retry_later), (2, 1, 0), "{report:?}");
    assert_eq!(env.mail_to("reader@example.com").len(), 1, "the readable e-mail went out once");
    assert_eq!(env.store.outbox_item(&good).await.unwrap().unwrap().state, OutboxState::Sent);

    let failed = env.store.outbox_item(odd_id).await.unwrap().unwrap();
    assert_eq!((failed.state, failed.attempts), (OutboxState::Failed, 1));
    assert!(failed.last_error.as_deref().unwrap_or_default().contains("cannot be read"), "{:?}", failed.last_error);
    let after = env.ddb.get_item().table_name(&env.table).set_key(Some(key(odd_id))).send().await.unwrap().item.unwrap();
    assert_eq!(after["payload"].as_s().unwrap(), odd_payload, "the payload is kept as it was written");
    let (again, scanned) = delivery.deliver_pending(&RunClock::starting_at(Utc::now() + Duration::days(1)), 100).await.unwrap();
    assert_eq!((again.sent + again.failed, scanned), (0, 0), "never retried");
}

/// Two sweeps running at once, each paced at 2 e-mails/s, share that one rate through the
/// table's per-second send slots instead of sending at 4/s between them.
#[tokio::test]
async fn concurrent_sweeps_share_one_send_rate() {
    let env = TestEnv::new().await;
    let n = 8;
    for i in 0..n {
        let user = UserId::parse(&format!("shared-rate-{i}")).unwrap();
        put_profile_with(env.store.as_ref(), &user, &format!("shared-rate-{i}@example.com")).await;
        queue_trial_ending(&env, &user).await;
    }
    let policy = DeliveryPolicy { sends_per_second: Some(2), concurrency: 4, ..policy() };
    let first = delivery(&env, &env.ses_config, policy.clone());
    let second = delivery(&env, &env.ses_config, policy);
    let now = Utc::now();
    let (a, b) = tokio::join!(async { first.deliver_pending(&RunClock::starting_at(now), 100).await.unwrap().0 }, async {
        second.deliver_pending(&RunClock::starting_at(now), 100).await.unwrap().0
    });
    assert_eq!(a.sent + b.sent, 2 * n as u32, "every e-mail and event once: {a:?} {b:?}");
    assert_eq!(env.mail().sent().len(), n);
    let slots = env
        .ddb
        .scan()
        .table_name(&env.table)
        .filter_expression("begins_with(pk, :p)")
        .expression_attribute_values(":p", AttributeValue::S("SEND_SLOT#".into()))
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let used: Vec<u32> = slots.iter().map(|s| s["used"].as_n().unwrap().parse().unwrap()).collect();
    assert!(used.iter().all(|u| *u <= 2), "no second held more than 2 sends: {used:?}");
    assert_eq!(used.iter().sum::<u32>(), n as u32, "every send claimed a slot: {used:?}");
    assert!(used.len() >= n / 2, "8 sends at 2/s need at least 4 seconds: {used:?}");
}
