//! The scheduled jobs (`expiry-jobs`) against moto server and stripe-sim, replaying days by
//! `time`: warnings once per window, expiry after end plus grace, reruns that change
//! nothing, interrupted runs that continue, delivery through an SES outage, index reads
//! independent of table size, and repairs from Stripe's current state.

use std::{collections::HashMap, time::Duration as StdDuration};

use chrono::{DateTime, Duration, Utc};
use expiry_jobs::{JobError, JobName, JobSettings, CONTINUATION_DETAIL_TYPE, CONTINUATION_SOURCE};
use harness::{
    jobs::{jobs as jobs_for, jobs_over, put_profile, run, run_in_slices, unreachable_stripe},
    sim::Sim,
    Moto, TestEnv,
};
use shared::{
    billing::{BillingGateway, CustomerDetails, IdempotencyKey, NewSubscription, NewSubscriptionKind},
    domain::{
        EmailContext, HistoryChange, OutboxItem, OutboxPayload, OutboxState, StripeSnapshot, Subscription, SubscriptionSource,
        SubscriptionStatus, Tier,
    },
};

use crate::fixtures::{created, day, granted, subscription, user};

/// 06:00 UTC on fixture day `n`: when the daily schedule fires.
fn morning(n: i64) -> DateTime<Utc> {
    day(n) + Duration::hours(6)
}

async fn create(env: &TestEnv, sub: &Subscription) {
    env.store.commit(created(sub)).await.expect("create subscription");
}

/// Every outbox item in the table (any state), by id.
async fn outbox(env: &TestEnv) -> HashMap<String, OutboxItem> {
    let mut out = HashMap::new();
    for (id, state) in env.outbox_items().await {
        let stored = env.store.outbox_item(&id).await.expect("read outbox").unwrap_or_else(|| panic!("{id} ({state}) vanished"));
        out.insert(id, stored);
    }
    out
}

fn ids_for<'a>(items: &'a HashMap<String, OutboxItem>, needle: &str) -> Vec<&'a str> {
    let mut ids: Vec<&str> = items.keys().map(String::as_str).filter(|id| id.contains(needle)).collect();
    ids.sort_unstable();
    ids
}

/// One item at a time: moto server answers concurrent `TransactWriteItems` on one table
/// with an occasional HTTP 500 (an HTML page), which the jobs rightly count as an error and
/// leave for the next run, but which would make exact counts flaky here.
fn quiet_settings() -> JobSettings {
    JobSettings { page_size: 25, concurrency: 1, ..JobSettings::default() }
}

#[tokio::test]
async fn each_subscription_is_warned_once_per_period_whatever_the_replays() {
    let env = TestEnv::new().await;
    let jobs = jobs_for(&env, unreachable_stripe(), quiet_settings());
    let ends = user("warn-ends");
    let renews = user("warn-renews");
    create(&env, &granted(&ends, day(13))).await;
    create(&env, &subscription(&renews, SubscriptionStatus::Active, day(13))).await;

    // Day 9 is four days out: nothing yet.
    let first = run(&jobs, JobName::ExpiryWarnings, morning(9)).await;
    assert_eq!((first.counts.warned, first.counts.reminded), (0, 0), "{first:?}");
    assert!(outbox(&env).await.is_empty());

    // Day 10 reaches the 3-day window: one warning, one renewal reminder.
    let warned = run(&jobs, JobName::ExpiryWarnings, morning(10)).await;
    assert_eq!((warned.counts.warned, warned.counts.reminded, warned.counts.already_warned), (1, 1, 0), "{warned:?}");

    // Days 10 (again, later), 11, 12 and 12 again: nothing new is queued.
    for now in [morning(10) + Duration::hours(5), morning(11), morning(12), morning(12) + Duration::minutes(1)] {
        let rerun = run(&jobs, JobName::ExpiryWarnings, now).await;
        assert_eq!((rerun.counts.warned, rerun.counts.reminded, rerun.counts.already_warned), (0, 0, 2), "at {now}: {rerun:?}");
    }
    // Day 13 06:00 is past the end: not a warning any more.
    let after = run(&jobs, JobName::ExpiryWarnings, morning(13)).await;
    assert_eq!(after.counts.items_read, 0, "{after:?}");

    let items = outbox(&env).await;
    assert_eq!(items.len(), 2, "{:?}", items.keys());
    let warning = ids_for(&items, "expiry_warning");
    assert_eq!(warning, ["email:expiry_warning:sub-warn-ends:2026-03-14T00:00:00.000Z:3d"]);
    let reminder = ids_for(&items, "renewal_reminder");
    assert_eq!(reminder, ["email:renewal_reminder:sub-warn-renews:2026-03-14T00:00:00.000Z:3d"]);
    match &items[warning[0]].payload {
        OutboxPayload::Email { user_id, context: EmailContext::ExpiryWarning(warning) } => {
            assert_eq!(user_id, &ends);
            assert_eq!(warning.days_remaining, 3, "warned on March 11 06:00 for an end on March 14 00:00 (rounded up)");
            assert_eq!(warning.plan, Tier::Premium);
        }
        other => panic!("unexpected payload {other:?}"),
    }
    // Warnings change no subscription and write no history.
    assert_eq!(env.store.history(&ends, 10).await.unwrap().len(), 1);
    assert_eq!(env.store.subscription(&ends).await.unwrap().unwrap().version, 1);
}

