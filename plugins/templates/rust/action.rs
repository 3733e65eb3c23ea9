//! `{{name}}`: a tollgate deployment action. It plans the next steps from
//! how the stage came out.

use tollgate_sdk::action::{Action, Context, Outcome};
use tollgate_sdk::config::Settings;
use tollgate_sdk::rule::{ActionRule, View};

pub struct Plan;

impl ActionRule for Plan {
    /// How long to pause when the stage is not yet conclusive, in seconds.
    type Settings = u64;

    fn settings(s: &Settings) -> Result<u64, String> {
        let pause = s.opt_integer("pause_seconds")?.unwrap_or(60);
        u64::try_from(pause).map_err(|_| "`pause_seconds` must not be negative".to_string())
    }

    fn plan(pause: &u64, _snapshot: &dyn View, context: &Context) -> Result<Vec<Action>, String> {
        Ok(match context.outcome {
            Outcome::Pass => vec![Action::Promote],
            Outcome::Fail => vec![Action::Rollback(format!("stage `{}` failed", context.stage))],
            Outcome::Warning | Outcome::Inconclusive => vec![Action::Pause(*pause)],
        })
    }
}

tollgate_sdk::export_action_rule!(Plan);

// `cargo test` runs the rule natively.
#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_sdk::rule::{MemorySnapshot, plan};

    #[test]
    fn an_inconclusive_stage_pauses() {
        let context = Context {
            stage: "canary".into(),
            stages: vec![],
            elapsed_seconds: None,
            outcome: Outcome::Inconclusive,
            trigger: None,
        };
        let planned = plan::<Plan>(&[("pause_seconds", 30i64.into())], &MemorySnapshot::new(0), &context).unwrap();
        assert_eq!(planned, [Action::Pause(30)]);
    }
}
