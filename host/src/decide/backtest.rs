//! Backtesting: what a candidate policy would have decided for every
//! logged decision of a policy, compared with what was decided, and joined
//! with what happened to each release afterwards.
//!
//! Each logged decision is evaluated again through the one evaluation path
//! ([`crate::decide::Evaluation`]) with the candidate policy, over the logged
//! snapshot, stage, elapsed time, schedule and approvals, at the logged
//! decision time. Trigger state is replayed: the candidate's triggers start
//! empty and see each service's decisions in the order they were made
//! ([`StateMode::Replayed`]), or read the state each decision read
//! ([`StateMode::Logged`]). Nothing is committed. The candidate is loaded
//! once; each decision costs a record and a snapshot read and one
//! evaluation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;

use crate::decide::replay::ReplayError;
use crate::evaluate::decision::{Counted, Decision, Outcome};
use crate::evaluate::trigger_state::EphemeralState;
use crate::policy::LoadedPolicy;
use crate::snapshot::Snapshot;
use crate::store::{Filter, Record, Store, StoreError, Summary};

/// Rows of changed decisions a report keeps; the counts cover them all.
pub const MAX_ROWS: usize = 10_000;

/// Where the candidate's trigger state comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StateMode {
    /// Empty at first, then what the candidate's triggers wrote, service by
    /// service in the order the decisions were made.
    Replayed,
    /// The state each logged decision read.
    Logged,
}

/// What a release turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Good,
    Bad,
}

/// What the candidate is compared with.
#[derive(Clone)]
pub enum Against {
    /// The decisions as logged.
    Logged,
    /// Another policy, evaluated the same way (usually the one enforced now).
    Policy(Arc<LoadedPolicy>),
}

/// How to backtest.
#[derive(Clone)]
pub struct Options {
    pub candidate: Arc<LoadedPolicy>,
    pub against: Against,
    /// The logged policy name whose decisions are re-evaluated.
    pub policy_name: String,
    pub service: Option<String>,
    /// `taken_at` bounds, unix seconds: since inclusive, until exclusive.
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub state: StateMode,
    /// Labels a team keeps elsewhere, by (service, version); they win over
    /// the log's.
    pub labels: BTreeMap<(String, String), Label>,
    /// The policy whose decisions are hotfixes.
    pub hotfix_policy: String,
    /// A hotfix of the same service this soon after a release's last
    /// decision makes the release bad, seconds.
    pub hotfix_window: i64,
}

/// A gate or trigger whose finding differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingDiff {
    pub name: String,
    /// How it counted (gates) or fired (triggers) before and with the
    /// candidate; absent where the policy has no such gate or trigger.
    pub before: Option<String>,
    pub after: Option<String>,
    pub observed_before: Option<f64>,
    pub observed_after: Option<f64>,
    pub threshold_before: Option<f64>,
    pub threshold_after: Option<f64>,
}

/// One logged decision, re-evaluated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub decision_id: String,
    pub service: String,
    pub version: String,
    pub stage: String,
    pub taken_at: i64,
    /// The logged decision, or the comparison policy's.
    pub before: Outcome,
    /// The candidate's; absent when it could not evaluate (`error`).
    pub after: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub gates: Vec<FindingDiff>,
    pub triggers: Vec<FindingDiff>,
    /// The candidate's gates that found nothing to read in the logged
    /// snapshot (a metric the log does not carry).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub no_data: Vec<String>,
    pub summary: String,
}

/// A release and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Release {
    pub service: String,
    pub version: String,
    pub label: Option<Label>,
    /// Why: `file`, `rollback` (a logged rollback of the release), `hotfix
    /// <version>` (a hotfix of the service soon after), `shipped` (its last
    /// stage promoted, nothing after).
    pub because: Option<String>,
    /// Whether the logged (or comparison) decisions stopped it.
    pub stopped_before: bool,
    /// Whether the candidate would have: a rollback, or a hold where the
    /// comparison promoted.
    pub stopped_after: bool,
}

