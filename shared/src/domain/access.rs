//! Whether a subscription grants access at a given instant.

use chrono::{DateTime, Duration, Utc};

use super::{Subscription, SubscriptionStatus, Tier};

/// The knobs of the access rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessPolicy {
    /// How long a `past_due` subscription (or a renewing one whose renewal has not
    /// been confirmed yet) keeps access after its period end.
    pub past_due_grace: Duration,
}

impl Default for AccessPolicy {
    fn default() -> Self {
        Self { past_due_grace: Duration::days(7) }
    }
}

impl AccessPolicy {
    /// The one rule: trial and active grant access until their end (a renewing paid
    /// subscription also through the grace, so a late renewal webhook locks no one
    /// out); past_due only during the grace after its period end; a subscription
    /// cancelled at period end until that end; every other status never.
    pub fn grants_access(&self, sub: &Subscription, now: DateTime<Utc>) -> bool {
        use SubscriptionStatus as S;
        match (sub.status, sub.end_date) {
            (S::Active | S::Trial, None) => true,
            (S::Active | S::Trial, Some(end)) if sub.renews() => now < end + self.past_due_grace,
            (S::Active | S::Trial, Some(end)) => now < end,
            (S::PastDue, Some(end)) => now < end + self.past_due_grace,
            _ => false,
        }
    }

    /// The tier the user can use right now: the subscription's, or free.
    pub fn effective_tier(&self, sub: &Subscription, now: DateTime<Utc>) -> Tier {
        if self.grants_access(sub, now) {
            sub.tier
        } else {
            Tier::Free
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::subscription::tests::{at, paid_sub};
    use crate::domain::SubscriptionSource;
    use proptest::prelude::*;

    const ALL: [SubscriptionStatus; 9] = [
        SubscriptionStatus::Active,
        SubscriptionStatus::Trial,
        SubscriptionStatus::PastDue,
        SubscriptionStatus::Canceled,
        SubscriptionStatus::Expired,
        SubscriptionStatus::Incomplete,
        SubscriptionStatus::IncompleteExpired,
        SubscriptionStatus::Unpaid,
        SubscriptionStatus::Paused,
    ];

    #[test]
    fn trial_until_its_end() {
        let mut sub = paid_sub();
        sub.status = SubscriptionStatus::Trial;
        sub.source = SubscriptionSource::Granted;
        sub.auto_renew = false;
        let policy = AccessPolicy::default();
        assert!(policy.grants_access(&sub, at(31)));
        assert!(!policy.grants_access(&sub, at(32)));
    }

    #[test]
    fn past_due_only_during_grace() {
        let mut sub = paid_sub();
        sub.status = SubscriptionStatus::PastDue;
        let policy = AccessPolicy { past_due_grace: Duration::days(3) };
        assert!(policy.grants_access(&sub, at(34)));
        assert!(!policy.grants_access(&sub, at(35)));
    }

    #[test]
    fn cancel_at_period_end_until_the_period_ends() {
        let mut sub = paid_sub();
        sub.cancel_at_period_end = true;
        let policy = AccessPolicy::default();
        assert!(policy.grants_access(&sub, at(31)));
        assert!(!policy.grants_access(&sub, at(32)));
        assert_eq!(policy.effective_tier(&sub, at(32)), Tier::Free);
    }

    proptest! {
        #[test]
        fn ended_and_unpaid_statuses_never_grant(idx in 3usize..9, day in 0u32..90) {
            let mut sub = paid_sub();
            sub.status = ALL[idx];
            prop_assert!(!AccessPolicy::default().grants_access(&sub, at(1) + Duration::days(day.into())));
        }

        #[test]
        fn access_is_monotone_in_time(idx in 0usize..9, a in 0u32..90, b in 0u32..90) {
            // Once access is gone it does not come back by itself.
            let mut sub = paid_sub();
            sub.status = ALL[idx];
            let (early, late) = (a.min(b), a.max(b));
            let p = AccessPolicy::default();
            let t = |d: u32| at(1) + Duration::days(d.into());
            prop_assert!(!p.grants_access(&sub, t(late)) || p.grants_access(&sub, t(early)));
        }
    }
}
