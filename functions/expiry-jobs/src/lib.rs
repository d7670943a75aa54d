//! The scheduled jobs of the LogiScore subscription backend, as a library so they run
//! (and are tested) without Lambda: `main.rs` only reads configuration, builds the
//! clients once, builds the jobs with [`app`] (as the tests do) and hands each invocation
//! to [`Jobs::handle`].
//!
//! | job | does |
//! | --- | --- |
//! | `expiry-warnings` | queues one warning (or, for a renewing subscription, a renewal reminder) per subscription, period and window |
//! | `expire-lapsed` | expires and downgrades live subscriptions past their end plus grace, after asking Stripe whether a renewal was merely late |
//! | `deliver-pending` | delivers outbox items still pending, at a bounded rate |
//! | `reconcile` | replays the Stripe events the webhook missed (the event log since the last run) |
//! | `sweep-stripe` | lists every Stripe subscription and repairs every disagreement (weekly) |
//! | `daily` | the first four, in that order |
//!
//! The function also receives SES's feedback on sent mail (bounces, complaints,
//! rejections, deliveries: events with `source` `aws.ses`, routed here by a rule on the
//! default bus); [`Jobs::invoke`] hands those to [`shared::usecase::mail_feedback`], which
//! marks undeliverable addresses so delivery suppresses their mail. It is a job input of
//! another kind rather than a fourth function: the same table, the same role shape, and the
//! suppression it feeds runs in `deliver-pending` here.
//!
//! Every step is idempotent (deterministic outbox ids, version-guarded writes, `expire` is
//! a no-op on an expired record), so a run that is retried, replayed with the same `time`,
//! or stopped half-way and continued, handles each item exactly once in effect.

pub mod budget;
pub mod config;
pub mod continuation;
pub mod input;
pub mod jobs;
pub mod setup;
pub mod summary;

use std::{sync::Arc, time::SystemTime};

use chrono::{DateTime, Utc};
use serde_json::Value;
use shared::{
    billing::BillingGateway,
    clock::RunClock,
    clock::SystemClock,
    delivery::OutboxDelivery,
    store::{Store, StoreError},
    usecase::{
        catch_up::{CatchUp, CatchUpError, Replay, ReplaySettings, Sweep},
        lifecycle::Lifecycle,
        mail_feedback::{FeedbackReport, HandleError, MailFeedback, SES_SOURCE},
        stripe_event::Processor,
    },
};
use tracing::Instrument;

pub use budget::Budget;
pub use config::{Config, JobSettings};
pub use continuation::{ContinuationPublisher, CONTINUATION_DETAIL_TYPE, CONTINUATION_SOURCE};
pub use input::{InputError, JobCursor, JobName, JobRequest};
pub use setup::{app, build};
pub use summary::{Counts, RunSummary};

/// Why a run failed. Input errors happen before anything is read or written.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("invalid job input: {0}")]
    Input(#[from] InputError),
    /// The work could not be found (an index or outbox query failed); the run stopped
    /// and a retry or the next schedule resumes it.
    #[error("the table could not be read: {0}")]
    Store(#[from] StoreError),
    /// A catch-up with Stripe stopped (Stripe or the table failed); its position is saved
    /// and a retry resumes it.
    #[error("catching up with stripe stopped: {0}")]
    CatchUp(#[from] CatchUpError),
    /// The run stopped early but its continuation could not be put on the bus; failing the
    /// invocation makes Lambda retry it, which redoes nothing that was done.
    #[error("the continuation could not be published: {0}")]
    Continuation(String),
    #[error("job `{0}` ran out of budget before handling a single item; not continuing (raise the timeout or JOB_SAFETY_MARGIN_MS)")]
    NoProgress(JobName),
    #[error("job `{job}` has continued {hops} times; giving up (JOB_MAX_CONTINUATIONS)")]
    TooManyContinuations { job: JobName, hops: u32 },
    /// An SES event was refused (not SES feedback, or not a kind handled) or could not be
    /// recorded; a refused one changed nothing.
    #[error("SES feedback: {0}")]
    Feedback(#[from] HandleError),
}

impl JobError {
    /// A stable name for the Lambda error type.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Input(_) => "InvalidJobInput",
            Self::Store(_) => "StoreUnavailable",
            Self::CatchUp(_) => "CatchUpStopped",
            Self::Continuation(_) => "ContinuationNotPublished",
            Self::NoProgress(_) => "NoProgress",
            Self::TooManyContinuations { .. } => "TooManyContinuations",
            Self::Feedback(HandleError::Refused(_)) => "InvalidSesEvent",
            Self::Feedback(HandleError::Store(_)) => "StoreUnavailable",
        }
    }
}

impl From<JobError> for lambda_runtime::Diagnostic {
    fn from(error: JobError) -> Self {
        lambda_runtime::Diagnostic { error_type: error.kind().to_owned(), error_message: error.to_string() }
    }
}

/// What an invocation did: a job run, or one SES feedback event handled.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Outcome {
    Job(Box<RunSummary>),
    Feedback(FeedbackReport),
}

/// Everything a run needs, built once per cold start.
pub struct Jobs {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) replay: Replay,
    pub(crate) sweep: Sweep,
    pub(crate) delivery: Arc<OutboxDelivery>,
    pub(crate) continuations: ContinuationPublisher,
    pub(crate) feedback: MailFeedback,
    /// SES's quota, read once per `deliver-pending` run; `None`: the configured rate.
    pub(crate) quota: Option<shared::email::SendQuota>,
    pub(crate) settings: JobSettings,
}

