//! Bounds on what a plugin may return, checked before an answer is kept.
//!
//! Every text a plugin returns is untrusted: lengths are capped here, and a
//! message that quotes plugin text escapes control characters.

use super::answer::{Action, Fire, FlagRollout};
use super::bindings::action::exports::tollgate::plugin::action_api as wit_action;
use super::bindings::trigger::exports::tollgate::plugin::trigger_api as wit_trigger;
use super::bindings::types as wit;
use super::{
    CallError, Finding, MAX_ACTIONS, MAX_DETAIL_BYTES, MAX_DETAILS, MAX_PAUSE_SECONDS,
    MAX_REASON_BYTES, MAX_STATE_BYTES, PluginVerdict, TriggerFinding,
};
use crate::base::text::escape_control;

/// Checks the parts every answer shares: reason, numbers and details.
fn check_common(
    reason: &str,
    observed: Option<f64>,
    threshold: Option<f64>,
    details: &[wit::Detail],
) -> Result<(), CallError> {
    check_text("reason", reason)?;
    if details.len() > MAX_DETAILS {
        return Err(CallError::Output(format!(
            "{} details exceed the limit of {MAX_DETAILS}",
            details.len()
        )));
    }
    if let Some(d) = details
        .iter()
        .find(|d| d.key.len() + d.value.len() > MAX_DETAIL_BYTES)
    {
        return Err(CallError::Output(format!(
            "detail `{}` exceeds the {MAX_DETAIL_BYTES}-byte limit",
            escape_control(&d.key.chars().take(64).collect::<String>())
        )));
    }
    for (what, v) in [("observed", observed), ("threshold", threshold)] {
        if v.is_some_and(|v| !v.is_finite()) {
            return Err(CallError::Output(format!(
                "{what} value is not a finite number"
            )));
        }
    }
    Ok(())
}

fn check_text(what: &str, text: &str) -> Result<(), CallError> {
    if text.len() > MAX_REASON_BYTES {
        return Err(CallError::Output(format!(
            "{what} of {} bytes exceeds the {MAX_REASON_BYTES}-byte limit",
            text.len()
        )));
    }
    Ok(())
}

pub(super) fn check_trigger(t: wit_trigger::TriggerResult) -> Result<TriggerFinding, CallError> {
    check_common(&t.reason, t.observed, t.threshold, &t.details)?;
    if t.state.len() > MAX_STATE_BYTES {
        return Err(CallError::Output(format!(
            "state of {} bytes exceeds the {MAX_STATE_BYTES}-byte limit",
            t.state.len()
        )));
    }
    Ok(TriggerFinding {
        fire: match t.fire {
            wit_trigger::Fire::None => Fire::None,
            wit_trigger::Fire::Alert => Fire::Alert,
            wit_trigger::Fire::PrepareRollback => Fire::PrepareRollback,
            wit_trigger::Fire::ImmediateRollback => Fire::ImmediateRollback,
        },
        reason: t.reason,
        observed: t.observed,
        threshold: t.threshold,
        details: t.details.into_iter().map(|d| (d.key, d.value)).collect(),
        state: t.state,
    })
}

fn percent(p: u8) -> Result<u8, CallError> {
    if p > 100 {
        Err(CallError::Output(format!(
            "a percentage of {p} is above 100"
        )))
    } else {
        Ok(p)
    }
}

