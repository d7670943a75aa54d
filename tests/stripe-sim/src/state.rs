//! The sim's in-memory world: typed records for every object, plus the event log.
//!
//! Records hold only what the sim reasons about; JSON is produced from them by the
//! renderers in `resources/`, starting from Stripe's fixtures. All money is `i64`
//! minor units. The whole state sits behind one mutex (see `server.rs`), which makes
//! every API call and every clock advance atomic.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::config::SimConfig;
use crate::ids::new_id;
use crate::time::{wall_now, Interval};
use crate::webhooks::Dispatcher;

pub type Metadata = BTreeMap<String, String>;

/// How a test card behaves, decided by the test token it was created from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardBehavior {
    /// Attaches and pays.
    Succeeds,
    /// Attaching it fails with a 402 `card_declined` and this decline code.
    DeclinesOnAttach(&'static str),
    /// Attaches fine; every later charge fails with `card_declined` / this decline code.
    ChargesFail(&'static str),
    /// Attaches fine; off-session charges need authentication (`authentication_required`),
    /// on-session confirmation (`POST /v1/payment_intents/{id}/confirm`) succeeds.
    RequiresAuthentication,
}

#[derive(Debug, Clone)]
pub struct CardProfile {
    pub brand: &'static str,
    pub last4: &'static str,
    pub funding: &'static str,
    pub behavior: CardBehavior,
}

/// Stripe's documented test payment-method tokens that the sim understands.
pub fn test_card(token: &str) -> Option<CardProfile> {
    let (brand, last4, behavior) = match token {
        "pm_card_visa" | "tok_visa" => ("visa", "4242", CardBehavior::Succeeds),
        "pm_card_visa_debit" | "tok_visa_debit" => ("visa", "5556", CardBehavior::Succeeds),
        "pm_card_mastercard" | "tok_mastercard" => ("mastercard", "4444", CardBehavior::Succeeds),
        "pm_card_amex" | "tok_amex" => ("amex", "8431", CardBehavior::Succeeds),
        "pm_card_visa_chargeDeclined" | "pm_card_chargeDeclined" | "tok_chargeDeclined" => {
            ("visa", "0002", CardBehavior::DeclinesOnAttach("generic_decline"))
        }
        "pm_card_chargeDeclinedInsufficientFunds" | "tok_chargeDeclinedInsufficientFunds" => {
            ("visa", "9995", CardBehavior::DeclinesOnAttach("insufficient_funds"))
        }
        "pm_card_chargeCustomerFail" | "tok_chargeCustomerFail" => ("visa", "0341", CardBehavior::ChargesFail("generic_decline")),
        "pm_card_authenticationRequired" | "pm_card_threeDSecure2Required" | "tok_authenticationRequired" => {
            ("visa", "3184", CardBehavior::RequiresAuthentication)
        }
        _ => return None,
    };
    Some(CardProfile { brand, last4, funding: if token.contains("debit") { "debit" } else { "credit" }, behavior })
}

#[derive(Debug, Clone)]
pub struct Customer {
    pub id: String,
    pub seq: u64,
    pub created: i64,
    pub email: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub phone: Option<String>,
    pub metadata: Metadata,
    pub default_payment_method: Option<String>,
    pub test_clock: Option<String>,
    pub invoice_prefix: String,
    pub next_invoice_sequence: u64,
    /// Stripe's customer balance: negative is credit owed to the customer.
    pub balance: i64,
    pub currency: Option<String>,
    pub deleted: bool,
}

#[derive(Debug, Clone)]
pub struct PaymentMethod {
    pub id: String,
    pub seq: u64,
    pub created: i64,
    pub customer: Option<String>,
    pub card: CardProfile,
    pub fingerprint: String,
    pub metadata: Metadata,
}

#[derive(Debug, Clone)]
pub struct Product {
    pub id: String,
    pub seq: u64,
    pub created: i64,
    pub updated: i64,
    pub name: String,
    pub description: Option<String>,
    pub active: bool,
    pub metadata: Metadata,
    pub default_price: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Recurring {
    pub interval: Interval,
    pub interval_count: u32,
}

#[derive(Debug, Clone)]
pub struct Price {
    pub id: String,
    pub seq: u64,
    pub created: i64,
    pub product: String,
    pub currency: String,
    pub unit_amount: i64,
    pub recurring: Option<Recurring>,
    pub lookup_key: Option<String>,
    pub nickname: Option<String>,
    pub active: bool,
    pub metadata: Metadata,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubStatus {
    Trialing,
    Active,
    PastDue,
    Canceled,
    Unpaid,
    Incomplete,
    IncompleteExpired,
    Paused,
}

impl SubStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubStatus::Trialing => "trialing",
            SubStatus::Active => "active",
            SubStatus::PastDue => "past_due",
            SubStatus::Canceled => "canceled",
            SubStatus::Unpaid => "unpaid",
            SubStatus::Incomplete => "incomplete",
            SubStatus::IncompleteExpired => "incomplete_expired",
            SubStatus::Paused => "paused",
        }
    }

    pub fn parse(s: &str) -> Option<SubStatus> {
        [
            SubStatus::Trialing,
            SubStatus::Active,
            SubStatus::PastDue,
            SubStatus::Canceled,
            SubStatus::Unpaid,
            SubStatus::Incomplete,
            SubStatus::IncompleteExpired,
            SubStatus::Paused,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// Terminal states: the subscription can no longer be changed (except metadata).
    pub fn is_ended(self) -> bool {
        matches!(self, SubStatus::Canceled | SubStatus::IncompleteExpired)
    }
}

/// `trial_settings[end_behavior][missing_payment_method]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingPaymentMethod {
    Cancel,
    Pause,
    CreateInvoice,
}

impl MissingPaymentMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            MissingPaymentMethod::Cancel => "cancel",
            MissingPaymentMethod::Pause => "pause",
            MissingPaymentMethod::CreateInvoice => "create_invoice",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SubItem {
    pub id: String,
    pub created: i64,
    pub price: String,
    pub quantity: u64,
    pub metadata: Metadata,
    pub current_period_start: i64,
    pub current_period_end: i64,
}

#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub seq: u64,
    pub customer: String,
    pub created: i64,
    pub start_date: i64,
    pub status: SubStatus,
    pub items: Vec<SubItem>,
    pub currency: String,
    pub billing_cycle_anchor: i64,
    pub cancel_at_period_end: bool,
    pub cancel_at: Option<i64>,
    pub canceled_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub cancellation_reason: Option<&'static str>,
    pub cancellation_comment: Option<String>,
    pub cancellation_feedback: Option<String>,
    pub trial_start: Option<i64>,
    pub trial_end: Option<i64>,
    pub missing_payment_method: MissingPaymentMethod,
    pub trial_will_end_sent: bool,
    pub default_payment_method: Option<String>,
    pub latest_invoice: Option<String>,
    pub metadata: Metadata,
    pub description: Option<String>,
    pub test_clock: Option<String>,
}

