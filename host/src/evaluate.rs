//! Running a stage's gates over a snapshot and turning their verdicts into a
//! decision.
//!
//! Rules, in order:
//! 1. a key gate that counts as fail fails the stage: rollback;
//! 2. a gate that counts as inconclusive holds the stage, unless the score
//!    would stay below the warn band even if every such gate passed: rollback;
//! 3. otherwise the weighted score decides: at or above `pass` promotes, at or
//!    above `warn` holds with a warning, below it rolls back.
//!
//! Then the policy's triggers are checked (with every stage): one that fires
//! `immediate-rollback` forces rollback; `prepare-rollback` or `alert` from a
//! trigger with `hold: true` turns promote into hold. Last, action plugins
//! plan the next steps; a planned `rollback` forces rollback and a planned
//! `hold` or `pause` turns promote into hold. Triggers and actions only ever
//! make a decision more cautious.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::time::Duration;

use crate::base::digest::Digest;
use crate::engine::{self, ActionContext, StageInfo};
use crate::evaluate::decision::{
    ActionPlan, Decision, Digests, Fire, GateResult, Outcome, StageRun, TriggerResult,
};
use crate::evaluate::trigger_state::{EphemeralState, StateError, StateKey, TriggerState};
use crate::policy::{GateKind, LoadedPolicy};
use crate::snapshot::Snapshot;

pub mod charts;
pub mod decision;
pub mod explain;
mod gates;
pub(crate) mod rollout;
mod scoring;
pub(crate) mod trigger_state;

use self::gates::{run_gate, run_host_gate};
use self::scoring::{StageVerdict, decide, escalate_by_actions, escalate_by_triggers};

/// The evaluation could not run at all. A failing gate is never this.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("trigger state unavailable")]
    State(#[from] StateError),
    #[error("unknown stage `{stage}` in policy `{policy}`; stages: {}, or `all` for every stage in order", available.join(", "))]
    UnknownStage {
        policy: String,
        stage: String,
        available: Vec<String>,
    },
}

/// The digest of a snapshot's canonical JSON, the same whether it came from a
/// file, stdin or an HTTP body.
pub fn input_digest(snapshot: &Snapshot) -> Digest {
    Digest::of(&serde_json::to_vec(snapshot).unwrap_or_default())
}

/// What to evaluate besides the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The stage; the policy's first when `None`.
    pub stage: Option<&'a str>,
    /// Time spent in the stage so far. When `None`, the snapshot attribute
    /// `stage_started_at` (unix seconds or RFC 3339) is used if present.
    pub elapsed: Option<Duration>,
    /// Who keeps the stage's clock.
    pub schedule: Schedule,
    /// The approvals on record for the snapshot's release, for the
    /// `approval` and `checklist` gates (read from the store by the caller).
    pub approvals: &'a [crate::policy::approvals::Approval],
    /// When the decision is made, unix seconds: the evaluating host's clock
    /// (or a replay's logged one), never the caller's `taken_at`. Release
    /// windows and freezes, approval ages, and which approvals exist yet are
    /// judged at this time; `taken_at` only positions the metric windows.
    pub decided_at: i64,
    /// Whether `decided_at` was chosen by the caller (`eval --at`, a policy
    /// test) rather than read from the clock: the decision says so, and such
    /// an evaluation is never committed and advances no trigger state.
    pub what_if: bool,
    /// The snapshot's [`input_digest`] when the caller has it already (from
    /// the bytes a logged decision stores), so it is made once per decision.
    pub input_digest: Option<Digest>,
}

/// A snapshot that says it was observed in the future: its `taken_at`, or
/// one of its points, is ahead of the deciding host's clock by more than
/// the allowed skew. Such telemetry could pin trigger state where the
/// real clock never reaches, so the evaluation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} {} is ahead of this server's clock ({}) by more than the allowed {}; send telemetry observed by now",
    rfc3339(*at),
    rfc3339(*now),
    humantime::format_duration(*skew)
)]
pub struct AheadOfClock {
    /// What is ahead: `taken_at`, or a point of a named metric.
    pub what: String,
    pub at: i64,
    pub now: i64,
    pub skew: Duration,
}

