//! Why a decision came out as it did, from its record alone: how far each
//! gate was from its threshold, what set the outcome, each gate's share of
//! the score, and the fewest gate outcomes that would have changed it.
//!
//! Nothing is judged anew: the stage rule asked again is the one that
//! decided ([`super::scoring`]), over the logged findings with some gates'
//! outcomes changed. No plugin runs.

use serde::{Deserialize, Serialize};

use super::decision::{Counted, Decision, Fire, Outcome, StageResult, Verdict};
use super::scoring::{
    Counting, decide_by, deciding_trigger, escalate_by_actions, escalate_by_triggers, rule,
};
use crate::policy::Scoring;

/// How many gates, over all the stage verdicts one explanation computes
/// while searching for the fewest changed gates, it may read: bounds the
/// work whatever the stage's size (a few milliseconds).
pub const MAX_WORK: usize = 4_000_000;

/// Alternatives kept per other outcome (the first found of the fewest changes).
const ALTERNATIVES_PER_OUTCOME: usize = 3;

/// What set the outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "lowercase")]
pub enum DecidedBy {
    /// The stage rule over the gates: `rule` says which part of it.
    Gates { rule: String },
    /// A trigger that fired and escalated the gates' outcome.
    Trigger { name: String, fire: Fire },
    /// An action plan that escalated the gates' outcome.
    Action { name: String },
}

/// One gate, as the decision counted it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateExplained {
    pub name: String,
    pub verdict: Verdict,
    pub counted_as: Counted,
    pub observed: Option<f64>,
    pub threshold: Option<f64>,
    /// `observed − threshold`.
    pub distance: Option<f64>,
    /// The distance as a percentage of `|threshold|` (absent for a zero
    /// threshold).
    pub distance_percent: Option<f64>,
    pub weight: f64,
    /// The gate's weight as a percentage of the weight that counted toward
    /// the score: the most it could have added.
    pub weight_percent: Option<f64>,
    /// The score points it did add (a pass adds its whole weight share, a
    /// warn half, a fail none).
    pub score_points: Option<f64>,
    pub key: bool,
    pub dry_run: bool,
    /// Whether the gate is among the fewest changes that would have given
    /// another outcome: the gates that decided it.
    pub deciding: bool,
    pub reason: String,
}

/// One gate's outcome changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub gate: String,
    pub from: Counted,
    pub to: Counted,
}

/// Another outcome, and the fewest gate outcomes that would have given it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alternative {
    pub decision: Outcome,
    /// Sets of changes of the smallest size that give `decision`; empty
    /// when none does (`why_not` says why).
    pub changes: Vec<Vec<Change>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why_not: Option<String>,
}

/// A decision explained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    pub decision: Outcome,
    pub summary: String,
    pub policy: String,
    pub stage: String,
    pub stage_result: StageResult,
    pub score: Option<f64>,
    pub scoring: Scoring,
    pub decided_by: DecidedBy,
    pub gates: Vec<GateExplained>,
    pub alternatives: Vec<Alternative>,
}

const OUTCOMES: [Outcome; 3] = [Outcome::Promote, Outcome::Hold, Outcome::Rollback];

/// The outcomes a gate could have counted as instead of `current`; gates
/// left out of the score stay out.
fn others(current: Counted) -> &'static [Counted] {
    match current {
        Counted::Ignored => &[],
        Counted::Pass => &[Counted::Fail, Counted::Warn, Counted::Inconclusive],
        Counted::Warn => &[Counted::Pass, Counted::Fail, Counted::Inconclusive],
        Counted::Fail => &[Counted::Pass, Counted::Warn, Counted::Inconclusive],
        Counted::Inconclusive => &[Counted::Pass, Counted::Fail, Counted::Warn],
    }
}

/// The decision the record's triggers and plans give for each stage
/// outcome: fixed for a record, so worked out once, not per try. Plans are
/// made for a stage result, so they apply only while the result is the one
/// they were made for.
struct Escalation {
    /// The outcome after triggers, for promote, hold and rollback.
    by_triggers: [Outcome; 3],
    /// The outcome after triggers and then the plans.
    by_plans: [Outcome; 3],
}

fn index(o: Outcome) -> usize {
    match o {
        Outcome::Promote => 0,
        Outcome::Hold => 1,
        Outcome::Rollback => 2,
    }
}

