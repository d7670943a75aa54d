//! What each notification says, as typed data.
//!
//! A producer (webhook, jobs, admin API) builds one of the `*Context` structs and
//! wraps it in [`EmailContext`], which the outbox stores as it is
//! (`OutboxPayload::Email`): serialised as `"kind": <kind>, "context": {facts}`, so the
//! kind and the facts can never disagree, and an item whose stored facts no longer
//! parse is refused when it is read, never rendered half.
//!
//! Contexts carry facts only (plan, amounts, dates, Stripe links): the greeting,
//! the recipient and the app's links come from the profile and configuration at
//! send time. Unknown fields are ignored on parsing, so an item queued by a newer
//! deploy can still be delivered by an older one during a rollout.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::{Currency, Money, NotificationKind, OutboxItem, Tier, UserId};

/// A new subscription started (paid or granted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionConfirmationContext {
    /// The plan subscribed to; the e-mail lists its features.
    pub plan: Tier,
    /// End of the first period or of the granted access; `None` when open-ended.
    pub period_end: Option<DateTime<Utc>>,
    /// Whether the subscription renews (and charges) at `period_end`.
    pub auto_renew: bool,
}

/// A payment succeeded (first charge or renewal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentReceiptContext {
    /// The amount paid, in the currency's minor units.
    pub amount: Money,
    /// The plan the payment was for.
    pub plan: Tier,
    /// Stripe's invoice number, e.g. `A1B2C3-0001`.
    pub invoice_number: Option<String>,
    /// Stripe's hosted invoice page (shows the invoice and a PDF receipt).
    pub hosted_invoice_url: Option<String>,
    /// The service period the payment covers.
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
}

/// A charge failed; the user should update their card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFailedContext {
    /// The amount that could not be collected.
    pub amount: Money,
    /// The plan the payment was for.
    pub plan: Tier,
    /// The card issuer's reason as Stripe words it for customers, when known.
    pub failure_reason: Option<String>,
    /// When Stripe will try again, if it will.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Stripe's hosted invoice page, where the user can pay right away.
    pub hosted_invoice_url: Option<String>,
}

/// A subscription that will *not* renew ends soon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryWarningContext {
    pub plan: Tier,
    /// Whole days until `end_date` (as the job computed them for its "now").
    pub days_remaining: i64,
    /// When access to the plan ends.
    pub end_date: DateTime<Utc>,
}

/// A subscription that *will* renew (and charge) soon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalReminderContext {
    pub plan: Tier,
    /// Whole days until `renewal_date`.
    pub days_remaining: i64,
    /// When the renewal charge happens.
    pub renewal_date: DateTime<Utc>,
    /// The expected charge, when known.
    pub amount: Option<Money>,
}

/// A subscription ended and the account went back to the free tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionExpiredContext {
    /// The plan that ended.
    pub plan: Tier,
    /// When it ended.
    pub ended_at: DateTime<Utc>,
}

/// A trial ends soon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrialEndingContext {
    pub plan: Tier,
    /// Whole days until `trial_end`.
    pub days_remaining: i64,
    pub trial_end: DateTime<Utc>,
    /// With a card on file the trial converts to a paid plan; without one it ends.
    pub has_payment_method: bool,
}

/// The plan changed (upgrade or downgrade).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanChangedContext {
    pub previous_plan: Tier,
    pub new_plan: Tier,
    /// When the new plan took (or takes) effect.
    pub effective_date: DateTime<Utc>,
}

/// A cancellation was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancellationConfirmedContext {
    pub plan: Tier,
    /// When access ends: the period end, or the cancellation time when immediate.
    pub access_until: DateTime<Utc>,
    /// Cancelled now rather than at the period end (then it cannot be undone).
    pub immediate: bool,
}

/// Declares [`EmailContext`] with one variant per notification kind, plus the
/// mapping both ways, so adding a kind is one line here (and the compiler points
/// at every `match` that needs it).
macro_rules! email_contexts {
    ($($variant:ident($context:ident)),+ $(,)?) => {
        /// The facts of one notification, tied to its [`NotificationKind`] (whose
        /// snake_case names are the serialised `kind`).
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "kind", content = "context", rename_all = "snake_case")]
        pub enum EmailContext {
            $($variant($context),)+
        }

        impl EmailContext {
            /// The notification this context belongs to.
            pub fn kind(&self) -> NotificationKind {
                match self {
                    $(Self::$variant(_) => NotificationKind::$variant,)+
                }
            }

            /// The facts alone, as templates see them.
            pub fn to_value(&self) -> serde_json::Value {
                let value = match self {
                    $(Self::$variant(context) => serde_json::to_value(context),)+
                };
                // Serialising these structs cannot fail: they hold only strings,
                // integers, booleans, dates and enums, and no maps with non-string keys.
                value.expect("e-mail contexts always serialise to JSON")
            }
        }

        $(
            impl From<$context> for EmailContext {
                fn from(context: $context) -> Self {
                    Self::$variant(context)
                }
            }
        )+
    };
}

email_contexts! {
    SubscriptionConfirmation(SubscriptionConfirmationContext),
    PaymentReceipt(PaymentReceiptContext),
    PaymentFailed(PaymentFailedContext),
    ExpiryWarning(ExpiryWarningContext),
    RenewalReminder(RenewalReminderContext),
    SubscriptionExpired(SubscriptionExpiredContext),
    TrialEnding(TrialEndingContext),
    PlanChanged(PlanChangedContext),
    CancellationConfirmed(CancellationConfirmedContext),
}

