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
//!
//! The log is read a page at a time, oldest first, so memory holds one
//! page, the releases seen and the report's rows, never the whole log.
//! Metrics the candidate reads and the logged snapshots lack can be
//! queried again from Prometheus at each decision's `taken_at`
//! ([`requery`]). Each evaluation runs off the async workers, and a
//! server paces a job with [`Pace`] so that it takes at most its share of
//! the workers.

mod diff;
mod outcomes;
pub mod requery;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;

use crate::decide::replay::ReplayError;
use crate::evaluate::decision::{Counted, Decision, Outcome};
use crate::evaluate::trigger_state::EphemeralState;
use crate::policy::LoadedPolicy;
use crate::snapshot::Snapshot;
use crate::store::{Filter, Record, Store, StoreError, Summary};

/// Rows of changed decisions a report keeps at most; the counts cover them
/// all.
pub const MAX_ROWS: usize = 10_000;

/// Decisions read from the log at a time.
const PAGE: usize = 500;

/// What an evaluation of a backtest waits for before it runs: a turn of
/// the job's share, then a worker, so that backtests together hold at most
/// `share` of the workers live evaluations use.
#[derive(Clone)]
pub struct Pace {
    pub share: Arc<tokio::sync::Semaphore>,
    pub workers: Arc<tokio::sync::Semaphore>,
}

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
    /// Where metrics the logged snapshots lack are queried again.
    pub prometheus: Option<crate::sources::prometheus::Prometheus>,
    /// Turns each evaluation waits for (a server's share of its workers).
    pub pace: Option<Pace>,
    /// Rows the report keeps at most (up to [`MAX_ROWS`]).
    pub max_rows: usize,
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
    /// Metrics the logged snapshot lacked, queried again from Prometheus
    /// for this decision.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub requeried: Vec<String>,
    /// Gate and trigger differences past [`MAX_DIFFS`], not listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub diffs_omitted: usize,
    pub summary: String,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A release and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Release {
    pub service: String,
    pub version: String,
    pub label: Option<Label>,
    /// Why: `file`, `rollback` (a logged rollback of the release by this
    /// policy), `failed <policy> <stage>` (a later stage of the release,
    /// under another policy, rolled it back), `hotfix <version>` (a hotfix
    /// of the service soon after), `shipped` (its last stage promoted,
    /// nothing after).
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
    /// The Prometheus metrics were queried again from, without credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<String>,
    /// Metrics queried again from Prometheus, and for how many decisions.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub requeried: BTreeMap<String, usize>,
    pub releases: Vec<Release>,
    pub confusion_before: Confusion,
    pub confusion_after: Confusion,
    /// Changed or failed decisions, oldest first, at most `max_rows`.
    pub rows: Vec<Row>,
    /// Rows left out past [`MAX_ROWS`].
    pub rows_omitted: usize,
    /// Releases left out of `releases` (the confusion tables count them).
    #[serde(skip_serializing_if = "is_zero")]
    pub releases_omitted: usize,
}

/// What a backtest could not do at all.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no decision of policy `{0}` in the log matches")]
    Nothing(String),
    /// The evaluation task was lost (a panic or a runtime shutting down).
    #[error("backtest evaluation failed: {0}")]
    Internal(String),
}

