//! From Stripe objects to the port's domain types.
//!
//! The Stripe structs are huge and only constructible by deserialising, so each
//! conversion first reads the handful of fields it needs into a plain struct
//! (`*Facts`), and the rules live in functions over those, which the unit tests drive.

use chrono::{DateTime, TimeZone, Utc};
use stripe_shared::{Invoice, PaymentIntentStatus, Subscription};
use stripe_types::{Expandable, Timestamp};

use crate::billing::{BillingError, InvoiceSnapshot, InvoiceStatus, PaymentAction};
use crate::domain::{
    Currency, Money, StripeCustomerId, StripeSnapshot, StripeSubscriptionId, SubscriptionSource, SubscriptionStatus, UserId,
};

use super::config::StripeConfig;

/// The fields of a Stripe subscription a snapshot is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubscriptionFacts<'a> {
    pub id: &'a str,
    pub customer: &'a str,
    pub status: &'a str,
    /// Price and period of the first item; this API version keeps the billing period on
    /// the items, not on the subscription.
    pub first_item: Option<ItemFacts<'a>>,
    pub cancel_at_period_end: bool,
    pub cancel_at: Option<Timestamp>,
    pub canceled_at: Option<Timestamp>,
    pub trial_end: Option<Timestamp>,
    /// `latest_invoice.status_transitions.paid_at`, when the invoice was expanded.
    pub latest_invoice_paid_at: Option<Timestamp>,
    /// `metadata.user_id` and `metadata.source`, as the creating call set them.
    pub metadata_user: Option<&'a str>,
    pub metadata_source: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ItemFacts<'a> {
    pub price: &'a str,
    pub period_start: Timestamp,
    pub period_end: Timestamp,
}

impl<'a> SubscriptionFacts<'a> {
    pub fn of(sub: &'a Subscription) -> Self {
        Self {
            id: sub.id.as_str(),
            customer: sub.customer.id().as_str(),
            status: sub.status.as_str(),
            first_item: sub.items.data.first().map(|item| ItemFacts {
                price: item.price.id.as_str(),
                period_start: item.current_period_start,
                period_end: item.current_period_end,
            }),
            cancel_at_period_end: sub.cancel_at_period_end,
            cancel_at: sub.cancel_at,
            canceled_at: sub.canceled_at,
            trial_end: sub.trial_end,
            latest_invoice_paid_at: sub
                .latest_invoice
                .as_ref()
                .and_then(Expandable::as_object)
                .and_then(|invoice| invoice.status_transitions.paid_at),
            metadata_user: sub.metadata.get(USER_ID_METADATA).map(String::as_str),
            metadata_source: sub.metadata.get(SOURCE_METADATA).map(String::as_str),
        }
    }
}

/// The metadata key that ties a Stripe object to a LogiScore user.
pub(crate) const USER_ID_METADATA: &str = "user_id";
/// The metadata key that records how a subscription was created (`paid` / `granted`).
pub(crate) const SOURCE_METADATA: &str = "source";
/// The metadata key naming the admin operation that created a subscription, so a request
/// that finds the operation unfinished can find what it created.
pub(crate) const OPERATION_METADATA: &str = "operation_id";

/// The `metadata.source` value of a subscription of `source`.
pub(crate) fn source_metadata(source: SubscriptionSource) -> &'static str {
    match source {
        SubscriptionSource::Paid => "paid",
        SubscriptionSource::Granted => "granted",
        SubscriptionSource::Free => "free",
    }
}

fn source_from_metadata(value: &str) -> Option<SubscriptionSource> {
    match value {
        "paid" => Some(SubscriptionSource::Paid),
        "granted" => Some(SubscriptionSource::Granted),
        _ => None,
    }
}

pub(crate) fn snapshot(facts: &SubscriptionFacts<'_>, prices: &StripeConfig) -> Result<StripeSnapshot, BillingError> {
    let status = SubscriptionStatus::from_stripe(facts.status)
        .ok_or_else(|| BillingError::Unexpected(format!("subscription {} has unknown status `{}`", facts.id, facts.status)))?;
    let item = facts.first_item.as_ref().ok_or_else(|| BillingError::Unexpected(format!("subscription {} has no items", facts.id)))?;
    Ok(StripeSnapshot {
        subscription_id: subscription_id(facts.id)?,
        customer_id: customer_id(facts.customer)?,
        status,
        tier: prices.tier_for(item.price),
        current_period_start: timestamp(item.period_start)?,
        current_period_end: timestamp(item.period_end)?,
        cancel_at_period_end: facts.cancel_at_period_end,
        cancel_at: facts.cancel_at.map(timestamp).transpose()?,
        canceled_at: facts.canceled_at.map(timestamp).transpose()?,
        trial_end: facts.trial_end.map(timestamp).transpose()?,
        latest_invoice_paid_at: facts.latest_invoice_paid_at.map(timestamp).transpose()?,
        // Metadata is ours to read, not to trust blindly: an unparsable value names no one.
        owner: facts.metadata_user.and_then(|id| UserId::parse(id).ok()),
        source: facts.metadata_source.and_then(source_from_metadata),
    })
}

