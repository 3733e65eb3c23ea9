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

use crate::action::{Action, Context};
use crate::config::Settings;
use crate::gate::{Commit, ConfigValue, Finding, Point, Query, Scalar, Series, Track, Verdict};
use crate::stats::Aggregate;
use crate::trigger::TriggerResult;

/// Read access to a snapshot: the host's (in a plugin) or a
/// [`MemorySnapshot`] (in a unit test). Windows are `(taken_at − w, taken_at]`.
pub trait View {
    fn service(&self) -> String;
    fn version(&self) -> String;
    /// When the telemetry was observed, unix seconds: the caller's clock,
    /// which positions the metric windows.
    fn taken_at(&self) -> i64;
    /// When the decision is made, unix seconds: the host's clock (the
    /// `decided_at` a replay reuses), never the caller's. Judge "is it
    /// allowed now?" (release windows, freezes) at this time.
    fn now(&self) -> i64;
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
    fn now(&self) -> i64 {
        crate::gate::now()
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
    /// The decision time [`View::now`] returns; a test that sets none
    /// decides at `taken_at`.
    pub decided_at: Option<i64>,
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

    /// Decides at `decided_at` (unix seconds) rather than at `taken_at`.
    pub fn with_decided_at(mut self, decided_at: i64) -> Self {
        self.decided_at = Some(decided_at);
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
    fn now(&self) -> i64 {
        self.decided_at.unwrap_or(self.taken_at)
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

/// A rollback trigger: settings read once, then a check per snapshot with
/// the state the host kept from the previous check. The trigger keeps
/// nothing itself; what it returns in `state` is handed to the next check.
pub trait TriggerRule {
    /// The settings, typed.
    type Settings;
    /// Reads the settings from the policy's `with:`. Keys not read are
    /// refused afterwards, naming them.
    fn settings(settings: &Settings) -> Result<Self::Settings, String>;
    /// Checks the snapshot; `state` is empty on the first check.
    fn check(settings: &Self::Settings, snapshot: &dyn View, state: &[u8]) -> TriggerResult;
}

/// A deployment action: settings read once, then a plan for the stage's
/// outcome. An error is reported as the action's failure.
pub trait ActionRule {
    /// The settings, typed.
    type Settings;
    /// Reads the settings from the policy's `with:`. Keys not read are
    /// refused afterwards, naming them.
    fn settings(settings: &Settings) -> Result<Self::Settings, String>;
    /// Plans the next steps.
    fn plan(
        settings: &Self::Settings,
        snapshot: &dyn View,
        context: &Context,
    ) -> Result<Vec<Action>, String>;
}

/// Reads settings with `read`, then refuses keys it did not read: what
/// the host does with every plugin's config at load.
fn read_settings<T>(
    config: &[(String, ConfigValue)],
    read: impl FnOnce(&Settings) -> Result<T, String>,
) -> Result<T, String> {
    let s = Settings::new(config);
    let settings = read(&s).map_err(|e| format!("{e}{}", s.typo_hint()))?;
    s.finish()?;
    Ok(settings)
}

fn owned(config: &[(&str, ConfigValue)]) -> Vec<(String, ConfigValue)> {
    config
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect()
}

/// Validates a trigger's `config` as the host would at load.
pub fn validate_trigger<R: TriggerRule>(
    config: &[(String, ConfigValue)],
) -> Result<R::Settings, String> {
    read_settings(config, R::settings)
}

/// Validates an action's `config` as the host would at load.
pub fn validate_action<R: ActionRule>(
    config: &[(String, ConfigValue)],
) -> Result<R::Settings, String> {
    read_settings(config, R::settings)
}

/// Runs a trigger as the host would, for unit tests: `state` is what the
/// previous check returned (empty at first).
pub fn check<R: TriggerRule>(
    config: &[(&str, ConfigValue)],
    snapshot: &dyn View,
    state: &[u8],
) -> Result<TriggerResult, String> {
    let settings = validate_trigger::<R>(&owned(config))?;
    Ok(R::check(&settings, snapshot, state))
}

/// Runs an action as the host would, for unit tests.
pub fn plan<R: ActionRule>(
    config: &[(&str, ConfigValue)],
    snapshot: &dyn View,
    context: &Context,
) -> Result<Vec<Action>, String> {
    let settings = validate_action::<R>(&owned(config))?;
    R::plan(&settings, snapshot, context)
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
    read_settings(config, R::settings)
}

/// Runs a rule as the host would, over `config` and `snapshot`: for unit
/// tests in plain `cargo test`. Numbers, text and booleans convert with
/// `.into()`.
pub fn judge<R: GateRule>(
    config: &[(&str, ConfigValue)],
    snapshot: &dyn View,
) -> Result<Finding, String> {
    let settings = validate::<R>(&owned(config))?;
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

/// Exports a [`TriggerRule`] as the plugin's trigger. Settings that fail to
/// parse at check time (the host checks them at load) raise an alert and
/// keep the state.
#[macro_export]
macro_rules! export_trigger_rule {
    ($rule:ty) => {
        struct __TollgateTriggerRule;

        impl $crate::trigger::Guest for __TollgateTriggerRule {
            fn validate_config(config: $crate::trigger::Config) -> ::core::result::Result<(), String> {
                $crate::rule::validate_trigger::<$rule>(&config).map(|_| ())
            }

            fn check(
                config: $crate::trigger::Config,
                snapshot: &$crate::trigger::Snapshot,
                state: ::std::vec::Vec<u8>,
            ) -> $crate::trigger::TriggerResult {
                match $crate::rule::validate_trigger::<$rule>(&config) {
                    Ok(settings) => {
                        <$rule as $crate::rule::TriggerRule>::check(&settings, snapshot, &state)
                    }
                    Err(e) => $crate::trigger::invalid_config(e, state),
                }
            }
        }

        $crate::trigger::export_trigger!(__TollgateTriggerRule with_types_in $crate::trigger);
    };
}

/// Exports an [`ActionRule`] as the plugin's action.
#[macro_export]
macro_rules! export_action_rule {
    ($rule:ty) => {
        struct __TollgateActionRule;

        impl $crate::action::Guest for __TollgateActionRule {
            fn validate_config(config: $crate::action::Config) -> ::core::result::Result<(), String> {
                $crate::rule::validate_action::<$rule>(&config).map(|_| ())
            }

            fn plan(
                config: $crate::action::Config,
                snapshot: &$crate::action::Snapshot,
                context: $crate::action::Context,
            ) -> ::core::result::Result<::std::vec::Vec<$crate::action::Action>, String> {
                let settings = $crate::rule::validate_action::<$rule>(&config)?;
                <$rule as $crate::rule::ActionRule>::plan(&settings, snapshot, &context)
            }
        }

        $crate::action::export_action!(__TollgateActionRule with_types_in $crate::action);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fires after two breaches in a row, counting them in its state.
    struct TwoInARow;

    impl TriggerRule for TwoInARow {
        type Settings = f64;
        fn settings(s: &Settings) -> Result<f64, String> {
            s.number("max")
        }
        fn check(max: &f64, snapshot: &dyn View, state: &[u8]) -> TriggerResult {
            let breached = snapshot.last("error_rate").is_some_and(|v| v > *max);
            let count = if breached {
                state.first().copied().unwrap_or(0).saturating_add(1)
            } else {
                0
            };
            TriggerResult {
                fire: if count >= 2 {
                    crate::trigger::Fire::ImmediateRollback
                } else {
                    crate::trigger::Fire::None
                },
                reason: format!("{count} breach(es) in a row"),
                observed: None,
                threshold: Some(*max),
                details: Vec::new(),
                state: vec![count],
            }
        }
    }

    /// Promotes on a pass, holds otherwise.
    struct PromoteOnPass;

    impl ActionRule for PromoteOnPass {
        type Settings = ();
        fn settings(_: &Settings) -> Result<(), String> {
            Ok(())
        }
        fn plan(_: &(), _: &dyn View, context: &Context) -> Result<Vec<Action>, String> {
            Ok(match context.outcome {
                crate::action::Outcome::Pass => vec![Action::Promote],
                _ => vec![Action::Hold(format!(
                    "stage `{}` did not pass",
                    context.stage
                ))],
            })
        }
    }

    #[test]
    fn a_trigger_rule_carries_its_state_from_check_to_check() {
        let bad = MemorySnapshot::new(100).with_value("error_rate", 0.5);
        let first = check::<TwoInARow>(&[("max", 0.1.into())], &bad, &[]).unwrap();
        assert_eq!(first.fire, crate::trigger::Fire::None);
        let second = check::<TwoInARow>(&[("max", 0.1.into())], &bad, &first.state).unwrap();
        assert_eq!(second.fire, crate::trigger::Fire::ImmediateRollback);
        assert_eq!(second.reason, "2 breach(es) in a row");
        assert_eq!(
            check::<TwoInARow>(&[("max", 0.1.into()), ("maxx", 1.0.into())], &bad, &[]).err(),
            Some("unknown setting `maxx`; did you mean `max`?".to_string())
        );
    }

    #[test]
    fn an_action_rule_plans_from_the_context() {
        let context = Context {
            stage: "canary".into(),
            stages: Vec::new(),
            elapsed_seconds: None,
            outcome: crate::action::Outcome::Warning,
            trigger: None,
        };
        let planned = plan::<PromoteOnPass>(&[], &MemorySnapshot::new(0), &context).unwrap();
        assert_eq!(
            planned,
            [Action::Hold("stage `canary` did not pass".into())]
        );
        assert!(
            plan::<PromoteOnPass>(&[("x", 1.0.into())], &MemorySnapshot::new(0), &context).is_err()
        );
    }

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
