//! The `canary-judge` gate: compares canary against baseline metric by metric
//! with a Mann-Whitney U test, the way Kayenta judges a canary.
//!
//! For each configured metric, the canary's points (`metrics`) and the
//! baseline's (`baseline`) in the window are compared:
//! - the two-sided Mann-Whitney U test gives a p-value; the difference is
//!   significant when `p < 1 − confidence` (confidence 0.95 by default);
//! - the effect size is the relative difference of the means,
//!   `(canary − baseline) / |baseline|`, in percent;
//! - a metric **fails** when the difference is significant, lies in the
//!   metric's worse `direction` (`increase`, `decrease` or `either`), and its
//!   effect exceeds `tolerance_percent`. Otherwise it **passes**. A metric
//!   with fewer than `min_points` on either side has **no data** and does not
//!   count.
//!
//! Each group's score is the share of its counted metrics that passed; the
//! canary score is the group-weighted mean (equal weights unless
//! `group_weights` says otherwise), in percent. A failing `critical` metric
//! fails the canary outright. Otherwise score ≥ `pass_score` (95) is
//! **pass**, ≥ `marginal_score` (75) is **marginal** (verdict `warn`), below
//! is **fail**.

use std::collections::BTreeMap;
use std::time::Duration;

use tollgate_sdk::config::Settings;
use tollgate_sdk::gate::{Detail, Finding, Track, Verdict};
use tollgate_sdk::rule::{GateRule, View};
use tollgate_sdk::stats::{mann_whitney_u, short};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Increase,
    Decrease,
    Either,
}

struct MetricRule {
    name: String,
    direction: Direction,
    tolerance: f64,
    critical: bool,
    group: String,
}

pub struct Rule {
    metrics: Vec<MetricRule>,
    group_weights: BTreeMap<String, f64>,
    window: Option<Duration>,
    alpha: f64,
    pass_score: f64,
    marginal_score: f64,
    min_points: usize,
}

impl Rule {
    fn read(s: &Settings) -> Result<Self, String> {
        let count = s.indexed_len("metrics");
        if count == 0 {
            return Err("`metrics` must list at least one metric".into());
        }
        let mut metrics = Vec::new();
        for i in 0..count {
            let key = |k: &str| format!("metrics.{i}.{k}");
            let name = s.text(&key("name"))?.to_string();
            let direction = match s.opt_text(&key("direction"))?.unwrap_or("increase") {
                "increase" => Direction::Increase,
                "decrease" => Direction::Decrease,
                "either" => Direction::Either,
                other => {
                    return Err(format!(
                        "`{}`: unknown direction `{other}`: expected increase, decrease or either",
                        key("direction")
                    ));
                }
            };
            let tolerance = s.opt_number(&key("tolerance_percent"))?.unwrap_or(0.0);
            if !(tolerance.is_finite() && tolerance >= 0.0) {
                return Err(format!(
                    "`{}` must be a non-negative number",
                    key("tolerance_percent")
                ));
            }
            let critical = s.opt_bool(&key("critical"))?.unwrap_or(false);
            let group = s.opt_text(&key("group"))?.unwrap_or("default").to_string();
            metrics.push(MetricRule {
                name,
                direction,
                tolerance,
                critical,
                group,
            });
        }
        let mut group_weights = BTreeMap::new();
        for (group, weight) in s.text_map("group_weights")? {
            let w: f64 = weight
                .parse()
                .map_err(|_| format!("`group_weights.{group}` must be a number"))?;
            if !(w.is_finite() && w >= 0.0) {
                return Err(format!(
                    "`group_weights.{group}` must be a non-negative number"
                ));
            }
            if !metrics.iter().any(|m| m.group == group) {
                return Err(format!(
                    "`group_weights.{group}` names a group no metric belongs to"
                ));
            }
            group_weights.insert(group, w);
        }
        let window = s.opt_duration("window")?;
        let confidence = s.opt_number("confidence")?.unwrap_or(0.95);
        if !(confidence > 0.0 && confidence < 1.0) {
            return Err("`confidence` must be between 0 and 1".into());
        }
        let pass_score = s.opt_number("pass_score")?.unwrap_or(95.0);
        let marginal_score = s.opt_number("marginal_score")?.unwrap_or(75.0);
        if !(0.0..=100.0).contains(&marginal_score)
            || !(marginal_score..=100.0).contains(&pass_score)
        {
            return Err("scores must satisfy 0 <= marginal_score <= pass_score <= 100".into());
        }
        let min_points = s.opt_integer("min_points")?.unwrap_or(3);
        if !(1..=100_000).contains(&min_points) {
            return Err("`min_points` must be between 1 and 100000".into());
        }
        Ok(Self {
            metrics,
            group_weights,
            window,
            alpha: 1.0 - confidence,
            pass_score,
            marginal_score,
            min_points: min_points as usize,
        })
    }

