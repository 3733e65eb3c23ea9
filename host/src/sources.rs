//! Telemetry sources: what turns the numbers a team already has into a
//! snapshot. Prometheus queries declared in the policy, CI report files,
//! ad-hoc `--metric` values and an explicit snapshot are merged into one
//! [`Snapshot`], and the decision carries [`Evidence`] of what was read.
//!
//! Precedence, strongest first, for series of the same name and track:
//! `--metric`, the explicit snapshot, report files, Prometheus.

pub mod exchange;
pub mod operation;
pub mod plugin_source;
pub mod prometheus;
mod query;
pub(crate) mod reports;
pub mod settings;
pub mod sigv4;
pub(crate) mod template;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use self::query::{MAX_RESOLUTION, StageWindow, query_policy, query_source};

use self::exchange::RequestEvidence;
use self::plugin_source::{PluginQueryError, PluginSource};
use self::prometheus::{Prometheus, QueryError};
use self::reports::ReportKind;
use crate::policy::Policy;
use crate::snapshot::{Point, Series, Snapshot};

/// Window queried when neither the metric nor the stage declares one.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 60);

/// A source could not be read; the evaluation does not run. It is never a
/// verdict: a missing Prometheus must not promote, nor roll back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("cannot query Prometheus at {url} for metric `{metric}` ({track}): {cause}")]
    Query {
        url: String,
        metric: String,
        track: &'static str,
        cause: QueryError,
    },
    #[error("cannot query source `{name}` at {url} for metric `{metric}` ({track}): {cause}")]
    Plugin {
        name: String,
        url: String,
        metric: String,
        track: &'static str,
        cause: PluginQueryError,
    },
    /// A metric names a source nobody configured.
    #[error("metric `{metric}` is read from source `{name}`, which is not configured{hint}")]
    UnknownSource {
        metric: String,
        name: String,
        hint: &'static str,
    },
    #[error("metric `{metric}`: {message}")]
    Template { metric: String, message: String },
    /// The window holds more steps than Prometheus answers for one series.
    #[error(
        "metric `{metric}`: a {window} window every {step} is {points} points per series, over Prometheus's {MAX_RESOLUTION}; use a longer `step`"
    )]
    Resolution {
        metric: String,
        window: String,
        step: String,
        points: u64,
    },
    #[error("report `{file}`: {message}")]
    Report { file: String, message: String },
    /// A source was given but no policy says what to query.
    #[error("querying a source needs a policy, whose `metrics:` say what to query")]
    NoPolicy,
    /// The policy has nothing to query.
    #[error("policy `{policy}` declares no `metrics:` to query")]
    NoMetrics { policy: String },
    /// The queries' `${service}` is unknown.
    #[error("querying a source needs the service (the `${{service}}` of the policy's queries)")]
    NoService,
    /// The service or version to query for is not a valid name.
    #[error("`{path}` {message}")]
    InvalidName { path: String, message: String },
}

impl SourceError {
    /// Whether the source was unreachable (timeout, refused, 5xx) rather
    /// than answering badly.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Query {
                cause: QueryError::Unavailable(_),
                ..
            } | Self::Plugin {
                cause: PluginQueryError::Unavailable(_),
                ..
            }
        )
    }
}

/// One query as it was sent, and what came back.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct QueryEvidence {
    pub metric: String,
    /// `current` (the snapshot's `metrics`) or `baseline`.
    pub track: String,
    /// The query after templating.
    pub query: String,
    pub start: i64,
    pub end: i64,
    pub step_seconds: u64,
    pub series: usize,
    pub points: usize,
    /// The source plugin that ran the query; none for the native Prometheus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The requests the source plugin had the host send, without credentials.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<RequestEvidence>,
}

/// Where queries go: the native Prometheus for `prometheus:` metrics, and
/// source plugins by name for `source:` metrics.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub prometheus: Option<Prometheus>,
    pub plugins: BTreeMap<String, PluginSource>,
}

