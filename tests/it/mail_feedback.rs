//! SES feedback (bounces, complaints, deliveries) through the expiry-jobs function's own
//! entry point, and what delivery then does with an undeliverable address; on moto.

use std::time::{Duration as StdDuration, SystemTime};

use chrono::Duration;
use expiry_jobs::{JobError, JobName, JobSettings, Jobs, Outcome};
use harness::{
    jobs::{jobs as jobs_for, run, unreachable_stripe},
    moto::sdk_config_for,
    proxy::{Fault, Proxy},
    records::put_profile_with,
    TestEnv,
};
use serde_json::{json, Value};
use shared::{
    clock::RunClock,
    delivery::{DeliveryPolicy, Mailing, OutboxDelivery},
    domain::{DeliveryState, EmailContext, OutboxState, SubscriptionStatus, TrialEndingContext, UndeliverableReason, UserId},
    store::Change,
    usecase::mail_feedback::{user_tag_value, FeedbackError, HandleError},
};

use crate::fixtures::{day, subscription};

fn deadline() -> SystemTime {
    SystemTime::now() + StdDuration::from_secs(60)
}

/// Queues one trial-ending e-mail for `user` (due on day 7); returns its outbox id.
async fn queue_mail(env: &TestEnv, user: &UserId, tag: &str) -> String {
    let sub = subscription(user, SubscriptionStatus::Trial, day(10));
    let email = EmailContext::from(TrialEndingContext { plan: sub.tier, days_remaining: 3, trial_end: day(10), has_payment_method: false })
        .outbox_item(user, &format!("{tag}-{user}"), day(7));
    let id = email.id.clone();
    env.store.commit(Change { user_id: Some(user.clone()), outbox: vec![email], ..Change::default() }).await.unwrap();
    id
}

/// An SES event as the configuration set's EventBridge destination delivers it.
fn ses_event(id: &str, detail_type: &str, user: &UserId, address: &str) -> Value {
    let mail = json!({"timestamp": "2026-03-10T06:00:00Z", "messageId": "0100018e-msg", "source": "billing@logiscore.test",
        "destination": [address], "tags": {"user": [user_tag_value(user)], "notification": ["trial_ending"]}});
    let (event_type, section, body) = match detail_type {
        "Email Bounced" | "Email Soft Bounced" => (
            "Bounce",
            "bounce",
            json!({
            "bounceType": if detail_type == "Email Bounced" { "Permanent" } else { "Transient" },
            "bounceSubType": "General", "timestamp": "2026-03-10T06:00:05Z",
            "bouncedRecipients": [{"emailAddress": address, "action": "failed", "status": "5.1.1"}]}),
        ),
        "Email Complaint Received" => (
            "Complaint",
            "complaint",
            json!({"timestamp": "2026-03-10T07:00:00Z",
            "complainedRecipients": [{"emailAddress": address}], "complaintFeedbackType": "abuse"}),
        ),
        _ => ("Delivery", "delivery", json!({"timestamp": "2026-03-10T06:00:02Z", "recipients": [address]})),
    };
    let detail_type = if detail_type == "Email Soft Bounced" { "Email Bounced" } else { detail_type };
    json!({"version": "0", "id": id, "detail-type": detail_type, "source": "aws.ses", "account": "123456789012",
        "time": "2026-03-10T06:00:10Z", "region": "us-east-1", "resources": [],
        "detail": {"eventType": event_type, "mail": mail, section: body}})
}

fn settings() -> JobSettings {
    JobSettings { page_size: 25, concurrency: 1, ..JobSettings::default() }
}

async fn feedback(jobs: &Jobs, event: &Value) -> Result<u32, JobError> {
    match jobs.invoke(event, deadline()).await? {
        Outcome::Feedback(report) => Ok(report.recorded),
        Outcome::Job(summary) => panic!("an SES event ran a job: {summary:?}"),
    }
}

/// A permanent bounce, or a complaint, marks the address: the mail queued before it and
/// the mail queued after it are both suppressed (counted, never sent, never retried), and
/// the same event delivered again changes nothing.
#[tokio::test]
async fn a_hard_bounce_or_a_complaint_suppresses_queued_and_later_mail() {
    let env = TestEnv::new().await;
    let jobs = jobs_for(&env, unreachable_stripe(), settings());
    for (n, detail_type, reason) in
        [(1, "Email Bounced", UndeliverableReason::Bounce), (2, "Email Complaint Received", UndeliverableReason::Complaint)]
    {
        let user = UserId::parse(&format!("fb-hard-{n}")).unwrap();
        let address = format!("gone-{n}@example.com");
        put_profile_with(env.store.as_ref(), &user, &address).await;
        let queued = queue_mail(&env, &user, "before").await;

        let event = ses_event(&format!("evt-hard-{n}"), detail_type, &user, &address);
        assert_eq!(feedback(&jobs, &event).await.unwrap(), 1, "{detail_type} marks the address");
        assert_eq!(feedback(&jobs, &event).await.unwrap(), 0, "{detail_type} again: no second effect");
        let stored = env.store.profile(&user).await.unwrap().unwrap();
        assert_eq!(stored.delivery_state(), DeliveryState::Undeliverable);
        let mark = stored.undeliverable().unwrap();
        assert_eq!((mark.reason, mark.event_id.as_str()), (reason, format!("evt-hard-{n}").as_str()));

        let later = queue_mail(&env, &user, "after").await;
        let summary = run(&jobs, JobName::DeliverPending, day(7) + Duration::hours(1)).await;
        assert_eq!((summary.counts.suppressed, summary.counts.delivered), (2, 0), "{summary:?}");
        for id in [&queued, &later] {
            let item = env.store.outbox_item(id).await.unwrap().unwrap();
            assert_eq!(item.state, OutboxState::Suppressed, "{id}");
            assert!(item.last_error.as_deref().unwrap_or_default().contains("undeliverable"), "{:?}", item.last_error);
        }
        assert!(env.mail_to(&address).is_empty(), "nothing went to {address}");
        let again = run(&jobs, JobName::DeliverPending, day(9)).await;
        assert_eq!(again.counts.suppressed + again.counts.delivered + again.counts.retry_later, 0, "never retried");
    }
}