impl Subscription {
    /// All items share one period (the sim requires one interval per subscription).
    pub fn period(&self) -> (i64, i64) {
        self.items.first().map(|i| (i.current_period_start, i.current_period_end)).unwrap_or((self.start_date, self.start_date))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceStatus {
    Draft,
    Open,
    Paid,
    Uncollectible,
    Void,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Draft => "draft",
            InvoiceStatus::Open => "open",
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::Uncollectible => "uncollectible",
            InvoiceStatus::Void => "void",
        }
    }

    pub fn parse(s: &str) -> Option<InvoiceStatus> {
        [InvoiceStatus::Draft, InvoiceStatus::Open, InvoiceStatus::Paid, InvoiceStatus::Uncollectible, InvoiceStatus::Void]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

/// One invoice line (`line_item`).
#[derive(Debug, Clone)]
pub struct Line {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub description: String,
    pub period_start: i64,
    pub period_end: i64,
    pub price: String,
    pub quantity: u64,
    pub proration: bool,
    pub subscription: Option<String>,
    pub subscription_item: Option<String>,
    /// The pending invoice item this line came from (prorations).
    pub invoice_item: Option<String>,
    pub metadata: Metadata,
}

#[derive(Debug, Clone)]
pub struct Invoice {
    pub id: String,
    pub seq: u64,
    pub customer: String,
    pub subscription: Option<String>,
    pub status: InvoiceStatus,
    pub billing_reason: &'static str,
    pub created: i64,
    pub currency: String,
    pub period_start: i64,
    pub period_end: i64,
    pub lines: Vec<Line>,
    /// Sum of the lines (no taxes or discounts in the sim).
    pub total: i64,
    pub starting_balance: i64,
    pub ending_balance: Option<i64>,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub attempt_count: u64,
    pub attempted: bool,
    pub auto_advance: bool,
    pub next_payment_attempt: Option<i64>,
    pub number: Option<String>,
    pub finalized_at: Option<i64>,
    pub paid_at: Option<i64>,
    pub voided_at: Option<i64>,
    pub marked_uncollectible_at: Option<i64>,
    pub payment_intent: Option<String>,
    pub default_payment_method: Option<String>,
    pub metadata: Metadata,
    /// The subscription's metadata at the time the invoice was created (Stripe snapshots it).
    pub subscription_metadata: Option<Metadata>,
    pub test_clock: Option<String>,
    pub customer_email: Option<String>,
    pub customer_name: Option<String>,
}

impl Invoice {
    pub fn amount_remaining(&self) -> i64 {
        match self.status {
            InvoiceStatus::Paid | InvoiceStatus::Void => 0,
            _ => self.amount_due - self.amount_paid,
        }
    }
}

/// A pending invoice item (`invoiceitem`), e.g. a proration waiting for the next invoice.
#[derive(Debug, Clone)]
pub struct InvoiceItem {
    pub id: String,
    pub seq: u64,
    pub customer: String,
    pub subscription: Option<String>,
    pub subscription_item: Option<String>,
    pub price: String,
    pub amount: i64,
    pub currency: String,
    pub description: String,
    pub period_start: i64,
    pub period_end: i64,
    pub proration: bool,
    pub date: i64,
    pub invoice: Option<String>,
    pub test_clock: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PiStatus {
    RequiresPaymentMethod,
    /// A payment method is set and the client has not confirmed yet
    /// (the first invoice of a `default_incomplete` subscription).
    RequiresConfirmation,
    RequiresAction,
    Succeeded,
    Canceled,
}

impl PiStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PiStatus::RequiresPaymentMethod => "requires_payment_method",
            PiStatus::RequiresConfirmation => "requires_confirmation",
            PiStatus::RequiresAction => "requires_action",
            PiStatus::Succeeded => "succeeded",
            PiStatus::Canceled => "canceled",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PaymentError {
    pub code: &'static str,
    pub decline_code: &'static str,
    pub message: String,
    pub payment_method: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PaymentIntent {
    pub id: String,
    pub created: i64,
    pub amount: i64,
    pub amount_received: i64,
    pub currency: String,
    pub customer: String,
    pub invoice: String,
    pub payment_method: Option<String>,
    pub status: PiStatus,
    pub client_secret: String,
    pub last_payment_error: Option<PaymentError>,
    pub canceled_at: Option<i64>,
    pub paid_at: Option<i64>,
    /// The `invoice_payment` id that links this intent to its invoice.
    pub invoice_payment_id: String,
}

#[derive(Debug, Clone)]
pub struct TestClock {
    pub id: String,
    pub seq: u64,
    pub created: i64,
    pub frozen_time: i64,
    pub name: Option<String>,
    pub deletes_after: i64,
}

#[derive(Debug, Clone)]
pub struct WebhookEndpoint {
    pub id: String,
    pub seq: u64,
    pub created: i64,
    pub url: String,
    pub secret: String,
    pub enabled_events: Vec<String>,
    pub description: Option<String>,
    pub metadata: Metadata,
    pub enabled: bool,
    /// Per-endpoint chaos override (set by the in-process registration API).
    pub chaos: Option<crate::config::ChaosConfig>,
}

impl WebhookEndpoint {
    pub fn wants(&self, event_type: &str) -> bool {
        self.enabled && self.enabled_events.iter().any(|e| e == "*" || e == event_type)
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub created: i64,
    pub type_: String,
    pub object: Value,
    pub previous_attributes: Option<Value>,
    pub request_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub pending_webhooks: i64,
    /// Wall-clock second the sim recorded it (retention is measured on it, not on
    /// `created`, which follows the object's test clock).
    pub recorded_at: i64,
}

/// A stored idempotent response.
#[derive(Debug, Clone)]
pub struct IdempotentResponse {
    pub fingerprint: String,
    pub status: u16,
    pub body: bytes::Bytes,
    /// Wall-clock time of the first use.
    pub wall_at: i64,
    /// The test clock the response belongs to and its frozen time at first use.
    pub clock_at: Option<(String, i64)>,
}

/// How long Stripe keeps an idempotency key.
pub const IDEMPOTENCY_TTL: i64 = 24 * 3600;

impl IdempotentResponse {
    /// Whether 24 hours have passed since first use on the key's clock. A key whose
    /// test clock was deleted falls back to the wall clock.
    pub fn expired(&self, sim: &Sim) -> bool {
        let clock_age = self.clock_at.as_ref().and_then(|(id, at)| sim.test_clocks.get(id).map(|c| c.frozen_time - at));
        clock_age.unwrap_or_else(|| wall_now() - self.wall_at) >= IDEMPOTENCY_TTL
    }
}

/// The request being served, so events can carry `request.id` / `request.idempotency_key`.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub id: Option<String>,
    pub idempotency_key: Option<String>,
}

pub struct Sim {
    pub config: Arc<SimConfig>,
    pub base_url: String,
    pub dispatcher: Arc<Dispatcher>,
    seq: u64,
    pub customers: BTreeMap<String, Customer>,
    pub payment_methods: BTreeMap<String, PaymentMethod>,
    pub products: BTreeMap<String, Product>,
    pub prices: BTreeMap<String, Price>,
    pub subscriptions: BTreeMap<String, Subscription>,
    pub invoices: BTreeMap<String, Invoice>,
    pub invoice_items: BTreeMap<String, InvoiceItem>,
    pub payment_intents: BTreeMap<String, PaymentIntent>,
    pub test_clocks: BTreeMap<String, TestClock>,
    pub webhook_endpoints: BTreeMap<String, WebhookEndpoint>,
    pub events: Vec<Event>,
    pub event_index: HashMap<String, usize>,
    pub idempotency: HashMap<String, IdempotentResponse>,
    /// When each object became visible to `/search` (wall clock), for `search_delay`.
    pub search_visible_at: HashMap<String, std::time::Instant>,
    /// Receivers completed by the first delivery attempt of each webhook the current
    /// request caused (only with `webhooks_before_response`).
    pub webhook_acks: Vec<tokio::sync::oneshot::Receiver<()>>,
    /// Set while an API request is served; `None` for clock-driven work, as with Stripe.
    pub request: RequestInfo,
}

impl Sim {
    pub fn new(config: Arc<SimConfig>, base_url: String, dispatcher: Arc<Dispatcher>) -> Sim {
        Sim {
            config,
            base_url,
            dispatcher,
            seq: 0,
            customers: BTreeMap::new(),
            payment_methods: BTreeMap::new(),
            products: BTreeMap::new(),
            prices: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            invoices: BTreeMap::new(),
            invoice_items: BTreeMap::new(),
            payment_intents: BTreeMap::new(),
            test_clocks: BTreeMap::new(),
            webhook_endpoints: BTreeMap::new(),
            events: Vec::new(),
            event_index: HashMap::new(),
            idempotency: HashMap::new(),
            search_visible_at: HashMap::new(),
            webhook_acks: Vec::new(),
            request: RequestInfo::default(),
        }
    }

    /// A monotonically increasing number, used to order lists newest-first
    /// deterministically (many objects share a `created` second under test clocks).
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Makes `id` searchable after the configured `search_delay` (at once without one).
    pub fn index_for_search(&mut self, id: &str) {
        let at = std::time::Instant::now() + self.config.search_delay.unwrap_or_default();
        self.search_visible_at.insert(id.to_string(), at);
    }

    /// Whether `/search` shows `id` yet.
    pub fn searchable(&self, id: &str) -> bool {
        self.search_visible_at.get(id).is_none_or(|at| std::time::Instant::now() >= *at)
    }

    /// "Now" for objects in a test clock's world, or the wall clock otherwise.
    pub fn now_in_clock(&self, clock: Option<&str>) -> i64 {
        clock.and_then(|c| self.test_clocks.get(c)).map(|c| c.frozen_time).unwrap_or_else(wall_now)
    }

    pub fn now_for_customer(&self, customer: &str) -> i64 {
        let clock = self.customers.get(customer).and_then(|c| c.test_clock.as_deref());
        self.now_in_clock(clock)
    }

    /// Records an event and queues it for every endpoint that wants it.
    pub fn emit(&mut self, type_: &str, object: Value, previous_attributes: Option<Value>, created: i64) {
        let targets: Vec<WebhookEndpoint> = self.webhook_endpoints.values().filter(|e| e.wants(type_)).cloned().collect();
        let event = Event {
            id: new_id("evt"),
            created,
            type_: type_.to_string(),
            object,
            previous_attributes,
            request_id: self.request.id.clone(),
            idempotency_key: self.request.idempotency_key.clone(),
            pending_webhooks: targets.len() as i64,
            recorded_at: crate::time::wall_now(),
        };
        tracing::debug!(event = %event.id, r#type = type_, endpoints = targets.len(), "event");
        if !targets.is_empty() {
            let body = crate::resources::events::render(&event).to_string();
            let wait = self.config.webhooks_before_response && self.request.id.is_some();
            for endpoint in &targets {
                if let Some(ack) = self.dispatcher.enqueue(endpoint, &event.id, type_, body.clone(), wait) {
                    self.webhook_acks.push(ack);
                }
            }
        }
        self.event_index.insert(event.id.clone(), self.events.len());
        self.events.push(event);
    }

    /// Emits `type_` with the changed top-level fields of `before` as `previous_attributes`,
    /// or nothing if the object did not change.
    pub fn emit_updated(&mut self, type_: &str, before: &Value, after: Value, created: i64) {
        let prev = diff_previous(before, &after);
        if prev.as_object().is_some_and(|m| !m.is_empty()) {
            self.emit(type_, after, Some(prev), created);
        }
    }
}

/// Stripe's `previous_attributes`: the old values of the top-level keys that changed.
pub fn diff_previous(before: &Value, after: &Value) -> Value {
    let mut prev = serde_json::Map::new();
    if let (Some(b), Some(a)) = (before.as_object(), after.as_object()) {
        for (k, old) in b {
            if a.get(k) != Some(old) {
                prev.insert(k.clone(), old.clone());
            }
        }
    }
    json!(prev)
}
