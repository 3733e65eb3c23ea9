//! Running one evaluation for a request: admission, scheduling on a worker,
//! trigger state and the commit to the store, and the metrics it leaves.
//!
//! Admission is layered so that one slow or hostile policy, or one token,
//! slows only itself: each token may have `max_concurrency_per_token`
//! evaluations in flight (503 past it), checked first; `slots` caps
//! evaluations in flight server-wide, taken once an evaluation that
//! advances a service's trigger state has its turn at it, so waiting in
//! that line holds no slot (503 past it); each policy may
//! hold at most `policy_workers` of the `workers` that run plugin code; and
//! plugin deadlines count CPU time, so the workers may outnumber the cores
//! without load spending a well-behaved plugin's budget. Waiting for a
//! worker is bounded by the request timeout (503 with `Retry-After`); a
//! running evaluation is bounded by its plugins' deadlines and is never cut
//! off, so a gate that uses its whole deadline is a verdict, never a 5xx.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use super::metrics::{EvalLabels, Metrics, TrapLabels, VerdictLabels};
use super::{ApiError, AppState};
use crate::decide::{self, Asker, Committed, Evaluation, Prefetched, StateFrom};
use crate::evaluate::EvalError;
use crate::evaluate::decision::{Decision, Verdict};
use crate::snapshot::Snapshot;
use crate::sources::{self, Evidence, Inputs, SourceError};
use crate::store::{Asked, StoreError, StoredAnswer};

impl From<EvalError> for ApiError {
    fn from(e: EvalError) -> Self {
        match e {
            EvalError::UnknownStage { .. } => {
                ApiError::not_found("unknown_stage", e.to_string()).field("stage")
            }
            EvalError::State(_) => ApiError::internal(format!("{e:#}")),
        }
    }
}

/// What a request asks to evaluate.
pub(super) struct Job {
    pub(super) policy: String,
    pub(super) stage: Option<String>,
    pub(super) elapsed: Option<Duration>,
    pub(super) input: Input,
    /// Whether triggers' new state is kept. Hooks a controller calls on
    /// every reconcile read state but never advance it, so repeating them
    /// changes nothing.
    pub(super) advance_state: bool,
    /// Who keeps the stage clock: the compatibility endpoints' callers
    /// advance stages themselves.
    pub(super) schedule: crate::evaluate::Schedule,
    /// The id of the token that asked, for the record.
    pub(super) token_id: Option<String>,
    /// What the token may evaluate: the service is checked against it once
    /// known, before any trigger state is read.
    pub(super) grant: super::auth::Grant,
    /// The `Idempotency-Key` in its scope, and the digest of the body it
    /// came with.
    pub(super) idempotency: Option<(crate::store::IdempotencyKey, crate::base::digest::Digest)>,
}

/// 403 unless the job's token may evaluate its policy for the service the
/// input names, checked before anything is queried or read for it.
fn check_service(job: &Job) -> Result<(), ApiError> {
    let (service, field) = match &job.input {
        Input::Given(s) => (s.service.as_str(), "snapshot.service"),
        // No service: the query is refused for that, with its own error.
        Input::Query { service, .. } if service.is_empty() => return Ok(()),
        Input::Query { service, field, .. } => (service.as_str(), *field),
    };
    job.grant.check_service(&job.policy, service, field)
}

/// Where the snapshot comes from.
pub(super) enum Input {
    /// Sent with the request.
    Given(Snapshot),
    /// Queried from the server's Prometheus with the policy's `metrics:`.
    Query {
        service: String,
        version: String,
        /// End of the window; now when absent.
        at: Option<i64>,
        /// Where in the request the query's inputs came from, for errors.
        field: &'static str,
    },
}

impl From<SourceError> for ApiError {
    fn from(e: SourceError) -> Self {
        if e.is_unavailable() {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "telemetry_unavailable",
                e.to_string(),
            )
        } else {
            ApiError::new(StatusCode::BAD_GATEWAY, "telemetry_failed", e.to_string())
        }
    }
}