impl Escalation {
    fn of(d: &Decision) -> Self {
        let by_triggers = OUTCOMES.map(|o| escalate_by_triggers(o, String::new(), &d.triggers).0);
        let by_plans = by_triggers.map(|o| escalate_by_actions(o, String::new(), &d.actions).0);
        Self {
            by_triggers,
            by_plans,
        }
    }

    fn outcome(&self, d: &Decision, gates: &[Counting]) -> Outcome {
        let (stage, result) = rule(d.scoring, gates).outcome();
        if result == d.stage_result {
            self.by_plans[index(stage)]
        } else {
            self.by_triggers[index(stage)]
        }
    }
}

/// Explains `d`.
pub fn explain(d: &Decision) -> Explanation {
    let stage = decide_by(d.scoring, &d.gates);
    let (after_triggers, _) = escalate_by_triggers(stage.decision, String::new(), &d.triggers);
    let decided_by = if after_triggers != stage.decision {
        let t = deciding_trigger(&d.triggers);
        DecidedBy::Trigger {
            name: t.map(|t| t.name.clone()).unwrap_or_default(),
            fire: t.map_or(Fire::None, |t| t.fire),
        }
    } else if d.decision != stage.decision {
        let name = d
            .actions
            .iter()
            .find(|p| {
                escalate_by_actions(stage.decision, String::new(), std::slice::from_ref(p)).0
                    != stage.decision
            })
            .map(|p| p.name.clone())
            .unwrap_or_default();
        DecidedBy::Action { name }
    } else {
        DecidedBy::Gates {
            rule: stage.summary.clone(),
        }
    };
    let alternatives = search(d);
    let total: f64 = d
        .gates
        .iter()
        .filter(|g| matches!(g.counted_as, Counted::Pass | Counted::Warn | Counted::Fail))
        .map(|g| g.weight)
        .sum();
    let gates = d
        .gates
        .iter()
        .map(|g| {
            let distance = g.observed.zip(g.threshold).map(|(o, t)| o - t);
            let distance_percent = distance
                .zip(g.threshold)
                .filter(|(_, t)| *t != 0.0)
                .map(|(d, t)| 100.0 * d / t.abs());
            let value = match g.counted_as {
                Counted::Pass => Some(1.0),
                Counted::Warn => Some(0.5),
                Counted::Fail => Some(0.0),
                Counted::Inconclusive | Counted::Ignored => None,
            };
            let share = value
                .filter(|_| total > 0.0)
                .map(|_| 100.0 * g.weight / total);
            GateExplained {
                name: g.name.clone(),
                verdict: g.verdict,
                counted_as: g.counted_as,
                observed: g.observed,
                threshold: g.threshold,
                distance,
                distance_percent,
                weight: g.weight,
                weight_percent: share,
                score_points: share.zip(value).map(|(s, v)| s * v),
                key: g.key,
                dry_run: g.dry_run,
                deciding: alternatives
                    .iter()
                    .flat_map(|a| a.changes.iter().flatten())
                    .any(|c| c.gate == g.name),
                reason: g.reason.clone(),
            }
        })
        .collect();
    Explanation {
        decision_id: d.decision_id.clone(),
        decision: d.decision,
        summary: d.summary.clone(),
        policy: d.policy.clone(),
        stage: d.stage.clone(),
        stage_result: d.stage_result,
        score: d.score,
        scoring: d.scoring,
        decided_by,
        gates,
        alternatives,
    }
}

