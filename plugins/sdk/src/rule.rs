//! Write the rule, not the bindings: a gate is a [`GateRule`] — its typed
//! settings and a judgement over a [`View`] of the snapshot — exported with
//! [`export_gate_rule!`](crate::export_gate_rule). Because the rule sees a
//! `View`, not the host resource, it can be unit-tested in plain `cargo
//! test` over a [`MemorySnapshot`], without Wasm:
//!
//! ```
//! use tollgate_sdk::config::Settings;
//! use tollgate_sdk::gate::{Finding, Verdict};
//! use tollgate_sdk::rule::{GateRule, MemorySnapshot, View, finding, judge};
//!
//! struct MinCoverage;
//!
//! impl GateRule for MinCoverage {
//!     type Settings = f64;
//!     fn settings(s: &Settings) -> Result<f64, String> {
//!         s.number("min")
//!     }
//!     fn judge(min: &f64, snapshot: &dyn View) -> Finding {
//!         match snapshot.last("test_coverage_percent") {
//!             None => finding(Verdict::Inconclusive, "no coverage", None, Some(*min)),
//!             Some(v) if v >= *min => finding(Verdict::Pass, format!("{v} >= {min}"), Some(v), Some(*min)),
//!             Some(v) => finding(Verdict::Fail, format!("{v} < {min}"), Some(v), Some(*min)),
//!         }
//!     }
//! }
//!
//! let snapshot = MemorySnapshot::new(1_764_237_600).with_value("test_coverage_percent", 79.5);
//! let found = judge::<MinCoverage>(&[("min", 80.0.into())], &snapshot).unwrap();
//! assert_eq!(found.verdict, Verdict::Fail);
//! ```
//!
//! In the plugin crate, `tollgate_sdk::export_gate_rule!(MinCoverage);`
//! exports it.

use std::time::Duration;

use crate::config::Settings;
use crate::gate::{Commit, ConfigValue, Finding, Point, Query, Scalar, Series, Track, Verdict};
use crate::stats::Aggregate;

/// Read access to a snapshot: the host's (in a plugin) or a
/// [`MemorySnapshot`] (in a unit test). Windows are `(taken_at − w, taken_at]`.
pub trait View {
    fn service(&self) -> String;
    fn version(&self) -> String;
    /// The snapshot's time, unix seconds: the plugin's clock.
    fn taken_at(&self) -> i64;
    /// Matching series, each with only its windowed points.
    fn series(&self, query: &Query) -> Vec<Series>;
    /// Matching points pooled across series, oldest first.
    fn points(&self, query: &Query) -> Vec<Point>;
    fn attribute(&self, key: &str) -> Option<String>;
    fn commits(&self) -> Vec<Commit>;

    /// The current track's values of `metric` within `window`, oldest first.
    fn values(&self, metric: &str, window: Option<Duration>) -> Vec<f64> {
        self.points(&Query {
            metric: metric.to_string(),
            selector: Vec::new(),
            window_seconds: window.map(|w| w.as_secs()),
            track: Track::Current,
        })
        .iter()
        .map(|p| p.value)
        .collect()
    }

    /// The newest value of `metric`.
    fn last(&self, metric: &str) -> Option<f64> {
        self.values(metric, None).last().copied()
    }

    /// `metric` over `window`, aggregated; `None` without points.
    fn aggregate(&self, metric: &str, how: Aggregate, window: Option<Duration>) -> Option<f64> {
        let pairs: Vec<(i64, f64)> = self
            .points(&Query {
                metric: metric.to_string(),
                selector: Vec::new(),
                window_seconds: window.map(|w| w.as_secs()),
                track: Track::Current,
            })
            .iter()
            .map(|p| (p.timestamp, p.value))
            .collect();
        how.apply(&pairs)
    }
}