#[tokio::test]
async fn a_reminder_window_adds_exactly_one_last_mail() {
    let env = TestEnv::new().await;
    let settings = JobSettings { reminder_days: Some(1), ..quiet_settings() };
    let jobs = jobs_for(&env, unreachable_stripe(), settings);
    let u = user("remind-1");
    create(&env, &granted(&u, day(13))).await;
    for now in [morning(9), morning(10), morning(11), morning(11), morning(12), morning(12)] {
        run(&jobs, JobName::ExpiryWarnings, now).await;
    }
    // A subscription first seen inside the last day gets the reminder only, not both.
    let late = user("remind-late");
    create(&env, &granted(&late, day(13))).await;
    let last_day = run(&jobs, JobName::ExpiryWarnings, morning(12) + Duration::hours(1)).await;
    assert_eq!((last_day.counts.warned, last_day.counts.already_warned), (1, 1), "{last_day:?}");

    let items = outbox(&env).await;
    assert_eq!(
        ids_for(&items, "remind-1"),
        ["email:expiry_warning:sub-remind-1:2026-03-14T00:00:00.000Z:1d", "email:expiry_warning:sub-remind-1:2026-03-14T00:00:00.000Z:3d",]
    );
    assert_eq!(ids_for(&items, "remind-late"), ["email:expiry_warning:sub-remind-late:2026-03-14T00:00:00.000Z:1d"]);
}

#[tokio::test]
async fn a_lapsed_subscription_expires_after_its_grace_and_a_rerun_changes_nothing() {
    let env = TestEnv::new().await;
    let jobs = jobs_for(&env, unreachable_stripe(), quiet_settings());
    let u = user("expire-1");
    let address = put_profile(&env, &u).await;
    let sub = granted(&u, day(10));
    create(&env, &sub).await;
    // A live subscription ending later, and an already canceled one, are left alone.
    let later = user("expire-later");
    create(&env, &granted(&later, day(20))).await;
    let canceled = user("expire-canceled");
    create(&env, &subscription(&canceled, SubscriptionStatus::Canceled, day(5))).await;

    // The end is day 10 00:00; with 24 h of grace, day 10 06:00 is too early.
    let early = run(&jobs, JobName::ExpireLapsed, morning(10)).await;
    assert_eq!((early.counts.expired, early.counts.items_read), (0, 0), "{early:?}");
    assert_eq!(env.store.subscription(&u).await.unwrap().unwrap().status, SubscriptionStatus::Trial);

    let expired = run(&jobs, JobName::ExpireLapsed, morning(11)).await;
    assert_eq!((expired.counts.expired, expired.counts.items_read, expired.counts.errors), (1, 1, 0), "{expired:?}");
    let record = env.store.subscription(&u).await.unwrap().unwrap();
    assert_eq!((record.status, record.tier, record.version, record.auto_renew), (SubscriptionStatus::Expired, Tier::Free, 2, false));
    let history = env.store.history(&u, 10).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!((history[0].change, history[0].actor.as_str()), (HistoryChange::Expired, "job:expire-lapsed"));
    assert_eq!((history[0].from_tier, history[0].to_tier), (Some(Tier::Premium), Tier::Free));
    let items = outbox(&env).await;
    assert_eq!(
        ids_for(&items, "expire-1"),
        [
            "email:subscription_expired:sub-expire-1:2026-03-11T00:00:00.000Z",
            "event:SubscriptionExpired:sub-expire-1:2026-03-11T00:00:00.000Z",
        ]
    );
    assert_eq!(items.len(), 2);

    // The same day again, and the next day: nothing read, nothing changed, nothing queued.
    for now in [morning(11), morning(11) + Duration::hours(3), morning(12)] {
        let rerun = run(&jobs, JobName::ExpireLapsed, now).await;
        assert_eq!(rerun.counts, expiry_jobs::Counts::default(), "at {now}");
    }
    assert_eq!(env.store.subscription(&u).await.unwrap().unwrap().version, 2);
    assert_eq!(env.store.history(&u, 10).await.unwrap().len(), 2);
    assert_eq!(outbox(&env).await.len(), 2);

    // Delivery sends the e-mail and publishes the event, once.
    let delivered = run(&jobs, JobName::DeliverPending, morning(11) + Duration::minutes(5)).await;
    assert_eq!((delivered.counts.delivered, delivered.counts.retry_later), (2, 0), "{delivered:?}");
    let again = run(&jobs, JobName::DeliverPending, morning(11) + Duration::minutes(10)).await;
    assert_eq!(again.counts.delivered, 0);
    let mails = env.mail_to(&address);
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let events = env.bus_events().await;
    let expired_events: Vec<_> = events.iter().filter(|e| e["detail-type"] == "SubscriptionExpired").collect();
    assert_eq!(expired_events.len(), 1, "{events:#?}");
    assert_eq!(expired_events[0]["detail"]["user_id"], "expire-1");
    assert_eq!(expired_events[0]["detail"]["tier"], "free");
    assert_eq!(expired_events[0]["source"], "logiscore.subscriptions");
    // The others are as they were.
    assert_eq!(env.store.subscription(&later).await.unwrap().unwrap().version, 1);
    assert_eq!(env.store.subscription(&canceled).await.unwrap().unwrap().version, 1);
}

