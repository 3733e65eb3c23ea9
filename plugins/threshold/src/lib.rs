//! The `threshold` gate: aggregate one metric over a window and compare the
//! result with a fixed threshold.
//!
//! It covers every numeric quality gate of the release process (error rate,
//! p95 response time, coverage, lint errors, vulnerabilities, performance
//! regression, compliance score), each written as one policy entry:
//!
//! ```yaml
//! plugin: threshold
//! with: { metric: test_coverage_percent, op: ">=", threshold: 80 }
//! ```
//!
//! It also compares against the baseline (stable) version: with
//! `baseline_margin_percent: 10` and `op: "<="` the threshold is the
//! baseline's aggregate over the same window plus 10% (minus 10% for `>`
//! and `>=`), so "canary p95 ≤ baseline p95 + 10%" is one gate.

use std::time::Duration;

use tollgate_sdk::config::Settings;
use tollgate_sdk::gate::{Detail, Finding, Track, Verdict};
use tollgate_sdk::rule::{GateRule, View};
use tollgate_sdk::stats::{Aggregate, Op, short};

/// A gate's settings, checked once.
/// Where the threshold comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Bound {
    Fixed(f64),
    /// The baseline's aggregate, widened by this many percent.
    Baseline(f64),
}

pub struct Rule {
    metric: String,
    op: Op,
    bound: Bound,
    baseline_selector: Vec<(String, String)>,
    warn_threshold: Option<f64>,
    aggregate: Aggregate,
    window: Option<Duration>,
    selector: Vec<(String, String)>,
    track: Track,
    unit: String,
}

impl Rule {
    fn read(s: &Settings) -> Result<Self, String> {
        let metric = s.text("metric")?.to_string();
        let op: Op = s.text("op")?.parse()?;
        let fixed = s.opt_number("threshold")?;
        let margin = s.opt_number("baseline_margin_percent")?;
        let bound = match (fixed, margin) {
            (Some(t), None) => Bound::Fixed(t),
            (None, Some(m)) if m.is_finite() && m >= 0.0 => Bound::Baseline(m),
            (None, Some(_)) => return Err("`baseline_margin_percent` must be a non-negative number".into()),
            (Some(_), Some(_)) => return Err("give either `threshold` or `baseline_margin_percent`, not both".into()),
            (None, None) => return Err("`threshold` is required (or `baseline_margin_percent` to compare with the baseline)".into()),
        };
        let baseline_selector = s.text_map("baseline_selector")?;
        let warn_threshold = s.opt_number("warn_threshold")?;
        let aggregate = match s.opt_text("aggregate")? {
            Some(a) => a.parse()?,
            None => Aggregate::Avg,
        };
        let window = s.opt_duration("window")?;
        if window == Some(Duration::ZERO) {
            return Err("`window` must be longer than zero".into());
        }
        let selector = s.text_map("selector")?;
        let track = match s.opt_text("track")? {
            None | Some("current") => Track::Current,
            Some("baseline") => Track::Baseline,
            Some(other) => {
                return Err(format!(
                    "unknown track `{other}`: expected current or baseline"
                ));
            }
        };
        let unit = s.opt_text("unit")?.unwrap_or_default().to_string();
        if metric.is_empty() {
            return Err("`metric` must not be empty".into());
        }
        let threshold = match bound {
            Bound::Fixed(t) if !t.is_finite() => {
                return Err("`threshold` must be a finite number".into());
            }
            Bound::Fixed(t) => t,
            Bound::Baseline(_) if op == Op::Eq => {
                return Err("`baseline_margin_percent` needs <, <=, > or >=, not ==".into());
            }
            Bound::Baseline(_) if warn_threshold.is_some() => {
                return Err(
                    "`warn_threshold` cannot be combined with `baseline_margin_percent`".into(),
                );
            }
            Bound::Baseline(_) => 0.0,
        };
        if let Some(warn) = warn_threshold {
            // The warn band lies on the failing side of the threshold.
            let on_failing_side = if op.higher_is_better() {
                warn <= threshold
            } else {
                warn >= threshold
            };
            if op == Op::Eq || !on_failing_side {
                return Err(format!(
                    "`warn_threshold` {warn} must lie beyond `threshold` {threshold} on the failing side of `{op}`"
                ));
            }
        }
        Ok(Self {
            metric,
            op,
            bound,
            baseline_selector,
            warn_threshold,
            aggregate,
            window,
            selector,
            track,
            unit,
        })
    }

    fn subject(&self) -> String {
        let mut s = format!("{} of `{}`", self.aggregate, self.metric);
        if !self.selector.is_empty() {
            let labels: Vec<String> = self
                .selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            s.push_str(&format!(" {{{}}}", labels.join(",")));
        }
        if self.track == Track::Baseline {
            s.push_str(" (baseline)");
        }
        if let Some(w) = self.window {
            s.push_str(&format!(" over {}", humantime::format_duration(w)));
        }
        s
    }

    fn aggregate(
        &self,
        snapshot: &dyn View,
        track: Track,
        selector: &[(String, String)],
    ) -> (Option<f64>, usize) {
        let pairs =
            tollgate_sdk::window_pairs(snapshot, &self.metric, selector, self.window, track);
        (self.aggregate.apply(&pairs), pairs.len())
    }

