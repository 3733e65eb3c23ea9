//! What a gate, a trigger or an action plugin answers, as the host checked it.
//!
//! These types belong to the sandbox, the bottom layer; the decision record
//! re-exports them rather than the engine importing the decision's.

use serde::{Deserialize, Serialize};

/// The stage's own result, before triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageResult {
    Pass,
    Warning,
    Fail,
    Inconclusive,
}

impl StageResult {
    /// The lowercase word used in every output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warning => "warning",
            Self::Fail => "fail",
            Self::Inconclusive => "inconclusive",
        }
    }
}

/// How loudly a rollback trigger fired, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fire {
    None,
    Alert,
    PrepareRollback,
    ImmediateRollback,
}

impl Fire {
    /// The kebab-case word used in every output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Alert => "alert",
            Self::PrepareRollback => "prepare-rollback",
            Self::ImmediateRollback => "immediate-rollback",
        }
    }
}

/// A feature flag's planned exposure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagRollout {
    pub flag: String,
    pub percent: u8,
    pub segments: Vec<String>,
}

/// One planned deployment step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Action {
    SetWeight { percent: u8 },
    Promote,
    Pause { seconds: u64 },
    Hold { reason: String },
    Rollback { reason: String },
    BumpVersion { version: String },
    FlagRollout(FlagRollout),
}

/// A gate's answer, checked against the output bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub verdict: PluginVerdict,
    pub reason: String,
    pub observed: Option<f64>,
    pub threshold: Option<f64>,
    pub details: Vec<(String, String)>,
}

/// The verdicts a gate plugin can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginVerdict {
    Pass,
    Warn,
    Fail,
    Inconclusive,
}

/// A trigger's answer, checked against the output bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerFinding {
    pub fire: Fire,
    pub reason: String,
    pub observed: Option<f64>,
    pub threshold: Option<f64>,
    pub details: Vec<(String, String)>,
    /// The state for the next check.
    pub state: Vec<u8>,
}

/// One selection of snapshot points a plugin made during a call, as the
/// host served it: what a gate looked at, recorded by the host rather than
/// claimed by the plugin, so a chart of "what was judged" can be redrawn
/// from the logged snapshot for any plugin. Only selections that matched
/// a series are kept, so every text in one is bounded by the snapshot's own.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Read {
    pub metric: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selector: Vec<(String, String)>,
    /// Points in `(taken_at - window, taken_at]`; absent for every point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
    pub track: crate::snapshot::Track,
    /// How many points the selection returned.
    pub points: usize,
}

/// A plugin log line, kept in the evaluation's bounded buffer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogLine {
    pub level: String,
    pub message: String,
}