#[tokio::test]
async fn runs_stopped_after_k_items_and_continued_handle_everything_exactly_once() {
    const LAPSED: usize = 7;
    const ENDING: usize = 6;
    for k in [1u64, 2, 3, 5] {
        let env = TestEnv::new().await;
        // A Stripe that answers: `daily` ends with the missed-event replay (nothing to replay).
        let sim = Sim::start().await;
        let jobs = jobs_for(&env, sim.stripe_config(), JobSettings { page_size: 4, ..quiet_settings() });
        let mut lapsed = Vec::new();
        for i in 0..LAPSED {
            let u = user(&format!("slice{k}-lapsed-{i}"));
            put_profile(&env, &u).await;
            create(&env, &granted(&u, day(5) + Duration::hours(i as i64))).await;
            lapsed.push(u);
        }
        for i in 0..ENDING {
            let u = user(&format!("slice{k}-ending-{i}"));
            put_profile(&env, &u).await;
            create(&env, &granted(&u, day(12) + Duration::hours(i as i64))).await;
        }

        let runs = run_in_slices(&jobs, JobName::Daily, morning(10), k).await;
        let mut total = expiry_jobs::Counts::default();
        for r in &runs {
            total += r.counts;
        }
        assert!(runs.len() as u64 >= (LAPSED + ENDING) as u64 / k, "k={k}: {} runs", runs.len());
        assert!(runs[..runs.len() - 1].iter().all(|r| r.continued && r.continuation.is_some()), "k={k}");
        assert!(!runs[runs.len() - 1].continued);
        assert_eq!((total.warned, total.expired, total.errors), (ENDING as u64, LAPSED as u64, 0), "k={k}: {total:?}");
        // Each expired mail, expired event and warning went out once.
        assert_eq!((total.delivered, total.failed), ((LAPSED * 2 + ENDING) as u64, 0), "k={k}: {total:?}");

        for u in &lapsed {
            let record = env.store.subscription(u).await.unwrap().unwrap();
            assert_eq!((record.status, record.version), (SubscriptionStatus::Expired, 2), "k={k} {u}");
            let expiries = env.store.history(u, 10).await.unwrap().iter().filter(|h| h.change == HistoryChange::Expired).count();
            assert_eq!(expiries, 1, "k={k} {u}");
        }
        let items = outbox(&env).await;
        assert_eq!(items.len(), LAPSED * 2 + ENDING, "k={k}");
        assert!(items.values().all(|i| i.state == OutboxState::Sent), "k={k}");

        // Each continuation was also put on the bus for the function to pick up.
        let continuations: Vec<_> = env
            .bus_events()
            .await
            .into_iter()
            .filter(|e| e["detail-type"] == CONTINUATION_DETAIL_TYPE && e["source"] == CONTINUATION_SOURCE)
            .collect();
        assert_eq!(continuations.len(), runs.len() - 1, "k={k}");
        assert_eq!(continuations[0]["detail"]["job"], "daily");
        assert_eq!(continuations[0]["detail"]["time"], "2026-03-11T06:00:00Z");
        // And a continuation handed back as the whole EventBridge event parses.
        let parsed = expiry_jobs::JobRequest::parse(&continuations[0]).expect("continuation event parses");
        assert_eq!(Some(&parsed), runs[0].continuation.as_ref());

        // A rerun of the whole day afterwards finds nothing to do.
        let rerun = run(&jobs, JobName::Daily, morning(10)).await;
        assert_eq!((rerun.counts.warned, rerun.counts.expired, rerun.counts.delivered), (0, 0, 0), "k={k}: {rerun:?}");
        assert_eq!(rerun.counts.already_warned, ENDING as u64);
    }
}

