//! What an invocation asks for.
//!
//! Three shapes are accepted, all parsed before anything is read or written, so a
//! bad input fails the invocation with an [`InputError`] and changes nothing:
//!
//! 1. The direct form (a schedule target with `Input`, `cargo lambda invoke`, an operator):
//!    `{"job": "daily", "time": "2026-03-10T06:00:00Z"}`; `time` is optional (then "now" is
//!    the clock).
//! 2. An EventBridge event whose `detail` carries that object: a Scheduled Event whose rule
//!    passes the job in `detail` (`time` falls back to the envelope's), or the
//!    `JobContinuation` event this function publishes itself, which adds `"cursor": {…}`
//!    (see [`JobCursor`]).
//! 3. A plain `Scheduled Event` (empty `detail`): the job is named by the rule, i.e. the
//!    rule name in `resources` ends with the job name (`…/logiscore-prod-expire-lapsed`),
//!    and "now" is the event's `time`.
//!
//! A continuation is trusted with a cursor and a past `time`, so it is accepted only as
//! what [`crate::ContinuationPublisher`] puts on the bus: an envelope whose `source` is
//! [`CONTINUATION_SOURCE`] and whose `detail-type` is [`CONTINUATION_DETAIL_TYPE`], and
//! whose `time` (the interrupted run's "now") is not later than the envelope's own `time`
//! (when EventBridge accepted it). A cursor anywhere else, an event from any other source
//! than EventBridge's scheduler or the jobs', and a continuation from the future are
//! refused. In AWS only this function may put events with that source, on a bus of its
//! own (template.yaml); these checks keep a forged or mis-routed event from replaying a
//! day even if that ever changes.

use std::{fmt, str::FromStr};

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::store::ExpiryCursor;

use crate::continuation::{CONTINUATION_DETAIL_TYPE, CONTINUATION_SOURCE};

/// The `source` of the events EventBridge's scheduler delivers (rule schedules).
pub const SCHEDULE_SOURCE: &str = "aws.events";

/// The jobs this function runs. The names are a contract: the schedules in
/// `template.yaml`, `events/jobs/` and the README name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobName {
    ExpiryWarnings,
    ExpireLapsed,
    DeliverPending,
    /// The missed-event replay (Stripe's event log since the last run).
    Reconcile,
    /// The full sweep of every Stripe subscription (weekly; resumable across runs).
    SweepStripe,
    /// `expiry-warnings`, `expire-lapsed`, `deliver-pending` and `reconcile`, in this order.
    Daily,
}

impl JobName {
    pub const ALL: [JobName; 6] =
        [Self::ExpiryWarnings, Self::ExpireLapsed, Self::DeliverPending, Self::Reconcile, Self::SweepStripe, Self::Daily];

    /// The steps `daily` runs, in order.
    pub const DAILY_STEPS: [JobName; 4] = [Self::ExpiryWarnings, Self::ExpireLapsed, Self::DeliverPending, Self::Reconcile];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExpiryWarnings => "expiry-warnings",
            Self::ExpireLapsed => "expire-lapsed",
            Self::DeliverPending => "deliver-pending",
            Self::Reconcile => "reconcile",
            Self::SweepStripe => "sweep-stripe",
            Self::Daily => "daily",
        }
    }

    /// The `actor` recorded in history entries written by this job.
    pub fn actor(self) -> String {
        format!("job:{}", self.as_str())
    }
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobName {
    type Err = InputError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|job| job.as_str() == s).ok_or_else(|| InputError::UnknownJob(s.to_owned()))
    }
}

/// Where an interrupted run resumes. Opaque to callers: it is produced by this function
/// and handed back verbatim in a continuation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobCursor {
    /// For `daily`: the step to resume at (the steps before it are done).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<JobName>,
    /// The position in the expiry index within that step, if it pages through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<ExpiryCursor>,
    /// How many continuations led here (a guard against a run that re-invokes itself for ever).
    #[serde(default)]
    pub hops: u32,
}

/// A parsed invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRequest {
    pub job: JobName,
    /// The instant the job acts as of; `None` means the clock at invocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<JobCursor>,
}