pub(crate) fn subscription_snapshot(sub: &Subscription, prices: &StripeConfig) -> Result<StripeSnapshot, BillingError> {
    snapshot(&SubscriptionFacts::of(sub), prices)
}

pub(crate) fn invoice_snapshot(invoice: &Invoice) -> Result<InvoiceSnapshot, BillingError> {
    let id =
        invoice.id.as_ref().map(|id| id.as_str().to_owned()).ok_or_else(|| BillingError::Unexpected("invoice without an id".into()))?;
    let customer = invoice.customer.as_ref().ok_or_else(|| BillingError::Unexpected(format!("invoice {id} has no customer")))?;
    let currency = currency(&invoice.currency.to_string())?;
    // Since API 2025-03-31 the subscription hangs off `parent.subscription_details`;
    // the top-level field is only read as a fallback for older payloads.
    let subscription = invoice
        .parent
        .as_ref()
        .and_then(|parent| parent.subscription_details.as_ref())
        .map(|details| details.subscription.id().as_str())
        .or_else(|| invoice.subscription.as_ref().map(|s| s.id().as_str()));
    Ok(InvoiceSnapshot {
        customer_id: customer_id(customer.id().as_str())?,
        subscription_id: subscription.map(subscription_id).transpose()?,
        status: InvoiceStatus::parse(invoice.status.as_ref().map(|s| s.as_str()))
            .ok_or_else(|| BillingError::Unexpected(format!("invoice {id} has an unknown status")))?,
        amount_due: Money::new(invoice.amount_due, currency.clone()),
        amount_paid: Money::new(invoice.amount_paid, currency),
        number: invoice.number.clone(),
        hosted_invoice_url: invoice.hosted_invoice_url.clone(),
        billing_reason: invoice.billing_reason.as_ref().map(|r| r.as_str().to_owned()),
        attempt_count: u32::try_from(invoice.attempt_count).unwrap_or(u32::MAX),
        next_payment_attempt: invoice.next_payment_attempt.map(timestamp).transpose()?,
        period_start: Some(timestamp(invoice.period_start)?),
        period_end: Some(timestamp(invoice.period_end)?),
        paid_at: invoice.status_transitions.paid_at.map(timestamp).transpose()?,
        id,
    })
}

/// What is known about the first invoice's payment, for `PaymentAction`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct PaymentFacts {
    pub invoice_id: Option<String>,
    pub hosted_invoice_url: Option<String>,
    /// The invoice's PaymentIntent, when `payments` were expanded (an id: expanding the
    /// intent too would be a fifth expansion level).
    pub intent_id: Option<String>,
    /// Status of that PaymentIntent, once read.
    pub intent_status: Option<String>,
    pub intent_message: Option<String>,
    /// Whether Stripe already tried to collect.
    pub attempted: bool,
    /// The decline of our own attempt to pay the invoice, if we made one.
    pub decline: Option<Decline>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decline {
    pub needs_authentication: bool,
    pub message: String,
}

impl PaymentFacts {
    pub fn of(invoice: &Invoice) -> Self {
        let intent_ref = invoice
            .payments
            .as_ref()
            .and_then(|payments| payments.data.iter().find(|p| p.is_default).or_else(|| payments.data.first()))
            .and_then(|payment| payment.payment.payment_intent.as_ref());
        let intent = intent_ref.and_then(Expandable::as_object);
        Self {
            invoice_id: invoice.id.as_ref().map(|id| id.as_str().to_owned()),
            hosted_invoice_url: invoice.hosted_invoice_url.clone(),
            intent_id: intent_ref.map(|i| i.id().as_str().to_owned()),
            intent_status: intent.map(|pi| pi.status.as_str().to_owned()),
            intent_message: intent.and_then(|pi| pi.last_payment_error.as_ref()).and_then(|e| e.message.clone()),
            attempted: invoice.attempted,
            decline: None,
        }
    }
}