#[tokio::test]
async fn mail_stays_pending_while_ses_is_down_and_goes_out_on_a_later_run() {
    let env = TestEnv::new().await;
    let u = user("ses-outage-1");
    let address = put_profile(&env, &u).await;
    create(&env, &granted(&u, day(10))).await;

    // SES on a server of its own that is then stopped: the endpoint refuses connections.
    let dead = Moto::start().await;
    let dead_ses = shared::config::AwsClients::with_ses(&env.config, &dead.sdk_config().await);
    dead.stop();
    let outage = jobs_over(&env, &dead_ses, unreachable_stripe(), quiet_settings());

    let summary = run(&outage, JobName::Daily, morning(11)).await;
    assert_eq!(summary.counts.expired, 1, "{summary:?}");
    // The event went to the bus; the e-mail could not.
    assert_eq!((summary.counts.delivered, summary.counts.retry_later, summary.counts.failed), (1, 1, 0), "{summary:?}");
    let mail_id = "email:subscription_expired:sub-ses-outage-1:2026-03-11T00:00:00.000Z";
    let pending = env.store.outbox_item(mail_id).await.unwrap().unwrap();
    assert_eq!((pending.state, pending.attempts), (OutboxState::Pending, 1));
    assert!(pending.last_error.is_some());
    assert!(env.mail_to(&address).is_empty());

    // Before its backoff is over the item is not due; an hour later it is, and SES is back.
    let healthy = jobs_for(&env, unreachable_stripe(), quiet_settings());
    let too_soon = run(&healthy, JobName::DeliverPending, morning(11) + Duration::seconds(10)).await;
    assert_eq!(too_soon.counts.delivered, 0, "{too_soon:?}");
    let later = run(&healthy, JobName::DeliverPending, morning(11) + Duration::hours(1)).await;
    assert_eq!((later.counts.delivered, later.counts.retry_later), (1, 0), "{later:?}");
    let sent = env.store.outbox_item(mail_id).await.unwrap().unwrap();
    assert_eq!((sent.state, sent.attempts), (OutboxState::Sent, 2));
    assert_eq!(env.mail_to(&address).len(), 1);
}

#[tokio::test]
async fn items_read_do_not_grow_with_subscriptions_that_are_not_due() {
    let env = TestEnv::new().await;
    let jobs = jobs_for(&env, unreachable_stripe(), quiet_settings());
    const DUE: usize = 5;
    for i in 0..DUE {
        create(&env, &granted(&user(&format!("read-due-{i}")), day(12) + Duration::hours(i as i64))).await;
        create(&env, &granted(&user(&format!("read-lapsed-{i}")), day(3) + Duration::hours(i as i64))).await;
    }
    let before_warn = run(&jobs, JobName::ExpiryWarnings, morning(10)).await;
    assert_eq!((before_warn.counts.warned, before_warn.counts.items_read), (DUE as u64, DUE as u64), "{before_warn:?}");

    // Ten times as many that are not due: live but ending later, and ended but no longer live.
    for i in 0..DUE * 10 {
        let u = user(&format!("read-other-{i}"));
        let sub = match i % 3 {
            0 => granted(&u, day(30) + Duration::hours(i as i64)),
            1 => subscription(&u, SubscriptionStatus::Canceled, day(3)),
            _ => subscription(&u, SubscriptionStatus::Expired, day(12)),
        };
        create(&env, &sub).await;
    }
    let after_warn = run(&jobs, JobName::ExpiryWarnings, morning(10)).await;
    assert_eq!((after_warn.counts.already_warned, after_warn.counts.items_read), (DUE as u64, DUE as u64), "{after_warn:?}");
    let expired = run(&jobs, JobName::ExpireLapsed, morning(10)).await;
    assert_eq!((expired.counts.expired, expired.counts.items_read), (DUE as u64, DUE as u64), "{expired:?}");
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let env = TestEnv::new().await;
    let jobs = jobs_for(&env, unreachable_stripe(), quiet_settings());
    let u = user("bad-input-1");
    create(&env, &granted(&u, day(1))).await;
    let deadline = std::time::SystemTime::now() + StdDuration::from_secs(60);
    for payload in [
        serde_json::json!({"job": "expire-everything", "time": "2026-03-11T06:00:00Z"}),
        serde_json::json!({"job": "expire-lapsed", "time": "11/03/2026"}),
        serde_json::json!({"time": "2026-03-11T06:00:00Z"}),
        serde_json::json!({"job": "expire-lapsed", "cursor": {"shard": "x"}}),
    ] {
        let err = jobs.handle(&payload, deadline).await.unwrap_err();
        assert!(matches!(err, JobError::Input(_)), "{payload}: {err:?}");
        assert_eq!(err.kind(), "InvalidJobInput");
    }
    assert_eq!(env.store.subscription(&u).await.unwrap().unwrap().version, 1);
    assert!(outbox(&env).await.is_empty());
    assert!(env.bus_events().await.is_empty());

    // The same job named by a plain Scheduled Event's rule runs as of the event's time.
    let scheduled = serde_json::json!({
        "version": "0", "id": "e1", "detail-type": "Scheduled Event", "source": "aws.events", "account": "123456789012",
        "time": "2026-03-11T06:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/logiscore-subscriptions-dev-expire-lapsed"], "detail": {}
    });
    let summary = jobs.handle(&scheduled, deadline).await.expect("scheduled event runs");
    assert_eq!((summary.job, summary.counts.expired), (JobName::ExpireLapsed, 1));
    assert_eq!(summary.now, morning(10));
}