/// Builds the snapshot a job needs: the one sent, or one queried now. The
/// queries run before a worker is taken: waiting on Prometheus holds no core.
async fn snapshot_for(
    state: &AppState,
    loaded: &crate::policy::LoadedPolicy,
    stage: Option<&str>,
    input: Input,
) -> Result<(Snapshot, Option<Evidence>), ApiError> {
    let (service, version, at, field) = match input {
        Input::Given(s) => return Ok((s, None)),
        Input::Query {
            service,
            version,
            at,
            field,
        } => (service, version, at, field),
    };
    let sources = &state.inner.sources;
    if sources.is_empty() {
        // Without Prometheus the one way in is a snapshot, so that is the
        // field to name: `snapshot` beside the `service` the query uses.
        let snapshot_field = field
            .strip_suffix("service")
            .map_or_else(|| "snapshot".to_string(), |p| format!("{p}snapshot"));
        return Err(ApiError::unprocessable(
            "missing_snapshot",
            "send `snapshot`: this server has no Prometheus or source to query (`telemetry.prometheus` or `telemetry.sources` in its config)",
        )
        .field(snapshot_field));
    }
    let Ok(_gathering) = Arc::clone(&state.inner.gathering).try_acquire_owned() else {
        return Err(ApiError::busy(
            "too many telemetry queries in flight; retry shortly",
        ));
    };
    // A query at a time past the server's clock is refused before
    // Prometheus is asked, as a snapshot from then would be.
    if let Some(at) = at {
        let now = crate::evaluate::clock_now();
        let skew = state.inner.config.max_clock_skew;
        let limit = now.saturating_add(i64::try_from(skew.as_secs()).unwrap_or(i64::MAX));
        if at > limit {
            let ahead = crate::evaluate::AheadOfClock {
                what: "`at`".into(),
                at,
                now,
                skew,
            };
            return Err(
                ApiError::unprocessable("taken_at_in_future", ahead.to_string())
                    .field(field.replace("service", "at")),
            );
        }
    }
    let inputs = Inputs {
        service: Some(service),
        version: Some(version),
        at,
        ..Inputs::default()
    };
    sources::gather(sources, Some(&loaded.policy), stage, inputs)
        .await
        .map_err(|e| match e {
            SourceError::NoMetrics { .. } => {
                ApiError::unprocessable("missing_snapshot", format!("send `snapshot`: {e}"))
                    .field(field)
            }
            SourceError::NoService => ApiError::unprocessable(
                "missing_service",
                "give `service` (the `${service}` of the policy's queries) or a `snapshot`",
            )
            .field(field),
            SourceError::InvalidName { path, message } => {
                ApiError::unprocessable("invalid_request", format!("`{path}` {message}"))
                    .field(path)
            }
            other => other.into(),
        })
}

/// What an evaluation request is answered with.
pub(super) enum Answer {
    /// A new decision, committed to the store.
    Fresh(Box<Decision>),
    /// The answer another request with the same idempotency key got first
    /// (on this replica or another).
    Replayed(StoredAnswer),
}

impl Answer {
    /// The decision, for endpoints that take no idempotency key.
    pub(super) fn fresh(self) -> Result<Decision, ApiError> {
        match self {
            Self::Fresh(d) => Ok(*d),
            Self::Replayed(a) => Err(ApiError::internal(format!(
                "an evaluation without an idempotency key was answered from key `{}`",
                a.key
            ))),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => ApiError::busy(format!(
                "{e}; the evaluation was retried {} times; retry shortly",
                decide::MAX_ATTEMPTS
            )),
            StoreError::KeyTaken(_) => ApiError::internal(e.to_string()),
            StoreError::ApprovalsFull { .. } => {
                ApiError::unprocessable("too_many_approvals", e.to_string())
            }
            other => {
                tracing::error!(error = %other, "the store failed; answering 503");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    format!("no decision was made: {other}"),
                )
            }
        }
    }
}

