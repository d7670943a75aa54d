//! Catching up with Stripe when webhooks were missed, at a cost that follows what changed
//! rather than how many customers there are.
//!
//! - [`Replay`] (`reconcile`, hourly): pages through Stripe's event log (`GET /v1/events`,
//!   100 per page, the event types the webhook handles) from a cursor kept in the table,
//!   and hands every event the ledger does not know to the webhook's own [`Processor`] —
//!   the same ledger entry, re-fetch and single transaction as a delivered webhook. Stripe
//!   calls: events since the last run / 100, plus the re-fetches of the events actually
//!   missed. Stripe lists events for 30 days, so a replay at least that often misses none.
//! - [`Sweep`] (`sweep-stripe`, weekly and on demand): pages through every subscription
//!   (`GET /v1/subscriptions?status=all`, N/100 calls) and brings each owner's record in
//!   line ([`Processor::apply_snapshot`]): live here but ended at Stripe, ended here but
//!   live at Stripe, and subscriptions whose `metadata.user_id` names a user no record
//!   ties them to (adopted — never a customer billed without access), or that would be a
//!   second live one for the user (flagged). It catches what no event shows: drift older
//!   than the event log, or a record written wrong.
//!
//! Both keep their position in the table after every page, so a run stopped by its budget
//! (or killed) resumes where it was, across invocations and days, and always finishes.

mod replay;
mod sweep;

use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

pub use replay::{Replay, ReplayReport, ReplaySettings};
pub use sweep::{Sweep, SweepReport};

use super::stripe_event::{ProcessError, Processor};
use crate::{
    billing::{BillingError, BillingGateway},
    store::{Store, StoreError},
};

/// Why a catch-up run stopped before its end (its position is saved: the next run resumes).
#[derive(Debug, Error)]
pub enum CatchUpError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Billing(#[from] BillingError),
    #[error("processing a missed event failed: {0}")]
    Process(#[from] ProcessError),
    #[error("the saved position of `{job}` cannot be read: {why}")]
    Position { job: &'static str, why: String },
}

/// What both catch-ups are built on.
#[derive(Clone)]
pub struct CatchUp {
    store: Arc<dyn Store>,
    billing: Arc<dyn BillingGateway>,
    processor: Arc<Processor>,
}

impl CatchUp {
    pub fn new(store: Arc<dyn Store>, billing: Arc<dyn BillingGateway>, processor: Arc<Processor>) -> Self {
        Self { store, billing, processor }
    }

    async fn load<T: DeserializeOwned>(&self, job: &'static str) -> Result<Option<T>, CatchUpError> {
        match self.store.cursor(job).await? {
            None => Ok(None),
            Some(raw) => serde_json::from_str(&raw).map(Some).map_err(|e| CatchUpError::Position { job, why: e.to_string() }),
        }
    }

    async fn save<T: Serialize>(&self, job: &'static str, position: &T) -> Result<(), CatchUpError> {
        let raw = serde_json::to_string(position).map_err(|e| CatchUpError::Position { job, why: e.to_string() })?;
        Ok(self.store.put_cursor(job, &raw).await?)
    }
}