/// The one event of `detail-type` `kind` that reached the bus (through its SQS queue), as
/// the continuation rule would hand it to the function: the whole envelope.
async fn the_bus_event(env: &TestEnv, kind: &str) -> serde_json::Value {
    let events: Vec<_> = env.bus_events().await.into_iter().filter(|e| e["detail-type"] == kind).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    events.into_iter().next().unwrap()
}

#[tokio::test]
async fn a_continuation_from_another_source_or_from_the_future_is_refused_and_changes_nothing() {
    use expiry_jobs::{ContinuationPublisher, InputError, JobCursor, JobRequest};
    use shared::{domain::events::EVENT_SOURCE, events::EventBridgePublisher};

    let env = TestEnv::new().await;
    let jobs = jobs_for(&env, unreachable_stripe(), quiet_settings());
    let u = user("forged-continuation-1");
    create(&env, &granted(&u, day(1))).await;
    let deadline = std::time::SystemTime::now() + StdDuration::from_secs(60);
    let bus = EventBridgePublisher::new(env.events.clone(), &env.bus);
    let detail = |time: DateTime<Utc>| {
        serde_json::json!({"job": "expire-lapsed", "time": time.to_rfc3339(), "cursor": {"step": "expire-lapsed", "hops": 1}}).to_string()
    };

    // What admin-api could put on the domain bus: the jobs' detail-type and a cursor, but
    // its own source (the only one its IAM allows).
    bus.put(EVENT_SOURCE, CONTINUATION_DETAIL_TYPE, "logiscore:job:expire-lapsed".into(), detail(morning(10))).await.unwrap();
    let forged = the_bus_event(&env, CONTINUATION_DETAIL_TYPE).await;
    let err = jobs.handle(&forged, deadline).await.unwrap_err();
    assert!(matches!(&err, JobError::Input(InputError::UntrustedSource(s)) if s == EVENT_SOURCE), "{err:?}");
    assert!(err.to_string().contains("logiscore.subscriptions") && err.to_string().contains("not accepted"), "{err}");

    // The jobs' own source, acting as of a day after EventBridge accepted it.
    let tomorrow = Utc::now() + Duration::days(1);
    bus.put(CONTINUATION_SOURCE, CONTINUATION_DETAIL_TYPE, "logiscore:job:expire-lapsed".into(), detail(tomorrow)).await.unwrap();
    let future = the_bus_event(&env, CONTINUATION_DETAIL_TYPE).await;
    let err = jobs.handle(&future, deadline).await.unwrap_err();
    assert!(matches!(&err, JobError::Input(InputError::ContinuationFromTheFuture { .. })), "{err:?}");
    assert_eq!(err.kind(), "InvalidJobInput");

    // The same cursor handed over directly (an operator's invoke, a rule with InputPath).
    let direct: serde_json::Value = serde_json::from_str(&detail(morning(10))).unwrap();
    let err = jobs.handle(&direct, deadline).await.unwrap_err();
    assert!(matches!(&err, JobError::Input(InputError::CursorOutsideContinuation)), "{err:?}");

    // Nothing was done: the lapsed subscription is untouched, nothing queued or published.
    assert_eq!(env.store.subscription(&u).await.unwrap().unwrap().version, 1);
    assert!(outbox(&env).await.is_empty());
    assert!(env.bus_events().await.is_empty());

    // What the jobs themselves publish is accepted, and does the work.
    let genuine = JobRequest {
        job: JobName::ExpireLapsed,
        time: Some(morning(10)),
        cursor: Some(JobCursor { step: Some(JobName::ExpireLapsed), index: None, hops: 1 }),
    };
    ContinuationPublisher::new(env.events.clone(), &env.bus).publish(&genuine).await.unwrap();
    let event = the_bus_event(&env, CONTINUATION_DETAIL_TYPE).await;
    let summary = jobs.handle(&event, deadline).await.expect("the jobs' own continuation runs");
    assert_eq!((summary.job, summary.now, summary.counts.expired), (JobName::ExpireLapsed, morning(10), 1), "{summary:?}");
}

