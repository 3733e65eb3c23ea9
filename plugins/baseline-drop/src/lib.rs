//! The `baseline-drop` trigger: fires when a canary metric falls too far
//! below the baseline (stable) version's.
//!
//! Both sides are averaged over the same window, `(taken_at − window,
//! taken_at]`; the drop is `(baseline − canary) / baseline`. The trigger fires
//! when the drop is strictly greater than `max_drop_percent` — for the seed's
//! business-metric rule, conversion more than 10% below baseline over 15 m
//! gives `prepare-rollback`. With `direction: rise` it watches for a rise
//! instead (latency, errors).

use std::time::Duration;

use tollgate_sdk::config::Settings;
use tollgate_sdk::rule::{TriggerRule, View};
use tollgate_sdk::stats::{Aggregate, short};
use tollgate_sdk::trigger::{Detail, Fire, Track, TriggerResult, parse_fire};

pub struct Rule {
    metric: String,
    max_change: f64,
    rise: bool,
    window: Duration,
    fire: Fire,
    selector: Vec<(String, String)>,
    baseline_selector: Vec<(String, String)>,
}

impl Rule {
    fn read(s: &Settings) -> Result<Self, String> {
        let metric = s.text("metric")?.to_string();
        let max_change = s.number("max_drop_percent")?;
        let rise = match s.opt_text("direction")? {
            None | Some("drop") => false,
            Some("rise") => true,
            Some(other) => {
                return Err(format!(
                    "unknown direction `{other}`: expected drop or rise"
                ));
            }
        };
        let window = s.opt_duration("window")?.ok_or("`window` is required")?;
        let fire = parse_fire(s.opt_text("fire")?.unwrap_or("prepare-rollback"))?;
        let selector = s.text_map("selector")?;
        let baseline_selector = s.text_map("baseline_selector")?;
        if !(0.0..=100.0).contains(&max_change) && !rise {
            return Err("`max_drop_percent` must be between 0 and 100".into());
        }
        if !max_change.is_finite() || max_change < 0.0 {
            return Err("`max_drop_percent` must be a finite, non-negative number".into());
        }
        if window.is_zero() {
            return Err("`window` must be longer than zero".into());
        }
        Ok(Self {
            metric,
            max_change,
            rise,
            window,
            fire,
            selector,
            baseline_selector,
        })
    }

    fn mean(
        &self,
        snapshot: &dyn View,
        track: Track,
        selector: &[(String, String)],
    ) -> (Option<f64>, usize) {
        let pairs =
            tollgate_sdk::window_pairs(snapshot, &self.metric, selector, Some(self.window), track);
        (Aggregate::Avg.apply(&pairs), pairs.len())
    }

    fn check(&self, snapshot: &dyn View) -> TriggerResult {
        let window = humantime::format_duration(self.window);
        let (canary, n_canary) = self.mean(snapshot, Track::Current, &self.selector);
        let (baseline, n_baseline) = self.mean(snapshot, Track::Baseline, &self.baseline_selector);
        let details = vec![
            Detail {
                key: "canary_points".into(),
                value: n_canary.to_string(),
            },
            Detail {
                key: "baseline_points".into(),
                value: n_baseline.to_string(),
            },
        ];
        let quiet = |reason: String,
                     observed: Option<f64>,
                     threshold: Option<f64>,
                     details: Vec<Detail>| TriggerResult {
            fire: Fire::None,
            reason,
            observed,
            threshold,
            details,
            state: Vec::new(),
        };
        let (Some(canary), Some(baseline)) = (canary, baseline) else {
            return quiet(
                format!(
                    "no data: `{}` needs canary and baseline points in the last {window}",
                    self.metric
                ),
                canary,
                None,
                details,
            );
        };
        if baseline == 0.0 {
            return quiet(
                format!(
                    "baseline `{}` averages 0 over {window}; no relative change",
                    self.metric
                ),
                Some(canary),
                None,
                details,
            );
        }
        let change = if self.rise {
            (canary - baseline) / baseline.abs()
        } else {
            (baseline - canary) / baseline.abs()
        } * 100.0;
        let limit = if self.rise {
            baseline * (1.0 + self.max_change / 100.0)
        } else {
            baseline * (1.0 - self.max_change / 100.0)
        };
        let word = if self.rise { "above" } else { "below" };
        let mut details = details;
        details.push(Detail {
            key: "change_percent".into(),
            value: short(change),
        });
        details.push(Detail {
            key: "baseline".into(),
            value: short(baseline),
        });
        let summary = format!(
            "avg `{}` over {window}: canary {} vs baseline {}, {}% {word} (limit {}%)",
            self.metric,
            short(canary),
            short(baseline),
            short(change.max(0.0)),
            short(self.max_change)
        );
        if change > self.max_change {
            TriggerResult {
                fire: self.fire,
                reason: summary,
                observed: Some(canary),
                threshold: Some(limit),
                details,
                state: Vec::new(),
            }
        } else {
            quiet(summary, Some(canary), Some(limit), details)
        }
    }
}

/// The trigger: one [`Rule`] parsed from the settings, checked against the snapshot.
pub struct BaselineDrop;

impl TriggerRule for BaselineDrop {
    type Settings = Rule;
    fn settings(s: &Settings) -> Result<Rule, String> {
        Rule::read(s)
    }
    fn check(rule: &Rule, snapshot: &dyn View, _state: &[u8]) -> TriggerResult {
        rule.check(snapshot)
    }
}

#[cfg(target_arch = "wasm32")]
tollgate_sdk::export_trigger_rule!(BaselineDrop);