/// Labelled releases against whether a policy stopped them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    /// Would have stopped a bad release.
    pub stopped_bad: usize,
    /// Would have stopped a good release: a false positive.
    pub stopped_good: usize,
    /// Would have let a bad release through.
    pub passed_bad: usize,
    /// Let a good release through.
    pub passed_good: usize,
    /// Releases the log cannot label.
    pub unlabelled: usize,
}

/// The whole backtest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub policy: String,
    pub candidate: String,
    pub candidate_digest: crate::base::digest::Digest,
    /// `logged`, or the comparison policy's name.
    pub against: String,
    pub state: StateMode,
    pub decisions: usize,
    pub changed: usize,
    pub errors: usize,
    /// `before → after` and how many decisions moved so.
    pub transitions: BTreeMap<String, usize>,
    /// Candidate gates with no data in the logged snapshots, and in how
    /// many decisions.
    pub no_data: BTreeMap<String, usize>,
    pub releases: Vec<Release>,
    pub confusion_before: Confusion,
    pub confusion_after: Confusion,
    /// Changed or failed decisions, oldest first, at most [`MAX_ROWS`].
    pub rows: Vec<Row>,
    /// Rows left out past [`MAX_ROWS`].
    pub rows_omitted: usize,
}

/// What a backtest could not do at all.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no decision of policy `{0}` in the log matches")]
    Nothing(String),
}

/// Every decision to re-evaluate, oldest first, as listed (summaries only,
/// so memory is what the listing holds, not the records).
async fn listed(store: &dyn Store, o: &Options) -> Result<Vec<Summary>, StoreError> {
    let mut all = crate::store::all(
        store,
        &Filter {
            service: o.service.clone(),
            policy: Some(o.policy_name.clone()),
            since: o.since,
            until: o.until,
            ..Filter::default()
        },
    )
    .await?;
    all.sort_by(|a, b| (a.recorded_at_ms, &a.decision_id).cmp(&(b.recorded_at_ms, &b.decision_id)));
    Ok(all)
}

fn counted(c: Counted) -> String {
    c.as_str().to_string()
}

/// The gates and triggers of `before` and `after` that differ.
fn diffs(before: &Decision, after: &Decision) -> (Vec<FindingDiff>, Vec<FindingDiff>) {
    let mut gates = Vec::new();
    let names: BTreeSet<&str> = before
        .gates
        .iter()
        .chain(&after.gates)
        .map(|g| g.name.as_str())
        .collect();
    for name in names {
        let b = before.gates.iter().find(|g| g.name == name);
        let a = after.gates.iter().find(|g| g.name == name);
        let differ = match (b, a) {
            (Some(b), Some(a)) => {
                b.counted_as != a.counted_as
                    || b.observed != a.observed
                    || b.threshold != a.threshold
            }
            _ => true,
        };
        if differ {
            gates.push(FindingDiff {
                name: name.to_string(),
                before: b.map(|g| counted(g.counted_as)),
                after: a.map(|g| counted(g.counted_as)),
                observed_before: b.and_then(|g| g.observed),
                observed_after: a.and_then(|g| g.observed),
                threshold_before: b.and_then(|g| g.threshold),
                threshold_after: a.and_then(|g| g.threshold),
            });
        }
    }
    let mut triggers = Vec::new();
    let names: BTreeSet<&str> = before
        .triggers
        .iter()
        .chain(&after.triggers)
        .map(|t| t.name.as_str())
        .collect();
    for name in names {
        let b = before.triggers.iter().find(|t| t.name == name);
        let a = after.triggers.iter().find(|t| t.name == name);
        if b.map(|t| t.fire) != a.map(|t| t.fire) {
            triggers.push(FindingDiff {
                name: name.to_string(),
                before: b.map(|t| t.fire.as_str().to_string()),
                after: a.map(|t| t.fire.as_str().to_string()),
                observed_before: b.and_then(|t| t.observed),
                observed_after: a.and_then(|t| t.observed),
                threshold_before: b.and_then(|t| t.threshold),
                threshold_after: a.and_then(|t| t.threshold),
            });
        }
    }
    (gates, triggers)
}

