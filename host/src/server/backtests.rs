//! Backtests over HTTP, as bounded background jobs: `POST /v1/backtests`
//! starts one and answers 202 at once; `GET /v1/backtests/{id}` tells its
//! progress and, once done, its report; `DELETE` cancels it; `GET
//! /v1/backtests` lists the caller's.
//!
//! A job belongs to the token that started it: another token (but an
//! admin) neither sees nor cancels it, and is told only that no such job
//! exists. Each token may have [`MAX_OPEN_PER_TOKEN`] jobs queued or
//! running, the server [`MAX_OPEN`]; finished jobs are kept for
//! [`KEEP_FOR`], at most [`MAX_KEPT`] in all. Every evaluation of every job
//! waits for a turn of the server's backtest share (`backtest_workers`)
//! and then for a worker, so backtests together never hold more than that
//! share of the workers live evaluations run on. Jobs live in this
//! replica's memory: a restart ends them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::auth::{Caller, Grant};
use super::extract::{RawBody, parse_json, shown_message};
use super::{ApiError, AppState};
use crate::decide::backtest::{self, Against, Label, Options, Pace, Report, StateMode};

/// Jobs queued or running that one token may have.
pub(super) const MAX_OPEN_PER_TOKEN: usize = 2;
/// Jobs queued or running on the server.
pub(super) const MAX_OPEN: usize = 8;
/// Jobs kept, finished ones included: in all, and per token (a token's
/// oldest finished job goes first, so no token can push out another's).
pub(super) const MAX_KEPT: usize = 64;
pub(super) const MAX_KEPT_PER_TOKEN: usize = 8;
/// How long a finished job's report is kept.
pub(super) const KEEP_FOR: Duration = Duration::from_secs(3600);
/// Rows a report keeps unless the request asks otherwise, and at most.
const DEFAULT_ROWS: usize = 1000;
const MAX_ROWS: usize = 2000;
/// Bytes a kept report holds at most.
const MAX_REPORT_BYTES: usize = 4 << 20;
/// Labels one request may carry.
const MAX_LABELS: usize = 100_000;
/// Longest service, version or policy name in a request.
const MAX_FIELD: usize = 256;
/// Longest hotfix window.
const MAX_HOTFIX_WINDOW: Duration = Duration::from_secs(366 * 86_400);

/// Where a job is.
#[derive(Debug, Clone)]
enum Status {
    Queued,
    Running,
    /// The report, serialised once (at most [`MAX_REPORT_BYTES`]).
    Done(Arc<RawValue>),
    Failed(String),
    Cancelled,
}