impl Sources {
    /// Only the native Prometheus.
    pub fn prometheus(prometheus: Option<Prometheus>) -> Self {
        Self {
            prometheus,
            plugins: BTreeMap::new(),
        }
    }

    /// Whether there is nothing to query.
    pub fn is_empty(&self) -> bool {
        self.prometheus.is_none() && self.plugins.is_empty()
    }
}

/// One report file as it was read.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ReportEvidence {
    pub kind: ReportKind,
    pub file: String,
    pub digest: crate::base::digest::Digest,
    pub metrics: BTreeMap<String, f64>,
}

/// What the snapshot was built from, for the decision record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Evidence {
    /// The Prometheus base URL, without credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<String>,
    /// Each source plugin queried, by name: its base URL without credentials.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, String>,
    /// The end of every query window, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queried_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queries: Vec<QueryEvidence>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<ReportEvidence>,
    /// Values given on the command line or in the request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, f64>,
    /// Attributes given on the command line (`--attribute`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

/// What a snapshot is assembled from.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// An explicit snapshot; its series win over reports and queries.
    pub snapshot: Option<Snapshot>,
    pub service: Option<String>,
    pub version: Option<String>,
    /// The evaluation time; else the snapshot's `taken_at`, else now.
    pub at: Option<i64>,
    pub reports: Vec<(ReportKind, PathBuf)>,
    /// `name=value` pairs; they win over everything else.
    pub values: Vec<(String, f64)>,
    /// `key=value` attributes; they win over the explicit snapshot's.
    pub attributes: Vec<(String, String)>,
}

impl Inputs {
    /// Whether anything at all was given.
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none()
            && self.reports.is_empty()
            && self.values.is_empty()
            && self.attributes.is_empty()
    }
}

