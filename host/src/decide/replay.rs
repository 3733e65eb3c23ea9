//! Exact replay of a logged decision: the logged plugin bytes, policy text,
//! snapshot, request and trigger state, evaluated again and compared
//! finding by finding.
//!
//! Plugins see nothing but the snapshot and the logged decision time
//! (`decided_at`, their clock), so a replay reproduces the decision. What may differ is only what depends
//! on the machine: call durations (never compared), and a plugin that ran
//! out of its CPU deadline on a busier machine.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::decide::Prefetched;
use crate::engine::Runtime;
use crate::evaluate::decision::Decision;
use crate::evaluate::input_digest;
use crate::evaluate::trigger_state::StateKey;
use crate::snapshot::Snapshot;
use crate::store::{Record, Store, StoreError, Versioned};

/// Why a decision could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no decision `{0}` in the log")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("decision `{id}`: the log holds no {what} `{digest}`")]
    Missing {
        id: String,
        what: String,
        digest: crate::base::digest::Digest,
    },
    #[error("decision `{id}`: {message}")]
    Invalid { id: String, message: String },
}

/// One finding compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingMatch {
    /// `gate`, `trigger`, `action` or `decision`.
    pub kind: &'static str,
    pub name: String,
    pub identical: bool,
    /// What differs, `field: logged → replayed`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<String>,
}

/// The outcome of a replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    pub decision_id: String,
    pub identical: bool,
    pub logged: String,
    pub replayed: String,
    /// Each plugin run, by name, with the digest its logged bytes matched.
    pub plugins: BTreeMap<String, crate::base::digest::Digest>,
    pub findings: Vec<FindingMatch>,
}

/// What a logged decision read, fetched from the log and verified.
struct Inputs {
    text: String,
    snapshot: Snapshot,
    plugins: BTreeMap<String, Arc<[u8]>>,
    approvals: Vec<crate::policy::approvals::Approval>,
}

/// The snapshot `record` judged, from the log, checked against the
/// decision's input digest: what charts of the decision are drawn from.
pub async fn logged_snapshot(store: &dyn Store, record: &Record) -> Result<Snapshot, ReplayError> {
    let id = &record.decision_id;
    // The blob's digest was checked against its bytes when it was read.
    let body = store
        .blob(&record.snapshot_body)
        .await?
        .ok_or_else(|| ReplayError::Missing {
            id: id.clone(),
            what: "snapshot".into(),
            digest: record.snapshot_body,
        })?;
    let snapshot: Snapshot = serde_json::from_slice(&body).map_err(|e| ReplayError::Invalid {
        id: id.clone(),
        message: format!("the logged snapshot cannot be read: {e}"),
    })?;
    let input = input_digest(&snapshot);
    if input != record.decision.digests.input {
        return Err(ReplayError::Invalid {
            id: id.clone(),
            message: format!(
                "the logged snapshot's digest is `{input}`, the decision's input was `{}`",
                record.decision.digests.input
            ),
        });
    }
    Ok(snapshot)
}

/// The approvals and attestations `record`'s decision judged, from the log
/// (each checked against its digest when read).
pub async fn logged_approvals(
    store: &dyn Store,
    record: &Record,
) -> Result<Vec<crate::policy::approvals::Approval>, ReplayError> {
    let id = &record.decision_id;
    let blob = |what: &'static str, digest| async move {
        store
            .blob(&digest)
            .await?
            .ok_or_else(|| ReplayError::Missing {
                id: id.clone(),
                what: what.into(),
                digest,
            })
    };
    let mut approvals = Vec::new();
    for read in &record.decision.approvals {
        match read {
            crate::policy::approvals::ApprovalRead::Copy(a) => approvals.push((**a).clone()),
            crate::policy::approvals::ApprovalRead::Ref { id: aid, digest } => {
                let bytes = blob("approval", *digest).await?;
                let approval: crate::policy::approvals::Approval =
                    serde_json::from_slice(&bytes).map_err(|e| ReplayError::Invalid {
                        id: id.clone(),
                        message: format!("the logged approval `{aid}` cannot be read: {e}"),
                    })?;
                if approval.id != *aid {
                    return Err(ReplayError::Invalid {
                        id: id.clone(),
                        message: format!(
                            "the logged approval under `{digest}` is `{}`, not `{aid}`",
                            approval.id
                        ),
                    });
                }
                approvals.push(approval);
            }
        }
    }
    Ok(approvals)
}

