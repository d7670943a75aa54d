//! `StripeBilling`: the `BillingGateway` port over async-stripe.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::Rng;
use stripe::{RequestStrategy, StripeError, StripeRequest};
use stripe_billing::invoice::{ListInvoice, PayInvoice, RetrieveInvoice, VoidInvoiceInvoice};
use stripe_billing::subscription::{
    CancelSubscription, CreateSubscription, CreateSubscriptionCancelAt, CreateSubscriptionItems, CreateSubscriptionPaymentBehavior,
    CreateSubscriptionTrialEnd, CreateSubscriptionTrialSettings, CreateSubscriptionTrialSettingsEndBehavior,
    CreateSubscriptionTrialSettingsEndBehaviorMissingPaymentMethod, ListSubscription, ListSubscriptionStatus, RetrieveSubscription,
    UpdateSubscription, UpdateSubscriptionItems, UpdateSubscriptionProrationBehavior,
};
use stripe_core::customer::{CreateCustomer, CreateCustomerInvoiceSettings, DeleteCustomer, UpdateCustomer};
use stripe_core::event::ListEvent;
use stripe_core::payment_intent::RetrievePaymentIntent;
use stripe_payment::payment_method::AttachPaymentMethod;
use stripe_product::price::RetrievePrice;
use stripe_shared::{Invoice, InvoiceStatus, Subscription};
use stripe_types::Expandable;
use stripe_types::RangeQueryTs;

use crate::billing::{
    BillingError, BillingGateway, CreatedSubscription, CustomerDetails, EventQuery, IdempotencyKey, InvoiceRead, ListedEvent,
    ListedSubscription, NewCustomer, NewSubscription, NewSubscriptionKind, Page, Proration,
};
use crate::domain::{StripeCustomerId, StripeSnapshot, StripeSubscriptionId, SubscriptionSource, SubscriptionStatus, Tier};

use super::config::StripeConfig;
use super::convert::{self, source_metadata, Decline, PaymentFacts, OPERATION_METADATA, SOURCE_METADATA, USER_ID_METADATA};
use super::errors::{self, classify};
use super::retry::RetryPolicy;
use super::transport::Transport;
use crate::metrics;

/// Expanded on every subscription we read or write: the latest invoice gives
/// `latest_invoice_paid_at` and, after a create, the payment state.
const EXPAND_LATEST_INVOICE: &str = "latest_invoice";
/// An invoice's subscription, expanded as [`EXPAND_LATEST_INVOICE`] expands it on a subscription.
const EXPAND_INVOICE_SUBSCRIPTION: &str = "parent.subscription_details.subscription.latest_invoice";
/// After a create, the invoice's payments too: they name the PaymentIntent whose status
/// says whether the customer must authenticate or change card (invoices have no
/// `payment_intent` field in this API version).
const EXPAND_LATEST_PAYMENTS: &str = "latest_invoice.payments";

/// The Stripe adapter. Cheap to share: build it once per cold start and hold it in an
/// `Arc<dyn BillingGateway>`.
#[derive(Debug, Clone)]
pub struct StripeBilling {
    client: Transport,
    config: StripeConfig,
    policy: RetryPolicy,
}

/// How one call is labelled in logs.
#[derive(Debug, Clone, Copy)]
struct Op {
    name: &'static str,
    method: &'static str,
}

impl Op {
    const fn new(method: &'static str, name: &'static str) -> Self {
        Self { name, method }
    }

    /// The Stripe API path template the operation calls (ids elided, so logs carry none).
    fn path(&self) -> &'static str {
        match self.name {
            "retrieve_subscription" | "update_subscription_cancel_at_period_end" | "update_subscription_price" | "cancel_subscription" => {
                "/v1/subscriptions/{id}"
            }
            "create_subscription" => "/v1/subscriptions",
            "create_customer" => "/v1/customers",
            "update_customer" | "delete_customer" => "/v1/customers/{id}",
            "retrieve_payment_intent" => "/v1/payment_intents/{id}",
            "attach_payment_method" => "/v1/payment_methods/{id}/attach",
            "pay_invoice" => "/v1/invoices/{id}/pay",
            "retrieve_invoice" => "/v1/invoices/{id}",
            "retrieve_price" => "/v1/prices/{id}",
            _ => "other",
        }
    }
}

