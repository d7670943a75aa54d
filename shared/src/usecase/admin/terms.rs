//! Idempotency keys and fixed terms of the admin operations.
//!
//! # Idempotency
//! Every mutating Stripe call carries an [`IdempotencyKey`]:
//! - with an `Idempotency-Key` header: `admin:<operation>:<user>:key:<header>`; the caller
//!   declares two requests to be the same, whatever happened in between;
//! - without: `admin:<operation>:<user>:<sha256(canonical request | subscription id@version)>`.
//!   The local version is part of it so that the *same body sent again later* (cancel,
//!   reactivate, cancel) is a new operation at Stripe, while a retry of a request whose
//!   local commit never happened (same version) replays exactly the same Stripe calls.
//!
//! # Terms
//! A fixed term (granted trial, non-renewing paid subscription) starts at the next full
//! hour: Stripe rejects an idempotency key replayed with different parameters, so a term
//! computed from the exact `now` would turn every retry into an error; anchored to the
//! hour, retries within the hour send the same `trial_end`/`cancel_at`, and the customer
//! gets up to an hour more, never less.

use chrono::{DateTime, Months, Utc};
use sha2::{Digest, Sha256};

use super::AdminError;
use crate::{
    billing::IdempotencyKey,
    domain::{Billing, Subscription, SubscriptionRequest, UserId},
};

/// The key for one operation's Stripe calls (see the module docs).
pub fn idempotency_key(
    operation: &str,
    user: &UserId,
    header: Option<&str>,
    request: &str,
    state: Option<&Subscription>,
) -> IdempotencyKey {
    match header {
        Some(header) => IdempotencyKey::new(format!("admin:{operation}:{user}:key:{header}")),
        None => {
            let state = state.map_or_else(|| "none".to_owned(), |s| format!("{}@{}", s.id, s.version));
            let digest = hex::encode(Sha256::digest(format!("{request}|{state}").as_bytes()));
            IdempotencyKey::new(format!("admin:{operation}:{user}:{}", &digest[..32]))
        }
    }
}

/// The validated request in one canonical line (independent of JSON formatting and key order).
pub fn request_fingerprint(request: &SubscriptionRequest) -> String {
    let billing = match &request.billing {
        Billing::Paid { payment_method_id } => format!("paid:{payment_method_id}"),
        Billing::Granted => "granted".to_owned(),
    };
    format!(
        "tier={};months={};billing={billing};auto_renew={};comment={}",
        request.tier,
        request.duration_months,
        request.auto_renew,
        request.comment.as_deref().unwrap_or_default()
    )
}

/// The start of a fixed term: `now` rounded up to the next full hour.
pub fn term_anchor(now: DateTime<Utc>) -> DateTime<Utc> {
    let secs = now.timestamp();
    let rounded = secs.div_euclid(3600) * 3600 + if secs.rem_euclid(3600) == 0 && now.timestamp_subsec_nanos() == 0 { 0 } else { 3600 };
    DateTime::from_timestamp(rounded, 0).unwrap_or(now)
}

/// When a fixed term of `months` starting now ends.
pub fn term_end(now: DateTime<Utc>, months: u32) -> Result<DateTime<Utc>, AdminError> {
    let anchor = term_anchor(now);
    anchor.checked_add_months(Months::new(months)).ok_or_else(|| AdminError::Internal(format!("{anchor} + {months} months overflows")))
}

/// When a paid fixed term of `months` ends (Stripe `cancel_at`). Stripe bills every
/// period up to `cancel_at` and prorates a period it cuts: an end an hour *after* the
/// last period's end (the rounded-up anchor) would open one more period and charge for
/// that hour, so a paid term is anchored to the *previous* full hour instead — at most
/// the last hour is cut, and Stripe credits it. Stable within the hour, like the key.
pub fn paid_term_end(now: DateTime<Utc>, months: u32) -> Result<DateTime<Utc>, AdminError> {
    let up = term_anchor(now);
    let anchor = if up == now { now } else { up - chrono::Duration::hours(1) };
    anchor.checked_add_months(Months::new(months)).ok_or_else(|| AdminError::Internal(format!("{anchor} + {months} months overflows")))
}

/// Stripe refuses a `trial_end` more than 730 days ahead.
pub const STRIPE_MAX_TRIAL_DAYS: i64 = 730;

