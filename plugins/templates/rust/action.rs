//! `{{name}}`: a tollgate deployment action. It plans the next steps from
//! how the stage came out.

use tollgate_sdk::action::{Action, Config, Context, Guest, Outcome, Snapshot};
use tollgate_sdk::config::Settings;

struct Plan;

impl Guest for Plan {
    fn validate_config(config: Config) -> Result<(), String> {
        let s = Settings::new(&config);
        s.opt_integer("pause_seconds")?;
        s.finish()
    }

    fn plan(config: Config, _snapshot: &Snapshot, context: Context) -> Result<Vec<Action>, String> {
        let pause = Settings::new(&config).opt_integer("pause_seconds")?.unwrap_or(60);
        let pause = u64::try_from(pause).map_err(|_| "`pause_seconds` must not be negative".to_string())?;
        Ok(match context.outcome {
            Outcome::Pass => vec![Action::Promote],
            Outcome::Fail => vec![Action::Rollback(format!("stage `{}` failed", context.stage))],
            Outcome::Warning | Outcome::Inconclusive => vec![Action::Pause(pause)],
        })
    }
}

tollgate_sdk::action::export_action!(Plan);