/// What the customer must do to complete an `incomplete` subscription. The most specific
/// source wins: our own payment attempt's decline, then the PaymentIntent's status, then
/// what the invoice says.
pub(crate) fn payment_action(facts: &PaymentFacts) -> Option<PaymentAction> {
    let invoice_id = facts.invoice_id.clone()?;
    let (status, message) = match (&facts.decline, &facts.intent_status) {
        (Some(decline), _) => {
            let status = if decline.needs_authentication { "requires_action" } else { "requires_payment_method" };
            (status.to_owned(), Some(decline.message.clone()))
        }
        (None, Some(intent_status)) => (intent_status.clone(), facts.intent_message.clone()),
        // Attempted and still unpaid means the card failed; not attempted means the
        // payment is waiting to be confirmed (e.g. authenticated) by the customer.
        (None, None) if facts.attempted => ("requires_payment_method".to_owned(), None),
        (None, None) => (PaymentIntentStatus::RequiresConfirmation.as_str().to_owned(), None),
    };
    let message = message.or_else(|| {
        Some(
            match status.as_str() {
                "requires_action" => "The payment needs the customer to authenticate it.",
                "requires_payment_method" => "The payment failed; the customer must provide another payment method.",
                _ => "The first payment has not completed yet.",
            }
            .to_owned(),
        )
    });
    Some(PaymentAction { invoice_id, hosted_invoice_url: facts.hosted_invoice_url.clone(), status, message })
}

pub(crate) fn timestamp(ts: Timestamp) -> Result<DateTime<Utc>, BillingError> {
    Utc.timestamp_opt(ts, 0).single().ok_or_else(|| BillingError::Unexpected(format!("timestamp {ts} is out of range")))
}

fn currency(code: &str) -> Result<Currency, BillingError> {
    Currency::parse(code).ok_or_else(|| BillingError::Unexpected(format!("unknown currency `{code}`")))
}

fn customer_id(raw: &str) -> Result<StripeCustomerId, BillingError> {
    StripeCustomerId::parse(raw).map_err(|_| BillingError::Unexpected(format!("`{raw}` is not a customer id")))
}

fn subscription_id(raw: &str) -> Result<StripeSubscriptionId, BillingError> {
    StripeSubscriptionId::parse(raw).map_err(|_| BillingError::Unexpected(format!("`{raw}` is not a subscription id")))
}