/// `t` (unix seconds) as RFC 3339 with the number beside it.
pub fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or_else(|| format!("{t} (unix seconds)"), |s| format!("{s} ({t})"))
}

/// Refuses a snapshot whose `taken_at`, or any point, is more than
/// `max_skew` ahead of `now` (unix seconds).
pub fn check_clock(snapshot: &Snapshot, now: i64, max_skew: Duration) -> Result<(), AheadOfClock> {
    let limit = now.saturating_add(i64::try_from(max_skew.as_secs()).unwrap_or(i64::MAX));
    let ahead = |what: String, at: i64| AheadOfClock {
        what,
        at,
        now,
        skew: max_skew,
    };
    if snapshot.taken_at > limit {
        return Err(ahead("`taken_at`".into(), snapshot.taken_at));
    }
    for (track, set) in [
        ("metrics", &snapshot.metrics),
        ("baseline", &snapshot.baseline),
    ] {
        for series in set {
            if let Some(p) = series.points.iter().find(|p| p.timestamp > limit) {
                return Err(ahead(
                    format!(
                        "a point of `{}` in `{track}`",
                        crate::base::text::escape_control(&series.name)
                    ),
                    p.timestamp,
                ));
            }
        }
    }
    Ok(())
}

/// How far `taken_at` may run ahead of the deciding clock by default.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// The clock a decision is made at: unix seconds now.
pub fn clock_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Schedule {
    /// `policy` or `caller`, as requests and records write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Policy => "policy",
            Self::Caller => "caller",
        }
    }
}

impl std::str::FromStr for Schedule {
    type Err = crate::base::text::NotOneOf;

    /// `policy` or `caller`; the error names both.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "policy" => Ok(Self::Policy),
            "caller" => Ok(Self::Caller),
            _ => Err(crate::base::text::NotOneOf {
                expected: "policy or caller",
            }),
        }
    }
}

/// Refuses a `stage` the policy does not have (nor [`ALL_STAGES`]) before
/// anything is gathered for it; the name is shown escaped and cut short,
/// as it comes from the caller.
pub fn check_stage(policy: &crate::policy::Policy, stage: Option<&str>) -> Result<(), EvalError> {
    match stage {
        Some(s) if !is_known_stage(policy, s) => Err(EvalError::UnknownStage {
            policy: policy.name.to_string(),
            stage: crate::base::text::shown(s),
            available: policy.stage_names(),
        }),
        _ => Ok(()),
    }
}

/// Who decides when a stage has run long enough.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// The policy's stage `duration`: a stage whose time in it is unknown
    /// holds rather than promote early.
    #[default]
    Policy,
    /// The caller (Flagger, Argo Rollouts) advances stages itself; stage
    /// durations are not checked.
    Caller,
}

/// Evaluates one stage (the first when `stage` is `None`) of a loaded policy
/// now, with trigger state that lives only for this call and stage
/// durations left to the caller.
pub fn evaluate(
    loaded: &LoadedPolicy,
    stage: Option<&str>,
    snapshot: Arc<Snapshot>,
) -> Result<Decision, EvalError> {
    evaluate_with(
        loaded,
        &Request {
            stage,
            elapsed: None,
            schedule: Schedule::Caller,
            approvals: &[],
            decided_at: clock_now(),
            what_if: false,
            input_digest: None,
        },
        snapshot,
        &mut EphemeralState::default(),
    )
}

/// The stage name that asks for every stage in order: the policy format
/// reserves it.
pub use crate::policy::ALL_STAGES;

/// Whether `stage` names a stage of `policy`, or is [`ALL_STAGES`].
pub fn is_known_stage(policy: &crate::policy::Policy, stage: &str) -> bool {
    stage == ALL_STAGES || policy.stage(Some(stage)).is_some()
}