impl Status {
    fn name(&self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done(_) => "done",
            Self::Failed(_) => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    fn open(&self) -> bool {
        matches!(self, Self::Queued | Self::Running)
    }
}

/// One backtest job.
struct Job {
    id: String,
    /// The id of the token that started it.
    owner: String,
    policy: String,
    candidate: String,
    created_at: i64,
    done: AtomicUsize,
    total: AtomicUsize,
    status: Mutex<Status>,
    finished: Mutex<Option<Instant>>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Job {
    fn status(&self) -> Status {
        lock(&self.status).clone()
    }

    /// Moves an open job to `to`; a finished one stays as it is.
    fn finish(&self, to: Status) {
        let mut status = lock(&self.status);
        if status.open() {
            *status = to;
            *lock(&self.finished) = Some(Instant::now());
        }
    }

    /// The job as JSON, without its report.
    fn shown(&self) -> Value {
        let status = self.status();
        let mut v = json!({
            "id": self.id,
            "status": status.name(),
            "policy": self.policy,
            "candidate": self.candidate,
            "created_at": self.created_at,
            "progress": {
                "done": self.done.load(Ordering::Relaxed),
                "total": self.total.load(Ordering::Relaxed),
            },
            "links": { "self": format!("/v1/backtests/{}", self.id) },
        });
        if let Status::Failed(e) = status {
            v["error"] = Value::from(e);
        }
        v
    }

    /// The report, once the job is done.
    fn report(&self) -> Option<Arc<RawValue>> {
        match &*lock(&self.status) {
            Status::Done(r) => Some(Arc::clone(r)),
            _ => None,
        }
    }
}

/// The report as kept: serialised once, and halved (rows, then listed
/// releases, each counted as omitted) until it fits [`MAX_REPORT_BYTES`].
fn stored(mut report: Report) -> Result<Arc<RawValue>, serde_json::Error> {
    loop {
        let raw = serde_json::value::to_raw_value(&report)?;
        if raw.get().len() <= MAX_REPORT_BYTES
            || (report.rows.is_empty() && report.releases.is_empty())
        {
            return Ok(Arc::from(raw));
        }
        if report.rows.is_empty() {
            let keep = report.releases.len() / 2;
            report.releases_omitted += report.releases.len() - keep;
            report.releases.truncate(keep);
        } else {
            let keep = report.rows.len() / 2;
            report.rows_omitted += report.rows.len() - keep;
            report.rows.truncate(keep);
        }
    }
}

/// The server's jobs and its backtest share.
pub(super) struct Jobs {
    jobs: Mutex<Vec<Arc<Job>>>,
    /// Turns of the backtest share: one per evaluation (or candidate
    /// compile) running at once, across every job.
    share: Arc<tokio::sync::Semaphore>,
    /// Candidates compiled at once: one, off the async workers, and apart
    /// from the share, so a request is not kept waiting behind a running
    /// job's long evaluation.
    compiling: Arc<tokio::sync::Semaphore>,
}

impl Jobs {
    pub(super) fn new(share: usize) -> Self {
        Self {
            jobs: Mutex::default(),
            share: Arc::new(tokio::sync::Semaphore::new(share.max(1))),
            compiling: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    /// The jobs, with finished ones past [`KEEP_FOR`] dropped.
    fn kept(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Job>>> {
        let mut jobs = lock(&self.jobs);
        jobs.retain(|j| lock(&j.finished).is_none_or(|at| at.elapsed() < KEEP_FOR));
        jobs
    }

    /// The job `id` if `grant` may see it.
    fn get(&self, grant: &Grant, id: &str) -> Result<Arc<Job>, ApiError> {
        self.kept()
            .iter()
            .find(|j| j.id == id && (j.owner == grant.id || grant.admin))
            .cloned()
            .ok_or_else(|| {
                ApiError::not_found(
                    "unknown_backtest",
                    format!(
                        "no backtest `{}` on this server (jobs are kept for an hour, on the replica that ran them)",
                        crate::base::text::shown(id)
                    ),
                )
            })
    }

    /// Refuses a new job of `owner` when it or the server has too many
    /// open; `admit` checks again when the job is added.
    fn room(&self, owner: &str) -> Result<(), ApiError> {
        let jobs = self.kept();
        Self::room_in(&jobs, owner)
    }

    fn room_in(jobs: &[Arc<Job>], owner: &str) -> Result<(), ApiError> {
        let open = |j: &&Arc<Job>| j.status().open();
        if jobs
            .iter()
            .filter(open)
            .filter(|j| j.owner == owner)
            .count()
            >= MAX_OPEN_PER_TOKEN
        {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_backtests",
                format!(
                    "this token has {MAX_OPEN_PER_TOKEN} backtests queued or running; wait for one to finish or cancel it"
                ),
            ));
        }
        if jobs.iter().filter(open).count() >= MAX_OPEN {
            return Err(ApiError::busy(
                "too many backtests queued or running on this server; retry later",
            ));
        }
        Ok(())
    }

    /// Adds `job` unless its token or the server has too many open,
    /// dropping the token's oldest finished jobs past its share of those
    /// kept, then the oldest finished of all past the total.
    fn admit(&self, job: Arc<Job>) -> Result<(), ApiError> {
        let mut jobs = self.kept();
        Self::room_in(&jobs, &job.owner)?;
        let finished_of = |jobs: &[Arc<Job>], owner: Option<&str>| {
            jobs.iter()
                .position(|j| !j.status().open() && owner.is_none_or(|o| j.owner == o))
        };
        while jobs.iter().filter(|j| j.owner == job.owner).count() >= MAX_KEPT_PER_TOKEN {
            let Some(oldest) = finished_of(&jobs, Some(&job.owner)) else {
                break;
            };
            jobs.remove(oldest);
        }
        while jobs.len() >= MAX_KEPT {
            let Some(oldest) = finished_of(&jobs, None) else {
                break;
            };
            jobs.remove(oldest);
        }
        jobs.push(job);
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelBody {
    service: String,
    version: String,
    label: Label,
}

/// `POST /v1/backtests`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BacktestBody {
    /// The candidate policy, YAML.
    policy: String,
    /// `logged` (the default) or `served`: the policy of that name this
    /// server serves now.
    against: Option<String>,
    policy_name: Option<String>,
    service: Option<String>,
    /// A duration back from now (`90d`), or a time.
    since: Option<String>,
    until: Option<String>,
    #[serde(default)]
    logged_state: bool,
    #[serde(default)]
    labels: Vec<LabelBody>,
    hotfix_policy: Option<String>,
    hotfix_window: Option<String>,
    rows: Option<usize>,
    /// Query metrics the log lacks from this server's Prometheus.
    #[serde(default)]
    prometheus: bool,
}

fn invalid(field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::unprocessable("invalid_request", message).field(field)
}

fn name_field(value: &str, field: &'static str) -> Result<String, ApiError> {
    if value.trim().is_empty() || value.len() > MAX_FIELD || value.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!(
                "`{field}` must be 1 to {MAX_FIELD} characters, none of them control characters"
            ),
        ));
    }
    Ok(value.to_string())
}

fn grant(caller: Caller) -> Result<Grant, ApiError> {
    match caller {
        Caller::Token(g) => Ok(g),
        Caller::Unauthenticated => Err(ApiError::unauthorized()),
    }
}

/// Everything of the options but the candidate, checked.
fn options_of(body: &BacktestBody, state: &AppState) -> Result<PartialOptions, ApiError> {
    let time = |text: &Option<String>, field: &'static str, back: bool| {
        text.as_deref()
            .map(|t| {
                if back {
                    backtest::since(t)
                } else {
                    crate::sources::parse_time(t).map_err(|e| e.to_string())
                }
                .map_err(|e| invalid(field, shown_message(&e)))
            })
            .transpose()
    };
    if body.labels.len() > MAX_LABELS {
        return Err(invalid(
            "labels",
            format!("at most {MAX_LABELS} labels in one request"),
        ));
    }
    let mut labels = std::collections::BTreeMap::new();
    for l in &body.labels {
        labels.insert(
            (
                name_field(&l.service, "labels")?,
                name_field(&l.version, "labels")?,
            ),
            l.label,
        );
    }
    let hotfix_window = match body.hotfix_window.as_deref() {
        None => Duration::from_secs(72 * 3600),
        Some(w) => humantime::parse_duration(w)
            .ok()
            .filter(|d| *d <= MAX_HOTFIX_WINDOW)
            .ok_or_else(|| {
                invalid(
                    "hotfix_window",
                    "`hotfix_window` is a duration of at most 366d, e.g. `72h`",
                )
            })?,
    };
    let rows = body.rows.unwrap_or(DEFAULT_ROWS);
    if !(1..=MAX_ROWS).contains(&rows) {
        return Err(invalid(
            "rows",
            format!("`rows` is a number from 1 to {MAX_ROWS}"),
        ));
    }
    let prometheus = if body.prometheus {
        Some(state.inner.sources.prometheus.clone().ok_or_else(|| {
            invalid(
                "prometheus",
                "this server has no Prometheus to query (`telemetry.prometheus` in its config)",
            )
        })?)
    } else {
        None
    };
    Ok(PartialOptions {
        service: body
            .service
            .as_deref()
            .map(|s| name_field(s, "service"))
            .transpose()?,
        since: time(&body.since, "since", true)?,
        // A job's range ends when it starts (with the clock skew a
        // decision's taken_at may have), so decisions made while it runs
        // cannot keep it running.
        until: Some(time(&body.until, "until", false)?.unwrap_or_else(|| {
            let skew =
                i64::try_from(state.inner.config.max_clock_skew.as_secs()).unwrap_or(i64::MAX);
            crate::evaluate::clock_now()
                .saturating_add(skew)
                .saturating_add(1)
        })),
        state: if body.logged_state {
            StateMode::Logged
        } else {
            StateMode::Replayed
        },
        labels,
        hotfix_policy: name_field(
            body.hotfix_policy.as_deref().unwrap_or("hotfix"),
            "hotfix_policy",
        )?,
        hotfix_window: i64::try_from(hotfix_window.as_secs()).unwrap_or(i64::MAX),
        prometheus,
        rows,
    })
}

