//! The local subscription record and the rules that move it: bringing it in line
//! with Stripe's current state, and expiring it.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{StripeCustomerId, StripeSubscriptionId, SubscriptionStatus, Tier, UserId};

/// Where a subscription came from, which decides how it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionSource {
    /// Charged through Stripe; renews unless cancelled.
    Paid,
    /// A trial or comp granted by an admin: a Stripe trial without a card that
    /// ends by cancelling, never by charging.
    Granted,
    /// The free tier: no Stripe subscription at all.
    Free,
}

/// One user's current subscription (there is at most one per user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// Local id, stable for the life of this subscription (a new one replaces it on re-subscribe).
    pub id: String,
    pub user_id: UserId,
    pub tier: Tier,
    pub status: SubscriptionStatus,
    pub source: SubscriptionSource,
    pub start_date: DateTime<Utc>,
    /// End of the current period (paid), of the trial (granted), or `None` (free).
    pub end_date: Option<DateTime<Utc>>,
    pub auto_renew: bool,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<DateTime<Utc>>,
    pub stripe_customer_id: Option<StripeCustomerId>,
    pub stripe_subscription_id: Option<StripeSubscriptionId>,
    pub last_billing_date: Option<DateTime<Utc>>,
    pub next_billing_date: Option<DateTime<Utc>>,
    pub comment: Option<String>,
    /// Optimistic-concurrency version: every write expects the version it read.
    pub version: u64,
    pub updated_at: DateTime<Utc>,
}

/// What Stripe says about a subscription right now, in domain terms. The Stripe
/// adapter builds it from a freshly retrieved object, never from an event payload,
/// which is what makes webhook processing independent of delivery order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeSnapshot {
    pub subscription_id: StripeSubscriptionId,
    pub customer_id: StripeCustomerId,
    pub status: SubscriptionStatus,
    /// `None` when the price is not one of ours (the tier is then left as it was).
    pub tier: Option<Tier>,
    pub current_period_start: DateTime<Utc>,
    pub current_period_end: DateTime<Utc>,
    pub cancel_at_period_end: bool,
    pub cancel_at: Option<DateTime<Utc>>,
    pub canceled_at: Option<DateTime<Utc>>,
    pub trial_end: Option<DateTime<Utc>>,
    pub latest_invoice_paid_at: Option<DateTime<Utc>>,
    /// The user the subscription's `metadata.user_id` names: every subscription this
    /// service creates carries it, so an event can be applied before the creating call's
    /// own commit has written the id mappings.
    pub owner: Option<UserId>,
    /// The kind the creating call recorded in `metadata.source` (`paid` or `granted`).
    pub source: Option<SubscriptionSource>,
}

/// A change worth telling someone about, found by comparing the record before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Activated,
    Renewed { period_end: DateTime<Utc> },
    PaymentFailed,
    Canceled,
    Paused,
    Resumed,
    TierChanged { from: Tier, to: Tier },
    CancelScheduled,
    CancelWithdrawn,
}

impl Subscription {
    /// Whether a subscription with this status renews by itself at `end_date`.
    pub fn renews(&self) -> bool {
        self.source == SubscriptionSource::Paid && self.auto_renew && !self.cancel_at_period_end
    }

    /// Whole days left until `end_date`, rounded up, never negative; `None` without an end.
    pub fn days_remaining(&self, now: DateTime<Utc>) -> Option<i64> {
        self.end_date.map(|end| {
            let secs = (end - now).num_seconds();
            if secs <= 0 {
                0
            } else {
                (secs + 86_399) / 86_400
            }
        })
    }

