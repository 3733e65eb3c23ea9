//! The stage rule's examples and properties.
use std::collections::BTreeMap;

use super::*;
use crate::engine;
use crate::policy::Name;

fn stage() -> Stage {
    Stage {
        name: "s".parse::<Name>().unwrap(),
        description: None,
        traffic: None,
        duration: None,
        scoring: Scoring::default(),
        gates: Vec::new(),
    }
}

pub(in crate::evaluate) fn gate(
    name: &str,
    counted_as: Counted,
    weight: f64,
    key: bool,
) -> GateResult {
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
        reads: Vec::new(),
        cause: None,
        duration_us: 0,
    }
}

#[test]
fn weighted_score_decides_between_pass_warn_and_fail_bands() {
    let s = stage();
    // 9 of 10 weight passes: exactly 90% promotes.
    let StageVerdict {
        decision: o,
        result: r,
        score,
        summary: _,
    } = decide(
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
    let StageVerdict {
        decision: o,
        result: r,
        score,
        summary,
    } = decide(
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
    let StageVerdict {
        decision: o,
        result: r,
        score: _,
        summary: _,
    } = decide(
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
    let StageVerdict {
        decision: o,
        result: _,
        score,
        summary,
    } = decide(
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
    let StageVerdict {
        decision: o,
        result: r,
        score: _,
        summary: _,
    } = decide(
        &stage(),
        &[
            gate("a", Counted::Pass, 1.0, false),
            gate("n", Counted::Inconclusive, 1.0, false),
        ],
    );
    assert_eq!((o, r), (Outcome::Hold, StageResult::Inconclusive));
    // With `n` passing the best case is 3/4 = 75%, in the warn band: hold.
    let StageVerdict {
        decision: o,
        result: _,
        score: _,
        summary: _,
    } = decide(
        &stage(),
        &[
            gate("f", Counted::Fail, 1.0, false),
            gate("a", Counted::Pass, 2.0, false),
            gate("n", Counted::Inconclusive, 1.0, false),
        ],
    );
    assert_eq!(o, Outcome::Hold);
    // 2 of 3 weight fails: even a passing `n` gives 33%: rollback.
    let StageVerdict {
        decision: o,
        result: _,
        score: _,
        summary,
    } = decide(
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
    let StageVerdict {
        decision: o,
        result: _,
        score,
        summary: _,
    } = decide(
        &stage(),
        &[
            gate("a", Counted::Pass, 1.0, false),
            gate("d", Counted::Ignored, 5.0, false),
        ],
    );
    assert_eq!((o, score), (Outcome::Promote, Some(100.0)));
    let StageVerdict {
        decision: o,
        result: r,
        score,
        summary: _,
    } = decide(&stage(), &[gate("d", Counted::Ignored, 1.0, false)]);
    assert_eq!(
        (o, r, score),
        (Outcome::Hold, StageResult::Inconclusive, None)
    );
    // Weight 0 counts for nothing too, and the summary says so.
    let StageVerdict {
        decision: o,
        score,
        summary,
        ..
    } = decide(&stage(), &[gate("z", Counted::Pass, 0.0, false)]);
    assert_eq!((o, score), (Outcome::Hold, None));
    assert!(summary.contains("weight 0"), "{summary}");
}

#[test]
fn dry_run_and_policies_map_verdicts() {
    let base = crate::policy::Gate {
        name: "g".parse().unwrap(),
        description: None,
        plugin: "threshold".into(),
        kind: crate::policy::GateKind::Plugin,
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

#[cfg(test)]
mod properties {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn counted() -> impl Strategy<Value = Counted> {
        prop_oneof![
            Just(Counted::Pass),
            Just(Counted::Warn),
            Just(Counted::Fail),
            Just(Counted::Inconclusive),
            Just(Counted::Ignored),
        ]
    }

    fn gates() -> impl Strategy<Value = Vec<GateResult>> {
        prop::collection::vec(
            (counted(), 0.0f64..1_000_000.0, any::<bool>())
                .prop_map(|(c, w, k)| super::tests::gate("g", c, w, k)),
            0..12,
        )
    }

    fn fire() -> impl Strategy<Value = Fire> {
        prop_oneof![
            Just(Fire::None),
            Just(Fire::Alert),
            Just(Fire::PrepareRollback),
            Just(Fire::ImmediateRollback),
        ]
    }

    fn trigger(fire: Fire, holds: bool) -> TriggerResult {
        TriggerResult {
            name: "t".into(),
            plugin: "sustained".into(),
            fire,
            error: false,
            reason: String::new(),
            observed: None,
            threshold: None,
            holds,
            details: BTreeMap::new(),
            logs: Vec::new(),
            cause: None,
            duration_us: 0,
        }
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            (0u8..=100).prop_map(|percent| Action::SetWeight { percent }),
            Just(Action::Promote),
            (0u64..1000).prop_map(|seconds| Action::Pause { seconds }),
            Just(Action::Hold { reason: "h".into() }),
            Just(Action::Rollback { reason: "r".into() }),
        ]
    }

    fn outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![
            Just(Outcome::Promote),
            Just(Outcome::Hold),
            Just(Outcome::Rollback)
        ]
    }

    proptest! {
        #[test]
        fn a_score_is_always_within_0_and_100(gs in gates(), fill in prop::option::of(0.0f64..=1.0)) {
            if let Some(s) = score(&gs, fill) {
                prop_assert!((0.0..=100.0).contains(&s), "{s}");
            }
        }

        #[test]
        fn a_stage_verdict_is_consistent(gs in gates(), pass in 50.0f64..=100.0, gap in 0.0f64..50.0) {
            let mut stage = Stage {
                name: "s".parse().unwrap(),
                description: None,
                traffic: None,
                duration: None,
                scoring: Scoring { pass, warn: pass - gap },
                gates: Vec::new(),
            };
            stage.scoring.warn = stage.scoring.warn.max(0.0);
            let v = decide(&stage, &gs);
            if let Some(s) = v.score {
                prop_assert!((0.0..=100.0).contains(&s));
            }
            if gs.iter().any(|g| g.key && g.counted_as == Counted::Fail) {
                prop_assert_eq!(v.decision, Outcome::Rollback);
            }
            if v.decision == Outcome::Promote {
                prop_assert!(v.score.is_some_and(|s| s >= pass));
            }
        }

        #[test]
        fn triggers_never_make_a_decision_less_cautious(
            d in outcome(),
            fired in prop::collection::vec((fire(), any::<bool>()), 0..6),
        ) {
            let ts: Vec<TriggerResult> = fired.into_iter().map(|(f, h)| trigger(f, h)).collect();
            let (after, _) = escalate_by_triggers(d, String::new(), &ts);
            prop_assert!(caution(after) >= caution(d));
            if ts.iter().any(|t| t.fire == Fire::ImmediateRollback) {
                prop_assert_eq!(after, Outcome::Rollback);
            }
        }

        #[test]
        fn actions_never_make_a_decision_less_cautious(
            d in outcome(),
            plans in prop::collection::vec((prop::collection::vec(action(), 0..4), any::<bool>()), 0..4),
        ) {
            let plans: Vec<ActionPlan> = plans
                .into_iter()
                .map(|(actions, failed)| ActionPlan {
                    name: "a".into(),
                    plugin: "canary-schedule".into(),
                    actions,
                    error: failed.then(|| "broke".to_string()),
                    logs: Vec::new(),
                    cause: None,
                    duration_us: 0,
                })
                .collect();
            let (after, _) = escalate_by_actions(d, String::new(), &plans);
            prop_assert!(caution(after) >= caution(d));
        }
    }
}
