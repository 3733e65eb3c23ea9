//! The pure part of a decision: how each verdict counts, the weighted
//! score, the stage's own verdict, and how triggers and actions escalate it.
//! No plugin runs here, so every rule is a function of its inputs and is
//! checked with properties.

use crate::evaluate::decision::{
    Action, ActionPlan, Counted, Fire, GateResult, Outcome, StageResult, TriggerResult, Verdict,
};
use crate::policy::{Gate, OnError, OnNoData, Scoring, Stage};

/// A stage's verdict from its gates alone.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct StageVerdict {
    pub(super) decision: Outcome,
    pub(super) result: StageResult,
    /// Weighted score in percent over the gates that counted.
    pub(super) score: Option<f64>,
    /// One sentence saying why.
    pub(super) summary: String,
}

/// How cautious an outcome is: promote < hold < rollback.
#[cfg(test)]
fn caution(o: Outcome) -> u8 {
    match o {
        Outcome::Promote => 0,
        Outcome::Hold => 1,
        Outcome::Rollback => 2,
    }
}

/// A trigger that fired `immediate-rollback` forces rollback; one that
/// fired anything with `hold: true` turns promote into hold. Never makes
/// a decision less cautious.
/// The trigger that bears on the decision, which the summary and the action
/// plan both name: the strongest that fired `immediate-rollback`, or that
/// fired and holds promotion; the first in policy order among equals.
pub(super) fn deciding_trigger(triggers: &[TriggerResult]) -> Option<&TriggerResult> {
    triggers
        .iter()
        .filter(|t| t.fire == Fire::ImmediateRollback || (t.holds && t.fire > Fire::None))
        .rev()
        .max_by_key(|t| t.fire)
}

pub(super) fn escalate_by_triggers(
    decision: Outcome,
    summary: String,
    triggers: &[TriggerResult],
) -> (Outcome, String) {
    let deciding = deciding_trigger(triggers);
    if let Some(t) = deciding.filter(|t| t.fire == Fire::ImmediateRollback) {
        return (
            Outcome::Rollback,
            format!(
                "trigger `{}` fired immediate-rollback: {}",
                t.name, t.reason
            ),
        );
    }
    if decision == Outcome::Promote
        && let Some(t) = deciding
    {
        return (
            Outcome::Hold,
            format!(
                "trigger `{}` fired {} and holds promotion: {}",
                t.name,
                t.fire.as_str(),
                t.reason
            ),
        );
    }
    (decision, summary)
}

/// A planned `rollback` forces rollback; a plan that failed, a planned
/// `hold` or `pause` turns promote into hold. Never makes a decision less
/// cautious.
pub(super) fn escalate_by_actions(
    mut decision: Outcome,
    mut summary: String,
    plans: &[ActionPlan],
) -> (Outcome, String) {
    for plan in plans {
        let planned = |f: fn(&Action) -> bool| plan.actions.iter().find(|a| f(a));
        if let Some(Action::Rollback { reason }) = planned(|a| matches!(a, Action::Rollback { .. }))
        {
            if decision != Outcome::Rollback {
                decision = Outcome::Rollback;
                summary = format!("action `{}` plans rollback: {reason}", plan.name);
            }
        } else if decision == Outcome::Promote {
            if let Some(e) = &plan.error {
                decision = Outcome::Hold;
                summary = format!("action `{}` could not plan: {e}", plan.name);
            } else if let Some(Action::Hold { reason }) =
                planned(|a| matches!(a, Action::Hold { .. }))
            {
                decision = Outcome::Hold;
                summary = format!("action `{}` holds: {reason}", plan.name);
            } else if let Some(Action::Pause { seconds }) =
                planned(|a| matches!(a, Action::Pause { .. }))
            {
                decision = Outcome::Hold;
                summary = format!("action `{}` pauses the rollout for {seconds}s", plan.name);
            }
        }
    }
    (decision, summary)
}

pub(super) fn counted_as(gate: &Gate, verdict: Verdict) -> Counted {
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

/// What the stage rule reads of a gate: how it counted, its weight, and
/// whether it is a key gate. Small and `Copy`, so an explanation can ask
/// the rule again many times over without copying findings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Counting {
    pub(super) counted_as: Counted,
    pub(super) weight: f64,
    pub(super) key: bool,
}

impl From<&GateResult> for Counting {
    fn from(g: &GateResult) -> Self {
        Self {
            counted_as: g.counted_as,
            weight: g.weight,
            key: g.key,
        }
    }
}

/// Weighted score in percent; inconclusive gates count as `if_inconclusive`.
pub(super) fn score<'a>(
    gates: impl IntoIterator<Item = &'a GateResult>,
    if_inconclusive: Option<f64>,
) -> Option<f64> {
    score_of(gates.into_iter().map(Counting::from), if_inconclusive)
}

