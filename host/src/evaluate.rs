//! Running a stage's gates over a snapshot and turning their verdicts into a
//! decision.
//!
//! Rules, in order:
//! 1. a key gate that counts as fail fails the stage: rollback;
//! 2. a gate that counts as inconclusive holds the stage, unless the score
//!    would stay below the warn band even if every such gate passed: rollback;
//! 3. otherwise the weighted score decides: at or above `pass` promotes, at or
//!    above `warn` holds with a warning, below it rolls back.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::decision::{Counted, Decision, Digests, GateResult, Outcome, StageResult, Verdict};
use crate::digest::Digest;
use crate::engine::{self, Finding};
use crate::policy::{Gate, LoadedPolicy, OnError, OnNoData, Scoring, Stage};
use crate::snapshot::Snapshot;

/// The evaluation could not run at all. A failing gate is never this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("unknown stage `{stage}` in policy `{policy}`; stages: {}", available.join(", "))]
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

/// Evaluates one stage (the first when `stage` is `None`) of a loaded policy.
pub fn evaluate(
    loaded: &LoadedPolicy,
    stage: Option<&str>,
    snapshot: Arc<Snapshot>,
) -> Result<Decision, EvalError> {
    let policy = &loaded.policy;
    let stage = policy.stage(stage).ok_or_else(|| EvalError::UnknownStage {
        policy: policy.name.to_string(),
        stage: stage.unwrap_or_default().to_string(),
        available: policy.stages.iter().map(|s| s.name.to_string()).collect(),
    })?;
    let gates: Vec<GateResult> = stage
        .gates
        .iter()
        .map(|gate| run_gate(loaded, gate, Arc::clone(&snapshot)))
        .collect();
    let (decision, stage_result, score, summary) = decide(stage, &gates);
    let plugins = stage
        .gates
        .iter()
        .filter_map(|g| {
            loaded
                .plugins
                .get(&g.plugin)
                .map(|p| (g.plugin.clone(), p.digest()))
        })
        .collect();
    Ok(Decision {
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
        gates,
        digests: Digests {
            policy: loaded.digest,
            input: input_digest(&snapshot),
            plugins,
        },
    })
}

fn run_gate(loaded: &LoadedPolicy, gate: &Gate, snapshot: Arc<Snapshot>) -> GateResult {
    let mut result = GateResult {
        name: gate.name.to_string(),
        plugin: gate.plugin.clone(),
        verdict: Verdict::Error,
        counted_as: Counted::Fail,
        reason: String::new(),
        observed: None,
        threshold: None,
        weight: gate.weight,
        key: gate.key,
        dry_run: gate.dry_run,
        details: BTreeMap::new(),
        logs: Vec::new(),
        duration_us: 0,
    };
    let Some(plugin) = loaded.plugins.get(&gate.plugin) else {
        // A loaded policy resolves every plugin; this guards the invariant.
        result.reason = format!("plugin `{}` is not loaded", gate.plugin);
        return result;
    };
    let call = plugin.evaluate(&gate.config, snapshot, gate.limits);
    result.duration_us = u64::try_from(call.elapsed.as_micros()).unwrap_or(u64::MAX);
    result.logs = call.logs;
    match call.result {
        Ok(Finding {
            verdict,
            reason,
            observed,
            threshold,
            details,
        }) => {
            result.verdict = match verdict {
                engine::Verdict::Pass => Verdict::Pass,
                engine::Verdict::Warn => Verdict::Warn,
                engine::Verdict::Fail => Verdict::Fail,
                engine::Verdict::Inconclusive => Verdict::Inconclusive,
            };
            result.reason = reason;
            result.observed = observed;
            result.threshold = threshold;
            result.details = details.into_iter().collect();
        }
        Err(e) => {
            result.verdict = Verdict::Error;
            result.reason = e.to_string();
            result.details.insert("cause".into(), e.cause().into());
        }
    }
    result.counted_as = counted_as(gate, result.verdict);
    result
}

fn counted_as(gate: &Gate, verdict: Verdict) -> Counted {
    if gate.dry_run {
        return Counted::Ignored;
    }
    match verdict {
        Verdict::Pass => Counted::Pass,
        Verdict::Warn => Counted::Warn,
        Verdict::Fail => Counted::Fail,
        Verdict::Inconclusive => match gate.on_no_data {
            OnNoData::Inconclusive => Counted::Inconclusive,
            OnNoData::Fail => Counted::Fail,
            OnNoData::Pass => Counted::Pass,
        },
        Verdict::Error => match gate.on_error {
            OnError::Fail => Counted::Fail,
            OnError::Warn => Counted::Warn,
            OnError::Ignore => Counted::Ignored,
        },
    }
}