fn check_action(a: wit_action::Action) -> Result<Action, CallError> {
    Ok(match a {
        wit_action::Action::SetWeight(p) => Action::SetWeight {
            percent: percent(p)?,
        },
        wit_action::Action::Promote => Action::Promote,
        wit_action::Action::Pause(seconds) => {
            // A client reading JSON as doubles (JavaScript) loses integers
            // past 2^53; no rollout pauses for more than a year anyway.
            if seconds > MAX_PAUSE_SECONDS {
                return Err(CallError::Output(format!(
                    "a pause of {seconds} s exceeds the limit of {MAX_PAUSE_SECONDS} s (one year)"
                )));
            }
            Action::Pause { seconds }
        }
        wit_action::Action::Hold(reason) => {
            check_text("hold reason", &reason)?;
            Action::Hold { reason }
        }
        wit_action::Action::Rollback(reason) => {
            check_text("rollback reason", &reason)?;
            Action::Rollback { reason }
        }
        wit_action::Action::BumpVersion(version) => {
            check_text("version", &version)?;
            Action::BumpVersion { version }
        }
        wit_action::Action::FlagRollout(f) => {
            check_text("flag", &f.flag)?;
            if f.segments.len() > MAX_DETAILS
                || f.segments.iter().any(|s| s.len() > MAX_DETAIL_BYTES)
            {
                return Err(CallError::Output("flag segments exceed the limit".into()));
            }
            Action::FlagRollout(FlagRollout {
                flag: f.flag,
                percent: percent(f.percent)?,
                segments: f.segments,
            })
        }
    })
}

pub(super) fn check_plan(
    plan: Result<Vec<wit_action::Action>, String>,
) -> Result<Result<Vec<Action>, String>, CallError> {
    let actions = match plan {
        Ok(actions) => actions,
        Err(e) => {
            check_text("plan error", &e)?;
            return Ok(Err(e));
        }
    };
    if actions.len() > MAX_ACTIONS {
        return Err(CallError::Output(format!(
            "{} actions exceed the limit of {MAX_ACTIONS}",
            actions.len()
        )));
    }
    actions
        .into_iter()
        .map(check_action)
        .collect::<Result<Vec<_>, _>>()
        .map(Ok)
}

pub(super) fn check_finding(f: wit::Finding) -> Result<Finding, CallError> {
    check_common(&f.reason, f.observed, f.threshold, &f.details)?;
    Ok(Finding {
        verdict: match f.verdict {
            wit::Verdict::Pass => PluginVerdict::Pass,
            wit::Verdict::Warn => PluginVerdict::Warn,
            wit::Verdict::Fail => PluginVerdict::Fail,
            wit::Verdict::Inconclusive => PluginVerdict::Inconclusive,
        },
        reason: f.reason,
        observed: f.observed,
        threshold: f.threshold,
        details: f.details.into_iter().map(|d| (d.key, d.value)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(reason: &str, details: Vec<wit::Detail>) -> wit::Finding {
        wit::Finding {
            verdict: wit::Verdict::Pass,
            reason: reason.into(),
            observed: Some(1.0),
            threshold: None,
            details,
        }
    }

    #[test]
    fn reasons_over_the_cap_are_refused() {
        let long = "x".repeat(MAX_REASON_BYTES + 1);
        let err = check_finding(finding(&long, vec![])).unwrap_err();
        assert!(err.to_string().contains("exceeds the 4096-byte limit"));
        assert!(check_finding(finding("ok", vec![])).is_ok());
    }

    #[test]
    fn oversized_detail_keys_are_quoted_without_control_characters() {
        let key = format!("a\0b\x1b[2J{}", "k".repeat(MAX_DETAIL_BYTES));
        let err = check_finding(finding(
            "r",
            vec![wit::Detail {
                key,
                value: String::new(),
            }],
        ))
        .unwrap_err()
        .to_string();
        assert!(!err.chars().any(char::is_control), "{err:?}");
        assert!(err.contains("\\0"), "{err}");
    }

    #[test]
    fn non_finite_numbers_are_refused() {
        let mut f = finding("r", vec![]);
        f.observed = Some(f64::NAN);
        assert!(check_finding(f).is_err());
    }

    #[test]
    fn pauses_beyond_a_year_are_refused() {
        let plan = check_plan(Ok(vec![wit_action::Action::Pause(u64::MAX)]));
        assert!(plan.unwrap_err().to_string().contains("exceeds the limit"));
        let plan = check_plan(Ok(vec![wit_action::Action::Pause(600)]));
        assert_eq!(plan.unwrap(), Ok(vec![Action::Pause { seconds: 600 }]));
    }

    #[test]
    fn percentages_above_100_are_refused() {
        assert!(check_plan(Ok(vec![wit_action::Action::SetWeight(101)])).is_err());
    }
}
