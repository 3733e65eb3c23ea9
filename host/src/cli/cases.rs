//! Policy test cases, as `tollgate test` runs them: a snapshot, a stage,
//! optional elapsed time and trigger state, and the expected decision,
//! verdicts, fired triggers and planned actions. Like `opa test`.
//!
//! ```yaml
//! policy: canary.yaml              # relative to this file
//! cases:
//!   - name: healthy initial canary promotes to 25%
//!     stage: initial-canary
//!     elapsed: 20m
//!     snapshot: ../tests/fixtures/canary-healthy.json   # or an inline mapping
//!     state: { circuit-breaker: "closed failures=" }    # optional, by trigger
//!     expect:
//!       decision: promote
//!       gates: { error-rate: pass }
//!       triggers: { error-rate-spike: none }
//!       actions: [{ type: set-weight, percent: 25 }, { type: promote }]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::decide::{Committed, Evaluation, Prefetched, StateFrom};
use crate::engine::Runtime;
use crate::evaluate::trigger_state::{EphemeralState, StateKey, TriggerState as _};
use crate::policy::yaml;
use crate::policy::{self, PluginCache};
use crate::snapshot::Snapshot;

/// A test file that could not be run at all.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct CaseFileError {
    pub file: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    policy: PathBuf,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    stage: Option<String>,
    elapsed: Option<String>,
    /// `caller` when the case's caller keeps the stage clock.
    #[serde(default)]
    schedule: Option<String>,
    snapshot: Json,
    #[serde(default)]
    state: BTreeMap<String, String>,
    /// Approvals and attestations on record for the case's release.
    #[serde(default)]
    approvals: Vec<CaseApproval>,
    expect: Expect,
}

/// An approval as a case states it: who, in which groups, how long before
/// the snapshot was taken.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseApproval {
    approver: String,
    #[serde(default)]
    groups: Vec<String>,
    /// `approval` (the default) or a checklist item.
    #[serde(default)]
    name: Option<String>,
    stage: Option<String>,
    /// How long before `taken_at`, e.g. `2h` (default: at `taken_at`).
    age: Option<String>,
    #[serde(default)]
    comment: String,
}

/// What a case checks. The words are typed, so a misspelt `promoted` is
/// an error in the file rather than a case that can never pass.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    decision: Option<crate::evaluate::decision::Outcome>,
    /// With `stage: all`, the stage the evaluation stopped at.
    stage: Option<String>,
    stage_result: Option<crate::evaluate::decision::StageResult>,
    summary_contains: Option<String>,
    #[serde(default)]
    gates: BTreeMap<String, crate::evaluate::decision::Verdict>,
    #[serde(default)]
    triggers: BTreeMap<String, crate::evaluate::decision::Fire>,
    actions: Option<Vec<Json>>,
}

impl Expect {
    /// Whether the case checks anything at all: one that does not cannot
    /// fail, so it is refused.
    fn is_empty(&self) -> bool {
        self.decision.is_none()
            && self.stage.is_none()
            && self.stage_result.is_none()
            && self.summary_contains.is_none()
            && self.gates.is_empty()
            && self.triggers.is_empty()
            && self.actions.is_none()
    }
}

/// One case's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub name: String,
    /// Every expectation that did not hold; empty when the case passed.
    pub failures: Vec<String>,
}

/// A decision log the cases' decisions are committed to (`test --log`),
/// so they can be replayed.
pub struct CaseLog {
    runtime: tokio::runtime::Runtime,
    store: Arc<dyn crate::store::Store>,
}

impl CaseLog {
    /// Opens the log `spec` names.
    pub fn open(spec: &str) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let store = runtime.block_on(crate::store::open(spec))?;
        Ok(Self { runtime, store })
    }

    /// Evaluates `evaluation` over the case's `state` and commits the
    /// decision, with the state as the case set it.
    fn decide(
        &self,
        evaluation: Arc<Evaluation>,
        state: &mut EphemeralState,
    ) -> anyhow::Result<crate::evaluate::decision::Decision> {
        let held = Prefetched::held(state, &evaluation.state_keys())?;
        let committed = self.runtime.block_on(crate::decide::run(
            self.store.as_ref(),
            evaluation,
            StateFrom::Held(held),
            |e, read| {
                let decision = e.evaluate(state).map_err(anyhow::Error::from);
                std::future::ready(decision.map(|d| (d, read)))
            },
        ));
        let committed = committed.map_err(|e| {
            if e.is::<crate::store::StoreError>() {
                e.context("the decision was not logged")
            } else {
                e
            }
        })?;
        match committed {
            Committed::Fresh(d) => Ok(*d),
            Committed::Replayed(a) => anyhow::bail!(
                "the log answered from idempotency key `{}`, which no case gives",
                a.key
            ),
        }
    }
}