impl View for crate::gate::Snapshot {
    fn service(&self) -> String {
        crate::gate::Snapshot::service(self)
    }
    fn version(&self) -> String {
        crate::gate::Snapshot::version(self)
    }
    fn taken_at(&self) -> i64 {
        crate::gate::Snapshot::taken_at(self)
    }
    fn series(&self, query: &Query) -> Vec<Series> {
        crate::gate::Snapshot::series(self, query)
    }
    fn points(&self, query: &Query) -> Vec<Point> {
        crate::gate::Snapshot::points(self, query)
    }
    fn attribute(&self, key: &str) -> Option<String> {
        crate::gate::Snapshot::attribute(self, key)
    }
    fn commits(&self) -> Vec<Commit> {
        crate::gate::Snapshot::commits(self)
    }
}

/// A snapshot held in memory, for unit tests of rules, with the host's
/// selection and window semantics.
#[derive(Debug, Clone, Default)]
pub struct MemorySnapshot {
    pub service: String,
    pub version: String,
    pub taken_at: i64,
    pub metrics: Vec<Series>,
    pub baseline: Vec<Series>,
    pub attributes: Vec<(String, String)>,
    pub commits: Vec<Commit>,
}

impl MemorySnapshot {
    /// An empty snapshot taken at `taken_at` (unix seconds).
    pub fn new(taken_at: i64) -> Self {
        Self {
            service: "service".into(),
            version: "1.0.0".into(),
            taken_at,
            ..Self::default()
        }
    }

    /// Adds one point of `metric` at `taken_at`.
    pub fn with_value(self, metric: &str, value: f64) -> Self {
        let at = self.taken_at;
        self.with_points(metric, &[(at, value)])
    }

    /// Adds a series of `metric` with these `(unix seconds, value)` points.
    pub fn with_points(mut self, metric: &str, points: &[(i64, f64)]) -> Self {
        self.metrics.push(series(metric, points));
        self
    }

    /// Adds a baseline series of `metric`.
    pub fn with_baseline(mut self, metric: &str, points: &[(i64, f64)]) -> Self {
        self.baseline.push(series(metric, points));
        self
    }

    /// Sets an attribute.
    pub fn with_attribute(mut self, key: &str, value: &str) -> Self {
        self.attributes.push((key.into(), value.into()));
        self
    }
}

fn series(metric: &str, points: &[(i64, f64)]) -> Series {
    Series {
        name: metric.into(),
        labels: Vec::new(),
        points: points
            .iter()
            .map(|&(timestamp, value)| Point { timestamp, value })
            .collect(),
    }
}