/// Evaluates `loaded` as the logged decision `record` was evaluated.
fn evaluate(
    loaded: &Arc<LoadedPolicy>,
    record: &Record,
    snapshot: &Arc<Snapshot>,
    approvals: &Arc<[crate::policy::approvals::Approval]>,
    state: &mut EphemeralState,
    mode: StateMode,
) -> Result<Decision, String> {
    let evaluation = crate::decide::Evaluation {
        loaded: Arc::clone(loaded),
        snapshot: Arc::clone(snapshot),
        approvals: Arc::clone(approvals),
        asked: record.asked.clone(),
        decided_at: record
            .decision
            .decided_at
            .unwrap_or(record.decision.taken_at),
        what_if: false,
        asker: crate::decide::Asker::default(),
        idempotency: None,
        evidence: None,
        canonical: Default::default(),
    };
    let result = match mode {
        StateMode::Replayed => evaluation.evaluate(state),
        StateMode::Logged => {
            // The state this decision read, by trigger name, for the
            // candidate's triggers of the same names.
            let mut read = EphemeralState::default();
            for key in evaluation.state_keys() {
                if let Some(bytes) = record
                    .state_in
                    .get(&key.trigger)
                    .and_then(|h| hex::decode(h).ok())
                {
                    let _ =
                        crate::evaluate::trigger_state::TriggerState::put(&mut read, &key, bytes);
                }
            }
            evaluation.evaluate(&mut read)
        }
    };
    result.map_err(|e| format!("{e:#}"))
}