/// Runs every case in the test file at `path`, committing each decision to
/// `log` when given.
pub fn run_file(
    runtime: &Runtime,
    cache: &mut PluginCache,
    path: &Path,
    log: Option<&CaseLog>,
) -> Result<Vec<CaseResult>, CaseFileError> {
    let fail = |message: String| CaseFileError {
        file: path.display().to_string(),
        message,
    };
    let text =
        crate::base::files::read_text(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let node = yaml::parse(&text).map_err(|e| fail(format!("invalid YAML: {e}")))?;
    let file: CaseFile = serde_path_to_error::deserialize(node.to_json())
        .map_err(|e| fail(format!("{}: {}", e.path(), e.inner())))?;
    if file.cases.is_empty() {
        return Err(fail(
            "`cases` is empty: a test file needs at least one case".into(),
        ));
    }
    if let Some(case) = file.cases.iter().find(|c| c.expect.is_empty()) {
        return Err(fail(format!(
            "case `{}`: `expect` checks nothing; give a decision, stage_result, summary_contains, gates, triggers or actions",
            case.name
        )));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let policy_path = dir.join(&file.policy);
    let policy_text = crate::base::files::read_text(&policy_path).map_err(|e| {
        fail(format!(
            "cannot read policy `{}`: {e}",
            policy_path.display()
        ))
    })?;
    let loaded = policy::load(
        runtime,
        cache,
        &policy_text,
        policy_path.parent().unwrap_or(dir),
    )
    .map_err(|p| {
        fail(format!(
            "policy `{}` is invalid:\n{}",
            policy_path.display(),
            p.render(None)
        ))
    })?;
    let loaded = Arc::new(loaded);
    Ok(file
        .cases
        .iter()
        .map(|case| run_case(&loaded, dir, case, log))
        .collect())
}

fn run_case(
    loaded: &Arc<policy::LoadedPolicy>,
    dir: &Path,
    case: &Case,
    log: Option<&CaseLog>,
) -> CaseResult {
    let failures = match decide_case(loaded, dir, case, log) {
        Ok(decision) => unmet(&case.expect, &decision),
        Err(e) => vec![format!("{e:#}")],
    };
    CaseResult {
        name: case.name.clone(),
        failures,
    }
}

/// The case's decision, as the one evaluation path makes it: a what-if at
/// the snapshot's time over the case's state and approvals, committed to
/// `log` when given.
fn decide_case(
    loaded: &Arc<policy::LoadedPolicy>,
    dir: &Path,
    case: &Case,
    log: Option<&CaseLog>,
) -> anyhow::Result<crate::evaluate::decision::Decision> {
    let bytes = match &case.snapshot {
        Json::String(p) => {
            crate::base::files::read_limited(&dir.join(p), crate::base::files::MAX_SNAPSHOT_BYTES)
                .with_context(|| format!("cannot read snapshot `{p}`"))?
        }
        inline => serde_json::to_vec(inline)?,
    };
    let snapshot = Snapshot::from_json(&bytes).context("invalid snapshot")?;
    let elapsed = case
        .elapsed
        .as_deref()
        .map(|e| humantime::parse_duration(e).with_context(|| format!("invalid `elapsed` `{e}`")))
        .transpose()?;
    let mut store = EphemeralState::default();
    for (trigger, state) in &case.state {
        let key = StateKey {
            policy: loaded.policy.name.to_string(),
            service: snapshot.service.clone(),
            trigger: trigger.clone(),
        };
        store.put(&key, state.clone().into_bytes())?;
    }
    let schedule = case
        .schedule
        .as_deref()
        .map(|s| {
            s.parse::<crate::evaluate::Schedule>()
                .map_err(|expected| anyhow::anyhow!("`schedule` is `{s}`; expected {expected}"))
        })
        .transpose()?
        .unwrap_or_default();
    let approvals = approvals(case, &snapshot)?;
    // A case is a what-if at its snapshot's time, so that windows and
    // approval ages give the same answer on any day the suite runs.
    let evaluation = Evaluation {
        loaded: Arc::clone(loaded),
        decided_at: snapshot.taken_at,
        snapshot: Arc::new(snapshot),
        approvals: approvals.into(),
        asked: crate::store::Asked::new(case.stage.clone(), elapsed, schedule, false),
        what_if: true,
        asker: crate::decide::Asker::default(),
        idempotency: None,
        evidence: None,
        canonical: Default::default(),
    };
    match log {
        Some(log) => log.decide(Arc::new(evaluation), &mut store),
        None => Ok(evaluation.evaluate(&mut store)?),
    }
}

/// The approvals a case states, on record for its snapshot's release.
fn approvals(
    case: &Case,
    snapshot: &Snapshot,
) -> anyhow::Result<Vec<crate::policy::approvals::Approval>> {
    case.approvals
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let age = match &a.age {
                Some(t) => humantime::parse_duration(t)
                    .with_context(|| format!("approval {}: `age` `{t}`", i + 1))?,
                None => Duration::ZERO,
            };
            Ok(crate::policy::approvals::Approval {
                id: format!("case-{}", i + 1),
                service: snapshot.service.clone(),
                version: snapshot.version.clone(),
                stage: a.stage.clone(),
                name: a
                    .name
                    .clone()
                    .unwrap_or_else(|| crate::policy::approvals::APPROVAL.to_string()),
                approver: a.approver.clone(),
                groups: a.groups.clone(),
                comment: a.comment.clone(),
                at_ms: snapshot
                    .taken_at
                    .saturating_mul(1000)
                    .saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)),
            })
        })
        .collect()
}