/// Evaluates `loaded` as the logged decision `record` was evaluated.
pub(crate) fn evaluate(
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

/// The start of a backtest's range: a duration back from now (`90d`), or
/// a time (unix seconds or RFC 3339).
pub fn since(text: &str) -> Result<i64, String> {
    if let Ok(back) = humantime::parse_duration(text) {
        let back = i64::try_from(back.as_secs()).unwrap_or(i64::MAX);
        return Ok(crate::evaluate::clock_now().saturating_sub(back));
    }
    crate::sources::parse_time(text).map_err(|e| e.to_string())
}

/// A turn of the share and a worker, held while one decision is read,
/// evaluated and compared, and given back only when that work has ended
/// (a cancelled job's evaluation still holds it until it returns).
type Turn = Option<(
    tokio::sync::OwnedSemaphorePermit,
    tokio::sync::OwnedSemaphorePermit,
)>;

async fn turn(o: &Options) -> Result<Turn, BacktestError> {
    let Some(p) = &o.pace else {
        return Ok(None);
    };
    let share = Arc::clone(&p.share).acquire_owned().await;
    let worker = Arc::clone(&p.workers).acquire_owned().await;
    match (share, worker) {
        (Ok(s), Ok(w)) => Ok(Some((s, w))),
        _ => Err(BacktestError::Internal("the server is stopping".into())),
    }
}

/// Gate and trigger differences a row lists at most; the rest are counted
/// in `diffs_omitted`.
pub const MAX_DIFFS: usize = 32;

/// What the pass over the log keeps of one release.
#[derive(Debug, Clone, Copy)]
struct Seen {
    stopped_before: bool,
    stopped_after: bool,
    /// The `taken_at` of its first and last decision.
    first: i64,
    last: i64,
    /// Whether the log has a rollback of it by this policy.
    rolled_back: bool,
    /// Whether its last stage promoted in the log.
    shipped: bool,
}

/// The pass over the log: trigger states and what the report counts.
#[derive(Default)]
struct Pass {
    state_after: EphemeralState,
    state_before: EphemeralState,
    transitions: BTreeMap<String, usize>,
    no_data: BTreeMap<String, usize>,
    requeried: BTreeMap<String, usize>,
    rows: Vec<Row>,
    changed: usize,
    errors: usize,
    omitted: usize,
    releases: BTreeMap<(String, String), Seen>,
    /// Snapshots repeat (a retried hook, a stage asked again): the last
    /// few, by digest.
    snapshots: HashMap<crate::base::digest::Digest, Arc<Snapshot>>,
}

/// The inputs of one logged decision: its snapshot (with re-queried
/// metrics merged in), approvals, and which metrics were re-queried.
type Inputs = (
    Arc<Snapshot>,
    Arc<[crate::policy::approvals::Approval]>,
    Vec<String>,
);

impl Pass {
    async fn inputs(
        &mut self,
        store: &dyn Store,
        o: &Options,
        requery: Option<&mut requery::Requery>,
        record: &Record,
    ) -> Result<Inputs, String> {
        let snapshot = match self.snapshots.get(&record.snapshot_body) {
            Some(s) => Arc::clone(s),
            None => {
                let s = Arc::new(
                    crate::decide::replay::logged_snapshot(store, record)
                        .await
                        .map_err(|e: ReplayError| e.to_string())?,
                );
                if self.snapshots.len() >= 64 {
                    self.snapshots.clear();
                }
                self.snapshots.insert(record.snapshot_body, Arc::clone(&s));
                s
            }
        };
        let approvals: Arc<[_]> = crate::decide::replay::logged_approvals(store, record)
            .await
            .map_err(|e| e.to_string())?
            .into();
        let (snapshot, requeried) = match requery {
            None => (snapshot, Vec::new()),
            Some(r) => match r.missing(&o.candidate, record, &snapshot).await? {
                None => (snapshot, Vec::new()),
                Some((merged, names)) => (Arc::new(merged), names),
            },
        };
        Ok((snapshot, approvals, requeried))
    }

    /// Evaluates the comparison and the candidate over `inputs`, off the
    /// async workers and, when paced, in a turn of the share.
    async fn evaluate(
        &mut self,
        o: &Options,
        record: &Arc<Record>,
        inputs: &Inputs,
        turn: Turn,
    ) -> Result<(Decision, Result<Decision, String>), BacktestError> {
        let (candidate, against, mode) = (Arc::clone(&o.candidate), o.against.clone(), o.state);
        let (record, snapshot, approvals) = (
            Arc::clone(record),
            Arc::clone(&inputs.0),
            Arc::clone(&inputs.1),
        );
        let mut before_state = std::mem::take(&mut self.state_before);
        let mut after_state = std::mem::take(&mut self.state_after);
        let (before, after, before_state, after_state) = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let before = match &against {
                Against::Logged => Ok(record.decision.clone()),
                Against::Policy(p) => {
                    evaluate(p, &record, &snapshot, &approvals, &mut before_state, mode)
                }
            };
            let after = evaluate(
                &candidate,
                &record,
                &snapshot,
                &approvals,
                &mut after_state,
                mode,
            );
            // The comparison policy cannot evaluate it either: compare with
            // the log.
            let before = before.unwrap_or_else(|_| record.decision.clone());
            (before, after, before_state, after_state)
        })
        .await
        .map_err(|e| BacktestError::Internal(e.to_string()))?;
        self.state_before = before_state;
        self.state_after = after_state;
        Ok((before, after))
    }

    /// Counts one decision, and keeps its row when the candidate differs.
    fn count(
        &mut self,
        o: &Options,
        s: &Summary,
        record: &Record,
        before: &Decision,
        after: Result<Decision, String>,
        requeried: Vec<String>,
    ) {
        let d = &record.decision;
        let release = self
            .releases
            .entry((d.service.clone(), d.version.clone()))
            .or_insert(Seen {
                stopped_before: false,
                stopped_after: false,
                first: d.taken_at,
                last: d.taken_at,
                rolled_back: false,
                shipped: false,
            });
        release.first = release.first.min(d.taken_at);
        release.last = release.last.max(d.taken_at);
        release.stopped_before |= before.decision == Outcome::Rollback;
        release.rolled_back |= s.decision == "rollback";
        release.shipped |= s.final_stage && s.decision == "promote";
        for m in &requeried {
            *self.requeried.entry(m.clone()).or_default() += 1;
        }
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
            requeried,
            diffs_omitted: 0,
            summary: String::new(),
        };
        match after {
            Err(e) => {
                self.errors += 1;
                row.error = Some(e);
            }
            Ok(after) => {
                release.stopped_after |= after.decision == Outcome::Rollback
                    || (after.decision == Outcome::Hold && before.decision == Outcome::Promote);
                row.no_data = after
                    .gates
                    .iter()
                    .filter(|g| g.counted_as == Counted::Inconclusive && g.reads.is_empty())
                    .map(|g| g.name.clone())
                    .collect();
                for g in &row.no_data {
                    *self.no_data.entry(g.clone()).or_default() += 1;
                }
                (row.gates, row.triggers) = diff::diffs(before, &after);
                let listed = row.gates.len() + row.triggers.len();
                if listed > MAX_DIFFS {
                    row.diffs_omitted = listed - MAX_DIFFS;
                    row.triggers
                        .truncate(MAX_DIFFS.saturating_sub(row.gates.len().min(MAX_DIFFS)));
                    row.gates.truncate(MAX_DIFFS);
                }
                row.after = Some(after.decision);
                row.summary.clone_from(&after.summary);
                if after.decision != before.decision {
                    self.changed += 1;
                    *self
                        .transitions
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
            if self.rows.len() < o.max_rows.min(MAX_ROWS) {
                self.rows.push(row);
            } else {
                self.omitted += 1;
            }
        }
    }
}