fn score_of(
    gates: impl IntoIterator<Item = Counting>,
    if_inconclusive: Option<f64>,
) -> Option<f64> {
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
    // Rounding in the two sums could otherwise give 100.00000000000001.
    (total > 0.0).then(|| (100.0 * earned / total).clamp(0.0, 100.0))
}

fn pct(v: f64) -> String {
    let rounded = (v * 10.0).round() / 10.0;
    format!("{rounded}%")
}

/// Which part of the stage rule decided, with what it needs to say why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Ruling {
    /// This key gate (the first in order) failed.
    KeyFailed(usize),
    /// Even if every inconclusive gate passed, the score stays under warn.
    OutOfReach {
        best: f64,
        inconclusive: usize,
    },
    /// Gates are inconclusive, the first being this one.
    Inconclusive {
        first: usize,
        count: usize,
    },
    /// No gate counted.
    NoneCounted,
    Pass(f64),
    Warn(f64),
    Fail(f64),
}

impl Ruling {
    /// The outcome and stage result this ruling gives.
    pub(super) fn outcome(self) -> (Outcome, StageResult) {
        match self {
            Self::KeyFailed(_) | Self::OutOfReach { .. } | Self::Fail(_) => {
                (Outcome::Rollback, StageResult::Fail)
            }
            Self::Inconclusive { .. } | Self::NoneCounted => {
                (Outcome::Hold, StageResult::Inconclusive)
            }
            Self::Pass(_) => (Outcome::Promote, StageResult::Pass),
            Self::Warn(_) => (Outcome::Hold, StageResult::Warning),
        }
    }
}

/// The stage rule: a failed key gate fails the stage; inconclusive gates
/// hold it unless even their passing could not reach the warn band; else
/// the weighted score against the bands.
pub(super) fn rule(scoring: Scoring, gates: &[Counting]) -> Ruling {
    let Scoring { pass, warn } = scoring;
    if let Some(i) = gates
        .iter()
        .position(|g| g.key && g.counted_as == Counted::Fail)
    {
        return Ruling::KeyFailed(i);
    }
    let count = gates
        .iter()
        .filter(|g| g.counted_as == Counted::Inconclusive)
        .count();
    if let Some(first) = gates
        .iter()
        .position(|g| g.counted_as == Counted::Inconclusive)
    {
        let best = score_of(gates.iter().copied(), Some(1.0)).unwrap_or(100.0);
        if best < warn {
            return Ruling::OutOfReach {
                best,
                inconclusive: count,
            };
        }
        return Ruling::Inconclusive { first, count };
    }
    match score_of(gates.iter().copied(), None) {
        None => Ruling::NoneCounted,
        Some(s) if s >= pass => Ruling::Pass(s),
        Some(s) if s >= warn => Ruling::Warn(s),
        Some(s) => Ruling::Fail(s),
    }
}

/// How a stage's gates decide it, before triggers and actions.
pub(super) fn decide(stage: &Stage, gates: &[GateResult]) -> StageVerdict {
    decide_by(stage.scoring, gates)
}

/// How gates decide a stage with these score bands, and the sentence that
/// says why.
pub(super) fn decide_by(scoring: Scoring, gates: &[GateResult]) -> StageVerdict {
    let Scoring { pass, warn } = scoring;
    let counting: Vec<Counting> = gates.iter().map(Counting::from).collect();
    let ruling = rule(scoring, &counting);
    let (decision, result) = ruling.outcome();
    let counted_score = score(gates, None);
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
    let (score, summary) = match ruling {
        Ruling::KeyFailed(i) => (
            counted_score,
            format!("key gate `{}` failed: {}", gates[i].name, gates[i].reason),
        ),
        Ruling::OutOfReach { best, inconclusive } => (
            counted_score,
            format!(
                "score cannot reach the warn band of {} even if the {inconclusive} inconclusive gate(s) passed (at most {})",
                pct(warn),
                pct(best)
            ),
        ),
        Ruling::Inconclusive { first, count } => (
            counted_score,
            format!(
                "{count} gate(s) inconclusive, first `{}`: {}",
                gates[first].name, gates[first].reason
            ),
        ),
        Ruling::NoneCounted => (
            None,
            "no gate counted toward the decision: every gate is dry-run, ignored or of weight 0"
                .into(),
        ),
        Ruling::Pass(s) => {
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
                Some(s),
                format!(
                    "score {} meets the pass threshold {}: {note}",
                    pct(s),
                    pct(pass)
                ),
            )
        }
        Ruling::Warn(s) => (
            Some(s),
            format!(
                "score {} is in the warn band ({} to {}): {}",
                pct(s),
                pct(warn),
                pct(pass),
                names(&failing)
            ),
        ),
        Ruling::Fail(s) => (
            Some(s),
            format!(
                "score {} is below the warn threshold {}: {}",
                pct(s),
                pct(warn),
                names(&failing)
            ),
        ),
    };
    StageVerdict {
        decision,
        result,
        score,
        summary,
    }
}

#[cfg(test)]
pub(super) mod tests;