/// Weighted score in percent; inconclusive gates count as `if_inconclusive`.
fn score(gates: &[GateResult], if_inconclusive: Option<f64>) -> Option<f64> {
    let mut total = 0.0;
    let mut earned = 0.0;
    for g in gates {
        let value = match g.counted_as {
            Counted::Pass => 1.0,
            Counted::Warn => 0.5,
            Counted::Fail => 0.0,
            Counted::Inconclusive => match if_inconclusive {
                Some(v) => v,
                None => continue,
            },
            Counted::Ignored => continue,
        };
        total += g.weight;
        earned += g.weight * value;
    }
    (total > 0.0).then(|| 100.0 * earned / total)
}

fn pct(v: f64) -> String {
    let rounded = (v * 10.0).round() / 10.0;
    format!("{rounded}%")
}

fn decide(stage: &Stage, gates: &[GateResult]) -> (Outcome, StageResult, Option<f64>, String) {
    let Scoring { pass, warn } = stage.scoring;
    let counted_score = score(gates, None);
    if let Some(g) = gates
        .iter()
        .find(|g| g.key && g.counted_as == Counted::Fail)
    {
        return (
            Outcome::Rollback,
            StageResult::Fail,
            counted_score,
            format!("key gate `{}` failed: {}", g.name, g.reason),
        );
    }
    let inconclusive: Vec<&GateResult> = gates
        .iter()
        .filter(|g| g.counted_as == Counted::Inconclusive)
        .collect();
    if let Some(first) = inconclusive.first() {
        let best_case = score(gates, Some(1.0)).unwrap_or(100.0);
        if best_case < warn {
            return (
                Outcome::Rollback,
                StageResult::Fail,
                counted_score,
                format!(
                    "score cannot reach the warn band of {} even if the {} inconclusive gate(s) passed (at most {})",
                    pct(warn),
                    inconclusive.len(),
                    pct(best_case)
                ),
            );
        }
        return (
            Outcome::Hold,
            StageResult::Inconclusive,
            counted_score,
            format!(
                "{} gate(s) inconclusive, first `{}`: {}",
                inconclusive.len(),
                first.name,
                first.reason
            ),
        );
    }
    let Some(s) = counted_score else {
        return (
            Outcome::Hold,
            StageResult::Inconclusive,
            None,
            "no gate counted toward the decision (all dry-run or ignored)".into(),
        );
    };
    let failing: Vec<&str> = gates
        .iter()
        .filter(|g| matches!(g.counted_as, Counted::Fail | Counted::Warn))
        .map(|g| g.name.as_str())
        .collect();
    let names = |v: &[&str]| {
        v.iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if s >= pass {
        let counted = gates
            .iter()
            .filter(|g| g.counted_as != Counted::Ignored)
            .count();
        let note = if failing.is_empty() {
            format!("all {counted} counted gate(s) passed")
        } else {
            format!("passed despite {}", names(&failing))
        };
        (
            Outcome::Promote,
            StageResult::Pass,
            Some(s),
            format!(
                "score {} meets the pass threshold {}: {note}",
                pct(s),
                pct(pass)
            ),
        )
    } else if s >= warn {
        (
            Outcome::Hold,
            StageResult::Warning,
            Some(s),
            format!(
                "score {} is in the warn band ({} to {}): {}",
                pct(s),
                pct(warn),
                pct(pass),
                names(&failing)
            ),
        )
    } else {
        (
            Outcome::Rollback,
            StageResult::Fail,
            Some(s),
            format!(
                "score {} is below the warn threshold {}: {}",
                pct(s),
                pct(warn),
                names(&failing)
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Name;

    fn stage() -> Stage {
        Stage {
            name: "s".parse::<Name>().unwrap(),
            description: None,
            scoring: Scoring::default(),
            gates: Vec::new(),
        }
    }

    fn gate(name: &str, counted_as: Counted, weight: f64, key: bool) -> GateResult {
        GateResult {
            name: name.into(),
            plugin: "threshold".into(),
            verdict: Verdict::Pass,
            counted_as,
            reason: format!("{name} reason"),
            observed: None,
            threshold: None,
            weight,
            key,
            dry_run: false,
            details: BTreeMap::new(),
            logs: Vec::new(),
            duration_us: 0,
        }
    }

    #[test]
    fn weighted_score_decides_between_pass_warn_and_fail_bands() {
        let s = stage();
        // 9 of 10 weight passes: exactly 90% promotes.
        let (o, r, score, _) = decide(
            &s,
            &[
                gate("a", Counted::Pass, 9.0, false),
                gate("b", Counted::Fail, 1.0, false),
            ],
        );
        assert_eq!(
            (o, r, score),
            (Outcome::Promote, StageResult::Pass, Some(90.0))
        );
        // A warn counts half: (1 + 0.5) / 2 = 75% holds with a warning.
        let (o, r, score, summary) = decide(
            &s,
            &[
                gate("a", Counted::Pass, 1.0, false),
                gate("b", Counted::Warn, 1.0, false),
            ],
        );
        assert_eq!(
            (o, r, score),
            (Outcome::Hold, StageResult::Warning, Some(75.0))
        );
        assert!(summary.contains("`b`"), "{summary}");
        // Below 75% rolls back.
        let (o, r, _, _) = decide(
            &s,
            &[
                gate("a", Counted::Pass, 2.0, false),
                gate("b", Counted::Fail, 1.0, false),
            ],
        );
        assert_eq!((o, r), (Outcome::Rollback, StageResult::Fail));
    }

    #[test]
    fn a_failing_key_gate_rolls_back_whatever_the_score() {
        let (o, _, score, summary) = decide(
            &stage(),
            &[
                gate("a", Counted::Pass, 99.0, false),
                gate("k", Counted::Fail, 1.0, true),
            ],
        );
        assert_eq!(o, Outcome::Rollback);
        assert_eq!(score, Some(99.0));
        assert_eq!(summary, "key gate `k` failed: k reason");
    }

    #[test]
    fn inconclusive_holds_unless_the_best_case_still_fails() {
        let (o, r, _, _) = decide(
            &stage(),
            &[
                gate("a", Counted::Pass, 1.0, false),
                gate("n", Counted::Inconclusive, 1.0, false),
            ],
        );
        assert_eq!((o, r), (Outcome::Hold, StageResult::Inconclusive));
        // With `n` passing the best case is 3/4 = 75%, in the warn band: hold.
        let (o, _, _, _) = decide(
            &stage(),
            &[
                gate("f", Counted::Fail, 1.0, false),
                gate("a", Counted::Pass, 2.0, false),
                gate("n", Counted::Inconclusive, 1.0, false),
            ],
        );
        assert_eq!(o, Outcome::Hold);
        // 2 of 3 weight fails: even a passing `n` gives 33%: rollback.
        let (o, _, _, summary) = decide(
            &stage(),
            &[
                gate("f", Counted::Fail, 2.0, false),
                gate("n", Counted::Inconclusive, 1.0, false),
            ],
        );
        assert_eq!(o, Outcome::Rollback, "{summary}");
    }

    #[test]
    fn ignored_gates_do_not_count_and_nothing_counted_holds() {
        let (o, _, score, _) = decide(
            &stage(),
            &[
                gate("a", Counted::Pass, 1.0, false),
                gate("d", Counted::Ignored, 5.0, false),
            ],
        );
        assert_eq!((o, score), (Outcome::Promote, Some(100.0)));
        let (o, r, score, _) = decide(&stage(), &[gate("d", Counted::Ignored, 1.0, false)]);
        assert_eq!(
            (o, r, score),
            (Outcome::Hold, StageResult::Inconclusive, None)
        );
    }

    #[test]
    fn dry_run_and_policies_map_verdicts() {
        let base = crate::policy::Gate {
            name: "g".parse().unwrap(),
            description: None,
            plugin: "threshold".into(),
            config: Vec::new(),
            weight: 1.0,
            key: false,
            dry_run: false,
            on_no_data: OnNoData::Fail,
            on_error: OnError::Warn,
            limits: engine::Limits::default(),
            line: 1,
        };
        assert_eq!(counted_as(&base, Verdict::Inconclusive), Counted::Fail);
        assert_eq!(counted_as(&base, Verdict::Error), Counted::Warn);
        let dry = crate::policy::Gate {
            dry_run: true,
            ..base
        };
        assert_eq!(counted_as(&dry, Verdict::Fail), Counted::Ignored);
    }
}