impl Jobs {
    pub fn new(
        store: Arc<dyn Store>,
        billing: Arc<dyn BillingGateway>,
        delivery: Arc<OutboxDelivery>,
        continuations: ContinuationPublisher,
        settings: JobSettings,
    ) -> Self {
        let lifecycle = Lifecycle::new(store.clone(), billing.clone(), settings.rules());
        let processor = Arc::new(Processor::new(store.clone(), billing.clone(), Arc::new(SystemClock)));
        let catch_up = CatchUp::new(store.clone(), billing, processor);
        let replay = Replay::new(catch_up.clone(), ReplaySettings::default());
        let sweep = Sweep::new(catch_up);
        let feedback = MailFeedback::new(store.clone());
        Self { store, lifecycle, replay, sweep, delivery, continuations, feedback, quota: None, settings }
    }

    /// Paces `deliver-pending` to the account's SES quota (`GetAccount`), read once per run.
    pub fn with_send_quota(mut self, quota: shared::email::SendQuota) -> Self {
        self.quota = Some(quota);
        self
    }

    pub fn settings(&self) -> &JobSettings {
        &self.settings
    }

    /// One Lambda invocation: an SES event (`source` `aws.ses`) is feedback on sent mail,
    /// anything else a job input ([`Jobs::handle`]).
    pub async fn invoke(&self, payload: &Value, deadline: SystemTime) -> Result<Outcome, JobError> {
        if payload.get("source").and_then(Value::as_str) == Some(SES_SOURCE) {
            let report = self.feedback.handle(payload).await.inspect_err(|error| tracing::error!(%error, "SES event not handled"))?;
            return Ok(Outcome::Feedback(report));
        }
        Ok(Outcome::Job(Box::new(self.handle(payload, deadline).await?)))
    }

    /// One job invocation: parses `payload`, runs the job as of its `time` (else the
    /// clock) until done or until `deadline` less the safety margin, then logs the summary
    /// and emits its metrics.
    pub async fn handle(&self, payload: &Value, deadline: SystemTime) -> Result<RunSummary, JobError> {
        let request = JobRequest::parse(payload).inspect_err(|error| tracing::error!(%error, "job input refused; nothing was done"))?;
        let budget = Budget::until(deadline, self.settings.safety_margin).with_max_items(self.settings.max_items);
        let now = request.time.unwrap_or_else(Utc::now);
        let summary = self.run(request, now, &budget).await?;
        summary.log();
        summary.emit_metrics();
        Ok(summary)
    }

    /// Runs `request` as of `now` within `budget`. When the budget runs out first, the rest
    /// is published as a continuation and described in the summary.
    pub async fn run(&self, request: JobRequest, now: DateTime<Utc>, budget: &Budget) -> Result<RunSummary, JobError> {
        let span = tracing::info_span!("job", job = request.job.as_str(), now = %now.to_rfc3339());
        self.run_steps(request, now, budget).instrument(span).await
    }

    async fn run_steps(&self, request: JobRequest, now: DateTime<Utc>, budget: &Budget) -> Result<RunSummary, JobError> {
        let started = std::time::Instant::now();
        // The run's time from `now` on: outbox leases are measured on it (see RunClock).
        let clock = RunClock::starting_at(now);
        let job = request.job;
        let cursor = request.cursor.unwrap_or_default();
        if cursor.hops > self.settings.max_continuations {
            return Err(JobError::TooManyContinuations { job, hops: cursor.hops });
        }
        let steps: &[JobName] = if job == JobName::Daily { &JobName::DAILY_STEPS } else { std::slice::from_ref(&job) };
        let first = cursor.step.and_then(|step| steps.iter().position(|s| *s == step)).unwrap_or(0);
        let mut index = cursor.index;
        let mut counts = Counts::default();
        let mut stopped = None;
        for &step in &steps[first..] {
            let span = tracing::info_span!("step", step = step.as_str());
            let outcome = self.step(step, now, &clock, index.take(), budget, &mut counts).instrument(span).await;
            match outcome {
                Ok(jobs::Progress::Done) => {}
                Ok(jobs::Progress::Stopped(resume)) => {
                    stopped = Some(JobCursor { step: Some(step), index: resume, hops: cursor.hops + 1 });
                    break;
                }
                Err(error) => {
                    tracing::error!(step = step.as_str(), %error, partial = ?counts, "job step failed; a retry or the next run resumes it");
                    return Err(error);
                }
            }
        }
        let continuation = stopped.map(|cursor| JobRequest { job, time: Some(now), cursor: Some(cursor) });
        if let Some(next) = &continuation {
            if budget.used() == 0 {
                return Err(JobError::NoProgress(job));
            }
            let event_id = self.continuations.publish(next).await?;
            tracing::info!(event_id, cursor = ?next.cursor, "budget spent; continuation published");
        }
        Ok(RunSummary {
            job,
            now,
            counts,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            continued: continuation.is_some(),
            continuation,
        })
    }

    async fn step(
        &self,
        step: JobName,
        now: DateTime<Utc>,
        clock: &RunClock,
        index: Option<shared::store::ExpiryCursor>,
        budget: &Budget,
        counts: &mut Counts,
    ) -> Result<jobs::Progress, JobError> {
        // Every step but delivery works as of the run's `now`; delivery's leases need the
        // time of each claim.
        match step {
            JobName::ExpiryWarnings | JobName::ExpireLapsed => Ok(self.lifecycle_step(step, now, index, budget, counts).await?),
            JobName::DeliverPending => Ok(self.deliver_pending(clock, budget, counts).await?),
            JobName::Reconcile => self.replay_events(now, budget, counts).await,
            JobName::SweepStripe => self.sweep_stripe(now, budget, counts).await,
            // `daily` is expanded into its steps by the caller.
            JobName::Daily => Ok(jobs::Progress::Done),
        }
    }
}
