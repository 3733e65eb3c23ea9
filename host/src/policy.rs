//! Policies: what they say (the model), how they are read from YAML with every
//! problem reported, and how their plugins are resolved, checked and compiled.

pub(crate) mod approvals;
pub mod builtin;
mod load;
mod parse;
mod reader;
mod schema;
pub(crate) mod template;
pub mod yaml;

use crate::base::text::NotOneOf;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::base::digest::Digest;
use crate::engine::{Limits, PluginConfig, World};

pub use self::load::{
    LoadedPolicy, PluginCache, Trust, load, load_offered, load_recorded, load_with,
};
pub use self::parse::parse;
pub use self::schema::{policy_reference, policy_schema};

/// The `apiVersion` this host reads.
pub const API_VERSION: &str = "tollgate.dev/v1";

/// The stage name that asks for every stage of a policy in order (a
/// policy may not name a stage so).
pub const ALL_STAGES: &str = "all";

/// A policy or stage name: lowercase letters, digits, `-`, `_` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Name(String);

/// A name with characters outside `[a-z0-9._-]`, or empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid name: use 1 to 64 lowercase letters, digits, `-`, `_` or `.`")]
pub struct NameError(String);

impl FromStr for Name {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, NameError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(NameError(s.to_string()))
        }
    }
}

impl Name {
    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A parsed, structurally valid policy. Its plugins are not yet resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: Name,
    pub description: Option<String>,
    /// User plugins declared by the policy, by the name gates use.
    pub plugins: BTreeMap<String, PluginDecl>,
    pub stages: Vec<Stage>,
    /// Rollback triggers, checked with every stage.
    pub triggers: Vec<Trigger>,
    /// Deployment actions, planned after every stage.
    pub actions: Vec<ActionStep>,
    /// Where metrics come from when the caller sends no snapshot.
    pub metrics: Vec<MetricSource>,
    /// The `${track}` values for the current and the baseline series.
    pub tracks: Tracks,
    /// Whether every plugin loaded from a file must carry an SSH signature
    /// by a key in `allowed_signers`.
    pub require_signature: bool,
    /// The `allowed_signers` file (ssh-keygen format), resolved against the
    /// policy's directory.
    pub allowed_signers: Option<PathBuf>,
}

/// A metric the host queries itself: a query with `${…}` variables, sent
/// to Prometheus or to a named source plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSource {
    /// The metric name gates read.
    pub name: String,
    /// The source that answers it: `None` for the native Prometheus
    /// (`prometheus:`), else the name of a configured source (`source:`).
    pub source: Option<String>,
    /// The query template: PromQL, or the source's own language.
    pub query: String,
    /// How far back to query; the stage's duration (or 15m) when absent.
    pub window: Option<std::time::Duration>,
    /// Resolution of the range query (30 s by default).
    pub step: std::time::Duration,
    /// Whether the query uses `${track}`, and so is run for the baseline too.
    pub uses_track: bool,
    pub line: usize,
}

/// What `${track}` becomes for each set of series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracks {
    /// For the version under evaluation (`canary`).
    pub current: String,
    /// For the stable version beside it (`primary`).
    pub baseline: String,
}

impl Default for Tracks {
    /// `canary` and `primary`, as Flagger names them.
    fn default() -> Self {
        Self {
            current: "canary".into(),
            baseline: "primary".into(),
        }
    }
}

/// A rollback trigger: a plugin checked with every stage, whose state the
/// host keeps between checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub name: Name,
    pub description: Option<String>,
    pub plugin: String,
    pub config: PluginConfig,
    /// Whether an `alert` or `prepare-rollback` from it holds promotion.
    /// (`immediate-rollback` always rolls back.)
    pub hold: bool,
    /// The stages it is checked in; empty is every stage. (A blue-green
    /// release's triggers apply only once traffic has switched.)
    pub stages: Vec<Name>,
    pub limits: Limits,
    pub line: usize,
}

impl Trigger {
    /// Whether the trigger is checked in `stage`.
    pub fn checks(&self, stage: &str) -> bool {
        self.stages.is_empty() || self.stages.iter().any(|s| s.as_str() == stage)
    }
}

/// A deployment action: a plugin that plans the next steps.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionStep {
    pub name: Name,
    pub description: Option<String>,
    pub plugin: String,
    pub config: PluginConfig,
    pub limits: Limits,
    pub line: usize,
}

/// A user plugin: a component file, optionally pinned by digest.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginDecl {
    /// Resolved against the policy file's directory.
    pub path: PathBuf,
    /// When set, a component with another digest is refused.
    pub digest: Option<Digest>,
    pub line: usize,
}

/// A named step of a rollout with its gates.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: Name,
    pub description: Option<String>,
    /// Share of traffic the stage sends to the new version.
    pub traffic: Option<u8>,
    /// How long the stage must run before it may be left.
    pub duration: Option<std::time::Duration>,
    pub scoring: Scoring,
    pub gates: Vec<Gate>,
}

/// Score bands, in percent: at or above `pass` passes, at or above `warn` warns.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scoring {
    pub pass: f64,
    pub warn: f64,
}