/// Evaluates a stage: gates, then triggers (reading and writing their state
/// in `state`), then actions. With the stage [`ALL_STAGES`], evaluates every
/// stage in order and stops at the first that does not promote.
pub fn evaluate_with(
    loaded: &LoadedPolicy,
    request: &Request<'_>,
    snapshot: Arc<Snapshot>,
    state: &mut dyn TriggerState,
) -> Result<Decision, EvalError> {
    if request.stage == Some(ALL_STAGES) {
        return evaluate_pipeline(loaded, request, snapshot, state);
    }
    evaluate_stage(loaded, request, snapshot, state)
}

/// Trigger state as `base` holds it, with this evaluation's writes kept
/// aside until [`Overlay::apply`]: the stages a pipeline passes through see
/// the state, and only the stage it stops at advances it, once.
struct Overlay<'a> {
    base: &'a mut dyn TriggerState,
    writes: BTreeMap<String, (StateKey, Vec<u8>)>,
}

impl TriggerState for Overlay<'_> {
    fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StateError> {
        match self.writes.get(&key.to_string()) {
            Some((_, state)) => Ok(Some(state.clone())),
            None => self.base.get(key),
        }
    }

    fn put(&mut self, key: &StateKey, state: Vec<u8>) -> Result<(), StateError> {
        self.writes.insert(key.to_string(), (key.clone(), state));
        Ok(())
    }
}

impl Overlay<'_> {
    fn apply(self) -> Result<(), StateError> {
        for (key, state) in self.writes.into_values() {
            self.base.put(&key, state)?;
        }
        Ok(())
    }
}

/// Every stage in order, up to the first that does not promote. The
/// decision is that stage's (or the last one's), its summary says which
/// stage it is, and `pipeline` reports each stage evaluated.
fn evaluate_pipeline(
    loaded: &LoadedPolicy,
    request: &Request<'_>,
    snapshot: Arc<Snapshot>,
    state: &mut dyn TriggerState,
) -> Result<Decision, EvalError> {
    let stages = &loaded.policy.stages;
    let digest = request
        .input_digest
        .unwrap_or_else(|| input_digest(&snapshot));
    let mut runs = Vec::new();
    for (i, stage) in stages.iter().enumerate() {
        let mut overlay = Overlay {
            base: &mut *state,
            writes: BTreeMap::new(),
        };
        let one = Request {
            stage: Some(stage.name.as_str()),
            input_digest: Some(digest),
            ..*request
        };
        let mut decision = evaluate_stage(loaded, &one, Arc::clone(&snapshot), &mut overlay)?;
        runs.push(StageRun {
            stage: decision.stage.clone(),
            decision: decision.decision,
            stage_result: decision.stage_result,
            score: decision.score,
            summary: decision.summary.clone(),
            gates: decision.gates.clone(),
        });
        let last = i + 1 == stages.len();
        if decision.decision != Outcome::Promote || last {
            overlay.apply()?;
            let n = stages.len();
            decision.summary = if decision.decision == Outcome::Promote {
                let names: Vec<String> = stages.iter().map(|s| format!("`{}`", s.name)).collect();
                format!("all {n} stage(s) passed: {}", names.join(", "))
            } else {
                format!(
                    "stage `{}` ({} of {n}) did not pass: {}",
                    stage.name,
                    i + 1,
                    decision.summary
                )
            };
            decision.pipeline = runs;
            return Ok(decision);
        }
    }
    Err(EvalError::UnknownStage {
        policy: loaded.policy.name.to_string(),
        stage: ALL_STAGES.to_string(),
        available: loaded.policy.stage_names(),
    })
}

