//! The `flag-rollout` action: moves a feature flag through its exposure steps.
//!
//! The flag's current exposure is read from the snapshot attribute
//! `flag.<flag>.percent` (0 when absent). When the stage passes, the flag
//! advances to the next step above it (default steps 5, 25, 50, 100); when it
//! fails or a trigger fired `immediate-rollback`, the flag is switched off
//! (0%, as the release process's feature-flag rollback does); otherwise it
//! stays where it is. Segments (`segments: [beta_users, premium_users]`)
//! restrict the rollout to those user segments; the host answers "is user X
//! in?" with a stable hash bucket (`tollgate flag`).

use tollgate_sdk::action::{Action, Context, FlagRollout, Outcome};
use tollgate_sdk::config::Settings;
use tollgate_sdk::rule::{ActionRule, View};

pub struct Rule {
    flag: String,
    steps: Vec<u8>,
    segments: Vec<String>,
}

impl Rule {
    fn read(s: &Settings) -> Result<Self, String> {
        let flag = s.text("flag")?.to_string();
        let segments = s.opt_text_list("segments")?.unwrap_or_default();
        let steps = match s.opt_integer_list("steps")? {
            None => vec![5, 25, 50, 100],
            Some(list) => list
                .into_iter()
                .map(|p| {
                    u8::try_from(p)
                        .ok()
                        .filter(|p| *p <= 100)
                        .ok_or(format!("step {p} is not a percentage from 0 to 100"))
                })
                .collect::<Result<Vec<u8>, String>>()?,
        };
        if flag.is_empty() {
            return Err("`flag` must not be empty".into());
        }
        if steps.is_empty() || steps.windows(2).any(|w| w[0] >= w[1]) {
            return Err("`steps` must be increasing percentages".into());
        }
        Ok(Self {
            flag,
            steps,
            segments,
        })
    }

    fn plan(&self, snapshot: &dyn View, ctx: &Context) -> Result<Vec<Action>, String> {
        let key = format!("flag.{}.percent", self.flag);
        let current = match snapshot.attribute(&key) {
            None => 0,
            Some(text) => text
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| format!("attribute `{key}` is `{text}`, not a percentage"))?,
        };
        let rollout = |percent: u8, segments: Vec<String>| {
            Action::FlagRollout(FlagRollout {
                flag: self.flag.clone(),
                percent,
                segments,
            })
        };
        let immediate = ctx
            .trigger
            .as_ref()
            .is_some_and(|(fire, _)| fire == "immediate-rollback");
        if immediate || ctx.outcome == Outcome::Fail {
            return Ok(vec![rollout(0, Vec::new())]);
        }
        if ctx.outcome != Outcome::Pass || ctx.trigger.is_some() {
            return Ok(vec![Action::Hold(format!(
                "flag `{}` stays at {current}%",
                self.flag
            ))]);
        }
        Ok(match self.steps.iter().find(|s| **s > current) {
            Some(next) => vec![rollout(*next, self.segments.clone())],
            None => Vec::new(),
        })
    }
}

/// The action: one [`Rule`] applied to the flag's current exposure.
pub struct FlagRolloutAction;

impl ActionRule for FlagRolloutAction {
    type Settings = Rule;
    fn settings(s: &Settings) -> Result<Rule, String> {
        Rule::read(s)
    }
    fn plan(rule: &Rule, snapshot: &dyn View, context: &Context) -> Result<Vec<Action>, String> {
        rule.plan(snapshot, context)
    }
}

#[cfg(target_arch = "wasm32")]
tollgate_sdk::export_action_rule!(FlagRolloutAction);
