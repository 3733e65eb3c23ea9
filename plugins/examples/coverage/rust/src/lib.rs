//! Coverage at least `min`, and no drop of more than `max_drop` points
//! against the baseline.

use tollgate_sdk::config::Settings;
use tollgate_sdk::gate::{Finding, Query, Track, Verdict};
use tollgate_sdk::rule::{GateRule, View, finding};

pub struct Coverage;

pub struct Limits {
    min: f64,
    max_drop: f64,
}

const METRIC: &str = "test_coverage_percent";

fn newest(snapshot: &dyn View, track: Track) -> Option<f64> {
    let query = Query { metric: METRIC.into(), selector: vec![], window_seconds: None, track };
    snapshot.points(&query).last().map(|p| p.value)
}

impl GateRule for Coverage {
    type Settings = Limits;

    fn settings(s: &Settings) -> Result<Limits, String> {
        Ok(Limits { min: s.number("min")?, max_drop: s.opt_number("max_drop")?.unwrap_or(1.0) })
    }

    fn judge(l: &Limits, snapshot: &dyn View) -> Finding {
        let Some(now) = newest(snapshot, Track::Current) else {
            return finding(Verdict::Inconclusive, "no coverage", None, Some(l.min));
        };
        let before = newest(snapshot, Track::Baseline);
        let (verdict, reason) = match before {
            _ if now < l.min => (Verdict::Fail, format!("coverage {now} is below {}", l.min)),
            Some(b) if b - now > l.max_drop => (Verdict::Fail, format!("coverage fell {} points from {b}", b - now)),
            _ => (Verdict::Pass, format!("coverage {now}")),
        };
        finding(verdict, reason, Some(now), Some(l.min))
    }
}

tollgate_sdk::export_gate_rule!(Coverage);