/// A listed event as the body a webhook would carry (the fields decoding reads): async-stripe
/// keeps `data.object` as a `miniserde` value, which goes over to JSON through its text.
pub(crate) fn listed_event(event: &stripe_shared::Event) -> Result<crate::billing::ListedEvent, BillingError> {
    let object: serde_json::Value = serde_json::from_str(&miniserde::json::to_string(&event.data.object))
        .map_err(|e| BillingError::Unexpected(format!("event {} has an unreadable object: {e}", event.id.as_str())))?;
    let body = serde_json::json!({
        "id": event.id.as_str(),
        "object": "event",
        "type": event.type_.as_str(),
        "created": event.created,
        "livemode": event.livemode,
        "data": {"object": object},
    });
    Ok(crate::billing::ListedEvent { id: event.id.as_str().to_owned(), created: event.created, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::domain::Tier;

    fn prices() -> StripeConfig {
        StripeConfig {
            secret_key: Secret::new("sk_test_x"),
            api_base: None,
            price_premium: "price_premium_monthly".into(),
            price_enterprise: "price_enterprise_monthly".into(),
            retry: Default::default(),
        }
    }

    fn facts() -> SubscriptionFacts<'static> {
        SubscriptionFacts {
            id: "sub_1",
            customer: "cus_1",
            status: "active",
            first_item: Some(ItemFacts { price: "price_enterprise_monthly", period_start: 1_767_225_600, period_end: 1_769_904_000 }),
            cancel_at_period_end: true,
            cancel_at: None,
            canceled_at: Some(1_767_312_000),
            trial_end: None,
            latest_invoice_paid_at: Some(1_767_225_660),
            metadata_user: Some("user-1"),
            metadata_source: Some("granted"),
        }
    }

    #[test]
    fn snapshot_names_the_owner_and_source_the_metadata_records() {
        let snap = snapshot(&facts(), &prices()).unwrap();
        assert_eq!(snap.owner, Some(UserId::parse("user-1").unwrap()));
        assert_eq!(snap.source, Some(SubscriptionSource::Granted));
        // Not ours, or not parsable: no owner, no source (the webhook then ignores it).
        let foreign = SubscriptionFacts { metadata_user: Some("bad id with spaces\n"), metadata_source: Some("promo"), ..facts() };
        let snap = snapshot(&foreign, &prices()).unwrap();
        assert_eq!((snap.owner, snap.source), (None, None));
        assert_eq!(source_from_metadata(source_metadata(SubscriptionSource::Paid)), Some(SubscriptionSource::Paid));
    }

    #[test]
    fn snapshot_takes_the_period_and_tier_from_the_first_item() {
        let snap = snapshot(&facts(), &prices()).unwrap();
        assert_eq!(snap.subscription_id.as_str(), "sub_1");
        assert_eq!(snap.customer_id.as_str(), "cus_1");
        assert_eq!(snap.status, SubscriptionStatus::Active);
        assert_eq!(snap.tier, Some(Tier::Enterprise));
        assert_eq!(snap.current_period_start.to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert_eq!(snap.current_period_end.to_rfc3339(), "2026-02-01T00:00:00+00:00");
        assert!(snap.cancel_at_period_end);
        assert_eq!(snap.canceled_at.map(|t| t.timestamp()), Some(1_767_312_000));
        assert_eq!(snap.latest_invoice_paid_at.map(|t| t.timestamp()), Some(1_767_225_660));
    }

    #[test]
    fn trialing_maps_to_trial_and_foreign_prices_to_no_tier() {
        let mut f = facts();
        f.status = "trialing";
        f.trial_end = Some(1_769_904_000);
        f.first_item = Some(ItemFacts { price: "price_not_ours", period_start: 0, period_end: 1 });
        let snap = snapshot(&f, &prices()).unwrap();
        assert_eq!(snap.status, SubscriptionStatus::Trial);
        assert_eq!(snap.tier, None);
        assert_eq!(snap.trial_end.map(|t| t.timestamp()), Some(1_769_904_000));
    }

    #[test]
    fn unknown_status_missing_items_and_bad_ids_are_unexpected() {
        let mut f = facts();
        f.status = "paused_forever";
        assert!(matches!(snapshot(&f, &prices()), Err(BillingError::Unexpected(_))));
        let mut f = facts();
        f.first_item = None;
        assert!(matches!(snapshot(&f, &prices()), Err(BillingError::Unexpected(_))));
        let mut f = facts();
        f.customer = "acct_1";
        assert!(matches!(snapshot(&f, &prices()), Err(BillingError::Unexpected(_))));
        assert!(timestamp(i64::MAX).is_err());
    }

    fn payment(decline: Option<Decline>, intent: Option<&str>, attempted: bool) -> PaymentFacts {
        PaymentFacts {
            invoice_id: Some("in_1".into()),
            hosted_invoice_url: Some("https://invoice.stripe.com/i/1".into()),
            intent_id: intent.map(|_| "pi_1".to_owned()),
            intent_status: intent.map(str::to_owned),
            intent_message: intent.map(|_| "from the intent".to_owned()),
            attempted,
            decline,
        }
    }

    #[test]
    fn our_own_decline_decides_the_action() {
        let action = payment_action(&payment(
            Some(Decline { needs_authentication: false, message: "Your card was declined.".into() }),
            Some("requires_confirmation"),
            true,
        ))
        .unwrap();
        assert_eq!(action.status, "requires_payment_method");
        assert_eq!(action.message.as_deref(), Some("Your card was declined."));
        assert_eq!(action.invoice_id, "in_1");
        assert_eq!(action.hosted_invoice_url.as_deref(), Some("https://invoice.stripe.com/i/1"));

        let action = payment_action(&payment(Some(Decline { needs_authentication: true, message: "3DS".into() }), None, true)).unwrap();
        assert_eq!(action.status, "requires_action");
    }

    #[test]
    fn without_a_decline_the_intent_then_the_invoice_speak() {
        let action = payment_action(&payment(None, Some("requires_action"), true)).unwrap();
        assert_eq!(action.status, "requires_action");
        assert_eq!(action.message.as_deref(), Some("from the intent"));
        assert_eq!(payment_action(&payment(None, None, true)).unwrap().status, "requires_payment_method");
        let pending = payment_action(&payment(None, None, false)).unwrap();
        assert_eq!(pending.status, "requires_confirmation");
        assert!(pending.message.is_some());
        assert_eq!(payment_action(&PaymentFacts::default()), None);
    }
}