    fn evaluate(&self, snapshot: &dyn View) -> Finding {
        let (observed, count) = self.aggregate(snapshot, self.track, &self.selector);
        // `metric` tells a chart that observed and threshold are in this
        // metric's units, so it may draw them over its points.
        let mut details = vec![
            Detail {
                key: "metric".into(),
                value: self.metric.clone(),
            },
            Detail {
                key: "points".into(),
                value: count.to_string(),
            },
        ];
        let threshold = match self.bound {
            Bound::Fixed(t) => Some(t),
            Bound::Baseline(margin) => {
                let (base, n) = self.aggregate(snapshot, Track::Baseline, &self.baseline_selector);
                details.push(Detail {
                    key: "baseline_points".into(),
                    value: n.to_string(),
                });
                base.map(|b| {
                    details.push(Detail {
                        key: "baseline".into(),
                        value: short(b),
                    });
                    let widen = b.abs() * margin / 100.0;
                    if self.op.higher_is_better() {
                        b - widen
                    } else {
                        b + widen
                    }
                })
            }
        };
        let (Some(observed), Some(threshold)) = (observed, threshold) else {
            let missing = if observed.is_none() {
                self.subject()
            } else {
                format!("the baseline of `{}`", self.metric)
            };
            return Finding {
                verdict: Verdict::Inconclusive,
                reason: format!("no data: {missing} has no points"),
                observed,
                threshold,
                details,
            };
        };
        let unit = &self.unit;
        let verdict = if self.op.holds(observed, threshold) {
            Verdict::Pass
        } else if self
            .warn_threshold
            .is_some_and(|warn| self.op.holds(observed, warn) || observed == warn)
        {
            Verdict::Warn
        } else {
            Verdict::Fail
        };
        if let Some(warn) = self.warn_threshold {
            details.push(Detail {
                key: "warn_threshold".into(),
                value: format!("{}{unit}", short(warn)),
            });
        }
        let outcome = match verdict {
            Verdict::Pass => "pass",
            Verdict::Warn => "within the warn band",
            _ => "fail",
        };
        let bound = match self.bound {
            Bound::Fixed(_) => format!("{}{unit}", short(threshold)),
            Bound::Baseline(m) => format!(
                "{}{unit} (baseline {} {}%)",
                short(threshold),
                if self.op.higher_is_better() {
                    "−"
                } else {
                    "+"
                },
                short(m)
            ),
        };
        Finding {
            verdict,
            reason: format!(
                "{} = {}{unit}, required {} {bound}: {outcome}",
                self.subject(),
                short(observed),
                self.op,
            ),
            observed: Some(observed),
            threshold: Some(threshold),
            details,
        }
    }
}

/// The gate: one [`Rule`] parsed from the settings, applied to the snapshot.
pub struct Threshold;

impl GateRule for Threshold {
    type Settings = Rule;
    fn settings(s: &Settings) -> Result<Rule, String> {
        Rule::read(s)
    }
    fn judge(rule: &Rule, snapshot: &dyn View) -> Finding {
        rule.evaluate(snapshot)
    }
}

// Exported only in the Wasm build; the native build (tests, clippy) has no
// component exports to link.
#[cfg(target_arch = "wasm32")]
tollgate_sdk::export_gate_rule!(Threshold);

#[cfg(test)]
mod tests {
    use super::*;

    impl Rule {
        fn parse(config: &Config) -> Result<Self, String> {
            tollgate_sdk::rule::validate::<Threshold>(config)
        }
    }
    use tollgate_sdk::gate::{Config, ConfigValue};

    fn cfg(entries: &[(&str, ConfigValue)]) -> Config {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn base() -> Vec<(&'static str, ConfigValue)> {
        vec![
            ("metric", ConfigValue::Text("error_rate".into())),
            ("op", ConfigValue::Text("<".into())),
            ("threshold", ConfigValue::Number(0.001)),
        ]
    }

    #[test]
    fn accepts_a_minimal_rule_with_defaults() {
        let rule = Rule::parse(&cfg(&base())).unwrap();
        assert_eq!(rule.aggregate, Aggregate::Avg);
        assert_eq!(rule.window, None);
        assert_eq!(rule.subject(), "avg of `error_rate`");
    }

    #[test]
    fn refuses_unknown_settings_and_bad_values() {
        let mut c = base();
        c.push(("treshold", ConfigValue::Number(1.0)));
        assert_eq!(
            Rule::parse(&cfg(&c)).err().unwrap(),
            "unknown setting `treshold`; did you mean `threshold`?"
        );
        // Misspelt instead of given: the typo is named beside what it left out.
        let c = vec![
            base()[0].clone(),
            base()[1].clone(),
            ("treshold", ConfigValue::Number(1.0)),
        ];
        assert_eq!(
            Rule::parse(&cfg(&c)).err().unwrap(),
            "`threshold` is required (or `baseline_margin_percent` to compare with the baseline); `treshold` is not a setting: did you mean `threshold`?"
        );
        let mut c = base();
        c.push(("window", ConfigValue::Text("0s".into())));
        assert!(Rule::parse(&cfg(&c)).is_err());
        let mut c = base();
        c[1].1 = ConfigValue::Text("=>".into());
        assert!(
            Rule::parse(&cfg(&c))
                .err()
                .unwrap()
                .contains("unknown comparison")
        );
    }

    #[test]
    fn warn_threshold_must_lie_on_the_failing_side() {
        let mut c = base();
        c.push(("warn_threshold", ConfigValue::Number(0.002)));
        assert!(Rule::parse(&cfg(&c)).is_ok());
        let mut c = base();
        c.push(("warn_threshold", ConfigValue::Number(0.0005)));
        assert!(Rule::parse(&cfg(&c)).is_err());
    }

    #[test]
    fn describes_selector_window_and_track() {
        let mut c = base();
        c.push(("window", ConfigValue::Text("15m".into())));
        c.push(("selector.track", ConfigValue::Text("canary".into())));
        c.push(("track", ConfigValue::Text("baseline".into())));
        let rule = Rule::parse(&cfg(&c)).unwrap();
        assert_eq!(
            rule.subject(),
            "avg of `error_rate` {track=canary} (baseline) over 15m"
        );
    }
}