// ---- Stripe: late renewals and missed webhooks, against stripe-sim ----

async fn stripe_subscription(sim: &Sim, name: &str) -> StripeSnapshot {
    let billing = sim.billing();
    let key = |step: &str| IdempotencyKey::new(format!("jobs-it-{name}-{step}"));
    let details = CustomerDetails { user_id: user(name), email: format!("{name}@example.com"), name: None };
    let created = billing.create_customer(&details, Some("pm_card_visa"), &key("customer")).await.expect("customer");
    let (customer, pm) = (created.id, created.payment_method.expect("card"));
    let new = NewSubscription {
        customer,
        user_id: user(name),
        tier: Tier::Premium,
        kind: NewSubscriptionKind::Paid { payment_method: pm, cancel_at: None },
        operation_id: "op-test".into(),
    };
    let created = billing.create_subscription(&new, &key("subscription")).await.expect("subscription");
    assert_eq!(created.snapshot.status, SubscriptionStatus::Active, "{:?}", created.snapshot);
    created.snapshot
}

/// The local record as the webhook left it when Stripe's state was `snap`.
fn local_from(name: &str, snap: &StripeSnapshot) -> Subscription {
    Subscription {
        id: format!("sub-{name}"),
        user_id: user(name),
        tier: Tier::Premium,
        status: SubscriptionStatus::Active,
        source: SubscriptionSource::Paid,
        start_date: snap.current_period_start,
        end_date: Some(snap.current_period_end),
        auto_renew: true,
        cancel_at_period_end: false,
        canceled_at: None,
        stripe_customer_id: Some(snap.customer_id.clone()),
        stripe_subscription_id: Some(snap.subscription_id.clone()),
        last_billing_date: snap.latest_invoice_paid_at,
        next_billing_date: Some(snap.current_period_end),
        comment: None,
        version: 1,
        updated_at: snap.current_period_start,
    }
}

#[tokio::test]
async fn the_sweep_repairs_records_that_missed_their_webhooks_with_one_list_call() {
    let env = TestEnv::new().await;
    let sim = Sim::start().await;
    let jobs = jobs_for(&env, sim.stripe_config(), quiet_settings());

    let in_line = stripe_subscription(&sim, "recon-same").await;
    let scheduled = stripe_subscription(&sim, "recon-cancel-later").await;
    let ended = stripe_subscription(&sim, "recon-cancel-now").await;
    for (name, snap) in [("recon-same", &in_line), ("recon-cancel-later", &scheduled), ("recon-cancel-now", &ended)] {
        let local = local_from(name, snap);
        // Make the first local record exactly what apply_stripe would make, so only drift shows.
        let local = local.apply_stripe(snap, snap.current_period_start).map(|(s, _)| Subscription { version: 1, ..s }).unwrap_or(local);
        create(&env, &local).await;
    }
    // Changed at Stripe directly (the dashboard, say); their webhooks never arrive.
    sim.post(&format!("/v1/subscriptions/{}", scheduled.subscription_id), &[("cancel_at_period_end", "true")]).await;
    let deleted = reqwest::Client::new()
        .delete(format!("{}/v1/subscriptions/{}", sim.handle.base_url(), ended.subscription_id))
        .bearer_auth(sim.handle.secret_key())
        .send()
        .await
        .expect("cancel at stripe-sim");
    assert!(deleted.status().is_success(), "{}", deleted.status());

    // The run happens after the fixtures were made (history sorts by time, then version).
    let now = Utc::now();
    let (lists, gets) = (sim.handle.request_count_for("GET /v1/subscriptions"), sim.handle.request_count_for("GET /v1/subscriptions/{id}"));
    let summary = run(&jobs, JobName::SweepStripe, now).await;
    let counts = summary.counts;
    assert_eq!((counts.swept, counts.sweep_repaired, counts.orphans_adopted, counts.errors), (3, 2, 0, 0), "{summary:?}");
    assert_eq!(sim.handle.request_count_for("GET /v1/subscriptions") - lists, 1, "three subscriptions: one page");
    assert_eq!(sim.handle.request_count_for("GET /v1/subscriptions/{id}"), gets, "no per-subscription reads");

    let later = env.store.subscription(&user("recon-cancel-later")).await.unwrap().unwrap();
    assert_eq!((later.status, later.cancel_at_period_end, later.auto_renew, later.version), (SubscriptionStatus::Active, true, false, 2));
    let history = env.store.history(&user("recon-cancel-later"), 1).await.unwrap();
    assert_eq!((history[0].change, history[0].actor.as_str()), (HistoryChange::Synced, "job:sweep-stripe"));
    let gone = env.store.subscription(&user("recon-cancel-now")).await.unwrap().unwrap();
    assert_eq!(gone.status, SubscriptionStatus::Canceled);
    assert_eq!(env.store.subscription(&user("recon-same")).await.unwrap().unwrap().version, 1);
    let items = outbox(&env).await;
    assert_eq!(ids_for(&items, "SubscriptionCanceled").len(), 1, "{:?}", items.keys());

    // Repaired once: a new pass finds nothing to repair.
    let rerun = run(&jobs, JobName::SweepStripe, now + Duration::minutes(1)).await;
    assert_eq!((rerun.counts.swept, rerun.counts.sweep_repaired), (3, 0), "{rerun:?}");
    assert_eq!(ids_for(&outbox(&env).await, "SubscriptionCanceled").len(), 1);
}

