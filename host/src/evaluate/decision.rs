//! The decision record: what was decided, why, for every gate, and the
//! digests that identify exactly what was evaluated.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::base::digest::Digest;
pub use crate::engine::LogLine;
pub use crate::engine::answer::Read;
/// Trigger and action answers are the engine's own types: the sandbox is the
/// bottom layer and knows nothing of decisions.
pub use crate::engine::answer::{Action, Fire, FlagRollout, StageResult};

/// What the release should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The stage passed: move on.
    Promote,
    /// Not enough evidence, or only a warning: stay where you are.
    Hold,
    /// The stage failed: go back.
    Rollback,
}

impl Outcome {
    /// The lowercase word used in every output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promote => "promote",
            Self::Hold => "hold",
            Self::Rollback => "rollback",
        }
    }
}

/// A gate's verdict as the plugin gave it, or `error` when the plugin broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
    /// The gate had no data to judge.
    Inconclusive,
    /// The plugin trapped, timed out or broke a limit.
    Error,
}

impl Verdict {
    /// The lowercase word used in every output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
            Self::Inconclusive => "inconclusive",
            Self::Error => "error",
        }
    }
}

/// How a verdict counted toward the stage, after `on_no_data`, `on_error`
/// and `dry_run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Counted {
    Pass,
    Warn,
    Fail,
    Inconclusive,
    /// Left out of the score (dry run, or `on_error: ignore`).
    Ignored,
}

impl Counted {
    /// The lowercase word used in every output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
            Self::Inconclusive => "inconclusive",
            Self::Ignored => "ignored",
        }
    }
}

/// One gate's finding, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub name: String,
    pub plugin: String,
    pub verdict: Verdict,
    pub counted_as: Counted,
    pub reason: String,
    pub observed: Option<f64>,
    pub threshold: Option<f64>,
    pub weight: f64,
    pub key: bool,
    pub dry_run: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogLine>,
    /// The snapshot selections the gate made, as the host served them:
    /// what it looked at, which charts redraw from the logged snapshot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<Read>,
    /// Why the plugin broke, when the verdict is `error`: `deadline`,
    /// `memory`, `stack`, `trap`, `output`, `pool` or `instantiate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// Wall time of the plugin call, instantiation included.
    pub duration_us: u64,
}

/// One trigger's check, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerResult {
    pub name: String,
    pub plugin: String,
    pub fire: Fire,
    /// `true` when the trigger broke (trap, timeout, limit) instead of answering.
    pub error: bool,
    pub reason: String,
    pub observed: Option<f64>,
    pub threshold: Option<f64>,
    /// Whether a `prepare-rollback` or `alert` from this trigger holds promotion.
    pub holds: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogLine>,
    /// Why the plugin broke, when `error` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    pub duration_us: u64,
}

/// One action plugin's plan, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionPlan {
    pub name: String,
    pub plugin: String,
    pub actions: Vec<Action>,
    /// Why no plan was made, when the plugin refused or broke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogLine>,
    /// Why the plugin broke, when it did (not when it refused to plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    pub duration_us: u64,
}

/// What identifies the evaluation exactly: replaying the same policy,
/// plugins and input reproduces the decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Digests {
    pub policy: Digest,
    pub input: Digest,
    pub plugins: BTreeMap<String, Digest>,
}

/// A decision with a reason for every gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// A UUIDv7 the server gives each decision it answers (absent from
    /// one-shot CLI decisions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    pub decision: Outcome,
    /// One sentence saying why.
    pub summary: String,
    pub policy: String,
    pub stage: String,
    pub stage_result: StageResult,
    /// Weighted score in percent over the gates that counted; `None` when
    /// no gate counted.
    pub score: Option<f64>,
    pub scoring: crate::policy::Scoring,
    pub service: String,
    pub version: String,
    /// When the telemetry was observed, unix seconds: the caller's clock.
    /// It positions the metric windows and nothing else.
    pub taken_at: i64,
    /// When the decision was made, unix seconds: the evaluating host's
    /// clock, at which windows, freezes and approval ages were judged.
    /// Absent only from records written before it was kept; a replay of
    /// those uses `taken_at`, as the evaluation then did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<i64>,
    /// The decision time was chosen by the caller (`eval --at`, a policy
    /// test): a what-if, which is never committed and advances no state.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub what_if: bool,
    pub gates: Vec<GateResult>,
    pub triggers: Vec<TriggerResult>,
    pub actions: Vec<ActionPlan>,
    pub digests: Digests,
    /// What the snapshot was built from, when the host built it (queries,
    /// reports, values); absent for a snapshot sent whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<crate::sources::Evidence>,
    /// With `stage: all`, every stage evaluated, in order, up to the one
    /// this decision stopped at (the last entry); empty for one stage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pipeline: Vec<StageRun>,
    /// The approvals and attestations on record for this release when a
    /// policy with an `approval` or `checklist` gate was evaluated, by id
    /// and digest: the input those gates judged, kept once in the log, so a
    /// replay judges the same.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<crate::policy::approvals::ApprovalRead>,
}

/// One stage of a `stage: all` evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRun {
    pub stage: String,
    pub decision: Outcome,
    pub stage_result: StageResult,
    pub score: Option<f64>,
    pub summary: String,
    pub gates: Vec<GateResult>,
}