    /// The record after Stripe's current state is applied, and what changed.
    /// `None` when the record already says what Stripe says (a repeated or stale event).
    pub fn apply_stripe(&self, snap: &StripeSnapshot, now: DateTime<Utc>) -> Option<(Subscription, Vec<Transition>)> {
        // A record the expiry job already ended and downgraded stays ended: Stripe's own
        // later "canceled" for the same subscription adds nothing and must not restore the tier.
        if self.status == SubscriptionStatus::Expired && snap.status.is_terminal() {
            return None;
        }
        let mut next = self.clone();
        next.status = snap.status;
        if let Some(tier) = snap.tier {
            next.tier = tier;
        }
        next.stripe_customer_id = Some(snap.customer_id.clone());
        next.stripe_subscription_id = Some(snap.subscription_id.clone());
        // A fixed term (`cancel_at` beyond this period): Stripe keeps billing each period
        // until the term ends, so access runs to the term's end, not to the period's.
        let term_end = snap.cancel_at.filter(|end| *end > snap.current_period_end);
        next.end_date = Some(match (snap.status, snap.trial_end) {
            (SubscriptionStatus::Trial, Some(trial_end)) => trial_end,
            _ => term_end.unwrap_or(snap.current_period_end),
        });
        next.cancel_at_period_end = snap.cancel_at_period_end || snap.cancel_at.is_some_and(|end| end <= snap.current_period_end);
        next.auto_renew = self.source == SubscriptionSource::Paid && !next.cancel_at_period_end && snap.cancel_at.is_none();
        next.canceled_at = snap.canceled_at;
        if snap.latest_invoice_paid_at.is_some() {
            next.last_billing_date = snap.latest_invoice_paid_at;
        }
        let charges_again = next.renews() || (self.source == SubscriptionSource::Paid && term_end.is_some());
        next.next_billing_date = (charges_again && !snap.status.is_terminal()).then_some(snap.current_period_end);
        if next.status.is_terminal() {
            next.auto_renew = false;
        }

        if next == *self {
            return None;
        }
        let transitions = transitions(self, &next);
        next.version = self.version + 1;
        next.updated_at = now;
        Some((next, transitions))
    }

    /// The record expired and downgraded to free, when its end (plus `grace`) has passed
    /// while it is still live; `None` otherwise.
    pub fn expire(&self, now: DateTime<Utc>, grace: Duration) -> Option<Subscription> {
        let end = self.end_date?;
        if !self.status.is_live() || now < end + grace {
            return None;
        }
        let mut next = self.clone();
        next.status = SubscriptionStatus::Expired;
        next.tier = Tier::Free;
        next.auto_renew = false;
        next.next_billing_date = None;
        next.version = self.version + 1;
        next.updated_at = now;
        Some(next)
    }
}

