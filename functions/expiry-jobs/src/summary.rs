//! The structured result of one run: returned as the invocation result, logged as one
//! JSON line, and emitted as CloudWatch Embedded Metric Format (EMF) on stdout.

use std::ops::AddAssign;

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::{delivery::DeliveryReport, metrics::Metrics};

use crate::input::{JobName, JobRequest};

/// The CloudWatch namespace of every metric this function emits.
pub const METRIC_NAMESPACE: &str = shared::metrics::NAMESPACE;

/// What a run did, item by item. Every field is a count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Expiry warnings newly queued (subscriptions that will not renew).
    pub warned: u64,
    /// Renewal reminders newly queued (subscriptions that will renew and charge).
    pub reminded: u64,
    /// Warnings or reminders found already queued for that period and window (reruns).
    pub already_warned: u64,
    /// Subscriptions expired and downgraded to free.
    pub expired: u64,
    /// Of those, paid ones Stripe was still billing, cancelled at Stripe first.
    pub canceled_at_stripe: u64,
    /// Lapsed-looking subscriptions that Stripe says were renewed or changed (a late
    /// webhook): brought in line instead of expired.
    pub synced: u64,
    /// Lapsed subscriptions left alone for now (Stripe still active or retrying a payment
    /// within the past-due grace).
    pub deferred: u64,
    /// Events read from Stripe's event log by `reconcile` (the missed-event replay).
    pub events_listed: u64,
    /// Of those, events the ledger did not know (missed webhooks), handled now.
    pub events_replayed: u64,
    /// Subscriptions looked at by `sweep-stripe`, in its whole pass so far.
    pub swept: u64,
    /// Records the sweep brought in line with Stripe (whole pass).
    pub sweep_repaired: u64,
    /// Of those, Stripe subscriptions of our users that no record named (whole pass).
    pub orphans_adopted: u64,
    /// Second live Stripe subscriptions of one user, left for an operator (whole pass).
    pub orphans_flagged: u64,
    /// Outbox items delivered (`deliver-pending`).
    pub delivered: u64,
    /// Outbox items that failed this time and stay pending for a later attempt.
    pub retry_later: u64,
    /// Outbox items refused for good.
    pub failed: u64,
    /// Outbox items parked after too many attempts.
    pub dead_lettered: u64,
    /// E-mails suppressed: their address is undeliverable (SES bounce or complaint).
    pub suppressed: u64,
    /// Concurrent changes (a webhook won the race) that were re-read and re-evaluated.
    pub conflicts: u64,
    /// Items that could not be handled this run (Stripe or DynamoDB unavailable for that
    /// item); they are retried by the next run.
    pub errors: u64,
    /// Items read from DynamoDB to find the work (`ScannedCount` of the index queries, plus
    /// the outbox items swept).
    pub items_read: u64,
}

impl AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.warned += o.warned;
        self.reminded += o.reminded;
        self.already_warned += o.already_warned;
        self.expired += o.expired;
        self.canceled_at_stripe += o.canceled_at_stripe;
        self.synced += o.synced;
        self.deferred += o.deferred;
        self.events_listed += o.events_listed;
        self.events_replayed += o.events_replayed;
        self.swept += o.swept;
        self.sweep_repaired += o.sweep_repaired;
        self.orphans_adopted += o.orphans_adopted;
        self.orphans_flagged += o.orphans_flagged;
        self.delivered += o.delivered;
        self.retry_later += o.retry_later;
        self.failed += o.failed;
        self.dead_lettered += o.dead_lettered;
        self.suppressed += o.suppressed;
        self.conflicts += o.conflicts;
        self.errors += o.errors;
        self.items_read += o.items_read;
    }
}

impl Counts {
    pub fn add_delivery(&mut self, report: DeliveryReport) {
        self.delivered += u64::from(report.sent);
        self.retry_later += u64::from(report.retry_later);
        self.failed += u64::from(report.failed);
        self.dead_lettered += u64::from(report.dead_lettered);
        self.suppressed += u64::from(report.suppressed);
    }