/// Why an invocation's input was refused. Nothing has been read or written yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("unknown job `{0}`: expected one of expiry-warnings, expire-lapsed, deliver-pending, reconcile, sweep-stripe, daily")]
    UnknownJob(String),
    #[error("no job named: give {{\"job\": \"<name>\"}}, or a Scheduled Event whose rule name ends with the job name")]
    MissingJob,
    #[error("`{field}` must be a string")]
    NotAString { field: &'static str },
    #[error("`time` is not an RFC 3339 timestamp: `{0}`")]
    BadTime(String),
    #[error("`cursor` is not a cursor this function produced: {0}")]
    BadCursor(String),
    #[error("cursor step `{step}` does not belong to job `{job}`")]
    CursorMismatch { job: JobName, step: JobName },
    #[error("the input must be a JSON object")]
    NotAnObject,
    #[error("events from source `{0}` are not accepted: only schedules (aws.events) and this function's own continuations (logiscore.subscriptions.jobs)")]
    UntrustedSource(String),
    #[error("a cursor is accepted only in a JobContinuation event from logiscore.subscriptions.jobs; rerun the job without one instead")]
    CursorOutsideContinuation,
    #[error("a continuation must be a JobContinuation event with a `time` in its detail and in its envelope")]
    MalformedContinuation,
    #[error("the continuation's time {time} is later than its own event time {event_time}")]
    ContinuationFromTheFuture { time: DateTime<Utc>, event_time: DateTime<Utc> },
}

impl JobRequest {
    /// Parses any of the accepted shapes (see the module docs).
    pub fn parse(input: &Value) -> Result<Self, InputError> {
        let object = input.as_object().ok_or(InputError::NotAnObject)?;
        let is_envelope = object.contains_key("detail-type") || object.contains_key("detail") || object.contains_key("source");
        if !is_envelope {
            let request = Self::from_fields(input, None)?;
            if request.cursor.is_some() {
                return Err(InputError::CursorOutsideContinuation);
            }
            return Ok(request);
        }
        match optional_str(input, "source")? {
            Some(CONTINUATION_SOURCE) => return Self::continuation(input),
            Some(SCHEDULE_SOURCE) | None => {}
            Some(other) => return Err(InputError::UntrustedSource(other.to_owned())),
        }
        // A schedule's envelope: `detail` may name the job; otherwise the rule does.
        let envelope_time = optional_str(input, "time")?;
        let detail = input.get("detail").filter(|d| d.as_object().is_some_and(|o| !o.is_empty()));
        match detail {
            Some(detail) if detail.get("job").is_some() => {
                let request = Self::from_fields(detail, envelope_time)?;
                if request.cursor.is_some() {
                    return Err(InputError::CursorOutsideContinuation);
                }
                Ok(request)
            }
            _ => {
                let job = job_from_resources(input).ok_or(InputError::MissingJob)?;
                Ok(Self { job, time: envelope_time.map(parse_time).transpose()?, cursor: None })
            }
        }
    }

    /// A `JobContinuation` event: its detail is the request the interrupted run handed on,
    /// acting as of a `time` that was already "now" when the event was put on the bus.
    fn continuation(event: &Value) -> Result<Self, InputError> {
        if optional_str(event, "detail-type")? != Some(CONTINUATION_DETAIL_TYPE) {
            return Err(InputError::MalformedContinuation);
        }
        let event_time = parse_time(optional_str(event, "time")?.ok_or(InputError::MalformedContinuation)?)?;
        let detail = event.get("detail").ok_or(InputError::MalformedContinuation)?;
        let request = Self::from_fields(detail, None)?;
        let time = request.time.ok_or(InputError::MalformedContinuation)?;
        // EventBridge stamps the envelope to the second; the run's "now" has sub-seconds.
        if time.trunc_subsecs(0) > event_time {
            return Err(InputError::ContinuationFromTheFuture { time, event_time });
        }
        Ok(request)
    }

    fn from_fields(fields: &Value, fallback_time: Option<&str>) -> Result<Self, InputError> {
        let job: JobName = optional_str(fields, "job")?.ok_or(InputError::MissingJob)?.parse()?;
        let time = optional_str(fields, "time")?.or(fallback_time).map(parse_time).transpose()?;
        let cursor = match fields.get("cursor") {
            None | Some(Value::Null) => None,
            Some(raw) => Some(JobCursor::deserialize(raw).map_err(|e| InputError::BadCursor(e.to_string()))?),
        };
        if let Some(step) = cursor.as_ref().and_then(|c| c.step) {
            let fits = if job == JobName::Daily { JobName::DAILY_STEPS.contains(&step) } else { step == job };
            if !fits {
                return Err(InputError::CursorMismatch { job, step });
            }
        }
        Ok(Self { job, time, cursor })
    }
}