#[tokio::test]
async fn a_late_renewal_is_applied_instead_of_expiring_a_paying_customer() {
    let env = TestEnv::new().await;
    let sim = Sim::start().await;
    let jobs = jobs_for(&env, sim.stripe_config(), quiet_settings());
    let now = Utc::now();

    // Stripe renewed (its period runs for another month) but the local record still has the
    // previous period, which ended three days ago: the renewal webhook is late.
    let renewed = stripe_subscription(&sim, "late-renewal").await;
    let mut local = local_from("late-renewal", &renewed);
    local.end_date = Some(now - Duration::days(3));
    local.start_date = now - Duration::days(33);
    create(&env, &local).await;
    // Canceled at Stripe while the local record still thinks it is live: recorded as canceled.
    let canceled = stripe_subscription(&sim, "late-cancel").await;
    let mut local_canceled = local_from("late-cancel", &canceled);
    local_canceled.end_date = Some(now - Duration::days(3));
    create(&env, &local_canceled).await;
    let deleted = reqwest::Client::new()
        .delete(format!("{}/v1/subscriptions/{}", sim.handle.base_url(), canceled.subscription_id))
        .bearer_auth(sim.handle.secret_key())
        .send()
        .await
        .expect("cancel at stripe-sim");
    assert!(deleted.status().is_success());

    let summary = run(&jobs, JobName::ExpireLapsed, now).await;
    assert_eq!((summary.counts.expired, summary.counts.synced, summary.counts.errors), (0, 2, 0), "{summary:?}");
    let record = env.store.subscription(&user("late-renewal")).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.tier, record.end_date),
        (SubscriptionStatus::Active, Tier::Premium, Some(renewed.current_period_end))
    );
    let history = env.store.history(&user("late-renewal"), 1).await.unwrap();
    assert_eq!((history[0].change, history[0].actor.as_str()), (HistoryChange::Synced, "job:expire-lapsed"));
    let gone = env.store.subscription(&user("late-cancel")).await.unwrap().unwrap();
    assert_eq!(gone.status, SubscriptionStatus::Canceled);
    let items = outbox(&env).await;
    // The cancellation whose webhook was missed is told once, under the id the webhook
    // would have queued it with (so its late arrival adds nothing).
    let ended = format!("email:subscription_expired:ended-{}", gone.stripe_subscription_id.as_ref().unwrap());
    assert_eq!(ids_for(&items, "subscription_expired"), [ended.as_str()], "{:?}", items.keys());
    assert_eq!(ids_for(&items, "SubscriptionRenewed").len(), 1, "{:?}", items.keys());

    // When Stripe cannot be asked, nobody is expired: the item waits for the next run.
    let blind = jobs_for(&env, unreachable_stripe(), quiet_settings());
    let u = user("late-unknown");
    let mut unknown = local_from("late-unknown", &renewed);
    unknown.end_date = Some(now - Duration::days(3));
    create(&env, &unknown).await;
    let summary = run(&blind, JobName::ExpireLapsed, now).await;
    assert_eq!((summary.counts.expired, summary.counts.errors), (0, 1), "{summary:?}");
    assert_eq!(env.store.subscription(&u).await.unwrap().unwrap().status, SubscriptionStatus::Active);
}

