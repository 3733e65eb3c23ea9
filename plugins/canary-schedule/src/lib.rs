//! The `canary-schedule` action: walks a rollout through the policy's stages.
//!
//! Each stage of the policy may carry `traffic` (the share of traffic on the
//! new version) and `duration` (how long it must run before it may be left);
//! the release process's schedule is 5% for 15 m, 25% for 30 m, then 100%.
//! From the current stage, the time spent in it and the outcome, the plan is:
//!
//! | situation | plan |
//! |---|---|
//! | outcome `fail`, or a trigger fired `immediate-rollback` | `set-weight 0`, `rollback` |
//! | outcome `inconclusive` or `warning`, or a trigger fired `prepare-rollback` | `hold` |
//! | passed, but less than `duration` elapsed | `set-weight` (current), `pause` (the rest), `hold` |
//! | passed, and a next stage exists | `set-weight` (next stage's traffic), `promote` |
//! | passed the last stage | `promote` (rollout complete) |
//!
//! When the elapsed time is unknown the duration is not checked.

use tollgate_sdk::action::{Action, Context, Outcome};
use tollgate_sdk::config::Settings;
use tollgate_sdk::rule::{ActionRule, View};

fn human(seconds: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(seconds)).to_string()
}

fn plan(ctx: &Context) -> Result<Vec<Action>, String> {
    let idx = ctx
        .stages
        .iter()
        .position(|s| s.name == ctx.stage)
        .ok_or_else(|| format!("stage `{}` is not in the schedule", ctx.stage))?;
    let stage = &ctx.stages[idx];
    let here = format!("stage `{}`", stage.name);
    if let Some((fire, reason)) = &ctx.trigger
        && fire == "immediate-rollback"
    {
        return Ok(vec![Action::SetWeight(0), Action::Rollback(reason.clone())]);
    }
    match ctx.outcome {
        Outcome::Fail => {
            return Ok(vec![
                Action::SetWeight(0),
                Action::Rollback(format!("{here} failed its gates")),
            ]);
        }
        Outcome::Inconclusive => {
            return Ok(vec![Action::Hold(format!(
                "{here} is inconclusive: held until its inconclusive gates decide (their reasons say what they wait for)"
            ))]);
        }
        Outcome::Warning => {
            return Ok(vec![Action::Hold(format!(
                "{here} scored in the warn band"
            ))]);
        }
        Outcome::Pass => {}
    }
    if let Some((fire, reason)) = &ctx.trigger
        && fire == "prepare-rollback"
    {
        return Ok(vec![Action::Hold(format!("prepare rollback: {reason}"))]);
    }
    if let (Some(min), Some(elapsed)) = (stage.min_duration_seconds, ctx.elapsed_seconds)
        && elapsed < min
    {
        let mut plan = Vec::new();
        if let Some(t) = stage.traffic_percent {
            plan.push(Action::SetWeight(t));
        }
        plan.push(Action::Pause(min - elapsed));
        plan.push(Action::Hold(format!(
            "{here} needs {} at {}; {} elapsed",
            human(min),
            stage
                .traffic_percent
                .map(|t| format!("{t}%"))
                .unwrap_or_else(|| "its weight".into()),
            human(elapsed)
        )));
        return Ok(plan);
    }
    Ok(match ctx.stages.get(idx + 1) {
        Some(next) => vec![
            Action::SetWeight(next.traffic_percent.unwrap_or(100)),
            Action::Promote,
        ],
        None => vec![Action::Promote],
    })
}

/// The action: a pure function of the context.
pub struct CanarySchedule;

impl ActionRule for CanarySchedule {
    /// No settings: the schedule is the policy's stages.
    type Settings = ();
    fn settings(_: &Settings) -> Result<(), String> {
        Ok(())
    }
    fn plan(_: &(), _snapshot: &dyn View, context: &Context) -> Result<Vec<Action>, String> {
        plan(context)
    }
}

#[cfg(target_arch = "wasm32")]
tollgate_sdk::export_action_rule!(CanarySchedule);

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_sdk::action::StageInfo;

    fn ctx(stage: &str, elapsed: Option<u64>, outcome: Outcome) -> Context {
        let s = |name: &str, t, d| StageInfo {
            name: name.into(),
            traffic_percent: Some(t),
            min_duration_seconds: d,
        };
        Context {
            stage: stage.into(),
            stages: vec![
                s("initial-canary", 5, Some(900)),
                s("expanded-canary", 25, Some(1800)),
                s("full-rollout", 100, None),
            ],
            elapsed_seconds: elapsed,
            outcome,
            trigger: None,
        }
    }

    #[test]
    fn follows_the_seed_schedule() {
        assert_eq!(
            plan(&ctx("initial-canary", Some(900), Outcome::Pass)),
            Ok(vec![Action::SetWeight(25), Action::Promote])
        );
        assert_eq!(
            plan(&ctx("expanded-canary", Some(1800), Outcome::Pass)),
            Ok(vec![Action::SetWeight(100), Action::Promote])
        );
        assert_eq!(
            plan(&ctx("full-rollout", None, Outcome::Pass)),
            Ok(vec![Action::Promote])
        );
    }

    #[test]
    fn holds_until_the_minimum_duration() {
        let p = plan(&ctx("initial-canary", Some(899), Outcome::Pass)).unwrap();
        assert_eq!(p[0], Action::SetWeight(5));
        assert_eq!(p[1], Action::Pause(1));
        assert!(
            matches!(&p[2], Action::Hold(r) if r.contains("needs 15m at 5%")),
            "{p:?}"
        );
    }

    #[test]
    fn rolls_back_on_failure_or_an_immediate_trigger() {
        assert!(matches!(
            plan(&ctx("expanded-canary", Some(10), Outcome::Fail)).unwrap()[..],
            [Action::SetWeight(0), Action::Rollback(_)]
        ));
        let mut c = ctx("initial-canary", Some(1000), Outcome::Pass);
        c.trigger = Some(("immediate-rollback".into(), "error rate 2%".into()));
        assert_eq!(
            plan(&c),
            Ok(vec![
                Action::SetWeight(0),
                Action::Rollback("error rate 2%".into())
            ])
        );
        c.trigger = Some(("prepare-rollback".into(), "conversion down".into()));
        assert!(matches!(&plan(&c).unwrap()[..], [Action::Hold(_)]));
    }

    #[test]
    fn an_unknown_stage_is_an_error() {
        assert!(plan(&ctx("half", None, Outcome::Pass)).is_err());
    }
}
