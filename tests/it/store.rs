//! The DynamoDB store against moto server.

use std::collections::HashSet;

use harness::TestEnv;
use shared::{
    domain::{EmailContext, HistoryChange, HistoryEntry, OutboxItem, SubscriptionStatus, Tier},
    store::{Change, ExpiryRange, LedgerEntry, StoreError, StripeMapping, SubscriptionWrite},
};

use crate::fixtures::{created as create, day, subscription, user};

#[tokio::test]
async fn a_stale_version_is_refused_and_the_fresh_one_wins() {
    let env = TestEnv::new().await;
    let u = user("stale-1");
    let v1 = subscription(&u, SubscriptionStatus::Active, day(30));
    env.store.commit(create(&v1)).await.unwrap();

    let mut writer_a = v1.clone();
    writer_a.tier = Tier::Enterprise;
    writer_a.version = 2;
    let mut writer_b = v1.clone();
    writer_b.status = SubscriptionStatus::PastDue;
    writer_b.version = 2;

    let write = |record: shared::domain::Subscription| Change {
        user_id: Some(u.clone()),
        subscription: Some(SubscriptionWrite { record, expected_version: Some(1) }),
        ..Change::default()
    };
    env.store.commit(write(writer_a)).await.unwrap();
    let err = env.store.commit(write(writer_b)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    let stored = env.store.subscription(&u).await.unwrap().unwrap();
    assert_eq!((stored.tier, stored.status, stored.version), (Tier::Enterprise, SubscriptionStatus::Active, 2));
    // Creating over an existing record is refused too.
    assert!(matches!(env.store.commit(create(&v1)).await.unwrap_err(), StoreError::Conflict(_)));
}

#[tokio::test]
async fn a_failed_transaction_writes_nothing() {
    let env = TestEnv::new().await;
    let u = user("atomic-1");
    let sub = subscription(&u, SubscriptionStatus::Active, day(30));
    env.store
        .commit(Change {
            stripe_event: Some(LedgerEntry { event_id: "evt_seen".into(), event_type: "x".into(), received_at: day(0) }),
            ..Change::default()
        })
        .await
        .unwrap();
    let before = env.count_items("").await;

    // The ledger entry exists, so the whole change — subscription, history, outbox — must be refused.
    let mut change = create(&sub);
    change.stripe_event = Some(LedgerEntry { event_id: "evt_seen".into(), event_type: "x".into(), received_at: day(1) });
    change.outbox.push(OutboxItem::email(&u, "s1", EmailContext::samples().remove(0), day(1)));
    change.mappings.push(StripeMapping::Customer("cus_atomic".into()));
    let err = env.store.commit(change).await.unwrap_err();
    assert!(matches!(err, StoreError::DuplicateEvent), "{err:?}");

    assert_eq!(env.count_items("").await, before);
    assert!(env.store.subscription(&u).await.unwrap().is_none());
    assert!(env.store.history(&u, 10).await.unwrap().is_empty());
    assert!(env.store.user_for(&StripeMapping::Customer("cus_atomic".into())).await.unwrap().is_none());
}

#[tokio::test]
async fn an_already_queued_notification_is_not_queued_twice() {
    let env = TestEnv::new().await;
    let u = user("outbox-1");
    let receipt = || OutboxItem::email(&u, "in_1", EmailContext::samples().remove(1), day(1));
    for event in ["evt_paid", "evt_succeeded"] {
        env.store
            .commit(Change {
                user_id: Some(u.clone()),
                stripe_event: Some(LedgerEntry { event_id: event.into(), event_type: "invoice".into(), received_at: day(1) }),
                outbox: vec![receipt()],
                ..Change::default()
            })
            .await
            .unwrap();
    }
    // Both events are in the ledger, the receipt is there once.
    assert!(env.store.event_seen("evt_paid").await.unwrap());
    assert!(env.store.event_seen("evt_succeeded").await.unwrap());
    let pending = env.store.pending_outbox(day(2), 100).await.unwrap();
    assert_eq!(pending.items.len(), 1);
    assert_eq!(pending.items[0].id, "email:payment_receipt:in_1");
}

#[tokio::test]
async fn a_stripe_id_cannot_be_mapped_to_two_users() {
    let env = TestEnv::new().await;
    let map = |name: &str| Change {
        user_id: Some(user(name)),
        mappings: vec![StripeMapping::Customer("cus_shared".into()), StripeMapping::Subscription("sub_shared".into())],
        ..Change::default()
    };
    env.store.commit(map("owner")).await.unwrap();
    env.store.commit(map("owner")).await.unwrap(); // idempotent for the same user
    assert!(matches!(env.store.commit(map("intruder")).await.unwrap_err(), StoreError::Conflict(_)));
    assert_eq!(env.store.user_for(&StripeMapping::Subscription("sub_shared".into())).await.unwrap(), Some(user("owner")));
}

#[tokio::test]
async fn history_comes_newest_first() {
    let env = TestEnv::new().await;
    let u = user("history-1");
    let mut sub = subscription(&u, SubscriptionStatus::Active, day(30));
    env.store.commit(create(&sub)).await.unwrap();
    for (v, tier) in [(2, Tier::Enterprise), (3, Tier::Premium)] {
        let before = sub.clone();
        sub.tier = tier;
        sub.version = v;
        env.store
            .commit(Change {
                user_id: Some(u.clone()),
                subscription: Some(SubscriptionWrite { record: sub.clone(), expected_version: Some(v - 1) }),
                history: vec![HistoryEntry::record(Some(&before), &sub, HistoryChange::TierChanged, "admin:a", day(v as i64))],
                ..Change::default()
            })
            .await
            .unwrap();
    }
    let history = env.store.history(&u, 10).await.unwrap();
    let versions: Vec<u64> = history.iter().map(|h| h.version).collect();
    assert_eq!(versions, [3, 2, 1]);
    assert_eq!(history[0].from_tier, Some(Tier::Enterprise));
}

#[tokio::test]
async fn expiry_queries_read_only_what_is_due() {
    let env = TestEnv::new().await;
    const DUE: usize = 12;
    let mut due_users = HashSet::new();
    // DUE subscriptions end inside the window [day 10, day 13]; ten times as many do not:
    // live ones ending later, and ended ones (canceled/expired) whose old end is in the window.
    for i in 0..DUE {
        let u = user(&format!("due-{i}"));
        due_users.insert(u.clone());
        env.store.commit(create(&subscription(&u, SubscriptionStatus::Active, day(10 + (i % 4) as i64)))).await.unwrap();
    }
    for i in 0..DUE * 10 {
        let u = user(&format!("later-{i}"));
        let (status, end) = match i % 3 {
            0 => (SubscriptionStatus::Active, day(40 + i as i64)),
            1 => (SubscriptionStatus::Canceled, day(11)),
            _ => (SubscriptionStatus::Expired, day(12)),
        };
        env.store.commit(create(&subscription(&u, status, end))).await.unwrap();
    }

    let mut found = HashSet::new();
    let mut scanned = 0;
    let mut cursor = None;
    loop {
        let page = env.store.expiring(ExpiryRange::EndingBetween(day(10), day(13)), cursor, 5).await.unwrap();
        scanned += page.scanned;
        found.extend(page.subscriptions.into_iter().map(|s| s.user_id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(found, due_users);
    assert!(scanned as usize <= DUE + 5, "read {scanned} items for {DUE} due");

    // Already ended and still live: the due ones, from day 14 on.
    let ended = env.store.expiring(ExpiryRange::EndedBefore(day(14)), None, 1000).await.unwrap();
    assert_eq!(ended.subscriptions.len(), DUE);
    assert_eq!(ended.scanned as usize, DUE);
    let none = env.store.expiring(ExpiryRange::EndedBefore(day(10)), None, 1000).await.unwrap();
    assert_eq!((none.subscriptions.len(), none.scanned), (0, 0));
}