/// Runs the backtest, calling `progress(done, total)` as it goes.
pub async fn run(
    store: &dyn Store,
    o: &Options,
    mut progress: impl FnMut(usize, usize),
) -> Result<Report, BacktestError> {
    let listed = listed(store, o).await?;
    if listed.is_empty() {
        return Err(BacktestError::Nothing(o.policy_name.clone()));
    }
    let total = listed.len();
    let mut state_after = EphemeralState::default();
    let mut state_before = EphemeralState::default();
    let mut transitions: BTreeMap<String, usize> = BTreeMap::new();
    let mut no_data: BTreeMap<String, usize> = BTreeMap::new();
    let mut rows = Vec::new();
    let (mut changed, mut errors, mut omitted) = (0, 0, 0);
    // Per release: (stopped before, stopped after, last taken_at).
    let mut releases: BTreeMap<(String, String), (bool, bool, i64)> = BTreeMap::new();
    // Snapshots repeat (a retried hook, a stage asked again): kept by digest
    // for the last few only.
    let mut snapshots: HashMap<crate::base::digest::Digest, Arc<Snapshot>> = HashMap::new();
    for (done, s) in listed.iter().enumerate() {
        progress(done, total);
        let Some(record) = store.decision(&s.decision_id).await? else {
            continue;
        };
        let d = &record.decision;
        let inputs = async {
            let snapshot = match snapshots.get(&record.snapshot_body) {
                Some(s) => Arc::clone(s),
                None => {
                    let s = Arc::new(crate::decide::replay::logged_snapshot(store, &record).await?);
                    if snapshots.len() >= 64 {
                        snapshots.clear();
                    }
                    snapshots.insert(record.snapshot_body, Arc::clone(&s));
                    s
                }
            };
            let approvals: Arc<[_]> = crate::decide::replay::logged_approvals(store, &record)
                .await?
                .into();
            Ok::<_, ReplayError>((snapshot, approvals))
        }
        .await;
        let (before, after) = match inputs {
            Err(e) => (Ok(d.clone()), Err(e.to_string())),
            Ok((snapshot, approvals)) => {
                let before = match &o.against {
                    Against::Logged => Ok(d.clone()),
                    Against::Policy(p) => evaluate(
                        p,
                        &record,
                        &snapshot,
                        &approvals,
                        &mut state_before,
                        o.state,
                    ),
                };
                let after = evaluate(
                    &o.candidate,
                    &record,
                    &snapshot,
                    &approvals,
                    &mut state_after,
                    o.state,
                );
                (before, after)
            }
        };
        let before = match before {
            Ok(b) => b,
            // The comparison policy cannot evaluate it either: compare with
            // the log.
            Err(_) => d.clone(),
        };
        let release = releases
            .entry((d.service.clone(), d.version.clone()))
            .or_insert((false, false, d.taken_at));
        release.2 = release.2.max(d.taken_at);
        release.0 |= before.decision == Outcome::Rollback;
        let mut row = Row {
            decision_id: record.decision_id.clone(),
            service: d.service.clone(),
            version: d.version.clone(),
            stage: d.stage.clone(),
            taken_at: d.taken_at,
            before: before.decision,
            after: None,
            error: None,
            gates: Vec::new(),
            triggers: Vec::new(),
            no_data: Vec::new(),
            summary: String::new(),
        };
        match after {
            Err(e) => {
                errors += 1;
                row.error = Some(e);
            }
            Ok(after) => {
                release.1 |= after.decision == Outcome::Rollback
                    || (after.decision == Outcome::Hold && before.decision == Outcome::Promote);
                row.no_data = after
                    .gates
                    .iter()
                    .filter(|g| g.counted_as == Counted::Inconclusive && g.reads.is_empty())
                    .map(|g| g.name.clone())
                    .collect();
                for g in &row.no_data {
                    *no_data.entry(g.clone()).or_default() += 1;
                }
                (row.gates, row.triggers) = diffs(&before, &after);
                row.after = Some(after.decision);
                row.summary.clone_from(&after.summary);
                if after.decision != before.decision {
                    changed += 1;
                    *transitions
                        .entry(format!(
                            "{} → {}",
                            before.decision.as_str(),
                            after.decision.as_str()
                        ))
                        .or_default() += 1;
                }
            }
        }
        // A row for every decision the candidate decides otherwise, or
        // whose gates count or triggers fire otherwise.
        let differs = row.gates.iter().any(|g| g.before != g.after) || !row.triggers.is_empty();
        if row.error.is_some() || row.after != Some(row.before) || differs {
            if rows.len() < MAX_ROWS {
                rows.push(row);
            } else {
                omitted += 1;
            }
        }
    }
    progress(total, total);
    let releases = label(store, o, &listed, releases).await?;
    let confusion = |stopped: fn(&Release) -> bool| {
        let mut c = Confusion::default();
        for r in &releases {
            match (r.label, stopped(r)) {
                (None, _) => c.unlabelled += 1,
                (Some(Label::Bad), true) => c.stopped_bad += 1,
                (Some(Label::Good), true) => c.stopped_good += 1,
                (Some(Label::Bad), false) => c.passed_bad += 1,
                (Some(Label::Good), false) => c.passed_good += 1,
            }
        }
        c
    };
    Ok(Report {
        policy: o.policy_name.clone(),
        candidate: o.candidate.policy.name.to_string(),
        candidate_digest: o.candidate.digest,
        against: match &o.against {
            Against::Logged => "logged".into(),
            Against::Policy(p) => p.policy.name.to_string(),
        },
        state: o.state,
        decisions: total,
        changed,
        errors,
        transitions,
        no_data,
        confusion_before: confusion(|r| r.stopped_before),
        confusion_after: confusion(|r| r.stopped_after),
        releases,
        rows,
        rows_omitted: omitted,
    })
}

