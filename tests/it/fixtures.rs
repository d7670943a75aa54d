//! Builders for domain records used across the integration tests.

use chrono::{DateTime, Duration, TimeZone, Utc};
use shared::domain::{Subscription, SubscriptionSource, SubscriptionStatus, Tier, UserId};

pub fn day(n: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap() + Duration::days(n)
}

pub fn user(name: &str) -> UserId {
    UserId::parse(name).expect("valid test user id")
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

/// A record with its run-dependent fields (when it was written, its version) blanked, so
/// two runs that should end in the same state compare equal.
pub fn normalised(mut sub: Option<Subscription>) -> Option<Subscription> {
    if let Some(s) = sub.as_mut() {
        s.updated_at = DateTime::UNIX_EPOCH;
        s.start_date = DateTime::UNIX_EPOCH;
        s.version = 0;
    }
    sub
}