    fn values(&self, snapshot: &dyn View, metric: &str, track: Track) -> Vec<f64> {
        tollgate_sdk::window_pairs(snapshot, metric, &[], self.window, track)
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    fn evaluate(&self, snapshot: &dyn View) -> Finding {
        let mut details = Vec::new();
        // group -> (passed, counted)
        let mut groups: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        let mut failed = Vec::new();
        let mut critical_failed = Vec::new();
        for m in &self.metrics {
            let canary = self.values(snapshot, &m.name, Track::Current);
            let baseline = self.values(snapshot, &m.name, Track::Baseline);
            if canary.len() < self.min_points || baseline.len() < self.min_points {
                details.push(Detail {
                    key: m.name.clone(),
                    value: format!(
                        "no data ({} canary, {} baseline points)",
                        canary.len(),
                        baseline.len()
                    ),
                });
                continue;
            }
            let Some(test) = mann_whitney_u(&canary, &baseline) else {
                continue;
            };
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let (mc, mb) = (mean(&canary), mean(&baseline));
            let effect = if mb == 0.0 {
                if mc == 0.0 {
                    0.0
                } else {
                    f64::INFINITY.copysign(mc)
                }
            } else {
                (mc - mb) / mb.abs() * 100.0
            };
            let worse = match m.direction {
                Direction::Increase => effect > m.tolerance,
                Direction::Decrease => -effect > m.tolerance,
                Direction::Either => effect.abs() > m.tolerance,
            };
            let significant = test.p_value < self.alpha;
            let pass = !(significant && worse);
            let entry = groups.entry(m.group.as_str()).or_insert((0, 0));
            entry.1 += 1;
            if pass {
                entry.0 += 1;
            } else {
                failed.push(m.name.as_str());
                if m.critical {
                    critical_failed.push(m.name.as_str());
                }
            }
            details.push(Detail {
                key: m.name.clone(),
                value: format!(
                    "{}: canary mean {} vs baseline {} ({}{}%), U={}, p={}",
                    if pass { "pass" } else { "fail" },
                    short(mc),
                    short(mb),
                    if effect >= 0.0 { "+" } else { "" },
                    short(effect),
                    short(test.u),
                    short(test.p_value)
                ),
            });
        }
        let total_weight: f64 = groups
            .keys()
            .map(|g| self.group_weights.get(*g).copied().unwrap_or(1.0))
            .sum();
        if groups.is_empty() || total_weight == 0.0 {
            return Finding {
                verdict: Verdict::Inconclusive,
                reason: format!(
                    "no data: no metric had {} points on both canary and baseline",
                    self.min_points
                ),
                observed: None,
                threshold: Some(self.pass_score),
                details,
            };
        }
        let score = 100.0
            * groups
                .iter()
                .map(|(g, (passed, counted))| {
                    self.group_weights.get(*g).copied().unwrap_or(1.0)
                        * (*passed as f64 / *counted as f64)
                })
                .sum::<f64>()
            / total_weight;
        let listed = |v: &[&str]| {
            v.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (verdict, reason) = if !critical_failed.is_empty() {
            (
                Verdict::Fail,
                format!(
                    "critical metric {} failed; score {}",
                    listed(&critical_failed),
                    short(score)
                ),
            )
        } else if score >= self.pass_score {
            (
                Verdict::Pass,
                format!(
                    "canary score {} ≥ {}: pass",
                    short(score),
                    short(self.pass_score)
                ),
            )
        } else if score >= self.marginal_score {
            (
                Verdict::Warn,
                format!(
                    "canary score {} is marginal (≥ {}, < {}): {}",
                    short(score),
                    short(self.marginal_score),
                    short(self.pass_score),
                    listed(&failed)
                ),
            )
        } else {
            (
                Verdict::Fail,
                format!(
                    "canary score {} < {}: {}",
                    short(score),
                    short(self.marginal_score),
                    listed(&failed)
                ),
            )
        };
        Finding {
            verdict,
            reason,
            observed: Some(score),
            threshold: Some(self.pass_score),
            details,
        }
    }
}

/// The gate: a [`Rule`] applied to canary and baseline series.
pub struct CanaryJudge;

impl GateRule for CanaryJudge {
    type Settings = Rule;
    fn settings(s: &Settings) -> Result<Rule, String> {
        Rule::read(s)
    }
    fn judge(rule: &Rule, snapshot: &dyn View) -> Finding {
        rule.evaluate(snapshot)
    }
}

#[cfg(target_arch = "wasm32")]
tollgate_sdk::export_gate_rule!(CanaryJudge);