fn optional_str<'a>(value: &'a Value, field: &'static str) -> Result<Option<&'a str>, InputError> {
    match value.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(InputError::NotAString { field }),
    }
}

fn parse_time(raw: &str) -> Result<DateTime<Utc>, InputError> {
    DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc)).map_err(|_| InputError::BadTime(raw.to_owned()))
}

/// The job a schedule rule stands for: the rule name (after `rule/`, or after the last
/// `/` for a bus-qualified rule) ends with the job name.
fn job_from_resources(event: &Value) -> Option<JobName> {
    let resources = event.get("resources")?.as_array()?;
    resources.iter().filter_map(Value::as_str).find_map(|arn| {
        let rule = arn.rsplit('/').next()?;
        // Longest names first is not needed: no job name is a suffix of another.
        JobName::ALL.into_iter().find(|job| rule == job.as_str() || rule.ends_with(&format!("-{}", job.as_str())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn direct_form_with_and_without_time() {
        let req = JobRequest::parse(&json!({"job": "daily", "time": "2026-03-10T06:00:00Z"})).unwrap();
        assert_eq!(req.job, JobName::Daily);
        assert_eq!(req.time.unwrap().to_rfc3339(), "2026-03-10T06:00:00+00:00");
        let req = JobRequest::parse(&json!({"job": "expire-lapsed"})).unwrap();
        assert_eq!((req.job, req.time, req.cursor), (JobName::ExpireLapsed, None, None));
        // Offsets are normalised to UTC.
        let req = JobRequest::parse(&json!({"job": "reconcile", "time": "2026-03-10T08:00:00+02:00"})).unwrap();
        assert_eq!(req.time.unwrap().to_rfc3339(), "2026-03-10T06:00:00+00:00");
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        assert_eq!(JobRequest::parse(&json!({"job": "nope"})), Err(InputError::UnknownJob("nope".into())));
        assert_eq!(JobRequest::parse(&json!({"job": "daily", "time": "yesterday"})), Err(InputError::BadTime("yesterday".into())));
        assert_eq!(JobRequest::parse(&json!({"job": 3})), Err(InputError::NotAString { field: "job" }));
        assert_eq!(JobRequest::parse(&json!({})), Err(InputError::MissingJob));
        assert_eq!(JobRequest::parse(&json!("daily")), Err(InputError::NotAnObject));
        assert!(matches!(JobRequest::parse(&json!({"job": "daily", "cursor": {"bogus": 1}})), Err(InputError::BadCursor(_))));
        assert_eq!(
            JobRequest::parse(&json!({"job": "reconcile", "cursor": {"step": "expire-lapsed"}})),
            Err(InputError::CursorMismatch { job: JobName::Reconcile, step: JobName::ExpireLapsed })
        );
    }

    #[test]
    fn continuation_round_trips() {
        let req = JobRequest {
            job: JobName::Daily,
            time: Some(DateTime::parse_from_rfc3339("2026-03-10T06:00:00Z").unwrap().with_timezone(&Utc)),
            cursor: Some(JobCursor {
                step: Some(JobName::ExpireLapsed),
                index: Some(ExpiryCursor { shard: 3, after: Some([("exp_pk".to_owned(), "EXP#3".to_owned())].into()) }),
                hops: 1,
            }),
        };
        let value = serde_json::to_value(&req).unwrap();
        assert_eq!(value["job"], "daily");
        assert_eq!(value["cursor"]["step"], "expire-lapsed");
        // The detail inside the JobContinuation event this function publishes.
        let event = continuation_event(value.clone(), "2026-03-10T06:14:00Z");
        assert_eq!(JobRequest::parse(&event).unwrap(), req);
        // The same detail on its own is not a continuation: nobody vouches for its cursor.
        assert_eq!(JobRequest::parse(&value), Err(InputError::CursorOutsideContinuation));
    }

    fn continuation_event(detail: Value, time: &str) -> Value {
        json!({"version": "0", "id": "c1", "detail-type": "JobContinuation", "source": "logiscore.subscriptions.jobs",
            "account": "123456789012", "time": time, "region": "us-east-1", "resources": ["logiscore:job:daily"], "detail": detail})
    }

    fn detail_at(time: &str) -> Value {
        json!({"job": "expire-lapsed", "time": time, "cursor": {"step": "expire-lapsed", "hops": 1}})
    }

    #[test]
    fn continuations_come_only_from_the_jobs_own_source() {
        let genuine = continuation_event(detail_at("2026-03-10T06:00:00Z"), "2026-03-10T06:14:00Z");
        assert!(JobRequest::parse(&genuine).is_ok());
        for source in ["logiscore.subscriptions", "aws.events", "logiscore.subscriptions.jobs.forged", ""] {
            let mut forged = genuine.clone();
            forged["source"] = json!(source);
            let err = JobRequest::parse(&forged).unwrap_err();
            assert!(matches!(err, InputError::UntrustedSource(_) | InputError::CursorOutsideContinuation), "{source}: {err:?}");
        }
        // Another source's event is refused even without a cursor.
        let domain = json!({"detail-type": "SubscriptionActivated", "source": "logiscore.subscriptions",
            "time": "2026-03-10T06:14:00Z", "detail": {"job": "daily"}});
        assert_eq!(JobRequest::parse(&domain), Err(InputError::UntrustedSource("logiscore.subscriptions".into())));
        // A schedule cannot carry a cursor either.
        let scheduled = json!({"detail-type": "Scheduled Event", "source": "aws.events", "time": "2026-03-10T06:14:00Z",
            "detail": detail_at("2026-03-10T06:00:00Z")});
        assert_eq!(JobRequest::parse(&scheduled), Err(InputError::CursorOutsideContinuation));
        // The right source with the wrong detail-type, or no times, is not a continuation.
        let mut renamed = genuine.clone();
        renamed["detail-type"] = json!("Scheduled Event");
        assert_eq!(JobRequest::parse(&renamed), Err(InputError::MalformedContinuation));
        let mut untimed = genuine.clone();
        untimed["detail"].as_object_mut().unwrap().remove("time");
        assert_eq!(JobRequest::parse(&untimed), Err(InputError::MalformedContinuation));
        let mut unstamped = genuine;
        unstamped.as_object_mut().unwrap().remove("time");
        assert_eq!(JobRequest::parse(&unstamped), Err(InputError::MalformedContinuation));
    }

    #[test]
    fn a_continuation_may_not_act_after_its_own_event_time() {
        let future = continuation_event(detail_at("2026-03-10T06:14:01Z"), "2026-03-10T06:14:00Z");
        assert!(matches!(JobRequest::parse(&future), Err(InputError::ContinuationFromTheFuture { .. })));
        let next_day = continuation_event(detail_at("2026-03-11T06:00:00Z"), "2026-03-10T06:14:00Z");
        assert!(matches!(JobRequest::parse(&next_day), Err(InputError::ContinuationFromTheFuture { .. })));
        // Published within the second the run started: EventBridge's stamp has no fraction.
        let same_second = continuation_event(detail_at("2026-03-10T06:14:00.750Z"), "2026-03-10T06:14:00Z");
        assert!(JobRequest::parse(&same_second).is_ok());
        // A replay of a past day, continued now, is what continuations are for.
        let replay = continuation_event(detail_at("2026-01-01T06:00:00Z"), "2026-03-10T06:14:00Z");
        assert!(JobRequest::parse(&replay).is_ok());
    }

    #[test]
    fn scheduled_events() {
        let plain = json!({"version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events",
            "time": "2026-03-10T06:00:00Z", "resources": ["arn:aws:events:us-east-1:123456789012:rule/logiscore-prod-expire-lapsed"],
            "detail": {}});
        let req = JobRequest::parse(&plain).unwrap();
        assert_eq!(req.job, JobName::ExpireLapsed);
        assert_eq!(req.time.unwrap().to_rfc3339(), "2026-03-10T06:00:00+00:00");

        let with_detail = json!({"detail-type": "Scheduled Event", "time": "2026-03-10T06:00:00Z", "resources": [],
            "detail": {"job": "daily"}});
        let req = JobRequest::parse(&with_detail).unwrap();
        assert_eq!(req.job, JobName::Daily);
        assert!(req.time.is_some(), "time falls back to the envelope's");

        let unnamed = json!({"detail-type": "Scheduled Event", "time": "2026-03-10T06:00:00Z",
            "resources": ["arn:aws:events:us-east-1:1:rule/something-else"], "detail": {}});
        assert_eq!(JobRequest::parse(&unnamed), Err(InputError::MissingJob));
    }

    #[test]
    fn every_sample_payload_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/jobs");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let value: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                JobRequest::parse(&value).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 6, "expected the sample payloads in {}", dir.display());
    }
}