/// A transient bounce marks nothing and the mail still goes; a delivery is recorded once.
#[tokio::test]
async fn a_soft_bounce_marks_nothing_and_a_delivery_is_recorded() {
    let env = TestEnv::new().await;
    let jobs = jobs_for(&env, unreachable_stripe(), settings());
    let user = UserId::parse("fb-soft").unwrap();
    let address = "busy@example.com";
    put_profile_with(env.store.as_ref(), &user, address).await;
    queue_mail(&env, &user, "soft").await;

    assert_eq!(feedback(&jobs, &ses_event("evt-soft", "Email Soft Bounced", &user, address)).await.unwrap(), 0);
    let stored = env.store.profile(&user).await.unwrap().unwrap();
    assert_eq!((stored.delivery_state(), stored.undeliverable.is_none()), (DeliveryState::Deliverable, true));
    let summary = run(&jobs, JobName::DeliverPending, day(7) + Duration::hours(1)).await;
    assert_eq!((summary.counts.delivered, summary.counts.suppressed), (1, 0));
    assert_eq!(env.mail_to(address).len(), 1);
    let sent = &env.mail_to(address)[0];
    assert!(sent.tags.contains(&("user".to_owned(), user_tag_value(&user))), "the user tag is sent: {:?}", sent.tags);

    let delivered = ses_event("evt-delivered", "Email Delivered", &user, address);
    assert_eq!(feedback(&jobs, &delivered).await.unwrap(), 1);
    assert_eq!(feedback(&jobs, &delivered).await.unwrap(), 0, "the same delivery again changes nothing");
    let stored = env.store.profile(&user).await.unwrap().unwrap();
    assert_eq!(stored.last_delivery().map(|d| d.event_id.as_str()), Some("evt-delivered"));
}

/// An event that is not SES feedback (another source, an SES event type not handled, a
/// detail that does not match its type) is refused with a typed error and changes nothing.
#[tokio::test]
async fn forged_or_unknown_events_are_refused_and_change_nothing() {
    let env = TestEnv::new().await;
    let jobs = jobs_for(&env, unreachable_stripe(), settings());
    let user = UserId::parse("fb-forged").unwrap();
    let address = "target@example.com";
    put_profile_with(env.store.as_ref(), &user, address).await;
    let before = env.store.profile(&user).await.unwrap();

    let mut other_source = ses_event("evt-f1", "Email Bounced", &user, address);
    other_source["source"] = json!("logiscore.subscriptions");
    let err = jobs.invoke(&other_source, deadline()).await.unwrap_err();
    assert_eq!(err.kind(), "InvalidJobInput", "{err}");

    let mut opened = ses_event("evt-f2", "Email Bounced", &user, address);
    opened["detail-type"] = json!("Email Opened");
    let err = jobs.invoke(&opened, deadline()).await.unwrap_err();
    assert!(matches!(err, JobError::Feedback(HandleError::Refused(FeedbackError::UnknownDetailType(_)))), "{err:?}");

    let mut mismatched = ses_event("evt-f3", "Email Bounced", &user, address);
    mismatched["detail"]["eventType"] = json!("Delivery");
    let err = jobs.invoke(&mismatched, deadline()).await.unwrap_err();
    assert_eq!(err.kind(), "InvalidSesEvent");

    // A bounce about an address the user no longer has marks nothing.
    let stale = ses_event("evt-f4", "Email Bounced", &user, "previous@example.com");
    assert_eq!(feedback(&jobs, &stale).await.unwrap(), 0);
    assert_eq!(env.store.profile(&user).await.unwrap(), before, "the profile is as it was");
}

