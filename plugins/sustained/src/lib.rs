//! The `sustained` trigger: fires when a metric has breached a threshold
//! continuously for at least a given time.
//!
//! **Sustained** is defined precisely as follows. Take the metric's points
//! (pooled across matching series, oldest first); each point stands for the
//! interval since the point before it (a rate sampled every minute covers
//! the minute before the sample; the first point of the series covers the
//! gap to the second). The breach *run* is the unbroken sequence of breaching
//! points that ends with the newest point. The breach began where the run's
//! oldest point's interval begins, and the trigger fires when
//! 1. the newest point lies within `for` of `taken_at` (fresh data), and
//! 2. the newest point breaches, and
//! 3. `taken_at − breach began ≥ for`.
//!
//! A single healthy point resets the run. With one point a minute, `for: 5m`
//! fires on five consecutive breaching points ending at `taken_at`, and not
//! on four.

use std::time::Duration;

use tollgate_sdk::config::Settings;
use tollgate_sdk::rule::{TriggerRule, View};
use tollgate_sdk::stats::{Op, short};
use tollgate_sdk::trigger::{Detail, Fire, Query, Track, TriggerResult, parse_fire};

pub struct Rule {
    metric: String,
    op: Op,
    threshold: f64,
    hold_for: Duration,
    fire: Fire,
    selector: Vec<(String, String)>,
    unit: String,
}

impl Rule {
    fn read(s: &Settings) -> Result<Self, String> {
        let metric = s.text("metric")?.to_string();
        let op: Op = s.opt_text("op")?.unwrap_or(">").parse()?;
        let threshold = s.number("threshold")?;
        let hold_for = s.opt_duration("for")?.ok_or("`for` is required")?;
        let fire = parse_fire(s.opt_text("fire")?.unwrap_or("immediate-rollback"))?;
        let selector = s.text_map("selector")?;
        let unit = s.opt_text("unit")?.unwrap_or_default().to_string();
        if hold_for.is_zero() {
            return Err("`for` must be longer than zero".into());
        }
        if !threshold.is_finite() {
            return Err("`threshold` must be a finite number".into());
        }
        Ok(Self {
            metric,
            op,
            threshold,
            hold_for,
            fire,
            selector,
            unit,
        })
    }

    fn check(&self, snapshot: &dyn View) -> TriggerResult {
        let taken_at = snapshot.taken_at();
        let points = snapshot.points(&Query {
            metric: self.metric.clone(),
            selector: self.selector.clone(),
            window_seconds: None,
            track: Track::Current,
        });
        let need = self.hold_for.as_secs() as i64;
        let unit = &self.unit;
        let condition = format!(
            "`{}` {} {}{unit}",
            self.metric,
            self.op,
            short(self.threshold)
        );
        let quiet = |reason: String, observed: Option<f64>, details: Vec<Detail>| TriggerResult {
            fire: Fire::None,
            reason,
            observed,
            threshold: Some(self.threshold),
            details,
            state: Vec::new(),
        };
        let Some(newest) = points.last() else {
            return quiet(format!("no data for `{}`", self.metric), None, Vec::new());
        };
        if newest.timestamp <= taken_at.saturating_sub(need) {
            return quiet(
                format!(
                    "no data for `{}` in the last {}",
                    self.metric,
                    humantime::format_duration(self.hold_for)
                ),
                None,
                Vec::new(),
            );
        }
        if !self.op.holds(newest.value, self.threshold) {
            return quiet(
                format!(
                    "{condition} does not hold: latest {}{unit}",
                    short(newest.value)
                ),
                Some(newest.value),
                Vec::new(),
            );
        }
        let breaching = points
            .iter()
            .rev()
            .take_while(|p| self.op.holds(p.value, self.threshold))
            .count();
        let first = points.len() - breaching;
        let run_start = points[first].timestamp;
        // The interval the run's first point stands for.
        let interval = match (
            first.checked_sub(1).map(|i| &points[i]),
            points.get(first + 1),
        ) {
            (Some(before), _) => run_start.saturating_sub(before.timestamp),
            (None, Some(after)) => after.timestamp.saturating_sub(run_start),
            (None, None) => 0,
        };
        let lasted = taken_at
            .saturating_sub(run_start.saturating_sub(interval))
            .max(0);
        let run: Vec<f64> = points
            .iter()
            .filter(|p| p.timestamp >= run_start)
            .map(|p| p.value)
            .collect();
        // The run's value closest to the threshold: how bad it was at its best.
        let mildest = match self.op {
            Op::Gt | Op::Ge => run.iter().copied().fold(f64::INFINITY, f64::min),
            Op::Lt | Op::Le => run.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Op::Eq => newest.value,
        };
        let details = vec![
            Detail {
                key: "breaching_for_seconds".into(),
                value: lasted.to_string(),
            },
            Detail {
                key: "required_seconds".into(),
                value: need.to_string(),
            },
            Detail {
                key: "breaching_points".into(),
                value: run.len().to_string(),
            },
        ];
        let lasted_text = humantime::format_duration(Duration::from_secs(lasted as u64));
        if lasted >= need {
            TriggerResult {
                fire: self.fire,
                reason: format!(
                    "{condition} sustained for {lasted_text} (at least {}): latest {}{unit}, mildest {}{unit}",
                    humantime::format_duration(self.hold_for),
                    short(newest.value),
                    short(mildest)
                ),
                observed: Some(newest.value),
                threshold: Some(self.threshold),
                details,
                state: Vec::new(),
            }
        } else {
            quiet(
                format!(
                    "{condition} for {lasted_text}, not yet the {} required: latest {}{unit}",
                    humantime::format_duration(self.hold_for),
                    short(newest.value)
                ),
                Some(newest.value),
                details,
            )
        }
    }
}

/// The trigger: one [`Rule`] parsed from the settings, checked against the snapshot.
pub struct Sustained;

impl TriggerRule for Sustained {
    type Settings = Rule;
    fn settings(s: &Settings) -> Result<Rule, String> {
        Rule::read(s)
    }
    fn check(rule: &Rule, snapshot: &dyn View, _state: &[u8]) -> TriggerResult {
        rule.check(snapshot)
    }
}

#[cfg(target_arch = "wasm32")]
tollgate_sdk::export_trigger_rule!(Sustained);
