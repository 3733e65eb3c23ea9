//! `{{name}}`: a tollgate rollback trigger. It fires when the newest value
//! of a metric is above `max` in `breaches` checks in a row; the count is
//! the state the host keeps between checks.

use tollgate_sdk::config::Settings;
use tollgate_sdk::rule::{TriggerRule, View};
use tollgate_sdk::trigger::{Fire, TriggerResult};

pub struct Trigger;

/// What the policy sets.
pub struct Limit {
    metric: String,
    max: f64,
    breaches: u8,
}

impl TriggerRule for Trigger {
    type Settings = Limit;

    fn settings(s: &Settings) -> Result<Limit, String> {
        let metric = s.opt_text("metric")?.unwrap_or("error_rate").to_string();
        let breaches = s.opt_integer("breaches")?.unwrap_or(1);
        let breaches = u8::try_from(breaches).ok().filter(|b| *b > 0).ok_or("`breaches` must be 1 to 255")?;
        Ok(Limit { metric, max: s.number("max")?, breaches }) // unknown keys are refused
    }

    fn check(l: &Limit, snapshot: &dyn View, state: &[u8]) -> TriggerResult {
        let last = snapshot.last(&l.metric);
        let seen = state.first().copied().unwrap_or(0);
        let seen = if last.is_some_and(|v| v > l.max) { seen.saturating_add(1) } else { 0 };
        let (fire, reason) = match last {
            Some(v) if seen >= l.breaches => (Fire::ImmediateRollback, format!("`{}` = {v} is above {} ({seen} in a row)", l.metric, l.max)),
            Some(v) => (Fire::None, format!("`{}` = {v}; {seen} of {} breaches in a row", l.metric, l.breaches)),
            None => (Fire::None, format!("no `{}` in the snapshot", l.metric)),
        };
        TriggerResult { fire, reason, observed: last, threshold: Some(l.max), details: vec![], state: vec![seen] }
    }
}

tollgate_sdk::export_trigger_rule!(Trigger);

// `cargo test` runs the rule natively, over a snapshot in memory.
#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_sdk::rule::{MemorySnapshot, check};

    #[test]
    fn fires_on_the_second_breach_in_a_row() {
        let snapshot = MemorySnapshot::new(1_764_237_600).with_value("error_rate", 0.2);
        let with = [("max", 0.05.into()), ("breaches", 2i64.into())];
        let first = check::<Trigger>(&with, &snapshot, &[]).unwrap();
        assert_eq!(first.fire, Fire::None);
        let second = check::<Trigger>(&with, &snapshot, &first.state).unwrap();
        assert_eq!(second.fire, Fire::ImmediateRollback);
    }
}
