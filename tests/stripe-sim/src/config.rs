//! Configuration of a sim instance.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// What happens to a subscription once every automatic retry of a renewal has failed.
/// Mirrors the Billing setting "If all retries for a payment fail".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DunningFinalAction {
    /// Cancel the subscription (`customer.subscription.deleted`). Stripe's default.
    #[default]
    Cancel,
    /// Mark it `unpaid` (`customer.subscription.updated`); later invoices stay drafts.
    MarkUnpaid,
    /// Leave it `past_due`.
    LeavePastDue,
}

/// Retries of webhook deliveries that fail (non-2xx answer or connection error).
#[derive(Debug, Clone)]
pub struct WebhookRetry {
    /// Attempts per delivery, the first one included. At least 1.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled after each further failure.
    pub initial_backoff: Duration,
    /// Cap on the wait between attempts.
    pub max_backoff: Duration,
    /// Per-attempt timeout of the HTTP POST.
    pub timeout: Duration,
}

impl Default for WebhookRetry {
    fn default() -> Self {
        WebhookRetry {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Opt-in misbehaviour of webhook delivery, to prove a receiver is idempotent and
/// order-independent. Seeded, so a failing run can be replayed with the same seed
/// (timing can still change how events are batched into windows).
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosConfig {
    pub seed: u64,
    /// Probability (0.0–1.0) that a delivered event is delivered once more.
    pub duplicate_probability: f64,
    /// Events queued together are shuffled in windows of up to this many.
    pub reorder_window: usize,
    /// Each delivery waits a random 0..=max_delay before it is sent.
    pub max_delay: Duration,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        ChaosConfig { seed: 0x5eed, duplicate_probability: 0.3, reorder_window: 4, max_delay: Duration::from_millis(30) }
    }
}

/// A webhook endpoint registered in-process (or from the CLI) rather than via the API.
#[derive(Debug, Clone)]
pub struct WebhookEndpointConfig {
    pub url: String,
    /// `whsec_…`; a random one is generated when `None`.
    pub secret: Option<String>,
    /// Event types to deliver; `["*"]` for all.
    pub enabled_events: Vec<String>,
    /// Overrides [`SimConfig::chaos`] for this endpoint.
    pub chaos: Option<ChaosConfig>,
}

impl WebhookEndpointConfig {
    /// All events to `url`, signed with `secret`.
    pub fn new(url: impl Into<String>, secret: Option<String>) -> Self {
        WebhookEndpointConfig { url: url.into(), secret, enabled_events: vec!["*".into()], chaos: None }
    }
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to bind; loopback by default (the project's servers never bind wider).
    pub host: IpAddr,
    /// 0 picks a free port.
    pub port: u16,
    /// The key [`crate::SimHandle::secret_key`] hands out. Any `sk_test_…` key is accepted.
    pub secret_key: String,
    /// Delays between automatic payment retries of a failed renewal, each counted from
    /// the previous attempt (Stripe's "custom retry schedule"). Default 3, 5, 7 days.
    pub retry_schedule: Vec<Duration>,
    pub dunning_final_action: DunningFinalAction,
    /// An `incomplete` subscription whose first invoice is unpaid after this long
    /// becomes `incomplete_expired`. Stripe: 23 hours.
    pub incomplete_expiry: Duration,
    /// `customer.subscription.trial_will_end` is sent this long before the trial ends.
    pub trial_will_end_notice: Duration,
    pub webhook_retry: WebhookRetry,
    /// Chaos for every endpoint that has no override; `None` = well-behaved delivery.
    pub chaos: Option<ChaosConfig>,
    /// Endpoints registered at start.
    pub webhook_endpoints: Vec<WebhookEndpointConfig>,
    /// Create the LogiScore products and prices at start (see [`crate::seed::seed_prices`]).
    pub seed_prices: bool,
    /// Stripe's search is eventually consistent (typically under a minute): with
    /// `Some(d)`, an object shows up in `/search` results only `d` (wall-clock time)
    /// after it was created. `None` (default): at once.
    pub search_delay: Option<Duration>,
    /// Idempotency keys expire 24 hours after first use, as with Stripe, measured on
    /// the clock of the objects the request touched (its test clock's frozen time when
    /// the response names one, otherwise the wall clock). A replay after that runs as a
    /// new request. Off by default: keys never expire.
    pub idempotency_expiry: bool,
    /// Deliver the webhooks a request causes (each attempted at least once) before that
    /// request's HTTP response is sent, as can happen with Stripe. Off by default:
    /// deliveries happen afterwards, asynchronously.
    pub webhooks_before_response: bool,
    /// How long events stay listable and retrievable (`/v1/events`), measured on the wall
    /// clock from when the sim recorded them: Stripe keeps 30 days.
    pub event_retention: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            secret_key: "sk_test_stripe_sim".to_string(),
            retry_schedule: [3, 5, 7].iter().map(|d| Duration::from_secs(d * 86_400)).collect(),
            dunning_final_action: DunningFinalAction::Cancel,
            incomplete_expiry: Duration::from_secs(23 * 3600),
            trial_will_end_notice: Duration::from_secs(3 * 86_400),
            webhook_retry: WebhookRetry::default(),
            chaos: None,
            webhook_endpoints: Vec::new(),
            seed_prices: false,
            search_delay: None,
            idempotency_expiry: false,
            webhooks_before_response: false,
            event_retention: Duration::from_secs(30 * 86_400),
        }
    }
}

/// A fault the API answers with instead of doing the work (see [`crate::SimHandle::set_fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every request gets this status with a Stripe-shaped error (429 → `rate_limit`,
    /// 5xx → `api_error`, both with `Stripe-Should-Retry: true`).
    Status(u16),
    /// The next `times` requests get `status`; then the fault clears itself.
    StatusTimes { status: u16, times: u32 },
}