fn evaluate_stage(
    loaded: &LoadedPolicy,
    request: &Request<'_>,
    snapshot: Arc<Snapshot>,
    state: &mut dyn TriggerState,
) -> Result<Decision, EvalError> {
    let policy = &loaded.policy;
    let stage = policy
        .stage(request.stage)
        .ok_or_else(|| EvalError::UnknownStage {
            policy: policy.name.to_string(),
            stage: request.stage.unwrap_or_default().to_string(),
            available: policy.stage_names(),
        })?;
    let input = engine::Input {
        snapshot: Arc::clone(&snapshot),
        now: request.decided_at,
    };
    // Instances per plugin for the gates, freed before the triggers run.
    let mut session = engine::Session::new(input.clone());
    let gates: Vec<GateResult> = stage
        .gates
        .iter()
        .map(|gate| match &gate.kind {
            GateKind::Plugin => run_gate(loaded, gate, &mut session),
            GateKind::Host(rule) => {
                run_host_gate(gate, rule, request, &snapshot, stage.name.as_str())
            }
        })
        .collect();
    drop(session);
    let StageVerdict {
        decision,
        result: stage_result,
        score,
        summary,
    } = decide(stage, &gates);

    let triggers = run_triggers(loaded, stage.name.as_str(), &input, state)?;
    let (mut decision, mut summary) = escalate_by_triggers(decision, summary, &triggers);

    // A stage the policy times must not be left early because nobody said
    // how long it has run: hold, and say what to send.
    if decision == Outcome::Promote
        && request.schedule == Schedule::Policy
        && let Some(min) = stage.duration
        && elapsed(request, &snapshot).is_none()
    {
        decision = Outcome::Hold;
        summary = format!(
            "stage `{}` must run {} before it may be left, and the time spent in it is unknown: send `--elapsed` (`elapsed` in a request) or the snapshot attribute `stage_started_at`",
            stage.name,
            humantime::format_duration(min)
        );
    }

    // Actions see only triggers that bear on the decision: an immediate
    // rollback, or a trigger whose policy entry says it holds promotion.
    let strongest = scoring::deciding_trigger(&triggers);
    let context = ActionContext {
        stage: stage.name.to_string(),
        stages: policy
            .stages
            .iter()
            .map(|s| StageInfo {
                name: s.name.to_string(),
                traffic_percent: s.traffic,
                min_duration_seconds: s.duration.map(|d| d.as_secs()),
            })
            .collect(),
        elapsed_seconds: elapsed(request, &snapshot).map(|d| d.as_secs()),
        outcome: stage_result,
        trigger: strongest.map(|t| {
            (
                t.fire.as_str().to_string(),
                format!("trigger `{}`: {}", t.name, t.reason),
            )
        }),
    };
    let actions = run_actions(loaded, &input, &context);
    let (decision, summary) = escalate_by_actions(decision, summary, &actions);

    // Every plugin the policy uses, not only this stage's: a replay loads
    // the whole policy, so the record must hold all of their bytes.
    let plugins = policy
        .plugin_uses()
        .filter_map(|u| {
            let plugin = loaded.plugins.get(u.plugin)?;
            Some((u.plugin.to_string(), plugin.digest()))
        })
        .collect();
    Ok(Decision {
        decision_id: None,
        decision,
        summary,
        policy: policy.name.to_string(),
        stage: stage.name.to_string(),
        stage_result,
        score,
        scoring: stage.scoring,
        service: snapshot.service.clone(),
        version: snapshot.version.clone(),
        taken_at: snapshot.taken_at,
        decided_at: Some(request.decided_at),
        what_if: request.what_if,
        gates,
        triggers,
        actions,
        digests: Digests {
            policy: loaded.digest,
            input: request
                .input_digest
                .unwrap_or_else(|| input_digest(&snapshot)),
            plugins,
        },
        sources: None,
        pipeline: Vec::new(),
        approvals: if uses_approvals(policy) {
            request
                .approvals
                .iter()
                .map(crate::policy::approvals::Approval::reference)
                .collect()
        } else {
            Vec::new()
        },
    })
}

/// Whether any stage of `policy` has an `approval` or `checklist` gate.
pub fn uses_approvals(policy: &crate::policy::Policy) -> bool {
    policy.uses_approvals()
}