impl Default for Scoring {
    /// Pass at 90%, warn at 75%.
    fn default() -> Self {
        Self {
            pass: 90.0,
            warn: 75.0,
        }
    }
}

/// What a gate's missing data counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnNoData {
    #[default]
    Inconclusive,
    Fail,
    Pass,
}

impl FromStr for OnNoData {
    type Err = NotOneOf;

    /// `inconclusive`, `fail` or `pass`; the error lists them.
    fn from_str(s: &str) -> Result<Self, NotOneOf> {
        match s {
            "inconclusive" => Ok(Self::Inconclusive),
            "fail" => Ok(Self::Fail),
            "pass" => Ok(Self::Pass),
            _ => Err(NotOneOf {
                expected: "inconclusive, fail or pass",
            }),
        }
    }
}

/// What a broken plugin (trap, timeout, limit) counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Fail closed.
    #[default]
    Fail,
    Warn,
    /// Leave the gate out of the score.
    Ignore,
}

impl FromStr for OnError {
    type Err = NotOneOf;

    /// `fail`, `warn` or `ignore`; the error lists them.
    fn from_str(s: &str) -> Result<Self, NotOneOf> {
        match s {
            "fail" => Ok(Self::Fail),
            "warn" => Ok(Self::Warn),
            "ignore" => Ok(Self::Ignore),
            _ => Err(NotOneOf {
                expected: "fail, warn or ignore",
            }),
        }
    }
}

/// What judges a gate, decided once when the policy is read.
#[derive(Debug, Clone, PartialEq)]
pub enum GateKind {
    /// The plugin the gate's `plugin` names, in the sandbox.
    Plugin,
    /// The host itself, from the recorded approvals (`approval`,
    /// `checklist`), by the rule its settings give.
    Host(crate::policy::approvals::Rule),
}

/// One gate: a plugin, its configuration and how its verdict counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub name: Name,
    pub description: Option<String>,
    /// The plugin as the policy names it, a host gate's name included: what
    /// a decision records.
    pub plugin: String,
    pub kind: GateKind,
    pub config: PluginConfig,
    pub weight: f64,
    /// A failing key gate fails the stage whatever the score.
    pub key: bool,
    /// Evaluated and recorded, but never changes the decision.
    pub dry_run: bool,
    pub on_no_data: OnNoData,
    pub on_error: OnError,
    pub limits: Limits,
    /// The line of the gate in the policy file.
    pub line: usize,
}

/// A gate, trigger or action that runs a plugin.
#[derive(Debug, Clone, Copy)]
pub struct Use<'a> {
    /// What it is, and so what the plugin must export.
    pub world: World,
    pub name: &'a Name,
    pub plugin: &'a str,
    pub config: &'a PluginConfig,
    pub limits: &'a Limits,
    /// Its line in the policy file.
    pub line: usize,
}

/// One problem found in a policy file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct Problem {
    pub line: Option<usize>,
    pub message: String,
}

/// Every problem found in a policy file, in document order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render(None))]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// One problem per line, each prefixed with `file:line:` when a file is given.
    pub fn render(&self, file: Option<&str>) -> String {
        self.0
            .iter()
            .map(|p| match (file, p.line) {
                (Some(f), Some(l)) => format!("{f}:{l}: {}", p.message),
                (Some(f), None) => format!("{f}: {}", p.message),
                (None, _) => p.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Policy {
    /// The names of every stage, in order, for messages.
    pub fn stage_names(&self) -> Vec<String> {
        self.stages.iter().map(|s| s.name.to_string()).collect()
    }

    /// Whether any stage has a host gate (`approval`, `checklist`), which
    /// reads the release's recorded approvals.
    pub fn uses_approvals(&self) -> bool {
        self.stages
            .iter()
            .flat_map(|s| &s.gates)
            .any(|g| matches!(g.kind, GateKind::Host(_)))
    }

    /// Every gate, trigger and action that runs a plugin, in that order:
    /// what the load resolves and asks to check its settings.
    pub fn plugin_uses(&self) -> impl Iterator<Item = Use<'_>> {
        let gates = self
            .stages
            .iter()
            .flat_map(|s| &s.gates)
            .filter(|g| g.kind == GateKind::Plugin)
            .map(|g| Use {
                world: World::Gate,
                name: &g.name,
                plugin: &g.plugin,
                config: &g.config,
                limits: &g.limits,
                line: g.line,
            });
        let triggers = self.triggers.iter().map(|t| Use {
            world: World::Trigger,
            name: &t.name,
            plugin: &t.plugin,
            config: &t.config,
            limits: &t.limits,
            line: t.line,
        });
        let actions = self.actions.iter().map(|a| Use {
            world: World::Action,
            name: &a.name,
            plugin: &a.plugin,
            config: &a.config,
            limits: &a.limits,
            line: a.line,
        });
        gates.chain(triggers).chain(actions)
    }

    /// The stage called `name`, or the first stage when `name` is `None`.
    pub fn stage(&self, name: Option<&str>) -> Option<&Stage> {
        match name {
            None => self.stages.first(),
            Some(n) => self.stages.iter().find(|s| s.name.as_str() == n),
        }
    }
}