#[tokio::test]
async fn a_run_without_budget_fails_instead_of_continuing_for_ever() {
    let env = TestEnv::new().await;
    let jobs = jobs_for(&env, unreachable_stripe(), quiet_settings());
    let u = user("no-budget-1");
    create(&env, &granted(&u, day(1))).await;
    let request = expiry_jobs::JobRequest { job: JobName::ExpireLapsed, time: Some(morning(10)), cursor: None };
    let spent = expiry_jobs::Budget::for_duration(StdDuration::ZERO);
    let err = jobs.run(request, morning(10), &spent).await.unwrap_err();
    assert!(matches!(err, JobError::NoProgress(JobName::ExpireLapsed)), "{err:?}");
    assert_eq!(env.store.subscription(&u).await.unwrap().unwrap().version, 1);
    assert!(env.bus_events().await.is_empty(), "no continuation was published");
}

/// A paid subscription Stripe still bills — `past_due`, its renewal invoice open and being
/// retried — is cancelled at Stripe before it is expired here: otherwise a later retry
/// could charge a customer this service has already downgraded.
#[tokio::test]
async fn a_past_due_subscription_is_cancelled_at_stripe_before_it_expires_locally() {
    let env = TestEnv::new().await;
    let sim = Sim::start().await;
    let name = "past-due-expiry";
    let address = put_profile(&env, &user(name)).await;
    // A customer on a test clock, billed monthly; the card fails from the first renewal on.
    let start = Utc::now().timestamp() - 40 * 86_400;
    let clock = sim.clock(start).await;
    let customer = sim.post("/v1/customers", &[("email", &address), ("test_clock", &clock), ("metadata[user_id]", name)]).await;
    let customer = customer["id"].as_str().unwrap().to_owned();
    let attach = |token: &'static str| {
        let (sim, customer) = (&sim, customer.clone());
        async move {
            sim.post(&format!("/v1/payment_methods/{token}/attach"), &[("customer", &customer)]).await["id"].as_str().unwrap().to_owned()
        }
    };
    let good = attach("pm_card_visa").await;
    let sub = sim
        .post(
            "/v1/subscriptions",
            &[("customer", &customer), ("items[0][price]", stripe_sim::PREMIUM_MONTHLY), ("default_payment_method", &good)],
        )
        .await;
    let sub_id = sub["id"].as_str().unwrap().to_owned();
    let failing = attach("pm_card_chargeCustomerFail").await;
    sim.post(&format!("/v1/subscriptions/{sub_id}"), &[("default_payment_method", &failing)]).await;
    let first_end = sub["items"]["data"][0]["current_period_end"].as_i64().unwrap();
    sim.advance(&clock, first_end + 86_400).await;

    // The local record as the webhooks left it: past_due, in the period Stripe is retrying.
    let billing = sim.billing();
    let stripe_id = shared::domain::StripeSubscriptionId::parse(&sub_id).unwrap();
    let at_stripe = billing.subscription(&stripe_id).await.unwrap();
    assert_eq!(at_stripe.status, SubscriptionStatus::PastDue, "{at_stripe:?}");
    let local = local_from(name, &at_stripe);
    let local = local.apply_stripe(&at_stripe, at_stripe.current_period_start).map(|(s, _)| Subscription { version: 1, ..s }).unwrap();
    assert_eq!(local.status, SubscriptionStatus::PastDue);
    create(&env, &local).await;

    // Long past the period's end and the past-due grace, Stripe (its clock not advanced)
    // still says past_due: the job expires it, and ends it at Stripe first.
    let now = at_stripe.current_period_end + Duration::days(8);
    let jobs = jobs_for(&env, sim.stripe_config(), quiet_settings());
    let summary = run(&jobs, JobName::ExpireLapsed, now).await;
    assert_eq!((summary.counts.expired, summary.counts.canceled_at_stripe, summary.counts.errors), (1, 1, 0), "{summary:?}");
    let record = env.store.subscription(&user(name)).await.unwrap().unwrap();
    assert_eq!((record.status, record.tier), (SubscriptionStatus::Expired, Tier::Free));
    assert_eq!(billing.subscription(&stripe_id).await.unwrap().status, SubscriptionStatus::Canceled, "nothing left at Stripe to charge");
    let invoices = sim.get(&format!("/v1/invoices?subscription={stripe_id}")).await;
    let statuses: Vec<&str> = invoices["data"].as_array().into_iter().flatten().filter_map(|i| i["status"].as_str()).collect();
    assert!(statuses.contains(&"void") && !statuses.contains(&"open"), "the unpaid renewal is voided, not left payable: {statuses:?}");

    // A rerun changes nothing and calls Stripe to cancel no more.
    let cancels = sim.handle.request_count_for("DELETE /v1/subscriptions/{id}");
    let rerun = run(&jobs, JobName::ExpireLapsed, now + Duration::hours(1)).await;
    assert_eq!((rerun.counts.expired, rerun.counts.canceled_at_stripe), (0, 0), "{rerun:?}");
    assert_eq!(sim.handle.request_count_for("DELETE /v1/subscriptions/{id}"), cancels);
}