/// Fetches and verifies what `record` references: policy text, snapshot,
/// each plugin's bytes, and each approval the decision judged.
async fn inputs(store: &dyn Store, record: &Record) -> Result<Inputs, ReplayError> {
    let id = &record.decision_id;
    let blob = |what: &'static str, digest| async move {
        store
            .blob(&digest)
            .await?
            .ok_or_else(|| ReplayError::Missing {
                id: id.clone(),
                what: what.into(),
                digest,
            })
    };
    let text = String::from_utf8(blob("policy text", record.policy_text).await?).map_err(|_| {
        ReplayError::Invalid {
            id: id.clone(),
            message: "the logged policy is not UTF-8".into(),
        }
    })?;
    let snapshot = logged_snapshot(store, record).await?;
    let mut plugins = BTreeMap::new();
    for (name, digest) in &record.decision.digests.plugins {
        let bytes = blob("plugin", *digest).await.map_err(|e| match e {
            ReplayError::Store(StoreError::Corrupt { digest, actual, .. }) => ReplayError::Invalid {
                id: id.clone(),
                message: format!(
                    "refusing to run plugin `{name}`: its logged bytes hash to `{actual}`, not to the digest `{digest}` the decision recorded"
                ),
            },
            other => other,
        })?;
        plugins.insert(name.clone(), Arc::from(bytes));
    }
    let approvals = logged_approvals(store, record).await?;
    Ok(Inputs {
        text,
        snapshot,
        plugins,
        approvals,
    })
}

/// Re-evaluates the logged decision `id` and compares it with the log.
/// The evaluation runs on a blocking thread.
pub async fn replay(
    store: &dyn Store,
    runtime: Arc<Runtime>,
    id: &str,
) -> Result<ReplayReport, ReplayError> {
    let record = store
        .decision(id)
        .await?
        .ok_or_else(|| ReplayError::NotFound(id.to_string()))?;
    let inputs = inputs(store, &record).await?;
    tokio::task::spawn_blocking(move || rerun(&runtime, &record, inputs))
        .await
        .map_err(|e| ReplayError::Invalid {
            id: id.to_string(),
            message: e.to_string(),
        })?
}

fn rerun(runtime: &Runtime, record: &Record, inputs: Inputs) -> Result<ReplayReport, ReplayError> {
    let Inputs {
        text,
        snapshot,
        plugins,
        approvals,
    } = inputs;
    let id = &record.decision_id;
    let invalid = |message: String| ReplayError::Invalid {
        id: id.clone(),
        message,
    };
    let loaded = crate::policy::load_recorded(runtime, &text, &plugins).map_err(|p| {
        invalid(format!(
            "the logged policy does not load: {}",
            p.render(None)
        ))
    })?;
    let keys: Vec<StateKey> = crate::decide::state_keys(&loaded, &snapshot);
    let state: Vec<Option<Versioned>> = keys
        .iter()
        .map(|k| {
            record
                .state_in
                .get(&k.trigger)
                .map(|h| {
                    hex::decode(h)
                        .map(|state| Versioned { state, version: 0 })
                        .map_err(|e| invalid(format!("logged state of `{}`: {e}", k.trigger)))
                })
                .transpose()
        })
        .collect::<Result<_, _>>()?;
    let mut prefetched = Prefetched::new(&keys, state, false);
    // The logged evaluation, as the one evaluation path runs it.
    let evaluation = crate::decide::Evaluation {
        loaded: Arc::new(loaded),
        snapshot: Arc::new(snapshot),
        approvals: approvals.into(),
        asked: record.asked.clone(),
        // Records from before `decided_at` was kept were decided at their
        // `taken_at`, so that is the time their replay judges at.
        decided_at: record
            .decision
            .decided_at
            .unwrap_or(record.decision.taken_at),
        what_if: record.decision.what_if,
        asker: crate::decide::Asker::default(),
        idempotency: None,
        evidence: record.decision.sources.clone(),
        canonical: Default::default(),
    };
    let replayed = evaluation
        .evaluate(&mut prefetched)
        .map_err(|e| invalid(format!("{e:#}")))?;
    Ok(compare(record, &replayed))
}