    /// `(metric name, value)` pairs, in the order they are declared above.
    fn metrics(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("Warned", self.warned),
            ("Reminded", self.reminded),
            ("AlreadyWarned", self.already_warned),
            ("Expired", self.expired),
            ("CanceledAtStripe", self.canceled_at_stripe),
            ("Synced", self.synced),
            ("Deferred", self.deferred),
            ("EventsListed", self.events_listed),
            ("EventsReplayed", self.events_replayed),
            ("Swept", self.swept),
            ("SweepRepaired", self.sweep_repaired),
            ("OrphansAdopted", self.orphans_adopted),
            ("OrphansFlagged", self.orphans_flagged),
            ("Delivered", self.delivered),
            ("RetryLater", self.retry_later),
            ("Failed", self.failed),
            ("DeadLettered", self.dead_lettered),
            ("Suppressed", self.suppressed),
            ("Conflicts", self.conflicts),
            ("Errors", self.errors),
            ("ItemsRead", self.items_read),
        ]
    }
}

/// One run's summary: the invocation result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    pub job: JobName,
    /// The instant the run acted as of (`time` from the input, else the clock).
    pub now: DateTime<Utc>,
    #[serde(flatten)]
    pub counts: Counts,
    pub duration_ms: u64,
    /// Whether the run stopped early and handed the rest to a continuation.
    pub continued: bool,
    /// The continuation published to the bus (and to re-run by hand if needed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continuation: Option<JobRequest>,
}

impl RunSummary {
    /// The summary as one flat JSON log line (with `telemetry::init`'s JSON formatter).
    pub fn log(&self) {
        let c = &self.counts;
        let continuation = self.continuation.as_ref().and_then(|r| serde_json::to_string(r).ok());
        tracing::info!(
            job = self.job.as_str(),
            now = %self.now.to_rfc3339(),
            warned = c.warned,
            reminded = c.reminded,
            already_warned = c.already_warned,
            expired = c.expired,
            synced = c.synced,
            deferred = c.deferred,
            events_listed = c.events_listed,
            events_replayed = c.events_replayed,
            swept = c.swept,
            sweep_repaired = c.sweep_repaired,
            orphans_adopted = c.orphans_adopted,
            orphans_flagged = c.orphans_flagged,
            canceled_at_stripe = c.canceled_at_stripe,
            delivered = c.delivered,
            retry_later = c.retry_later,
            failed = c.failed,
            dead_lettered = c.dead_lettered,
            suppressed = c.suppressed,
            conflicts = c.conflicts,
            errors = c.errors,
            items_read = c.items_read,
            duration_ms = self.duration_ms,
            continued = self.continued,
            continuation = continuation.as_deref(),
            "job run summary"
        );
    }

    /// The run's metrics: one per count plus `DurationMs`, `Continued` and `JobRuns`, under the
    /// dimension `Job` (CloudWatch EMF, namespace [`METRIC_NAMESPACE`]).
    pub fn metrics(&self) -> Metrics {
        let mut metrics = Metrics::new().dimension("Job", self.job.as_str());
        for (name, value) in self.counts.metrics() {
            metrics = metrics.count(name, value);
        }
        // `JobRuns` is 1 for a run that finished its work (a continued run's continuation
        // counts when it finishes): the "no successful expire-lapsed run" alarm reads it.
        metrics
            .count("Continued", u64::from(self.continued))
            .count("JobRuns", u64::from(!self.continued))
            .millis("DurationMs", u128::from(self.duration_ms))
    }

    /// Writes the EMF document as one line on stdout, where the Lambda log agent picks it up.
    pub fn emit_metrics(&self) {
        self.metrics().emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summary_and_emf_shapes() {
        let now = DateTime::parse_from_rfc3339("2026-03-10T06:00:00Z").unwrap().with_timezone(&Utc);
        let summary = RunSummary {
            job: JobName::Daily,
            now,
            counts: Counts { warned: 2, expired: 1, items_read: 5, ..Counts::default() },
            duration_ms: 40,
            continued: false,
            continuation: None,
        };
        let value = serde_json::to_value(&summary).unwrap();
        assert_eq!(value["job"], "daily");
        assert_eq!(value["warned"], 2);
        assert_eq!(value["items_read"], 5);
        assert_eq!(value["continued"], false);
        assert!(value.get("continuation").is_none());

        let emf = summary.metrics().to_json(now.timestamp_millis());
        assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Namespace"], METRIC_NAMESPACE);
        assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Job"]]));
        assert_eq!(emf["Job"], "daily");
        assert_eq!(emf["Expired"], 1.0);
        assert_eq!(emf["_aws"]["Timestamp"], now.timestamp_millis());
        // Every declared metric has a value at the top level.
        for m in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap() {
            assert!(emf.get(m["Name"].as_str().unwrap()).is_some(), "{m}");
        }
    }
}