/// Runs the backtest, calling `progress(done, total)` as it goes. The log
/// is read a page at a time, oldest first (by `taken_at`, ties in the
/// order the decisions were made), so the candidate's triggers see each
/// service's decisions in time order.
pub async fn run(
    store: &dyn Store,
    o: &Options,
    mut progress: impl FnMut(usize, usize) + Send,
) -> Result<Report, BacktestError> {
    let filter = Filter {
        service: o.service.clone(),
        policy: Some(o.policy_name.clone()),
        since: o.since,
        until: o.until,
        limit: PAGE,
        oldest_first: true,
        ..Filter::default()
    };
    let counted = store.count(&filter).await?;
    if counted == 0 {
        return Err(BacktestError::Nothing(o.policy_name.clone()));
    }
    let mut requery = o.prometheus.clone().map(requery::Requery::new);
    let mut pass = Pass::default();
    let mut done = 0;
    let mut page_filter = filter.clone();
    loop {
        let (page, next) = crate::store::page(store, &page_filter).await?;
        for s in &page {
            // Decisions made while a long backtest runs may join its range.
            progress(done, counted.max(done));
            done += 1;
            // Reading, re-querying and evaluating one decision: all of it
            // in one turn of the share.
            let turn = turn(o).await?;
            let Some(record) = store.decision(&s.decision_id).await? else {
                continue;
            };
            let record = Arc::new(record);
            let (before, after, requeried) =
                match pass.inputs(store, o, requery.as_mut(), &record).await {
                    Err(e) => (record.decision.clone(), Err(e), Vec::new()),
                    Ok(inputs) => {
                        let (before, after) = pass.evaluate(o, &record, &inputs, turn).await?;
                        (before, after, inputs.2)
                    }
                };
            pass.count(o, s, &record, &before, after, requeried);
        }
        match next {
            Some(c) => page_filter.cursor = Some(c),
            None => break,
        }
    }
    progress(done, done);
    let releases = outcomes::label(store, o, pass.releases).await?;
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
        decisions: done,
        changed: pass.changed,
        errors: pass.errors,
        transitions: pass.transitions,
        no_data: pass.no_data,
        prometheus: o.prometheus.as_ref().map(|p| p.shown_url()),
        requeried: pass.requeried,
        confusion_before: confusion(|r| r.stopped_before),
        confusion_after: confusion(|r| r.stopped_after),
        releases,
        rows: pass.rows,
        rows_omitted: pass.omitted,
        releases_omitted: 0,
    })
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