/// A value given for a source (`--metric`, `--attribute`, `--report`, a
/// time) that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("`{arg}`: expected {shape}")]
    Shape { arg: String, shape: &'static str },
    #[error("`{arg}`: the {what} name is empty")]
    EmptyName { arg: String, what: &'static str },
    #[error("`{arg}`: `{value}` is not a finite number")]
    NotFinite { arg: String, value: String },
    #[error("`{text}` is neither unix seconds nor RFC 3339: {cause}")]
    Time {
        text: String,
        cause: time::error::Parse,
    },
    #[error(transparent)]
    ReportKind(#[from] reports::UnknownReportKind),
}

/// Parses `KEY=VALUE` for `--attribute`.
pub fn parse_attribute(arg: &str) -> Result<(String, String), ArgError> {
    let (key, value) = arg.split_once('=').ok_or_else(|| ArgError::Shape {
        arg: arg.to_string(),
        shape: "KEY=VALUE, e.g. base_image=python:3.12",
    })?;
    if key.is_empty() {
        return Err(ArgError::EmptyName {
            arg: arg.to_string(),
            what: "attribute",
        });
    }
    Ok((key.to_string(), value.to_string()))
}

/// Parses `NAME=VALUE` for `--metric`.
pub fn parse_metric(arg: &str) -> Result<(String, f64), ArgError> {
    let (name, value) = arg.split_once('=').ok_or_else(|| ArgError::Shape {
        arg: arg.to_string(),
        shape: "NAME=VALUE",
    })?;
    let value: f64 = value
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| ArgError::NotFinite {
            arg: arg.to_string(),
            value: value.to_string(),
        })?;
    if name.is_empty() {
        return Err(ArgError::EmptyName {
            arg: arg.to_string(),
            what: "metric",
        });
    }
    Ok((name.to_string(), value))
}

/// Parses `KIND=FILE` for `--report`.
pub fn parse_report(arg: &str) -> Result<(ReportKind, PathBuf), ArgError> {
    let (kind, file) = arg.split_once('=').ok_or_else(|| ArgError::Shape {
        arg: arg.to_string(),
        shape: "KIND=FILE, e.g. coverage=lcov.info",
    })?;
    Ok((kind.parse()?, PathBuf::from(file)))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Unix seconds or RFC 3339, as every time flag and parameter takes it.
pub fn parse_time(s: &str) -> Result<i64, ArgError> {
    s.parse::<i64>().or_else(|_| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map(|t| t.unix_timestamp())
            .map_err(|cause| ArgError::Time {
                text: s.to_string(),
                cause,
            })
    })
}

/// The time the snapshot describes: `at`, else the explicit snapshot's
/// `taken_at`, else now.
pub fn evaluation_time(inputs: &Inputs) -> i64 {
    inputs
        .at
        .or(inputs.snapshot.as_ref().map(|s| s.taken_at))
        .unwrap_or_else(now)
}

/// Reads every report, in order.
pub fn read_reports(reports: &[(ReportKind, PathBuf)]) -> Result<Vec<ReportEvidence>, SourceError> {
    reports
        .iter()
        .map(|(kind, path)| {
            let (values, digest) = reports::read(*kind, path).map_err(|e| SourceError::Report {
                file: path.display().to_string(),
                message: e.0,
            })?;
            Ok(ReportEvidence {
                kind: *kind,
                file: path.display().to_string(),
                digest,
                metrics: values
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            })
        })
        .collect()
}

/// Replaces the series named `name` in `set` by one single-point series.
fn put_value(set: &mut Vec<Series>, name: &str, value: f64, at: i64) {
    set.retain(|s| s.name != name);
    set.push(Series {
        name: name.to_string(),
        labels: BTreeMap::new(),
        points: vec![Point {
            timestamp: at,
            value,
        }],
    });
}

/// Replaces every series in `set` whose name appears in `winners`.
fn overlay(set: &mut Vec<Series>, winners: Vec<Series>) {
    let names: std::collections::BTreeSet<String> =
        winners.iter().map(|s| s.name.clone()).collect();
    set.retain(|s| !names.contains(&s.name));
    set.extend(winners);
}

/// Gathers the snapshot `inputs` describe for `stage` of `policy`: the
/// policy's `metrics:` queried from `sources` over the stage's window
/// (when there are any), report files read, and the explicit
/// snapshot and values laid over them. It answers with the evidence of what
/// was read, or `None` for a snapshot given whole and nothing else. Every
/// caller (the CLI, the server, backtesting) builds its snapshot here.
pub async fn gather(
    sources: &Sources,
    policy: Option<&Policy>,
    stage: Option<&str>,
    inputs: Inputs,
) -> Result<(Snapshot, Option<Evidence>), SourceError> {
    if sources.is_empty()
        && inputs.reports.is_empty()
        && inputs.values.is_empty()
        && inputs.attributes.is_empty()
        && let Some(s) = inputs.snapshot
    {
        return Ok((s, None));
    }
    let at = evaluation_time(&inputs);
    let mut evidence = Evidence {
        values: inputs.values.iter().cloned().collect(),
        attributes: inputs.attributes.iter().cloned().collect(),
        ..Evidence::default()
    };
    let queried = if sources.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        let policy = policy.ok_or(SourceError::NoPolicy)?;
        if policy.metrics.is_empty() {
            return Err(SourceError::NoMetrics {
                policy: policy.name.to_string(),
            });
        }
        let explicit = inputs.snapshot.as_ref();
        let service = inputs
            .service
            .clone()
            .or_else(|| explicit.map(|s| s.service.clone()))
            .filter(|s| !s.is_empty())
            .ok_or(SourceError::NoService)?;
        let version = inputs
            .version
            .clone()
            .or_else(|| explicit.map(|s| s.version.clone()))
            .unwrap_or_default();
        crate::snapshot::check_names(&service, &version).map_err(|e| SourceError::InvalidName {
            path: e.path.to_string(),
            message: e.message.to_string(),
        })?;
        let found = policy.stage(stage);
        let window = StageWindow {
            name: found.map_or(stage.unwrap_or_default(), |s| s.name.as_str()),
            duration: found.and_then(|s| s.duration),
        };
        let (current, baseline, queries) =
            query_policy(sources, policy, window, &service, &version, at).await?;
        if queries.iter().any(|q| q.source.is_none()) {
            evidence.prometheus = sources.prometheus.as_ref().map(Prometheus::shown_url);
        }
        for q in &queries {
            if let Some(name) = &q.source
                && let Some(plugin) = sources.plugins.get(name)
            {
                evidence.sources.insert(name.clone(), plugin.shown_url());
            }
        }
        evidence.queried_at = Some(at);
        evidence.queries = queries;
        (current, baseline)
    };
    evidence.reports = read_reports(&inputs.reports)?;
    let snapshot = assemble(inputs, at, queried, &evidence.reports);
    Ok((snapshot, Some(evidence)))
}