impl StripeBilling {
    /// With the default retry policy (3 attempts, 200/800 ms, 5 s per attempt).
    pub fn new(config: StripeConfig) -> Result<Self, BillingError> {
        let policy = config.retry;
        let app = concat!("logiscore-subscriptions/", env!("CARGO_PKG_VERSION"));
        let client = Transport::new(config.secret_key.expose(), config.api_base_url().as_deref(), app, policy.attempt_timeout)
            .map_err(|e| BillingError::Unexpected(format!("stripe client: {e}")))?;
        Ok(Self { client, config, policy })
    }

    pub fn config(&self) -> &StripeConfig {
        &self.config
    }

    /// Sends one logical Stripe call with the bounded retry: every attempt carries the
    /// same idempotency key (when `key` is given), so Stripe executes the call at most
    /// once however many attempts it takes.
    async fn send<T, F, Fut>(&self, op: Op, key: Option<&str>, attempt: F) -> Result<T, BillingError>
    where
        F: Fn(RequestStrategy, Duration) -> Fut,
        Fut: Future<Output = Result<T, StripeError>>,
    {
        let strategy = match key {
            Some(raw) => RequestStrategy::Idempotent(stripe_key(raw)?),
            None => RequestStrategy::Once,
        };
        let mut attempt_no = 0u32;
        loop {
            attempt_no += 1;
            let started = Instant::now();
            let result = attempt(strategy.clone(), self.policy.attempt_timeout).await;
            let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            match result {
                Ok(value) => {
                    tracing::info!(
                        stripe.op = op.name,
                        http.method = op.method,
                        http.path = op.path(),
                        http.status = 200u16,
                        attempt = attempt_no,
                        outcome = "ok",
                        latency_ms,
                        "stripe call"
                    );
                    metrics::dependency_call("StripeCalls", "StripeLatency", op.name, "ok", started.elapsed());
                    return Ok(value);
                }
                Err(err) => {
                    let failure = classify(&err);
                    let will_retry = failure.retryable && self.policy.allows_another(attempt_no);
                    tracing::info!(
                        stripe.op = op.name,
                        http.method = op.method,
                        http.path = op.path(),
                        attempt = attempt_no,
                        outcome = failure.outcome,
                        http.status = failure.status,
                        stripe.request_id = failure.request_id.as_deref(),
                        latency_ms,
                        will_retry,
                        error = %failure.error,
                        "stripe call"
                    );
                    metrics::dependency_call("StripeCalls", "StripeLatency", op.name, failure.outcome, started.elapsed());
                    if !will_retry {
                        return Err(failure.error);
                    }
                    let delay = self.policy.delay(attempt_no, rand::thread_rng().gen::<f64>());
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn retrieve_subscription(&self, id: &str) -> Result<Subscription, BillingError> {
        self.retrieve_subscription_expanded(id, &[EXPAND_LATEST_INVOICE]).await
    }

    async fn retrieve_subscription_expanded(&self, id: &str, expand: &[&str]) -> Result<Subscription, BillingError> {
        let req = RetrieveSubscription::new(id).expand(expand.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>());
        self.send(Op::new("GET", "retrieve_subscription"), None, |strategy, timeout| {
            req.customize().request_strategy(strategy).timeout(timeout).send(&self.client)
        })
        .await
    }

    /// Voids every open invoice of the (cancelled) subscription `id`, so nothing of a
    /// subscription the customer no longer has can still be paid, by a retry or on the
    /// hosted invoice page. One key step per invoice: a retry voids each once.
    async fn void_open_invoices(&self, id: &StripeSubscriptionId, key: &IdempotencyKey) -> Result<(), BillingError> {
        // A subscription has at most a few open invoices (one per unpaid period); 100 is Stripe's page.
        let req = ListInvoice::new().subscription(id.as_str()).status(InvoiceStatus::Open).limit(100);
        let open = self
            .send(Op::new("GET", "list_invoices"), None, |strategy, timeout| {
                req.customize().request_strategy(strategy).timeout(timeout).send(&self.client)
            })
            .await?;
        for invoice in &open.data {
            let Some(invoice_id) = invoice.id.as_ref() else { continue };
            let void = VoidInvoiceInvoice::new(invoice_id.clone());
            let step = key.step(&format!("void-{}", invoice_id.as_str()));
            let voided = self
                .send(Op::new("POST", "void_invoice"), Some(&step), |strategy, timeout| {
                    void.customize().request_strategy(strategy).timeout(timeout).send(&self.client)
                })
                .await;
            match voided {
                Ok(_) => tracing::info!(stripe.invoice_id = invoice_id.as_str(), "open invoice of a cancelled subscription voided"),
                // Paid or voided meanwhile (a customer paying at this very moment): nothing
                // left open to void; the paid one is the webhook's to apply.
                Err(BillingError::InvalidRequest { message, .. }) => {
                    tracing::warn!(stripe.invoice_id = invoice_id.as_str(), message, "invoice no longer open; not voided")
                }
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    fn snapshot(&self, sub: &Subscription) -> Result<StripeSnapshot, BillingError> {
        convert::subscription_snapshot(sub, &self.config)
    }

    /// Fills in the PaymentIntent's status and last error. Best effort: the subscription
    /// exists either way, and without the intent the action is derived from the invoice.
    async fn read_intent(&self, facts: &mut PaymentFacts) {
        let Some(intent_id) = facts.intent_id.clone() else { return };
        let req = RetrievePaymentIntent::new(intent_id.as_str());
        let read = self
            .send(Op::new("GET", "retrieve_payment_intent"), None, |strategy, timeout| {
                req.customize().request_strategy(strategy).timeout(timeout).send(&self.client)
            })
            .await;
        match read {
            Ok(intent) => {
                facts.intent_status = Some(intent.status.as_str().to_owned());
                facts.intent_message = intent.last_payment_error.as_ref().and_then(|e| e.message.clone());
            }
            Err(error) => {
                tracing::warn!(stripe.payment_intent_id = %intent_id, %error, "could not read the first payment's intent");
            }
        }
    }

    /// Pays a first invoice Stripe has not attempted (a subscription created
    /// `default_incomplete`, say by an older deployment) from its payment method.
    /// Returns the decline when the card refused.
    async fn pay_first_invoice(
        &self,
        invoice_id: &str,
        payment_method: &str,
        key: &IdempotencyKey,
    ) -> Result<Option<Decline>, BillingError> {
        let req = PayInvoice::new(invoice_id).payment_method(payment_method);
        let step = key.step("pay-first-invoice");
        let paid = self
            .send(Op::new("POST", "pay_invoice"), Some(&step), |strategy, timeout| {
                req.customize().request_strategy(strategy).timeout(timeout).send(&self.client)
            })
            .await;
        match paid {
            Ok(_) => Ok(None),
            Err(BillingError::CardDeclined { code, message, .. }) => {
                Ok(Some(Decline { needs_authentication: errors::needs_authentication(code.as_deref()), message }))
            }
            Err(other) => Err(other),
        }
    }
}

#[async_trait]
impl BillingGateway for StripeBilling {
    /// No search first: Stripe's search is eventually consistent (a new customer can take
    /// a minute to appear), so it cannot stop a retry after a lost response from creating
    /// again. The idempotency key does, and beyond its 24 h the id recorded on the
    /// caller's profile does.
    #[tracing::instrument(skip_all, fields(user_id = %customer.user_id, stripe.customer_id))]
    async fn create_customer(
        &self,
        customer: &CustomerDetails,
        payment_method: Option<&str>,
        key: &IdempotencyKey,
    ) -> Result<NewCustomer, BillingError> {
        let mut req = CreateCustomer::new()
            .email(customer.email.clone())
            .metadata(HashMap::from([(USER_ID_METADATA.to_owned(), customer.user_id.as_str().to_owned())]));
        if let Some(name) = &customer.name {
            req = req.name(name.clone());
        }
        if let Some(pm) = payment_method {
            let pm = non_empty_payment_method(pm)?;
            let mut settings = CreateCustomerInvoiceSettings::new();
            settings.default_payment_method = Some(pm.to_owned());
            req = req.payment_method(pm.to_owned()).invoice_settings(settings);
        }
        let step = key.step(&format!("create-customer:{}", customer.user_id));
        let created = self
            .send(Op::new("POST", "create_customer"), Some(&step), |strategy, timeout| {
                req.customize().request_strategy(strategy).timeout(timeout).send(&self.client)
            })
            .await?;
        tracing::Span::current().record("stripe.customer_id", created.id.as_str());
        let id = StripeCustomerId::parse(created.id.as_str())
            .map_err(|_| BillingError::Unexpected(format!("`{}` is not a customer id", created.id)))?;
        let attached =
            created.invoice_settings.as_ref().and_then(|s| s.default_payment_method.as_ref()).map(|pm| pm.id().as_str().to_owned());
        if payment_method.is_some() && attached.is_none() {
            return Err(BillingError::Unexpected(format!("customer {id} was created without its payment method")));
        }
        Ok(NewCustomer { id, payment_method: attached })
    }

    #[tracing::instrument(skip_all, fields(stripe.customer_id = %id))]
    async fn update_customer(&self, id: &StripeCustomerId, customer: &CustomerDetails, key: &IdempotencyKey) -> Result<(), BillingError> {
        let mut req = UpdateCustomer::new(id.as_str())
            .email(customer.email.clone())
            .metadata(HashMap::from([(USER_ID_METADATA.to_owned(), customer.user_id.as_str().to_owned())]));
        if let Some(name) = &customer.name {
            req = req.name(name.clone());
        }
        let step = key.step("update-customer");
        self.send(Op::new("POST", "update_customer"), Some(&step), |strategy, timeout| {
            req.customize().request_strategy(strategy).timeout(timeout).send(&self.client)
        })
        .await?;
        Ok(())
    }

    /// Deleting is idempotent here: a customer that is already gone counts as deleted,
    /// so a retry after a lost response succeeds.
    #[tracing::instrument(skip_all, fields(stripe.customer_id = %id))]
    async fn delete_customer(&self, id: &StripeCustomerId, key: &IdempotencyKey) -> Result<(), BillingError> {
        let req = DeleteCustomer::new(id.as_str());
        let step = key.step("delete-customer");
        let deleted = self
            .send(Op::new("DELETE", "delete_customer"), Some(&step), |strategy, timeout| {
                req.customize().request_strategy(strategy).timeout(timeout).send(&self.client)
            })
            .await;
        match deleted {
            Ok(_) | Err(BillingError::NotFound(_)) => Ok(()),
            Err(other) => Err(other),
        }
    }

    #[tracing::instrument(skip_all, fields(stripe.customer_id = %customer, stripe.payment_method_id))]
    async fn attach_payment_method(
        &self,
        customer: &StripeCustomerId,
        payment_method: &str,
        key: &IdempotencyKey,
    ) -> Result<String, BillingError> {
        let attach = AttachPaymentMethod::new(non_empty_payment_method(payment_method)?).customer(customer.as_str());
        let step = key.step("attach-payment-method");
        let attached = self
            .send(Op::new("POST", "attach_payment_method"), Some(&step), |strategy, timeout| {
                attach.customize().request_strategy(strategy).timeout(timeout).send(&self.client)
            })
            .await?;
        // Test tokens (`pm_card_visa`) attach as a new `pm_…`: the returned id is the
        // one that exists on the customer.
        let pm_id = attached.id.as_str().to_owned();
        tracing::Span::current().record("stripe.payment_method_id", pm_id.as_str());
        Ok(pm_id)
    }

    /// Paid: `payment_behavior=allow_incomplete`, so Stripe charges the first invoice
    /// within the create (one request; the admin flow has no customer present to confirm
    /// anything) and never leaves a half-paid active subscription. A decline leaves the
    /// subscription `incomplete` with a `PaymentAction`, not an error: the subscription
    /// exists and the customer can complete it on the hosted invoice page. A first
    /// invoice Stripe has not attempted (it would be, at creation) is paid here.
    #[tracing::instrument(skip_all, fields(
        user_id = %new.user_id,
        stripe.customer_id = %new.customer,
        tier = %new.tier,
        stripe.subscription_id,
        status,
    ))]
    async fn create_subscription(&self, new: &NewSubscription, key: &IdempotencyKey) -> Result<CreatedSubscription, BillingError> {
        let price = self.config.price_for(new.tier).ok_or_else(|| BillingError::InvalidRequest {
            param: Some("tier".into()),
            message: format!("tier `{}` has no Stripe price", new.tier),
        })?;
        let mut item = CreateSubscriptionItems::new();
        item.price = Some(price.to_owned());
        let source = match new.kind {
            NewSubscriptionKind::Paid { .. } => SubscriptionSource::Paid,
            NewSubscriptionKind::Granted { .. } => SubscriptionSource::Granted,
        };
        let metadata = HashMap::from([
            (USER_ID_METADATA.to_owned(), new.user_id.as_str().to_owned()),
            (SOURCE_METADATA.to_owned(), source_metadata(source).to_owned()),
            ("tier".to_owned(), new.tier.as_str().to_owned()),
            (OPERATION_METADATA.to_owned(), new.operation_id.clone()),
        ]);
        let mut req = CreateSubscription::new()
            .customer(new.customer.as_str())
            .items(vec![item])
            .metadata(metadata)
            .expand(vec![EXPAND_LATEST_INVOICE.to_owned(), EXPAND_LATEST_PAYMENTS.to_owned()]);
        match &new.kind {
            NewSubscriptionKind::Paid { payment_method, cancel_at } => {
                req =
                    req.default_payment_method(payment_method.clone()).payment_behavior(CreateSubscriptionPaymentBehavior::AllowIncomplete);
                if let Some(at) = cancel_at {
                    req = req.cancel_at(CreateSubscriptionCancelAt::Timestamp(at.timestamp()));
                }
            }
            NewSubscriptionKind::Granted { trial_end } => {
                let mut end_behavior = CreateSubscriptionTrialSettingsEndBehavior::new();
                end_behavior.missing_payment_method = Some(CreateSubscriptionTrialSettingsEndBehaviorMissingPaymentMethod::Cancel);
                req = req
                    .trial_end(CreateSubscriptionTrialEnd::Timestamp(trial_end.timestamp()))
                    .trial_settings(CreateSubscriptionTrialSettings::new(end_behavior));
            }
        }
        let step = key.step("create-subscription");
        let mut sub = self
            .send(Op::new("POST", "create_subscription"), Some(&step), |strategy, timeout| {
                req.customize().request_strategy(strategy).timeout(timeout).send(&self.client)
            })
            .await?;
        let span = tracing::Span::current();
        span.record("stripe.subscription_id", sub.id.as_str());

        let mut decline = None;
        if let (NewSubscriptionKind::Paid { payment_method, .. }, Some(invoice)) = (&new.kind, first_unattempted_invoice(&sub)) {
            if let Some(invoice_id) = invoice.id.as_ref().map(|id| id.as_str().to_owned()) {
                decline = self.pay_first_invoice(&invoice_id, payment_method, key).await?;
                // Paying changes the subscription (active, or still incomplete with an
                // attempted invoice): read it back rather than guess.
                sub = self.retrieve_subscription_expanded(sub.id.as_str(), &[EXPAND_LATEST_INVOICE, EXPAND_LATEST_PAYMENTS]).await?;
            }
        }

        let snapshot = self.snapshot(&sub)?;
        span.record("status", snapshot.status.as_str());
        let payment_action = if snapshot.status == SubscriptionStatus::Incomplete {
            let mut facts =
                sub.latest_invoice.as_ref().and_then(Expandable::as_object).map(PaymentFacts::of).unwrap_or_else(|| PaymentFacts {
                    invoice_id: sub.latest_invoice.as_ref().and_then(|i| i.id().as_ref()).map(|id| id.as_str().to_owned()),
                    ..PaymentFacts::default()
                });
            facts.decline = decline;
            if facts.decline.is_none() && facts.intent_status.is_none() {
                self.read_intent(&mut facts).await;
            }
            convert::payment_action(&facts)
        } else {
            None
        };
        Ok(CreatedSubscription { snapshot, payment_action })
    }

    #[tracing::instrument(skip_all, fields(stripe.subscription_id = %id))]
    async fn subscription(&self, id: &StripeSubscriptionId) -> Result<StripeSnapshot, BillingError> {
        let sub = self.retrieve_subscription(id.as_str()).await?;
        self.snapshot(&sub)
    }

    #[tracing::instrument(skip_all, fields(stripe.customer_id = %customer, operation_id))]
    async fn subscription_of_operation(
        &self,
        customer: &StripeCustomerId,
        operation_id: &str,
    ) -> Result<Option<StripeSnapshot>, BillingError> {
        // A customer of ours has a handful of subscriptions over its life; 100 is Stripe's page.
        let req = ListSubscription::new().customer(customer.as_str()).status(ListSubscriptionStatus::All).limit(100);
        let listed = self
            .send(Op::new("GET", "list_subscriptions"), None, |strategy, timeout| {
                req.customize().request_strategy(strategy).timeout(timeout).send(&self.client)
            })
            .await?;
        let Some(found) = listed.data.iter().find(|sub| sub.metadata.get(OPERATION_METADATA).map(String::as_str) == Some(operation_id))
        else {
            return Ok(None);
        };
        // A paid create charges within the create (`allow_incomplete`). A subscription
        // created `default_incomplete` (an older deployment, or a payment step that never
        // ran) is `incomplete` with an invoice nobody attempted, and Stripe would let it
        // expire: finish the payment step here, under a key of the operation.
        if found.status.as_str() == "incomplete" {
            let sub = self.retrieve_subscription_expanded(found.id.as_str(), &[EXPAND_LATEST_INVOICE, EXPAND_LATEST_PAYMENTS]).await?;
            let invoice_id = first_unattempted_invoice(&sub).and_then(|i| i.id.as_ref()).map(|id| id.as_str().to_owned());
            let payment_method = sub.default_payment_method.as_ref().map(|pm| pm.id().as_str().to_owned());
            if let (Some(invoice_id), Some(payment_method)) = (invoice_id, payment_method) {
                let key = IdempotencyKey::new(format!("recover:op:{operation_id}"));
                if let Some(decline) = self.pay_first_invoice(&invoice_id, &payment_method, &key).await? {
                    tracing::warn!(stripe.invoice_id = %invoice_id, message = ?decline.message, "the recovered subscription's first payment was declined");
                }
                return self.snapshot(&self.retrieve_subscription(found.id.as_str()).await?).map(Some);
            }
        }
        self.snapshot(found).map(Some)
    }

    #[tracing::instrument(skip_all, fields(stripe.subscription_id = %id, cancel))]
    async fn set_cancel_at_period_end(
        &self,
        id: &StripeSubscriptionId,
        cancel: bool,
        key: &IdempotencyKey,
    ) -> Result<StripeSnapshot, BillingError> {
        let req = UpdateSubscription::new(id.as_str()).cancel_at_period_end(cancel).expand(vec![EXPAND_LATEST_INVOICE.to_owned()]);
        // The value is part of the step: cancel and reactivate under one caller key must
        // not collide (Stripe rejects a key reused with different parameters).
        let step = key.step(if cancel { "cancel-at-period-end" } else { "keep-at-period-end" });
        let sub = self
            .send(Op::new("POST", "update_subscription_cancel_at_period_end"), Some(&step), |strategy, timeout| {
                req.customize().request_strategy(strategy).timeout(timeout).send(&self.client)
            })
            .await?;
        self.snapshot(&sub)
    }

    /// Cancels now. Idempotent: when Stripe refuses because the subscription is already
    /// canceled (a retry after a lost response), its current state is returned.
    #[tracing::instrument(skip_all, fields(stripe.subscription_id = %id))]
    async fn cancel_now(&self, id: &StripeSubscriptionId, key: &IdempotencyKey) -> Result<StripeSnapshot, BillingError> {
        let req = CancelSubscription::new(id.as_str()).expand(vec![EXPAND_LATEST_INVOICE.to_owned()]);
        let step = key.step("cancel-now");
        let canceled = self
            .send(Op::new("DELETE", "cancel_subscription"), Some(&step), |strategy, timeout| {
                req.customize().request_strategy(strategy).timeout(timeout).send(&self.client)
            })
            .await;
        let snapshot = match canceled {
            Ok(sub) => {
                // Stripe leaves a cancelled subscription's open invoices open (only their
                // automatic collection stops): still payable on the hosted invoice page.
                let open =
                    sub.latest_invoice.as_ref().and_then(Expandable::as_object).is_some_and(|i| i.status == Some(InvoiceStatus::Open));
                let snapshot = self.snapshot(&sub)?;
                if open {
                    self.void_open_invoices(id, key).await?;
                }
                snapshot
            }
            Err(BillingError::InvalidRequest { param, message }) => {
                let current = self.subscription(id).await?;
                if !current.status.is_terminal() {
                    return Err(BillingError::InvalidRequest { param, message });
                }
                // Already cancelled, perhaps by an attempt that died before voiding.
                self.void_open_invoices(id, key).await?;
                current
            }
            Err(other) => return Err(other),
        };
        Ok(snapshot)
    }

    #[tracing::instrument(skip_all, fields(stripe.subscription_id = %id, tier = %tier, proration = ?proration))]
    async fn change_tier(
        &self,
        id: &StripeSubscriptionId,
        tier: Tier,
        proration: Proration,
        key: &IdempotencyKey,
    ) -> Result<StripeSnapshot, BillingError> {
        let price = self.config.price_for(tier).ok_or_else(|| BillingError::InvalidRequest {
            param: Some("tier".into()),
            message: format!("tier `{tier}` has no Stripe price; cancel the subscription instead"),
        })?;
        // The item id is needed to swap the price in place (without it Stripe would add
        // a second item and bill both).
        let current = self.retrieve_subscription(id.as_str()).await?;
        let item_id = current
            .items
            .data
            .first()
            .map(|item| item.id.as_str().to_owned())
            .ok_or_else(|| BillingError::Unexpected(format!("subscription {id} has no items")))?;
        let mut item = UpdateSubscriptionItems::new();
        item.id = Some(item_id);
        item.price = Some(price.to_owned());
        let req = UpdateSubscription::new(id.as_str())
            .items(vec![item])
            .proration_behavior(proration_behavior(proration))
            .metadata(HashMap::from([("tier".to_owned(), tier.as_str().to_owned())]))
            .expand(vec![EXPAND_LATEST_INVOICE.to_owned()]);
        let step = key.step(&format!("change-tier:{tier}"));
        let sub = self
            .send(Op::new("POST", "update_subscription_price"), Some(&step), |strategy, timeout| {
                req.customize().request_strategy(strategy).timeout(timeout).send(&self.client)
            })
            .await?;
        self.snapshot(&sub)
    }

    #[tracing::instrument(skip_all, fields(stripe.invoice_id = %id))]
    async fn invoice(&self, id: &str) -> Result<InvoiceRead, BillingError> {
        if id.is_empty() {
            return Err(BillingError::InvalidRequest { param: Some("invoice".into()), message: "an invoice id is required".into() });
        }
        // The subscription (with its own latest invoice, as `subscription` reads it) comes
        // expanded: four levels, Stripe's limit.
        let req = RetrieveInvoice::new(id).expand(vec![EXPAND_INVOICE_SUBSCRIPTION.to_owned()]);
        let invoice: Invoice = self
            .send(Op::new("GET", "retrieve_invoice"), None, |strategy, timeout| {
                req.customize().request_strategy(strategy).timeout(timeout).send(&self.client)
            })
            .await?;
        let subscription = invoice
            .parent
            .as_ref()
            .and_then(|parent| parent.subscription_details.as_ref())
            .and_then(|details| details.subscription.as_object())
            .map(|sub| self.snapshot(sub))
            .transpose()?;
        Ok(InvoiceRead { invoice: convert::invoice_snapshot(&invoice)?, subscription })
    }

    async fn events(&self, query: &EventQuery) -> Result<Page<ListedEvent>, BillingError> {
        let mut req = ListEvent::new().types(query.types.clone()).created(RangeQueryTs::gte(query.created_gte)).limit(100);
        if let Some(after) = &query.starting_after {
            req = req.starting_after(after.clone());
        }
        let listed = self
            .send(Op::new("GET", "list_events"), None, |strategy, timeout| {
                req.customize().request_strategy(strategy).timeout(timeout).send(&self.client)
            })
            .await?;
        let items = listed.data.iter().map(convert::listed_event).collect::<Result<Vec<_>, _>>()?;
        Ok(Page { items, has_more: listed.has_more })
    }

    async fn all_subscriptions(&self, starting_after: Option<&str>) -> Result<Page<ListedSubscription>, BillingError> {
        let mut req =
            ListSubscription::new().status(ListSubscriptionStatus::All).limit(100).expand(vec![format!("data.{EXPAND_LATEST_INVOICE}")]);
        if let Some(after) = starting_after {
            req = req.starting_after(after.to_owned());
        }
        let listed = self
            .send(Op::new("GET", "list_subscriptions"), None, |strategy, timeout| {
                req.customize().request_strategy(strategy).timeout(timeout).send(&self.client)
            })
            .await?;
        let items = listed
            .data
            .iter()
            .map(|sub| ListedSubscription { id: sub.id.as_str().to_owned(), snapshot: self.snapshot(sub).map_err(|e| e.to_string()) })
            .collect();
        Ok(Page { items, has_more: listed.has_more })
    }
}

/// Stripe caps idempotency keys at 255 characters; derived keys that would exceed
/// that (long caller key plus a user id) are hashed, which keeps them deterministic.
fn stripe_key(raw: &str) -> Result<stripe::IdempotencyKey, BillingError> {
    let bounded = if raw.len() <= 255 {
        raw.to_owned()
    } else {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(raw.as_bytes()))
    };
    stripe::IdempotencyKey::new(bounded)
        .map_err(|e| BillingError::InvalidRequest { param: Some("idempotency_key".into()), message: e.to_string() })
}

fn proration_behavior(proration: Proration) -> UpdateSubscriptionProrationBehavior {
    match proration {
        Proration::CreateProrations => UpdateSubscriptionProrationBehavior::CreateProrations,
        Proration::InvoiceNow => UpdateSubscriptionProrationBehavior::AlwaysInvoice,
        Proration::None => UpdateSubscriptionProrationBehavior::None,
    }
}

fn non_empty_payment_method(payment_method: &str) -> Result<&str, BillingError> {
    if payment_method.is_empty() {
        return Err(BillingError::InvalidRequest {
            param: Some("payment_method".into()),
            message: "a payment method id is required".into(),
        });
    }
    Ok(payment_method)
}

/// The first invoice of an `incomplete` subscription when nobody has tried to collect it
/// yet (real Stripe under `default_incomplete`). An invoice Stripe already attempted is
/// left alone: charging the same card again would only decline again.
fn first_unattempted_invoice(sub: &Subscription) -> Option<&Invoice> {
    if sub.status.as_str() != "incomplete" {
        return None;
    }
    let invoice = sub.latest_invoice.as_ref()?.as_object()?;
    let open = matches!(invoice.status, Some(InvoiceStatus::Open));
    (open && !invoice.attempted && invoice.amount_remaining > 0).then_some(invoice)
}

/// async-stripe's rustls connector asks rustls for the process-default crypto provider,
/// and rustls panics when it cannot choose one by itself, which it cannot as soon as
/// both ring and aws-lc-rs are compiled into the binary (feature unification across the
/// workspace can do that). Installing aws-lc-rs, the provider the AWS SDK uses anyway,
/// removes the guess. An error only means a provider is installed already: fine.
/// The cold start's Stripe read ([`crate::warm`]): the configured premium price, which
/// also tells the log at once when `STRIPE_PRICE_PREMIUM` names no price of this account.
#[async_trait]
impl crate::warm::Warm for StripeBilling {
    async fn warm(&self) -> Result<(), String> {
        let req = RetrievePrice::new(self.config.price_premium.as_str());
        let read = self
            .send(Op::new("GET", "retrieve_price"), None, |strategy, timeout| {
                req.customize().request_strategy(strategy).timeout(timeout).send(&self.client)
            })
            .await;
        match read {
            Ok(_) => Ok(()),
            // No answer (or only 429/5xx): the connection may not be open.
            Err(BillingError::Unavailable(why)) => Err(why),
            // Stripe answered, so the connection is open; what it said is worth a line.
            Err(other) => {
                tracing::warn!(error = %other, "the configured premium price could not be read at init: check STRIPE_PRICE_PREMIUM and the key's Prices permission");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_bounded_and_deterministic() {
        let short = stripe_key("op-1:create-subscription").unwrap();
        assert_eq!(short.as_str(), "op-1:create-subscription");
        let long_raw = format!("{}:create-customer:{}", "k".repeat(200), "u".repeat(128));
        let a = stripe_key(&long_raw).unwrap();
        let b = stripe_key(&long_raw).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str().len(), 64);
        assert!(stripe_key("").is_err());
    }

    #[test]
    fn prorations_map_to_stripe_behaviours() {
        assert_eq!(proration_behavior(Proration::CreateProrations).as_str(), "create_prorations");
        assert_eq!(proration_behavior(Proration::InvoiceNow).as_str(), "always_invoice");
        assert_eq!(proration_behavior(Proration::None).as_str(), "none");
    }

    #[test]
    fn building_never_needs_the_network_and_rejects_bad_keys() {
        let config = StripeConfig {
            secret_key: crate::config::Secret::new("sk_test_x"),
            api_base: Some("http://127.0.0.1:9".into()),
            price_premium: "price_p".into(),
            price_enterprise: "price_e".into(),
            retry: Default::default(),
        };
        assert!(StripeBilling::new(config.clone()).is_ok());
        let bad = StripeConfig { secret_key: crate::config::Secret::new("sk_test_\n"), ..config };
        let err = StripeBilling::new(bad).unwrap_err();
        assert!(!err.to_string().contains("sk_test"), "{err}");
    }
}