/// The comparable form of a finding: everything but timings.
fn comparable(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("duration_us");
    }
    v
}

fn differences(logged: &Value, replayed: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let a = logged.as_object().unwrap_or(&empty);
    let b = replayed.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        // Records written before gates' reads were kept have none to compare.
        .filter(|k| !(k.as_str() == "reads" && a.get(*k).is_none()))
        .map(|k| {
            let show =
                |v: Option<&Value>| v.map_or_else(|| "(absent)".to_string(), ToString::to_string);
            format!("{k}: {} → {}", show(a.get(k)), show(b.get(k)))
        })
        .collect()
}

fn compare(record: &Record, replayed: &Decision) -> ReplayReport {
    let logged = &record.decision;
    let mut findings = Vec::new();
    let mut pair = |kind: &'static str, name: String, a: Option<Value>, b: Option<Value>| {
        let (a, b) = (a.map(comparable), b.map(comparable));
        let differences = match (&a, &b) {
            (Some(a), Some(b)) => differences(a, b),
            (Some(_), None) => vec!["missing from the replay".into()],
            (None, Some(_)) => vec!["not in the logged decision".into()],
            (None, None) => Vec::new(),
        };
        findings.push(FindingMatch {
            kind,
            name,
            identical: differences.is_empty(),
            differences,
        });
    };
    let by_name = |items: Vec<Value>| -> Vec<(String, Value)> {
        items
            .into_iter()
            .map(|v| (v["name"].as_str().unwrap_or_default().to_string(), v))
            .collect()
    };
    let to_values = |d: &Decision| {
        let v = serde_json::to_value(d).unwrap_or_default();
        let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
        (list("gates"), list("triggers"), list("actions"), v)
    };
    let (lg, lt, la, lv) = to_values(logged);
    let (rg, rt, ra, rv) = to_values(replayed);
    for (kind, l, r) in [("gate", lg, rg), ("trigger", lt, rt), ("action", la, ra)] {
        let l = by_name(l);
        let mut r = by_name(r);
        for (name, lv) in l {
            let at = r.iter().position(|(n, _)| *n == name);
            let rv = at.map(|i| r.remove(i).1);
            pair(kind, name, Some(lv), rv);
        }
        for (name, rv) in r {
            pair(kind, name, None, Some(rv));
        }
    }
    // With `stage: all`, each stage passed through, its gates without timings.
    let runs = |v: &Value| -> Vec<(String, Value)> {
        v["pipeline"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|mut run| {
                if let Some(gates) = run["gates"].as_array_mut() {
                    for g in gates.iter_mut() {
                        *g = comparable(g.take());
                    }
                }
                (run["stage"].as_str().unwrap_or_default().to_string(), run)
            })
            .collect()
    };
    let mut replayed_runs = runs(&rv);
    for (name, run) in runs(&lv) {
        let at = replayed_runs.iter().position(|(n, _)| *n == name);
        let other = at.map(|i| replayed_runs.remove(i).1);
        pair("stage", name, Some(run), other);
    }
    for (name, run) in replayed_runs {
        pair("stage", name, None, Some(run));
    }
    let top = |v: &Value| {
        let mut o = serde_json::Map::new();
        for k in [
            "decision",
            "summary",
            "stage",
            "stage_result",
            "score",
            "digests",
        ] {
            o.insert(k.into(), v[k].clone());
        }
        Value::Object(o)
    };
    pair(
        "decision",
        logged.stage.clone(),
        Some(top(&lv)),
        Some(top(&rv)),
    );
    ReplayReport {
        decision_id: record.decision_id.clone(),
        identical: findings.iter().all(|f| f.identical),
        logged: logged.decision.as_str().into(),
        replayed: replayed.decision.as_str().into(),
        plugins: logged.digests.plugins.clone(),
        findings,
    }
}