impl View for MemorySnapshot {
    fn service(&self) -> String {
        self.service.clone()
    }
    fn version(&self) -> String {
        self.version.clone()
    }
    fn taken_at(&self) -> i64 {
        self.taken_at
    }
    fn series(&self, query: &Query) -> Vec<Series> {
        let set = match query.track {
            Track::Current => &self.metrics,
            Track::Baseline => &self.baseline,
        };
        let from = query.window_seconds.map(|w| {
            self.taken_at
                .saturating_sub(i64::try_from(w).unwrap_or(i64::MAX))
        });
        set.iter()
            .filter(|s| s.name == query.metric)
            .filter(|s| {
                query
                    .selector
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|s| Series {
                name: s.name.clone(),
                labels: s.labels.clone(),
                points: s
                    .points
                    .iter()
                    .filter(|p| {
                        p.timestamp <= self.taken_at && from.is_none_or(|f| p.timestamp > f)
                    })
                    .copied()
                    .collect(),
            })
            .collect()
    }
    fn points(&self, query: &Query) -> Vec<Point> {
        let mut points: Vec<Point> = self
            .series(query)
            .into_iter()
            .flat_map(|s| s.points)
            .collect();
        points.sort_by_key(|p| p.timestamp);
        points
    }
    fn attribute(&self, key: &str) -> Option<String> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
    fn commits(&self) -> Vec<Commit> {
        self.commits.clone()
    }
}

/// A quality gate: settings read once, then a judgement per snapshot.
pub trait GateRule {
    /// The settings, typed.
    type Settings;
    /// Reads the settings from the policy's `with:`. Keys not read are
    /// refused afterwards, naming them.
    fn settings(settings: &Settings) -> Result<Self::Settings, String>;
    /// Judges the snapshot.
    fn judge(settings: &Self::Settings, snapshot: &dyn View) -> Finding;
}

/// A finding without details.
pub fn finding(
    verdict: Verdict,
    reason: impl Into<String>,
    observed: Option<f64>,
    threshold: Option<f64>,
) -> Finding {
    Finding {
        verdict,
        reason: reason.into(),
        observed,
        threshold,
        details: Vec::new(),
    }
}

/// Validates `config` as the host would at load: the rule's settings, then
/// no unknown keys.
pub fn validate<R: GateRule>(config: &[(String, ConfigValue)]) -> Result<R::Settings, String> {
    let s = Settings::new(config);
    let settings = R::settings(&s)?;
    s.finish()?;
    Ok(settings)
}

/// Runs a rule as the host would, over `config` and `snapshot`: for unit
/// tests in plain `cargo test`. Numbers, text and booleans convert with
/// `.into()`.
pub fn judge<R: GateRule>(
    config: &[(&str, ConfigValue)],
    snapshot: &dyn View,
) -> Result<Finding, String> {
    let config: Vec<(String, ConfigValue)> = config
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    let settings = validate::<R>(&config)?;
    Ok(R::judge(&settings, snapshot))
}

impl From<f64> for ConfigValue {
    fn from(v: f64) -> Self {
        Self::Number(v)
    }
}

impl From<i64> for ConfigValue {
    fn from(v: i64) -> Self {
        Self::Integer(v)
    }
}

impl From<bool> for ConfigValue {
    fn from(v: bool) -> Self {
        Self::Boolean(v)
    }
}

impl From<&str> for ConfigValue {
    fn from(v: &str) -> Self {
        Self::Text(v.to_string())
    }
}

impl From<&[&str]> for ConfigValue {
    fn from(v: &[&str]) -> Self {
        Self::List(v.iter().map(|s| Scalar::Text((*s).to_string())).collect())
    }
}

/// Exports a [`GateRule`] as the plugin's gate: `validate-config` reads the
/// settings and refuses unknown keys, `evaluate` judges.
#[macro_export]
macro_rules! export_gate_rule {
    ($rule:ty) => {
        struct __TollgateGateRule;

        impl $crate::gate::Guest for __TollgateGateRule {
            fn validate_config(config: $crate::gate::Config) -> ::core::result::Result<(), String> {
                $crate::rule::validate::<$rule>(&config).map(|_| ())
            }

            fn evaluate(
                config: $crate::gate::Config,
                snapshot: &$crate::gate::Snapshot,
            ) -> $crate::gate::Finding {
                match $crate::rule::validate::<$rule>(&config) {
                    Ok(settings) => <$rule as $crate::rule::GateRule>::judge(&settings, snapshot),
                    Err(e) => $crate::gate::invalid_config(e),
                }
            }
        }

        $crate::gate::export_gate!(__TollgateGateRule with_types_in $crate::gate);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_snapshot_windows_and_selects_as_the_host_does() {
        let s = MemorySnapshot::new(1000)
            .with_points("m", &[(700, 1.0), (800, 2.0), (1000, 3.0), (1100, 9.0)])
            .with_points("m", &[(900, 4.0)]);
        let q = |w| Query {
            metric: "m".into(),
            selector: Vec::new(),
            window_seconds: w,
            track: Track::Current,
        };
        let v = |w| -> Vec<f64> { s.points(&q(w)).iter().map(|p| p.value).collect() };
        assert_eq!(v(None), [1.0, 2.0, 4.0, 3.0], "no point after taken_at");
        assert_eq!(v(Some(200)), [4.0, 3.0], "(taken_at - w, taken_at]");
        assert_eq!(
            s.aggregate("m", Aggregate::Max, Some(Duration::from_secs(300))),
            Some(4.0)
        );
        assert_eq!(s.last("absent"), None);
    }
}