/// The fewest changed gate outcomes that give each other outcome: every set
/// of one changed gate, then of two, and so on, within [`MAX_WORK`].
fn search(d: &Decision) -> Vec<Alternative> {
    let escalation = Escalation::of(d);
    let base: Vec<Counting> = d.gates.iter().map(Counting::from).collect();
    let changeable: Vec<usize> = (0..base.len())
        .filter(|&i| !others(base[i].counted_as).is_empty())
        .collect();
    // An outcome no stage outcome leads to (a trigger forces rollback, a
    // plan holds whatever passes) is not searched for at all.
    let reachable: Vec<Outcome> = OUTCOMES
        .into_iter()
        .filter(|o| *o != d.decision)
        .filter(|o| escalation.by_plans.contains(o) || escalation.by_triggers.contains(o))
        .collect();
    let mut found: Vec<(Outcome, usize, Vec<Vec<Change>>)> = Vec::new();
    let mut work = 0usize;
    let mut complete = true;
    let mut gates = base.clone();
    'sizes: for k in 1..=changeable.len() {
        // Once every reachable outcome has its fewest changes, larger sets
        // cannot be fewer.
        if found.len() == reachable.len() {
            break;
        }
        let mut pick: Vec<usize> = (0..k).collect();
        loop {
            let mut choice = vec![0usize; k];
            loop {
                work += base.len().max(1);
                if work > MAX_WORK {
                    complete = false;
                    break 'sizes;
                }
                for (slot, &p) in pick.iter().enumerate() {
                    let i = changeable[p];
                    gates[i].counted_as = others(base[i].counted_as)[choice[slot]];
                }
                let outcome = escalation.outcome(d, &gates);
                if outcome != d.decision {
                    let changes = || {
                        pick.iter()
                            .map(|&p| {
                                let i = changeable[p];
                                Change {
                                    gate: d.gates[i].name.clone(),
                                    from: base[i].counted_as,
                                    to: gates[i].counted_as,
                                }
                            })
                            .collect::<Vec<_>>()
                    };
                    match found.iter_mut().find(|(o, _, _)| *o == outcome) {
                        None => found.push((outcome, k, vec![changes()])),
                        Some((_, size, sets))
                            if *size == k && sets.len() < ALTERNATIVES_PER_OUTCOME =>
                        {
                            sets.push(changes());
                        }
                        Some(_) => {}
                    }
                }
                for &p in &pick {
                    let i = changeable[p];
                    gates[i].counted_as = base[i].counted_as;
                }
                // The next assignment of other outcomes to the picked gates.
                let radix = |slot: usize| others(base[changeable[pick[slot]]].counted_as).len();
                if !next_assignment(&mut choice, radix) {
                    break;
                }
            }
            // The next set of k gates, in lexicographic order.
            let n = changeable.len();
            let Some(i) = (0..k).rev().find(|&i| pick[i] < n - k + i) else {
                break;
            };
            pick[i] += 1;
            for j in i + 1..k {
                pick[j] = pick[j - 1] + 1;
            }
        }
    }
    OUTCOMES
        .into_iter()
        .filter(|o| *o != d.decision)
        .map(|o| match found.iter().position(|(f, _, _)| *f == o) {
            Some(i) => Alternative {
                decision: o,
                changes: found[i].2.clone(),
                why_not: None,
            },
            None => Alternative {
                decision: o,
                changes: Vec::new(),
                why_not: Some(why_not(d, o, complete || !reachable.contains(&o))),
            },
        })
        .collect()
}

/// Advances `choice` as a mixed-radix counter; false once it wraps.
fn next_assignment(choice: &mut [usize], radix: impl Fn(usize) -> usize) -> bool {
    for slot in (0..choice.len()).rev() {
        choice[slot] += 1;
        if choice[slot] < radix(slot) {
            return true;
        }
        choice[slot] = 0;
    }
    false
}

