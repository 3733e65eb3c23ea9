//! `{{name}}`: a tollgate gate. Its settings come from the policy's `with:`.

use tollgate_sdk::config::Settings;
use tollgate_sdk::gate::{Finding, Verdict};
use tollgate_sdk::rule::{GateRule, View, finding};

pub struct Gate;

/// What the policy sets: the metric and its minimum.
pub struct Minimum {
    metric: String,
    min: f64,
}

impl GateRule for Gate {
    type Settings = Minimum;

    fn settings(s: &Settings) -> Result<Minimum, String> {
        let metric = s.opt_text("metric")?.unwrap_or("test_coverage_percent").to_string();
        Ok(Minimum { metric, min: s.number("min")? }) // unknown keys are refused
    }

    fn judge(m: &Minimum, snapshot: &dyn View) -> Finding {
        let (metric, min) = (&m.metric, m.min);
        let Some(last) = snapshot.last(metric) else {
            return finding(Verdict::Inconclusive, format!("no `{metric}` in the snapshot"), None, Some(min));
        };
        let (verdict, word) = if last >= min { (Verdict::Pass, "pass") } else { (Verdict::Fail, "fail") };
        finding(verdict, format!("`{metric}` = {last}, required >= {min}: {word}"), Some(last), Some(min))
    }
}

tollgate_sdk::export_gate_rule!(Gate);

// `cargo test` runs the rule natively, over a snapshot in memory.
#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_sdk::rule::{MemorySnapshot, judge};

    #[test]
    fn coverage_below_the_minimum_fails() {
        let snapshot = MemorySnapshot::new(1_764_237_600).with_value("test_coverage_percent", 79.9);
        let found = judge::<Gate>(&[("min", 80.0.into())], &snapshot).unwrap();
        assert_eq!(found.verdict, Verdict::Fail);
    }
}