fn transitions(before: &Subscription, after: &Subscription) -> Vec<Transition> {
    use SubscriptionStatus as S;
    let mut out = Vec::new();
    match (before.status, after.status) {
        (a, b) if a == b => {}
        (_, S::Active) if matches!(before.status, S::Paused) => out.push(Transition::Resumed),
        (S::PastDue | S::Unpaid, S::Active) => {}
        (_, S::Active | S::Trial) => out.push(Transition::Activated),
        (_, S::PastDue | S::Unpaid) => out.push(Transition::PaymentFailed),
        (_, S::Canceled | S::IncompleteExpired) => out.push(Transition::Canceled),
        (_, S::Paused) => out.push(Transition::Paused),
        _ => {}
    }
    if let (Some(old), Some(new)) = (before.end_date, after.end_date) {
        if new > old && after.status == S::Active && before.status != S::Incomplete {
            out.push(Transition::Renewed { period_end: new });
        }
    }
    if before.tier != after.tier && !after.status.is_terminal() {
        out.push(Transition::TierChanged { from: before.tier, to: after.tier });
    }
    if !after.status.is_terminal() {
        match (before.cancel_at_period_end, after.cancel_at_period_end) {
            (false, true) => out.push(Transition::CancelScheduled),
            (true, false) => out.push(Transition::CancelWithdrawn),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeZone;

    pub fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::days(i64::from(day) - 1)
    }

    pub fn paid_sub() -> Subscription {
        Subscription {
            id: "s1".into(),
            user_id: UserId::parse("u1").unwrap(),
            tier: Tier::Premium,
            status: SubscriptionStatus::Active,
            source: SubscriptionSource::Paid,
            start_date: at(1),
            end_date: Some(at(32)),
            auto_renew: true,
            cancel_at_period_end: false,
            canceled_at: None,
            stripe_customer_id: Some(StripeCustomerId::parse("cus_1").unwrap()),
            stripe_subscription_id: Some(StripeSubscriptionId::parse("sub_1").unwrap()),
            last_billing_date: Some(at(1)),
            next_billing_date: Some(at(32)),
            comment: None,
            version: 3,
            updated_at: at(1),
        }
    }

    fn snapshot(status: SubscriptionStatus, end: DateTime<Utc>) -> StripeSnapshot {
        StripeSnapshot {
            subscription_id: StripeSubscriptionId::parse("sub_1").unwrap(),
            customer_id: StripeCustomerId::parse("cus_1").unwrap(),
            status,
            tier: Some(Tier::Premium),
            current_period_start: end - Duration::days(31),
            current_period_end: end,
            cancel_at_period_end: false,
            cancel_at: None,
            canceled_at: None,
            trial_end: None,
            latest_invoice_paid_at: Some(at(1)),
            owner: None,
            source: None,
        }
    }

    #[test]
    fn same_state_is_a_no_op() {
        assert!(paid_sub().apply_stripe(&snapshot(SubscriptionStatus::Active, at(32)), at(5)).is_none());
    }

    #[test]
    fn renewal_moves_the_period_and_bumps_the_version() {
        let mut snap = snapshot(SubscriptionStatus::Active, at(60));
        snap.latest_invoice_paid_at = Some(at(32));
        let (next, transitions) = paid_sub().apply_stripe(&snap, at(32)).unwrap();
        assert_eq!(next.end_date, Some(at(60)));
        assert_eq!(next.last_billing_date, Some(at(32)));
        assert_eq!(next.version, 4);
        assert_eq!(transitions, [Transition::Renewed { period_end: at(60) }]);
    }

    #[test]
    fn failure_cancel_and_tier_change_are_reported() {
        let (next, t) = paid_sub().apply_stripe(&snapshot(SubscriptionStatus::PastDue, at(32)), at(33)).unwrap();
        assert_eq!(t, [Transition::PaymentFailed]);
        let (_, t) = next.apply_stripe(&snapshot(SubscriptionStatus::Canceled, at(32)), at(40)).unwrap();
        assert_eq!(t, [Transition::Canceled]);
        let mut snap = snapshot(SubscriptionStatus::Active, at(32));
        snap.tier = Some(Tier::Enterprise);
        let (_, t) = paid_sub().apply_stripe(&snap, at(10)).unwrap();
        assert_eq!(t, [Transition::TierChanged { from: Tier::Premium, to: Tier::Enterprise }]);
    }

    #[test]
    fn scheduled_cancel_turns_off_renewal() {
        let mut snap = snapshot(SubscriptionStatus::Active, at(32));
        snap.cancel_at_period_end = true;
        let (next, t) = paid_sub().apply_stripe(&snap, at(10)).unwrap();
        assert!(!next.auto_renew && next.cancel_at_period_end && next.next_billing_date.is_none());
        assert_eq!(t, [Transition::CancelScheduled]);
    }

    #[test]
    fn a_fixed_term_runs_to_its_end_across_monthly_renewals() {
        let mut snap = snapshot(SubscriptionStatus::Active, at(32));
        snap.cancel_at = Some(at(91));
        let (next, t) = paid_sub().apply_stripe(&snap, at(2)).unwrap();
        assert_eq!(next.end_date, Some(at(91)), "access until the term ends, not the first period");
        assert!(!next.auto_renew && !next.cancel_at_period_end && !next.renews());
        assert_eq!(next.next_billing_date, Some(at(32)), "Stripe still charges each period of the term");
        assert!(!t.contains(&Transition::CancelScheduled), "a term is not a cancellation: {t:?}");
        // A renewal inside the term keeps the end.
        snap.current_period_start = at(32);
        snap.current_period_end = at(60);
        let (renewed, _) = next.apply_stripe(&snap, at(32)).unwrap();
        assert_eq!((renewed.end_date, renewed.next_billing_date), (Some(at(91)), Some(at(60))));
        // The last period ends at the term: a period-end cancellation.
        snap.current_period_start = at(60);
        snap.current_period_end = at(91);
        let (last, _) = renewed.apply_stripe(&snap, at(60)).unwrap();
        assert!(last.cancel_at_period_end && last.next_billing_date.is_none());
        assert_eq!(last.end_date, Some(at(91)));
    }

    #[test]
    fn expiry_waits_for_end_plus_grace_and_downgrades() {
        let sub = paid_sub();
        assert!(sub.expire(at(32), Duration::days(1)).is_none());
        let expired = sub.expire(at(33), Duration::days(1)).unwrap();
        assert_eq!((expired.status, expired.tier, expired.version), (SubscriptionStatus::Expired, Tier::Free, 4));
        assert!(expired.expire(at(90), Duration::zero()).is_none(), "an expired record does not expire twice");
    }

    #[test]
    fn a_late_cancel_does_not_revive_an_expired_record() {
        let expired = paid_sub().expire(at(40), Duration::zero()).unwrap();
        assert!(expired.apply_stripe(&snapshot(SubscriptionStatus::Canceled, at(32)), at(41)).is_none());
    }

    #[test]
    fn days_remaining_rounds_up_and_floors_at_zero() {
        let sub = paid_sub();
        assert_eq!(sub.days_remaining(at(31)), Some(1));
        assert_eq!(sub.days_remaining(at(31) + Duration::hours(1)), Some(1));
        assert_eq!(sub.days_remaining(at(29)), Some(3));
        assert_eq!(sub.days_remaining(at(40)), Some(0));
    }
}