/// The options a request gives, before the candidate is loaded.
struct PartialOptions {
    service: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    state: StateMode,
    labels: std::collections::BTreeMap<(String, String), Label>,
    hotfix_policy: String,
    hotfix_window: i64,
    prometheus: Option<crate::sources::prometheus::Prometheus>,
    rows: usize,
}

/// `POST /v1/backtests`: 202 with the job and its `Location`.
pub(super) async fn start(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    let grant = grant(caller)?;
    let store = super::decisions::logging(&state)?.clone();
    let body: BacktestBody = parse_json(&bytes)?;
    let partial = options_of(&body, &state)?;
    let against_served = match body.against.as_deref() {
        None | Some("logged") => false,
        Some("served") => true,
        Some(_) => return Err(invalid("against", "`against` is `logged` or `served`")),
    };
    let jobs = &state.inner.backtests;
    // Refused before anything is compiled, and checked again when added.
    jobs.room(&grant.id)?;
    let turn = tokio::time::timeout(
        state.inner.config.request_timeout,
        Arc::clone(&jobs.compiling).acquire_owned(),
    )
    .await;
    let Ok(Ok(turn)) = turn else {
        return Err(ApiError::busy(
            "too many backtest candidates compiling at once; retry shortly",
        ));
    };
    let set = state.policies();
    let runtime = Arc::clone(&state.inner.runtime);
    let trust = state
        .inner
        .config
        .trust()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let text = body.policy.clone();
    let loaded = {
        let set = Arc::clone(&set);
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            set.load_offered(&runtime, &text, &trust)
        })
        .await
        .map_err(ApiError::internal)?
    };
    let candidate = Arc::new(loaded.map_err(|p| {
        invalid(
            "policy",
            format!(
                "invalid candidate policy: {}",
                shown_message(&p.render(None))
            ),
        )
    })?);
    // The server's Prometheus runs, for a backtest, only queries its own
    // policies run (with the server's credentials): a candidate cannot
    // read other series through it. An admin may run any.
    if partial.prometheus.is_some() && !grant.admin {
        let served: Vec<&crate::policy::MetricSource> = set
            .iter()
            .flat_map(|(_, p, _)| p.policy.metrics.iter())
            .collect();
        if let Some(m) = candidate
            .policy
            .metrics
            .iter()
            .find(|m| !served.contains(m))
        {
            return Err(invalid(
                "prometheus",
                format!(
                    "metric `{}`: re-querying this server's Prometheus runs only the queries its policies run (with the same window and step); an admin token may run others",
                    crate::base::text::shown(&m.name)
                ),
            ));
        }
    }
    let policy_name = match &body.policy_name {
        Some(n) => name_field(n, "policy_name")?,
        None => candidate.policy.name.to_string(),
    };
    let against = if against_served {
        Against::Policy(Arc::clone(
            set.get(&policy_name)
                .ok_or_else(|| set.unknown(&policy_name))?,
        ))
    } else {
        Against::Logged
    };
    let options = Options {
        candidate,
        against,
        policy_name,
        service: partial.service,
        since: partial.since,
        until: partial.until,
        state: partial.state,
        labels: partial.labels,
        hotfix_policy: partial.hotfix_policy,
        hotfix_window: partial.hotfix_window,
        prometheus: partial.prometheus,
        pace: Some(Pace {
            share: Arc::clone(&jobs.share),
            workers: Arc::clone(&state.inner.workers),
        }),
        max_rows: partial.rows,
    };
    let job = Arc::new(Job {
        id: uuid::Uuid::now_v7().to_string(),
        owner: grant.id.clone(),
        policy: options.policy_name.clone(),
        candidate: options.candidate.policy.name.to_string(),
        created_at: crate::evaluate::clock_now(),
        done: AtomicUsize::new(0),
        total: AtomicUsize::new(0),
        status: Mutex::new(Status::Queued),
        finished: Mutex::new(None),
        task: Mutex::new(None),
    });
    jobs.admit(Arc::clone(&job))?;
    let running = Arc::clone(&job);
    let handle = tokio::spawn(async move {
        {
            // A job cancelled before it started stays cancelled.
            let mut status = lock(&running.status);
            if !matches!(*status, Status::Queued) {
                return;
            }
            *status = Status::Running;
        }
        let progress = |done: usize, total: usize| {
            running.done.store(done, Ordering::Relaxed);
            running.total.store(total, Ordering::Relaxed);
        };
        let result = backtest::run(store.as_ref(), &options, progress).await;
        match result {
            Ok(report) => running.finish(match stored(report) {
                Ok(raw) => Status::Done(raw),
                Err(e) => Status::Failed(format!("the report could not be serialised: {e}")),
            }),
            Err(e) => {
                tracing::warn!(backtest = %running.id, error = %e, "backtest failed");
                running.finish(Status::Failed(e.to_string()));
            }
        }
    });
    *lock(&job.task) = Some(handle.abort_handle());
    tracing::info!(backtest = %job.id, policy = %crate::base::text::escape_control(&job.policy), token = %job.owner, "backtest started");
    let mut response = (StatusCode::ACCEPTED, Json(job.shown())).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/backtests/{}", job.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /v1/backtests/{id}`: progress, and the report once done.