/// A profile update with a new address clears the mark; with the same address it stays.
#[tokio::test]
async fn a_new_address_clears_the_mark_the_same_address_keeps_it() {
    let env = TestEnv::new().await;
    let jobs = jobs_for(&env, unreachable_stripe(), settings());
    let user = UserId::parse("fb-readdress").unwrap();
    put_profile_with(env.store.as_ref(), &user, "old@example.com").await;
    assert_eq!(feedback(&jobs, &ses_event("evt-r1", "Email Bounced", &user, "old@example.com")).await.unwrap(), 1);

    put_profile_with(env.store.as_ref(), &user, "old@example.com").await;
    let same = env.store.profile(&user).await.unwrap().unwrap();
    assert_eq!(same.delivery_state(), DeliveryState::Undeliverable, "the same address keeps its mark");

    put_profile_with(env.store.as_ref(), &user, "new@example.com").await;
    let moved = env.store.profile(&user).await.unwrap().unwrap();
    assert_eq!(moved.delivery_state(), DeliveryState::Deliverable);
    assert!(moved.undeliverable.is_none(), "the old address's mark is removed, not just hidden");
    queue_mail(&env, &user, "moved").await;
    let summary = run(&jobs, JobName::DeliverPending, day(7) + Duration::hours(1)).await;
    assert_eq!(summary.counts.delivered, 1);
    assert_eq!(env.mail_to("new@example.com").len(), 1);
}

/// SES throttling (429, `TooManyRequestsException`) is transient: the item stays pending,
/// backed off, and goes out on a later run instead of failing.
#[tokio::test]
async fn throttling_retries_later_instead_of_failing() {
    let env = TestEnv::new().await;
    let user = UserId::parse("fb-throttled").unwrap();
    put_profile_with(env.store.as_ref(), &user, "patient@example.com").await;
    let id = queue_mail(&env, &user, "throttled").await;

    let throttling = Proxy::start(env.mail().url()).await;
    throttling.set(Fault::Status(429));
    let ses = sdk_config_for(&throttling.url).await;
    let aws = shared::config::AwsClients::with_ses(&env.config, &ses);
    // One attempt before dead-lettering: a transient error would park the item at once,
    // throttling never does.
    let policy = DeliveryPolicy { sends_per_second: None, max_attempts: 1, ..DeliveryPolicy::default() };
    let mailing = Mailing { email: harness::env::email_config(), mail_retry: harness::env::quick_mail_retry(), policy };
    let delivery = OutboxDelivery::over_aws(env.store.clone(), &aws, &env.bus, &mailing).unwrap();
    let now = day(7) + Duration::hours(1);
    let (report, _) = delivery.deliver_pending(&RunClock::starting_at(now), 10).await.unwrap();
    assert_eq!((report.retry_later, report.failed, report.dead_lettered, report.sent), (1, 0, 0, 0), "{report:?}");
    let item = env.store.outbox_item(&id).await.unwrap().unwrap();
    assert_eq!((item.state, item.attempts), (OutboxState::Pending, 1));
    assert!(item.next_attempt_at >= now + Duration::minutes(1), "backed off by the shared schedule");

    throttling.set(Fault::Pass);
    let (report, _) = delivery.deliver_pending(&RunClock::starting_at(now + Duration::minutes(2)), 10).await.unwrap();
    assert_eq!(report.sent, 1);
    assert_eq!(env.mail_to("patient@example.com").len(), 1);
}

/// The admin API shows the address's delivery state (`GET /users/{id}`, and the PUT's
/// answer), and a PUT with a new address clears the mark while the same address keeps it.
#[tokio::test]
async fn the_admin_api_shows_and_clears_the_mark() {
    let api = harness::admin::AdminApi::start().await;
    let jobs = jobs_for(&api.env, unreachable_stripe(), settings());
    let user = UserId::parse("fb-admin").unwrap();
    api.create_profile(user.as_str()).await;
    let path = format!("/users/{user}");
    let read = api.call("GET", &path, None).await;
    assert_eq!((read.status.as_u16(), &read.body["delivery"]), (200, &json!("deliverable")), "{}", read.body);

    let address = format!("{user}@example.com");
    assert_eq!(feedback(&jobs, &ses_event("evt-admin", "Email Complaint Received", &user, &address)).await.unwrap(), 1);
    let read = api.call("GET", &path, None).await;
    assert_eq!(
        (&read.body["delivery"], &read.body["undeliverable_reason"]),
        (&json!("undeliverable"), &json!("complaint")),
        "{}",
        read.body
    );

    let same = api.call("PUT", &path, Some(json!({"email": address, "full_name": "Renamed"}))).await;
    assert_eq!((same.status.as_u16(), &same.body["delivery"]), (200, &json!("undeliverable")), "{}", same.body);
    assert_eq!(api.call("GET", &path, None).await.body["delivery"], "undeliverable");

    let moved = api.call("PUT", &path, Some(json!({"email": "fresh@example.com"}))).await;
    assert_eq!((moved.status.as_u16(), &moved.body["delivery"]), (200, &json!("deliverable")), "{}", moved.body);
    let read = api.call("GET", &path, None).await;
    assert_eq!(read.body["delivery"], "deliverable", "{}", read.body);
    assert!(read.body.get("undeliverable_reason").is_none(), "{}", read.body);
    assert_eq!(api.call("GET", "/users/nobody-here", None).await.status.as_u16(), 404);
}