/// Merges queried series, reports, an explicit snapshot and values into one
/// snapshot taken at `at`, with the precedence this module's doc gives.
pub fn assemble(
    inputs: Inputs,
    at: i64,
    queried: (Vec<Series>, Vec<Series>),
    reports: &[ReportEvidence],
) -> Snapshot {
    let (mut metrics, mut baseline) = queried;
    for report in reports {
        for (name, value) in &report.metrics {
            put_value(&mut metrics, name, *value, at);
        }
    }
    let mut attributes = BTreeMap::new();
    let mut commits = Vec::new();
    let (mut service, mut version) = (String::new(), String::new());
    if let Some(explicit) = inputs.snapshot {
        overlay(&mut metrics, explicit.metrics);
        overlay(&mut baseline, explicit.baseline);
        attributes = explicit.attributes;
        commits = explicit.commits;
        service = explicit.service;
        version = explicit.version;
    }
    for (name, value) in &inputs.values {
        put_value(&mut metrics, name, *value, at);
    }
    attributes.extend(inputs.attributes);
    Snapshot {
        service: inputs.service.unwrap_or(service),
        version: inputs.version.unwrap_or(version),
        taken_at: at,
        metrics,
        baseline,
        attributes,
        commits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, v: f64) -> Series {
        Series {
            name: name.into(),
            labels: BTreeMap::new(),
            points: vec![Point {
                timestamp: 1,
                value: v,
            }],
        }
    }

    #[test]
    fn explicit_values_win_over_reports_and_queries() {
        let mut explicit = Snapshot::empty();
        explicit.metrics = vec![series("error_rate", 0.5)];
        explicit.service = "from-file".into();
        let report = ReportEvidence {
            kind: ReportKind::Coverage,
            file: "lcov.info".into(),
            digest: crate::base::digest::Digest::of(b""),
            metrics: [("test_coverage_percent".to_string(), 70.0)].into(),
        };
        let inputs = Inputs {
            snapshot: Some(explicit),
            values: vec![("test_coverage_percent".into(), 91.0)],
            ..Inputs::default()
        };
        let snap = assemble(
            inputs,
            100,
            (
                vec![series("error_rate", 9.0), series("latency", 1.0)],
                vec![],
            ),
            &[report],
        );
        let value = |n: &str| {
            snap.metrics
                .iter()
                .find(|s| s.name == n)
                .map(|s| s.points[0].value)
        };
        assert_eq!(value("error_rate"), Some(0.5), "the file beats the query");
        assert_eq!(value("latency"), Some(1.0));
        assert_eq!(value("test_coverage_percent"), Some(91.0), "--metric wins");
        assert_eq!(snap.service, "from-file");
        assert_eq!(snap.taken_at, 100);
    }

    #[test]
    fn metric_and_report_arguments_are_checked() {
        assert_eq!(parse_metric("a=1.5"), Ok(("a".into(), 1.5)));
        assert_eq!(
            parse_attribute("base_image=registry.example.com/a=b:1"),
            Ok(("base_image".into(), "registry.example.com/a=b:1".into()))
        );
        assert!(parse_attribute("=x").is_err());
        assert!(parse_attribute("x").is_err());
        assert!(parse_metric("a=NaN").is_err());
        assert!(parse_metric("a").is_err());
        assert!(parse_report("coverage=lcov.info").is_ok());
        assert!(
            parse_report("cov=lcov.info")
                .unwrap_err()
                .to_string()
                .contains("unknown report kind")
        );
    }
}
