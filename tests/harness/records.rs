//! Domain records the tests and the bench write straight into the store, and the one
//! `Change` that creates them (as the admin API would: record + "created" history entry).

use chrono::{DateTime, Duration, Utc};
use shared::{
    domain::{HistoryChange, HistoryEntry, ProfileUpdate, Subscription, SubscriptionSource, SubscriptionStatus, Tier, UserId},
    store::{Change, Store, SubscriptionWrite},
};

/// Creates or replaces `user`'s profile with the address `email`, as an admin's
/// `PUT /users/{id}` would.
pub async fn put_profile_with(store: &dyn Store, user: &UserId, email: &str) {
    let profile = ProfileUpdate { email: Some(email.into()), full_name: Some("Grace Hopper".into()), ..Default::default() }
        .validate(user.clone(), Utc::now())
        .expect("a valid test profile");
    store.put_profile(&profile).await.expect("profile stored");
}

/// A paid premium subscription ending at `end`.
pub fn subscription(user_id: &UserId, status: SubscriptionStatus, end: DateTime<Utc>) -> Subscription {
    Subscription {
        id: format!("sub-{user_id}"),
        user_id: user_id.clone(),
        tier: Tier::Premium,
        status,
        source: SubscriptionSource::Paid,
        start_date: end - Duration::days(30),
        end_date: Some(end),
        auto_renew: true,
        cancel_at_period_end: false,
        canceled_at: None,
        stripe_customer_id: None,
        stripe_subscription_id: None,
        last_billing_date: None,
        next_billing_date: Some(end),
        comment: None,
        version: 1,
        updated_at: end - Duration::days(30),
    }
}

/// A granted (comp) premium trial without Stripe ending at `end`: it ends, it never renews.
pub fn granted(user_id: &UserId, end: DateTime<Utc>) -> Subscription {
    Subscription {
        source: SubscriptionSource::Granted,
        auto_renew: false,
        next_billing_date: None,
        ..subscription(user_id, SubscriptionStatus::Trial, end)
    }
}

/// The change that writes `sub` as a user's first subscription, with its history entry.
pub fn created(sub: &Subscription) -> Change {
    Change {
        user_id: Some(sub.user_id.clone()),
        subscription: Some(SubscriptionWrite { record: sub.clone(), expected_version: None }),
        history: vec![HistoryEntry::record(None, sub, HistoryChange::Created, "test", sub.start_date)],
        ..Change::default()
    }
}
