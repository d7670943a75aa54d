//! Time travel: advancing a test clock runs, in time order, everything that falls due
//! between its old and new frozen time — trial-end notices, trial ends, renewals,
//! payment retries, period-end cancellations and expiry of incomplete subscriptions.
//!
//! Work runs synchronously inside the advance request (under the state lock), with the
//! clock's frozen time set to each due moment in turn, so every object and event gets
//! the timestamp it would have had. Webhooks for the resulting events are delivered
//! asynchronously afterwards, in order.

use crate::billing::{self, AttemptMode, Outcome};
use crate::error::ApiError;
use crate::resources::{invoices, subscriptions};
use crate::state::{InvoiceStatus, Sim, SubStatus};

/// What falls due. The derive order breaks ties at the same second: retries of old
/// invoices first, then notices, expiries and finally period ends.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Work {
    Retry(String),
    TrialWillEnd(String),
    IncompleteExpiry(String),
    /// A `cancel_at` time reached (for any status that is not ended yet).
    CancelAt(String),
    PeriodEnd(String),
}

/// Upper bound on work items per advance: far above any real scenario (two years of
/// daily renewals for a hundred subscriptions), it only stops a runaway loop.
const MAX_STEPS: usize = 100_000;

fn next_due(sim: &Sim, clock: &str, target: i64) -> Option<(i64, Work)> {
    let notice = i64::try_from(sim.config.trial_will_end_notice.as_secs()).unwrap_or(0);
    let expiry = i64::try_from(sim.config.incomplete_expiry.as_secs()).unwrap_or(0);
    let mut best: Option<(i64, Work)> = None;
    let mut consider = |at: i64, work: Work| {
        if at <= target && best.as_ref().is_none_or(|(b_at, b_work)| (at, &work) < (*b_at, b_work)) {
            best = Some((at, work));
        }
    };
    for sub in sim.subscriptions.values().filter(|s| s.test_clock.as_deref() == Some(clock)) {
        let (_, period_end) = sub.period();
        if let (false, Some(cancel_at)) = (sub.status.is_ended(), sub.cancel_at) {
            consider(cancel_at, Work::CancelAt(sub.id.clone()));
        }
        match sub.status {
            SubStatus::Trialing => {
                if let (false, Some(trial_end)) = (sub.trial_will_end_sent, sub.trial_end) {
                    consider((trial_end - notice).max(sub.created), Work::TrialWillEnd(sub.id.clone()));
                }
                consider(period_end, Work::PeriodEnd(sub.id.clone()));
            }
            SubStatus::Active | SubStatus::PastDue | SubStatus::Unpaid => consider(period_end, Work::PeriodEnd(sub.id.clone())),
            SubStatus::Incomplete => consider(sub.created + expiry, Work::IncompleteExpiry(sub.id.clone())),
            SubStatus::Paused | SubStatus::Canceled | SubStatus::IncompleteExpired => {}
        }
    }
    for inv in sim.invoices.values().filter(|i| i.test_clock.as_deref() == Some(clock) && i.status == InvoiceStatus::Open) {
        if let Some(at) = inv.next_payment_attempt {
            consider(at, Work::Retry(inv.id.clone()));
        }
    }
    best
}

/// Moves `clock` to `target`, running all due work in order.
pub fn advance(sim: &mut Sim, clock: &str, target: i64) -> Result<(), ApiError> {
    for _ in 0..MAX_STEPS {
        let Some((at, work)) = next_due(sim, clock, target) else {
            if let Some(c) = sim.test_clocks.get_mut(clock) {
                c.frozen_time = target;
            }
            return Ok(());
        };
        if let Some(c) = sim.test_clocks.get_mut(clock) {
            // Due work can lie before the current frozen time only if it was created
            // "in the past"; time never runs backwards.
            c.frozen_time = c.frozen_time.max(at);
        }
        let now = sim.test_clocks.get(clock).map(|c| c.frozen_time).unwrap_or(at);
        tracing::debug!(clock, at, ?work, "clock work");
        run(sim, now, work);
    }
    Err(ApiError::internal("test clock advance did not settle (stripe-sim bug)"))
}

fn run(sim: &mut Sim, now: i64, work: Work) {
    match work {
        Work::Retry(inv_id) => {
            let sub_ended = sim
                .invoices
                .get(&inv_id)
                .and_then(|i| i.subscription.as_ref())
                .and_then(|s| sim.subscriptions.get(s))
                .is_some_and(|s| s.status.is_ended());
            if sub_ended {
                // Stripe stops retrying once the subscription is gone.
                if let Some(i) = sim.invoices.get_mut(&inv_id) {
                    i.next_payment_attempt = None;
                }
                return;
            }
            let outcome = billing::attempt_payment(sim, &inv_id, now, None, AttemptMode::Automatic);
            if !matches!(outcome, Outcome::Paid) {
                billing::after_failure(sim, &inv_id, now, AttemptMode::Automatic);
            }
        }
        Work::TrialWillEnd(sub_id) => {
            if let Some(s) = sim.subscriptions.get_mut(&sub_id) {
                s.trial_will_end_sent = true;
            }
            let obj = subscriptions::render_id(sim, &sub_id);
            sim.emit("customer.subscription.trial_will_end", obj, None, now);
        }
        Work::IncompleteExpiry(sub_id) => {
            // The first invoice was never paid: void it and end the subscription.
            let latest = sim.subscriptions.get(&sub_id).and_then(|s| s.latest_invoice.clone());
            let before = subscriptions::render_id(sim, &sub_id);
            if let Some(s) = sim.subscriptions.get_mut(&sub_id) {
                s.status = SubStatus::IncompleteExpired;
                s.ended_at = Some(now);
            }
            if let Some(inv) = latest {
                if sim.invoices.get(&inv).is_some_and(|i| i.status == InvoiceStatus::Open) {
                    invoices::void_invoice(sim, &inv, now);
                }
            }
            let after = subscriptions::render_id(sim, &sub_id);
            sim.emit_updated("customer.subscription.updated", &before, after, now);
        }
        Work::CancelAt(sub_id) => {
            if sim.subscriptions.get(&sub_id).and_then(|s| s.cancel_at).is_some_and(|c| c <= now) {
                billing::cancel_now(sim, &sub_id, now, Some("cancellation_requested"));
            }
        }
        Work::PeriodEnd(sub_id) => billing::period_end(sim, &sub_id, now),
    }
}
