//! Telling a user their subscription ends (or renews) soon.
//!
//! Each subscription gets the mail of the *narrowest* window it is in, so one first seen
//! two hours before its end gets one mail, not two. The dedupe id is
//! `<subscription id>:<period end>:<window>d`: at most one mail per period and window
//! however often the job runs, and the outbox's deterministic id makes a rerun a no-op even
//! when two runs race. Subscriptions that renew by themselves (`renews()`) get a renewal
//! reminder instead of an expiry warning. Only `active` and `trial` subscriptions are
//! warned: a `past_due` one is already getting Stripe's payment-failed mails.
//!
//! A warning changes no subscription, so it is committed as an outbox item alone (one small
//! transaction) and not written to the history, which lists subscription changes only.

use chrono::{DateTime, Duration, Utc};
use tracing::instrument;

use super::{Lifecycle, LifecycleError};
use crate::{
    domain::mail::{EmailContext, ExpiryWarningContext, RenewalReminderContext},
    domain::{Subscription, SubscriptionStatus, Tier},
    store::{keys, Change},
};

/// What one subscription should be told, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The window reached, in days.
    pub window: u32,
    pub renewal: bool,
    pub dedupe: String,
    pub context: EmailContext,
}

/// What warning one subscription did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warned {
    /// In no window (or not a warned status): nothing to say.
    NotDue,
    /// This period's mail for this window is already queued (a rerun).
    AlreadyQueued,
    /// Queued now: a renewal reminder or an expiry warning.
    Queued { renewal: bool },
}

/// The warning `sub` is due at `now` with these windows (any order), if any.
pub fn warning_for(sub: &Subscription, now: DateTime<Utc>, windows: &[u32]) -> Option<Warning> {
    if !matches!(sub.status, SubscriptionStatus::Active | SubscriptionStatus::Trial) || sub.tier == Tier::Free {
        return None;
    }
    let end = sub.end_date?;
    if end <= now {
        return None;
    }
    // The narrowest window that still contains the end.
    let window = windows.iter().copied().filter(|days| end <= now + Duration::days(i64::from(*days))).min()?;
    let days_remaining = sub.days_remaining(now).unwrap_or(0);
    let renewal = sub.renews();
    let context = if renewal {
        EmailContext::from(RenewalReminderContext { plan: sub.tier, days_remaining, renewal_date: end, amount: None })
    } else {
        EmailContext::from(ExpiryWarningContext { plan: sub.tier, days_remaining, end_date: end })
    };
    Some(Warning { window, renewal, dedupe: format!("{}:{}:{window}d", sub.id, keys::timestamp(end)), context })
}

impl Lifecycle {
    /// Queues the warning `sub` is due at `now`, once per period and window.
    #[instrument(skip_all, fields(user_id = %sub.user_id, subscription_id = %sub.id))]
    pub async fn warn(&self, sub: &Subscription, now: DateTime<Utc>) -> Result<Warned, LifecycleError> {
        let Some(warning) = warning_for(sub, now, &self.rules.windows) else { return Ok(Warned::NotDue) };
        let item = warning.context.outbox_item(&sub.user_id, &warning.dedupe, now);
        // A cheap read first: a rerun finds the item and writes nothing (the commit would
        // drop it anyway; this also keeps the counts honest).
        if self.store.outbox_item(&item.id).await?.is_some() {
            return Ok(Warned::AlreadyQueued);
        }
        let outbox_id = item.id.clone();
        self.store.commit(Change { user_id: Some(sub.user_id.clone()), outbox: vec![item], ..Change::default() }).await?;
        tracing::info!(outbox_id, window_days = warning.window, renewal = warning.renewal, "warning queued");
        Ok(Warned::Queued { renewal: warning.renewal })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NotificationKind;
    use chrono::TimeZone;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).single().unwrap_or_default()
    }

    fn sub(end: DateTime<Utc>, renews: bool) -> Subscription {
        Subscription { auto_renew: renews, cancel_at_period_end: !renews, version: 1, ..super::super::tests::sub(end) }
    }

    #[test]
    fn one_mail_for_the_narrowest_window() {
        let s = sub(at(13, 0), false);
        assert!(warning_for(&s, at(9, 6), &[3, 1]).is_none(), "four days out: nothing yet");
        let w = warning_for(&s, at(10, 6), &[3, 1]).unwrap();
        assert_eq!((w.window, w.renewal), (3, false));
        assert_eq!(w.dedupe, "s1:2026-03-13T00:00:00.000Z:3d");
        assert_eq!(w.context.kind(), NotificationKind::ExpiryWarning);
        // The same window on the next day: same dedupe id, so the outbox keeps one.
        assert_eq!(warning_for(&s, at(11, 6), &[3, 1]).unwrap().dedupe, w.dedupe);
        let last = warning_for(&s, at(12, 6), &[3, 1]).unwrap();
        assert_eq!(last.window, 1);
        assert_eq!(last.dedupe, "s1:2026-03-13T00:00:00.000Z:1d");
        // Without a reminder window, the last day is still the 3-day warning.
        assert_eq!(warning_for(&s, at(12, 6), &[3]).unwrap().dedupe, w.dedupe);
        assert!(warning_for(&s, at(13, 6), &[3, 1]).is_none(), "ended: that is the expiry's");
    }

    #[test]
    fn renewing_subscriptions_get_a_reminder_and_others_nothing() {
        let w = warning_for(&sub(at(13, 0), true), at(11, 0), &[3]).unwrap();
        assert!(w.renewal);
        assert_eq!(w.context.kind(), NotificationKind::RenewalReminder);
        let mut past_due = sub(at(13, 0), true);
        past_due.status = SubscriptionStatus::PastDue;
        assert!(warning_for(&past_due, at(11, 0), &[3]).is_none());
    }
}