pub(super) async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let grant = grant(caller)?;
    let job = state.inner.backtests.get(&grant, &id)?;
    /// The job with its report as it was serialised.
    #[derive(serde::Serialize)]
    struct WithReport<'a> {
        #[serde(flatten)]
        job: Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        report: Option<&'a RawValue>,
    }
    let report = job.report();
    let body = serde_json::to_vec(&WithReport {
        job: job.shown(),
        report: report.as_deref(),
    })
    .map_err(ApiError::internal)?;
    Ok(super::respond::json_response(200, body.into(), false))
}

/// `DELETE /v1/backtests/{id}`: cancels a queued or running job.
pub(super) async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let grant = grant(caller)?;
    let job = state.inner.backtests.get(&grant, &id)?;
    if let Some(task) = lock(&job.task).take() {
        task.abort();
    }
    job.finish(Status::Cancelled);
    Ok(Json(job.shown()))
}

/// `GET /v1/backtests`: the caller's jobs (an admin's: every job), newest
/// first, without their reports.
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let grant = grant(caller)?;
    let jobs = state.inner.backtests.kept();
    let shown: Vec<Value> = jobs
        .iter()
        .rev()
        .filter(|j| j.owner == grant.id || grant.admin)
        .map(|j| j.shown())
        .collect();
    Ok(Json(json!({ "backtests": shown })))
}