/// Evaluates a job off the async threads, commits the decision to the
/// store, and records its metrics. Nothing is answered before the commit.
pub(super) async fn run_evaluation(state: &AppState, job: Job) -> Result<Answer, ApiError> {
    // The token's share first, so one token never holds every slot.
    let _own = if job.grant.is_anonymous() {
        None
    } else {
        Some(state.inner.limits.in_flight(&job.grant.id)?)
    };
    let set = state.policies();
    let (loaded, budget) = set
        .get_with_budget(&job.policy)
        .ok_or_else(|| set.unknown(&job.policy))?;
    crate::evaluate::check_stage(&loaded.policy, job.stage.as_deref())?;
    let last_stage = loaded.policy.stages.last().map(|s| s.name.to_string());
    check_service(&job)?;
    let (snapshot, evidence) =
        snapshot_for(state, &loaded, job.stage.as_deref(), job.input).await?;
    job.grant
        .check_service(&job.policy, &snapshot.service, "snapshot.service")?;
    // The server's clock decides; the caller's only positions telemetry,
    // and may not reach past it (by more than the configured skew).
    let decided_at = crate::evaluate::clock_now();
    crate::evaluate::check_clock(&snapshot, decided_at, state.inner.config.max_clock_skew)
        .map_err(|e| {
            ApiError::unprocessable("taken_at_in_future", e.to_string()).field("taken_at")
        })?;
    // Telemetry from ahead of the clock, even within the skew, is judged but
    // moves no trigger state: state never runs ahead of the server's time.
    let advance_state = job.advance_state && snapshot.taken_at <= decided_at;
    let snapshot = Arc::new(snapshot);
    let store = Arc::clone(&state.inner.store);
    let started = Instant::now();
    // Evaluations that advance one service's trigger state on this replica
    // take turns; other replicas are kept out by the store's versions.
    let _turn = if advance_state && !loaded.policy.triggers.is_empty() {
        let key = format!("{}/{}", loaded.policy.name, snapshot.service);
        let turn = state.inner.state_locks.turn(key);
        match tokio::time::timeout(state.inner.config.request_timeout, turn).await {
            Ok(guard) => Some(guard),
            Err(_) => {
                return Err(ApiError::busy(format!(
                    "evaluations of `{}` for this service are queued past the request timeout; retry shortly",
                    loaded.policy.name
                )));
            }
        }
    } else {
        None
    };
    // A server-wide slot once this evaluation's turn came: waiting in line
    // for one service's trigger state holds none.
    let Ok(slot) = Arc::clone(&state.inner.slots).try_acquire_owned() else {
        return Err(ApiError::busy(
            "too many evaluations in flight; retry shortly",
        ));
    };
    // The approval gates judge what the store holds for this release.
    let approvals: Arc<[crate::policy::approvals::Approval]> =
        if crate::evaluate::uses_approvals(&loaded.policy) {
            store
                .approvals(&snapshot.service, &snapshot.version)
                .await?
                .into()
        } else {
            Arc::from(Vec::new())
        };
    let evaluation = Arc::new(Evaluation {
        loaded: Arc::clone(&loaded),
        snapshot,
        approvals,
        asked: Asked::new(job.stage, job.elapsed, job.schedule, advance_state),
        decided_at,
        what_if: false,
        asker: Asker {
            token_id: job.token_id,
            trace_id: super::telemetry::trace_id(),
        },
        idempotency: job.idempotency,
        evidence,
        canonical: Default::default(),
    });
    let workers = Arc::clone(&state.inner.workers);
    let timeout = state.inner.config.request_timeout;
    let policy = job.policy;
    let run = |evaluation: Arc<Evaluation>, read: Prefetched| {
        let budget = Arc::clone(&budget);
        let workers = Arc::clone(&workers);
        let policy = policy.clone();
        async move {
            let waited = async {
                let own = budget.acquire_owned().await.ok()?;
                let core = workers.acquire_owned().await.ok()?;
                Some((own, core))
            };
            let Ok(Some(permits)) = tokio::time::timeout(timeout, waited).await else {
                return Err(ApiError::busy(format!(
                    "no worker free for policy `{policy}` within the request timeout; retry shortly"
                )));
            };
            let dispatch = tracing::dispatcher::get_default(Clone::clone);
            let parent = tracing::Span::current();
            let (result, read) = tokio::task::spawn_blocking(move || {
                let _held = permits;
                let mut read = read;
                let result = tracing::dispatcher::with_default(&dispatch, || {
                    let span = tracing::info_span!(parent: &parent, "evaluate", policy = %evaluation.loaded.policy.name, stage = tracing::field::Empty, decision = tracing::field::Empty);
                    let _entered = span.enter();
                    let result = evaluation.evaluate(&mut read);
                    if let Ok(d) = &result {
                        span.record("stage", d.stage.as_str());
                        span.record("decision", d.decision.as_str());
                    }
                    result
                });
                (result, read)
            })
            .await
            .map_err(ApiError::internal)?;
            Ok((result?, read))
        }
    };
    let committed = decide::run(
        store.as_ref(),
        evaluation,
        StateFrom::Store {
            advance: advance_state,
        },
        run,
    )
    .await?;
    let decision = match committed {
        Committed::Fresh(d) => d,
        Committed::Replayed(answer) => return Ok(Answer::Replayed(answer)),
    };
    drop(slot);
    state.inner.metrics.record(&decision, started.elapsed());
    super::events::publish(state, &decision);
    state.inner.notifier.decided(
        &decision,
        last_stage.as_deref() == Some(decision.stage.as_str()),
    );
    tracing::info!(
        decision_id = decision.decision_id.as_deref().unwrap_or_default(),
        policy = %decision.policy,
        stage = %decision.stage,
        // A text log quotes and escapes each value (`LogfmtFields`).
        service = %decision.service,
        version = %decision.version,
        decision = decision.decision.as_str(),
        reason = %decision.summary,
        "decision"
    );
    Ok(Answer::Fresh(decision))
}