/// Labels each release from the log (or the labels file): bad after a
/// logged rollback of it or a hotfix of its service soon after, good once
/// its last stage promoted with neither.
async fn label(
    store: &dyn Store,
    o: &Options,
    listed: &[Summary],
    seen: BTreeMap<(String, String), (bool, bool, i64)>,
) -> Result<Vec<Release>, StoreError> {
    let mut hotfixes: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    if o.hotfix_policy != o.policy_name {
        for h in crate::store::all(
            store,
            &Filter {
                service: o.service.clone(),
                policy: Some(o.hotfix_policy.clone()),
                since: o.since,
                ..Filter::default()
            },
        )
        .await?
        {
            hotfixes
                .entry(h.service)
                .or_default()
                .push((h.taken_at, h.version));
        }
    }
    let mut logged: HashMap<(&str, &str), (bool, bool)> = HashMap::new();
    for s in listed {
        let e = logged
            .entry((s.service.as_str(), s.version.as_str()))
            .or_default();
        e.0 |= s.decision == "rollback";
        e.1 |= s.final_stage && s.decision == "promote";
    }
    // For each hotfix, the release of its service whose last decision came
    // last before it.
    let mut latest_before: HashMap<(&str, i64), String> = HashMap::new();
    for (service, hs) in &hotfixes {
        for (t, _) in hs {
            let owner = seen
                .iter()
                .filter(|((s, _), (_, _, last))| s == service && last < t)
                .max_by_key(|(_, (_, _, last))| *last)
                .map(|((_, v), _)| v.clone());
            if let Some(v) = owner {
                latest_before.insert((service.as_str(), *t), v);
            }
        }
    }
    Ok(seen
        .into_iter()
        .map(
            |((service, version), (stopped_before, stopped_after, last))| {
                let (rolled_back, shipped) = logged
                    .get(&(service.as_str(), version.as_str()))
                    .copied()
                    .unwrap_or_default();
                // A hotfix belongs to the release the service ran last before it.
                let hotfix = hotfixes.get(&service).and_then(|hs| {
                    hs.iter()
                        .filter(|(t, v)| {
                            *v != version
                                && *t > last
                                && t.saturating_sub(last) <= o.hotfix_window
                                && latest_before
                                    .get(&(service.as_str(), *t))
                                    .map(String::as_str)
                                    == Some(version.as_str())
                        })
                        .min()
                });
                let (label, because) =
                    if let Some(l) = o.labels.get(&(service.clone(), version.clone())) {
                        (Some(*l), Some("file".to_string()))
                    } else if rolled_back {
                        (Some(Label::Bad), Some("rollback".to_string()))
                    } else if let Some((_, v)) = hotfix {
                        (Some(Label::Bad), Some(format!("hotfix {v}")))
                    } else if shipped {
                        (Some(Label::Good), Some("shipped".to_string()))
                    } else {
                        (None, None)
                    };
                Release {
                    service,
                    version,
                    label,
                    because,
                    stopped_before,
                    stopped_after,
                }
            },
        )
        .collect())
}

/// A past decision as a policy test case: its logged snapshot, stage,
/// elapsed time and schedule, expecting `expect`.
pub fn case(record: &Record, snapshot: &Snapshot, expect: &Decision) -> serde_json::Value {
    let mut case = serde_json::json!({
        "name": format!(
            "{} {} at {} ({}, logged {})",
            record.decision.service,
            record.decision.version,
            record.decision.stage,
            record.decision_id,
            record.decision.decision.as_str()
        ),
        "stage": record.decision.stage,
        "snapshot": snapshot.to_json_v1(),
        "expect": {
            "decision": expect.decision.as_str(),
            "gates": expect
                .gates
                .iter()
                .map(|g| (g.name.clone(), serde_json::Value::from(g.verdict.as_str())))
                .collect::<serde_json::Map<_, _>>(),
        },
    });
    if let Some(e) = record.asked.elapsed() {
        case["elapsed"] = serde_json::Value::from(format!("{}s", e.as_secs()));
    }
    if record.asked.schedule == crate::evaluate::Schedule::Caller {
        case["schedule"] = serde_json::Value::from("caller");
    }
    case
}