fn why_not(d: &Decision, o: Outcome, complete: bool) -> String {
    if !complete {
        return "no change of gate outcomes found within the search's bound (it is bounded to keep an explanation cheap)".into();
    }
    if let Some(t) = deciding_trigger(&d.triggers)
        && (t.fire == Fire::ImmediateRollback || o == Outcome::Promote)
    {
        return format!(
            "trigger `{}` fired {} whatever the gates say",
            t.name,
            t.fire.as_str()
        );
    }
    if d.gates.iter().all(|g| g.counted_as == Counted::Ignored) {
        return "no gate counts toward the decision".into();
    }
    format!(
        "no combination of gate outcomes gives {}: the action plan or the stage rule rules it out",
        o.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::decision::{Digests, GateResult};
    use crate::evaluate::scoring::tests::gate;

    fn decision(gates: Vec<GateResult>) -> Decision {
        let stage = decide_by(Scoring::default(), &gates);
        Decision {
            decision_id: None,
            decision: stage.decision,
            summary: stage.summary,
            policy: "p".into(),
            stage: "s".into(),
            stage_result: stage.result,
            score: stage.score,
            scoring: Scoring::default(),
            service: "svc".into(),
            version: "1.0.0".into(),
            taken_at: 0,
            decided_at: None,
            what_if: false,
            gates,
            triggers: Vec::new(),
            actions: Vec::new(),
            digests: Digests {
                policy: crate::base::digest::Digest::of(b""),
                input: crate::base::digest::Digest::of(b""),
                plugins: Default::default(),
            },
            sources: None,
            pipeline: Vec::new(),
            approvals: Vec::new(),
        }
    }

    #[test]
    fn one_failed_key_gate_is_the_single_change_that_would_promote() {
        let mut failed = gate("errors", Counted::Fail, 1.0, true);
        failed.observed = Some(0.002);
        failed.threshold = Some(0.001);
        let d = decision(vec![failed, gate("latency", Counted::Pass, 1.0, true)]);
        assert_eq!(d.decision, Outcome::Rollback);
        let e = explain(&d);
        let promote = &e.alternatives[0];
        assert_eq!(promote.decision, Outcome::Promote);
        assert_eq!(
            promote.changes,
            vec![vec![Change {
                gate: "errors".into(),
                from: Counted::Fail,
                to: Counted::Pass
            }]]
        );
        let errors = &e.gates[0];
        assert!(errors.deciding);
        assert!((errors.distance.unwrap() - 0.001).abs() < 1e-12);
        assert!((errors.distance_percent.unwrap() - 100.0).abs() < 1e-9);
        assert_eq!(errors.weight_percent, Some(50.0));
        assert_eq!(errors.score_points, Some(0.0));
        assert_eq!(e.gates[1].score_points, Some(50.0));
        assert!(matches!(e.decided_by, DecidedBy::Gates { .. }));
    }

    #[test]
    fn a_score_decision_needs_the_fewest_gates_to_move_it() {
        // 7 of 10 weight passes: 70%, below warn (75%): rollback. One more
        // pass reaches 80% (hold); two reach 90% (promote).
        let mut gates: Vec<GateResult> = (0..7)
            .map(|i| gate(&format!("p{i}"), Counted::Pass, 1.0, false))
            .collect();
        gates.extend((0..3).map(|i| gate(&format!("f{i}"), Counted::Fail, 1.0, false)));
        let d = decision(gates);
        assert_eq!(d.decision, Outcome::Rollback);
        let e = explain(&d);
        let by = |o| e.alternatives.iter().find(|a| a.decision == o).unwrap();
        assert_eq!(by(Outcome::Hold).changes[0].len(), 1);
        assert_eq!(by(Outcome::Promote).changes[0].len(), 2);
        assert!(
            by(Outcome::Promote).changes[0]
                .iter()
                .all(|c| c.to == Counted::Pass && c.gate.starts_with('f'))
        );
    }

    #[test]
    fn a_trigger_that_forces_rollback_leaves_no_gate_change_that_promotes() {
        let mut d = decision(vec![gate("errors", Counted::Pass, 1.0, true)]);
        d.triggers.push(crate::evaluate::decision::TriggerResult {
            name: "spike".into(),
            plugin: "sustained".into(),
            fire: Fire::ImmediateRollback,
            error: false,
            reason: "r".into(),
            observed: None,
            threshold: None,
            holds: false,
            details: Default::default(),
            logs: Vec::new(),
            cause: None,
            duration_us: 0,
        });
        d.decision = Outcome::Rollback;
        let e = explain(&d);
        assert_eq!(
            e.decided_by,
            DecidedBy::Trigger {
                name: "spike".into(),
                fire: Fire::ImmediateRollback
            }
        );
        assert!(e.alternatives.iter().all(|a| a.changes.is_empty()));
        assert!(
            e.alternatives[0]
                .why_not
                .as_deref()
                .unwrap()
                .contains("trigger `spike`")
        );
    }

    #[test]
    fn a_large_stage_is_searched_within_its_bound() {
        // 40 gates with a 90% pass band and every gate failing: promote
        // needs 36 changes, far beyond the bound; the answer says so.
        let gates: Vec<GateResult> = (0..40)
            .map(|i| gate(&format!("g{i}"), Counted::Fail, 1.0, false))
            .collect();
        let e = explain(&decision(gates));
        let promote = e
            .alternatives
            .iter()
            .find(|a| a.decision == Outcome::Promote)
            .unwrap();
        assert!(promote.changes.is_empty());
        assert!(promote.why_not.as_deref().unwrap().contains("bounded"));
    }
}