/// Time in the stage: the request's, or `taken_at − stage_started_at`.
fn elapsed(request: &Request<'_>, snapshot: &Snapshot) -> Option<Duration> {
    if let Some(e) = request.elapsed {
        return Some(e);
    }
    let started = snapshot.attributes.get("stage_started_at")?;
    let started = started.parse::<i64>().ok().or_else(|| {
        time::OffsetDateTime::parse(started, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(|t| t.unix_timestamp())
    })?;
    u64::try_from(snapshot.taken_at.checked_sub(started)?)
        .ok()
        .map(Duration::from_secs)
}

pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn run_triggers(
    loaded: &LoadedPolicy,
    stage: &str,
    input: &engine::Input,
    state: &mut dyn TriggerState,
) -> Result<Vec<TriggerResult>, EvalError> {
    let snapshot = &input.snapshot;
    let mut session = engine::Session::new(input.clone());
    let mut out = Vec::new();
    for trigger in loaded.policy.triggers.iter().filter(|t| t.checks(stage)) {
        let key = StateKey {
            policy: loaded.policy.name.to_string(),
            service: snapshot.service.clone(),
            trigger: trigger.name.to_string(),
        };
        let mut result = TriggerResult {
            name: trigger.name.to_string(),
            plugin: trigger.plugin.clone(),
            fire: Fire::Alert,
            error: true,
            reason: String::new(),
            observed: None,
            threshold: None,
            holds: true,
            details: BTreeMap::new(),
            logs: Vec::new(),
            cause: None,
            duration_us: 0,
        };
        let Some(plugin) = loaded.plugins.get(&trigger.plugin) else {
            result.reason = format!("plugin `{}` is not loaded", trigger.plugin);
            out.push(result);
            continue;
        };
        let span = tracing::info_span!("trigger", trigger = %trigger.name, plugin = %trigger.plugin, fire = tracing::field::Empty);
        let _entered = span.enter();
        let previous = state.get(&key)?.unwrap_or_default();
        let call = session.check(plugin, &trigger.config, &previous, &trigger.limits);
        result.duration_us = micros(call.elapsed);
        result.logs = call.logs;
        match call.result {
            Ok(found) => {
                state.put(&key, found.state)?;
                result.fire = found.fire;
                result.error = false;
                result.reason = found.reason;
                result.observed = found.observed;
                result.threshold = found.threshold;
                result.holds = trigger.hold;
                result.details = found.details.into_iter().collect();
            }
            Err(e) => {
                // A broken trigger cannot say all is well: it holds promotion.
                result.reason = format!("trigger broke, holding promotion: {e}");
                result.cause = Some(e.cause().to_string());
            }
        }
        span.record("fire", result.fire.as_str());
        out.push(result);
    }
    Ok(out)
}

fn run_actions(
    loaded: &LoadedPolicy,
    input: &engine::Input,
    context: &ActionContext,
) -> Vec<ActionPlan> {
    let mut session = engine::Session::new(input.clone());
    loaded
        .policy
        .actions
        .iter()
        .map(|step| {
            let mut plan = ActionPlan {
                name: step.name.to_string(),
                plugin: step.plugin.clone(),
                actions: Vec::new(),
                error: None,
                logs: Vec::new(),
                cause: None,
                duration_us: 0,
            };
            let Some(plugin) = loaded.plugins.get(&step.plugin) else {
                plan.error = Some(format!("plugin `{}` is not loaded", step.plugin));
                return plan;
            };
            let call = session.plan(plugin, &step.config, context, &step.limits);
            plan.duration_us = micros(call.elapsed);
            plan.logs = call.logs;
            match call.result {
                Ok(Ok(actions)) => plan.actions = actions,
                Ok(Err(e)) => plan.error = Some(e),
                Err(e) => {
                    plan.cause = Some(e.cause().to_string());
                    plan.error = Some(e.to_string());
                }
            }
            plan
        })
        .collect()
}