/// Every expectation of `e` that `d` does not meet.
fn unmet(e: &Expect, d: &crate::evaluate::decision::Decision) -> Vec<String> {
    let mut failures = Vec::new();
    if let Some(want) = e.decision
        && want != d.decision
    {
        failures.push(format!(
            "expected decision `{}`, got `{}`: {}",
            want.as_str(),
            d.decision.as_str(),
            d.summary
        ));
    }
    if let Some(want) = &e.stage
        && *want != d.stage
    {
        failures.push(format!(
            "expected to stop at stage `{want}`, stopped at `{}`",
            d.stage
        ));
    }
    if let Some(want) = e.stage_result
        && want != d.stage_result
    {
        failures.push(format!(
            "expected stage result `{}`, got `{}`",
            want.as_str(),
            d.stage_result.as_str()
        ));
    }
    if let Some(want) = &e.summary_contains
        && !d.summary.contains(want.as_str())
    {
        failures.push(format!(
            "expected the summary to contain `{want}`, got: {}",
            d.summary
        ));
    }
    for (gate, want) in &e.gates {
        match d.gates.iter().find(|g| &g.name == gate) {
            None => failures.push(format!("no gate `{gate}` in stage `{}`", d.stage)),
            Some(g) if g.verdict != *want => failures.push(format!(
                "gate `{gate}`: expected `{}`, got `{}`: {}",
                want.as_str(),
                g.verdict.as_str(),
                g.reason
            )),
            Some(_) => {}
        }
    }
    for (trigger, want) in &e.triggers {
        match d.triggers.iter().find(|t| &t.name == trigger) {
            None => failures.push(format!("no trigger `{trigger}`")),
            Some(t) if t.fire != *want => failures.push(format!(
                "trigger `{trigger}`: expected `{}`, got `{}`: {}",
                want.as_str(),
                t.fire.as_str(),
                t.reason
            )),
            Some(_) => {}
        }
    }
    if let Some(want) = &e.actions {
        let got: Vec<Json> = d
            .actions
            .iter()
            .flat_map(|p| {
                p.actions
                    .iter()
                    .map(|a| serde_json::to_value(a).unwrap_or_default())
            })
            .collect();
        if &got != want {
            failures.push(format!(
                "expected actions {}, got {}",
                Json::Array(want.clone()),
                Json::Array(got)
            ));
        }
    }
    failures
}

/// The test files under each of `paths`: `*.test.yaml` files in directories
/// (recursively), and files named directly.
pub fn discover(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()?;
            entries.sort();
            for e in entries {
                if e.is_dir() {
                    out.extend(discover(&[e])?);
                } else if e.to_string_lossy().ends_with(".test.yaml") {
                    out.push(e);
                }
            }
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}