/// When a granted trial of `months` ends: the fixed term, but never past Stripe's limit
/// (24 months from the next full hour can be 731 days and an hour). The cap is anchored
/// to the hour too, so a retry within the hour sends the same value.
pub fn trial_end(now: DateTime<Utc>, months: u32) -> Result<DateTime<Utc>, AdminError> {
    let limit = term_anchor(now) + chrono::Duration::days(STRIPE_MAX_TRIAL_DAYS) - chrono::Duration::hours(1);
    Ok(term_end(now, months)?.min(limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserId {
        UserId::parse("u-1").unwrap()
    }

    #[test]
    fn granted_trials_stay_within_stripes_limit() {
        use chrono::TimeZone;
        // 24 months from the next hour crosses a leap day: 731 days, over Stripe's 730.
        let now = Utc.with_ymd_and_hms(2027, 3, 1, 10, 30, 0).unwrap();
        let end = trial_end(now, 24).unwrap();
        assert!(end <= now + chrono::Duration::days(STRIPE_MAX_TRIAL_DAYS), "{end}");
        assert_eq!(trial_end(now + chrono::Duration::minutes(20), 24).unwrap(), end, "stable within the hour");
        // Shorter trials are the full term.
        assert_eq!(trial_end(now, 3).unwrap(), term_end(now, 3).unwrap());
    }

    #[test]
    fn header_keys_ignore_body_and_state() {
        let a = idempotency_key("subscription.put", &user(), Some("abc"), "tier=premium", None);
        let b = idempotency_key("subscription.put", &user(), Some("abc"), "tier=enterprise", None);
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "admin:subscription.put:u-1:key:abc");
        assert_ne!(a, idempotency_key("subscription.cancel", &user(), Some("abc"), "", None));
        assert_ne!(a, idempotency_key("subscription.put", &UserId::parse("u-2").unwrap(), Some("abc"), "", None));
    }

    #[test]
    fn body_keys_follow_body_and_local_version() {
        let mut sub = crate::domain::subscription::tests::paid_sub();
        let first = idempotency_key("subscription.cancel", &user(), None, "at_period_end", Some(&sub));
        assert_eq!(first, idempotency_key("subscription.cancel", &user(), None, "at_period_end", Some(&sub)));
        assert_ne!(first, idempotency_key("subscription.cancel", &user(), None, "immediately", Some(&sub)));
        sub.version += 1;
        assert_ne!(first, idempotency_key("subscription.cancel", &user(), None, "at_period_end", Some(&sub)));
        assert!(first.as_str().len() <= 200);
    }

    #[test]
    fn long_headers_are_hashed_to_fit_stripe() {
        let key = idempotency_key("subscription.put", &user(), Some(&"k".repeat(255)), "", None);
        assert!(key.as_str().len() <= 255);
    }

    #[test]
    fn paid_terms_never_reach_past_the_last_period() {
        use chrono::TimeZone;
        let now = Utc.with_ymd_and_hms(2026, 1, 15, 10, 20, 0).unwrap();
        let end = paid_term_end(now, 3).unwrap();
        assert_eq!(end, Utc.with_ymd_and_hms(2026, 4, 15, 10, 0, 0).unwrap());
        assert!(end <= now.checked_add_months(Months::new(3)).unwrap(), "no extra period to bill");
        assert_eq!(paid_term_end(now + chrono::Duration::minutes(30), 3).unwrap(), end, "stable within the hour");
    }

    #[test]
    fn terms_are_anchored_to_the_next_hour() {
        use chrono::TimeZone;
        let at = |h, m, s| Utc.with_ymd_and_hms(2026, 1, 31, h, m, s).unwrap();
        assert_eq!(term_anchor(at(10, 0, 0)), at(10, 0, 0));
        assert_eq!(term_anchor(at(10, 0, 1)), at(11, 0, 0));
        assert_eq!(term_anchor(at(10, 59, 59)), at(11, 0, 0));
        assert_eq!(term_anchor(at(23, 30, 0)), Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap());
        // Month arithmetic clamps to the month's end (Jan 31 + 1 month = Feb 28).
        assert_eq!(term_end(at(9, 15, 0), 1).unwrap(), Utc.with_ymd_and_hms(2026, 2, 28, 10, 0, 0).unwrap());
    }
}