/// One async lock per `policy/service` whose trigger state is advanced.
#[derive(Default)]
pub(super) struct StateLocks(
    std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
);

/// Locks kept before idle ones are dropped.
const MAX_IDLE_LOCKS: usize = 10_000;

impl StateLocks {
    /// Waits for this replica's turn to advance `key`'s state.
    async fn turn(&self, key: String) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if locks.len() > MAX_IDLE_LOCKS {
                locks.retain(|_, l| Arc::strong_count(l) > 1);
            }
            Arc::clone(locks.entry(key).or_default())
        };
        lock.lock_owned().await
    }
}

impl Metrics {
    /// Counts a decision: its outcome, every gate's verdict, and every
    /// plugin that broke, by cause.
    pub(super) fn record(&self, decision: &Decision, took: Duration) {
        self.latency.observe(took.as_secs_f64());
        self.evaluations
            .get_or_create(&EvalLabels {
                policy: decision.policy.clone(),
                decision: decision.decision.as_str().into(),
            })
            .inc();
        for g in &decision.gates {
            self.verdicts
                .get_or_create(&VerdictLabels {
                    plugin: g.plugin.clone(),
                    verdict: g.verdict.as_str().into(),
                })
                .inc();
        }
        let causes = decision
            .gates
            .iter()
            .filter(|g| g.verdict == Verdict::Error)
            .filter_map(|g| g.cause.as_deref())
            .chain(decision.triggers.iter().filter_map(|t| t.cause.as_deref()))
            .chain(decision.actions.iter().filter_map(|a| a.cause.as_deref()));
        for cause in causes {
            self.traps
                .get_or_create(&TrapLabels {
                    cause: cause.to_string(),
                })
                .inc();
        }
        if !decision.what_if {
            self.judged(decision);
        }
    }
}

#[cfg(test)]
mod tests;