impl EmailContext {
    /// The facts without what identifies or reaches the person: the hosted invoice link
    /// (a bearer URL to a page with the customer's name and address) and the issuer's
    /// decline reason. Amounts, plans, dates and invoice numbers stay: they are the
    /// financial record an erasure keeps. A new context with such a field adds it here.
    pub fn anonymised(self) -> Self {
        match self {
            Self::PaymentReceipt(c) => Self::PaymentReceipt(PaymentReceiptContext { hosted_invoice_url: None, ..c }),
            Self::PaymentFailed(c) => Self::PaymentFailed(PaymentFailedContext { hosted_invoice_url: None, failure_reason: None, ..c }),
            other => other,
        }
    }

    /// The outbox item that delivers this e-mail; `dedupe` names the logical
    /// notification (e.g. the Stripe invoice id), so queuing it twice is a no-op.
    pub fn outbox_item(&self, user_id: &UserId, dedupe: &str, now: DateTime<Utc>) -> OutboxItem {
        OutboxItem::email(user_id, dedupe, self.clone(), now)
    }

    /// One realistic context per kind, in [`NotificationKind::ALL`] order: used for
    /// previews and for the start-up check that every template renders.
    pub fn samples() -> Vec<EmailContext> {
        // Fixed dates: samples must render the same on every run (no clock reads).
        // The literals below are valid, so the `expect`s cannot fire.
        let day = |d: u32| Utc.with_ymd_and_hms(2026, 3, d, 9, 30, 0).single().expect("a valid March 2026 date");
        let usd = |amount: i64| Money::new(amount, Currency::parse("usd").expect("`usd` is an ISO 4217 code"));
        vec![
            SubscriptionConfirmationContext { plan: Tier::Premium, period_end: Some(day(31)), auto_renew: true }.into(),
            PaymentReceiptContext {
                amount: usd(1999),
                plan: Tier::Premium,
                invoice_number: Some("LS-2026-0042".into()),
                hosted_invoice_url: Some("https://invoice.stripe.com/i/acct_sample/test_sample".into()),
                period_start: Some(day(1)),
                period_end: Some(day(31)),
            }
            .into(),
            PaymentFailedContext {
                amount: usd(1999),
                plan: Tier::Premium,
                failure_reason: Some("Your card was declined.".into()),
                next_attempt_at: Some(day(15)),
                hosted_invoice_url: Some("https://invoice.stripe.com/i/acct_sample/test_sample".into()),
            }
            .into(),
            ExpiryWarningContext { plan: Tier::Enterprise, days_remaining: 7, end_date: day(19) }.into(),
            RenewalReminderContext { plan: Tier::Premium, days_remaining: 3, renewal_date: day(15), amount: Some(usd(1999)) }.into(),
            SubscriptionExpiredContext { plan: Tier::Premium, ended_at: day(12) }.into(),
            TrialEndingContext { plan: Tier::Premium, days_remaining: 1, trial_end: day(13), has_payment_method: false }.into(),
            PlanChangedContext { previous_plan: Tier::Premium, new_plan: Tier::Enterprise, effective_date: day(12) }.into(),
            CancellationConfirmedContext { plan: Tier::Premium, access_until: day(31), immediate: false }.into(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_cover_every_kind_in_order() {
        let kinds: Vec<_> = EmailContext::samples().iter().map(EmailContext::kind).collect();
        assert_eq!(kinds, NotificationKind::ALL);
    }

    #[test]
    fn every_sample_round_trips_as_kind_and_facts() {
        for sample in EmailContext::samples() {
            let stored = serde_json::to_value(&sample).unwrap();
            assert_eq!(stored["kind"], sample.kind().as_str());
            assert_eq!(stored["context"], sample.to_value(), "{:?}", sample.kind());
            assert_eq!(serde_json::from_value::<EmailContext>(stored).unwrap(), sample);
        }
    }

    #[test]
    fn facts_stored_under_the_wrong_kind_are_rejected() {
        let receipt = EmailContext::samples().remove(1);
        let mislabelled = serde_json::json!({"kind": "plan_changed", "context": receipt.to_value()});
        assert!(serde_json::from_value::<EmailContext>(mislabelled).is_err());
    }

    #[test]
    fn the_outbox_keeps_the_stored_shape_of_earlier_items() {
        let context = EmailContext::from(ExpiryWarningContext {
            plan: Tier::Premium,
            days_remaining: 3,
            end_date: Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap(),
        });
        let user = UserId::parse("u-1").unwrap();
        let item = context.outbox_item(&user, "sub_1:2026-01-02", Utc::now());
        assert_eq!(item.id, "email:expiry_warning:sub_1:2026-01-02");
        // As items queued before the context was typed were written (and may still be pending).
        let earlier = r#"{"type":"email","kind":"expiry_warning","user_id":"u-1","context":{"plan":"premium","days_remaining":3,"end_date":"2026-01-02T00:00:00Z"}}"#;
        let parsed: crate::domain::OutboxPayload = serde_json::from_str(earlier).unwrap();
        assert_eq!(parsed, item.payload);
        assert_eq!(serde_json::to_value(&item.payload).unwrap(), serde_json::from_str::<serde_json::Value>(earlier).unwrap());
    }
}
