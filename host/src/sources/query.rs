//! Running a policy's `metrics:` against the sources: each query templated,
//! windowed and sent to the native Prometheus or the source plugin it
//! names, with the evidence of what was asked and what came back.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{DEFAULT_WINDOW, QueryEvidence, SourceError, Sources, template};
use crate::policy::{MetricSource, Policy};
use crate::snapshot::{Point, Series};

/// Which stage the queries are for, and its declared duration.
#[derive(Debug, Clone, Copy)]
pub struct StageWindow<'a> {
    pub name: &'a str,
    pub duration: Option<Duration>,
}

/// Queries every metric the policy declares, for the current track and,
/// when the query uses `${track}`, for the baseline track too.
pub async fn query_policy(
    sources: &Sources,
    policy: &Policy,
    stage: StageWindow<'_>,
    service: &str,
    version: &str,
    end: i64,
) -> Result<(Vec<Series>, Vec<Series>, Vec<QueryEvidence>), SourceError> {
    let mut current = Vec::new();
    let mut baseline = Vec::new();
    let mut evidence = Vec::new();
    for source in &policy.metrics {
        let (c, b, e) = query_source(sources, policy, source, stage, service, version, end).await?;
        current.extend(c);
        baseline.extend(b);
        evidence.extend(e);
    }
    Ok((current, baseline, evidence))
}

/// Queries one of the policy's metrics over the window ending at `end`:
/// the current track's series, the baseline's (when the query uses
/// `${track}`), and the evidence of each query.
pub async fn query_source(
    sources: &Sources,
    policy: &Policy,
    source: &MetricSource,
    stage: StageWindow<'_>,
    service: &str,
    version: &str,
    end: i64,
) -> Result<(Vec<Series>, Vec<Series>, Vec<QueryEvidence>), SourceError> {
    let tracks: &[(&'static str, &str)] = if source.uses_track {
        &[
            ("current", policy.tracks.current.as_str()),
            ("baseline", policy.tracks.baseline.as_str()),
        ]
    } else {
        &[("current", policy.tracks.current.as_str())]
    };
    let (mut current, mut baseline, mut evidence) = (Vec::new(), Vec::new(), Vec::new());
    for (track, label) in tracks {
        let (series, ev) =
            query_one(sources, source, stage, service, version, label, track, end).await?;
        evidence.push(ev);
        if *track == "current" {
            current = series;
        } else {
            baseline = series;
        }
    }
    Ok((current, baseline, evidence))
}

/// One returned series: its labels and `(timestamp, value)` points.
type Found = (BTreeMap<String, String>, Vec<(i64, f64)>);

/// Points Prometheus returns at most per series of a range query; it
/// refuses a longer one ("exceeded maximum resolution").
pub const MAX_RESOLUTION: u64 = 11_000;

#[expect(
    clippy::too_many_arguments,
    reason = "one query's whole context, read once"
)]
async fn query_one(
    sources: &Sources,
    source: &MetricSource,
    stage: StageWindow<'_>,
    service: &str,
    version: &str,
    track_label: &str,
    track: &'static str,
    end: i64,
) -> Result<(Vec<Series>, QueryEvidence), SourceError> {
    let values: BTreeMap<&str, &str> = [
        ("service", service),
        ("version", version),
        ("stage", stage.name),
        ("track", track_label),
    ]
    .into_iter()
    .collect();
    if source.source.is_some() {
        // PromQL's escaping does not carry to every language a source
        // speaks (a Datadog scope, a Graphite path, NRQL): a value that is
        // not a plain name could change the query.
        let used = crate::policy::template::variables(&source.query).unwrap_or_default();
        for (name, value) in values.iter().filter(|(n, _)| used.iter().any(|u| u == *n)) {
            if value.is_empty() {
                return Err(SourceError::Template {
                    metric: source.name.clone(),
                    message: format!(
                        "the query uses `${{{name}}}`, which is empty: give the {name} (`--{name}`, or `{name}` in the request)"
                    ),
                });
            }
            if let Some(c) = value
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "._+-".contains(*c)))
            {
                return Err(SourceError::Template {
                    metric: source.name.clone(),
                    message: format!(
                        "`${{{name}}}` is `{}`, whose `{}` a source plugin's query cannot take: use letters, digits, `.`, `_`, `+` and `-`",
                        crate::base::text::shown(value),
                        c.escape_default()
                    ),
                });
            }
        }
    }
    let query = template::render(&source.query, &values).map_err(|e| SourceError::Template {
        metric: source.name.clone(),
        message: e.to_string(),
    })?;
    let window = source.window.or(stage.duration).unwrap_or(DEFAULT_WINDOW);
    let start = end.saturating_sub(i64::try_from(window.as_secs()).unwrap_or(i64::MAX));
    let mut evidence = QueryEvidence {
        metric: source.name.clone(),
        track: track.to_string(),
        query: query.clone(),
        start,
        end,
        step_seconds: source.step.as_secs(),
        series: 0,
        points: 0,
        source: source.source.clone(),
        requests: Vec::new(),
    };
    let found: Vec<Found> = match &source.source {
        None => {
            let prom = sources
                .prometheus
                .as_ref()
                .ok_or_else(|| SourceError::UnknownSource {
                    metric: source.name.clone(),
                    name: "prometheus".into(),
                    hint: " (give `--prometheus URL`, or `telemetry.prometheus` in the server's config)",
                })?;
            let points = window.as_secs() / source.step.as_secs().max(1) + 1;
            if points > MAX_RESOLUTION {
                return Err(SourceError::Resolution {
                    metric: source.name.clone(),
                    window: humantime::format_duration(window).to_string(),
                    step: humantime::format_duration(source.step).to_string(),
                    points,
                });
            }
            prom.query_range(&query, start, end, source.step)
                .await
                .map_err(|e| SourceError::Query {
                    url: prom.shown_url(),
                    metric: source.name.clone(),
                    track,
                    cause: e,
                })?
                .into_iter()
                .map(|s| (s.labels, s.points))
                .collect()
        }
        Some(name) => {
            let plugin = sources
                .plugins
                .get(name)
                .ok_or_else(|| SourceError::UnknownSource {
                    metric: source.name.clone(),
                    name: name.clone(),
                    hint: " (give `--source NAME=URL` or `--sources FILE`, or `telemetry.sources` in the server's config)",
                })?;
            let asked = crate::engine::SourceQuery {
                metric: source.name.clone(),
                text: query,
                start,
                end,
                step_seconds: source.step.as_secs(),
                variables: values
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                    .collect(),
            };
            let (series, requests) =
                plugin
                    .query(asked, end)
                    .await
                    .map_err(|cause| SourceError::Plugin {
                        name: name.clone(),
                        url: plugin.shown_url(),
                        metric: source.name.clone(),
                        track,
                        cause,
                    })?;
            evidence.requests = requests;
            series
                .into_iter()
                .map(|s| {
                    (
                        s.labels.into_iter().collect(),
                        s.points.iter().map(|p| (p.timestamp, p.value)).collect(),
                    )
                })
                .collect()
        }
    };
    let series: Vec<Series> = found
        .into_iter()
        .filter(|(_, points)| !points.is_empty())
        .map(|(labels, points)| Series {
            name: source.name.clone(),
            labels,
            points: points
                .into_iter()
                .map(|(timestamp, value)| Point { timestamp, value })
                .collect(),
        })
        .collect();
    evidence.series = series.len();
    evidence.points = series.iter().map(|s| s.points.len()).sum();
    Ok((series, evidence))
}
