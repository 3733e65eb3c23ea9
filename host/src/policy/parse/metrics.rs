//! Where metrics come from (`metrics:`, PromQL templates) and what
//! `${track}` becomes (`tracks:`).

use std::time::Duration;

use super::get;
use crate::policy::reader::Reader;
use crate::policy::schema::{MetricDoc, TracksDoc, keys};
use crate::policy::yaml::{Node, Value};
use crate::policy::{MetricSource, Tracks};

/// Longest window a metric may query.
const MAX_WINDOW: Duration = Duration::from_secs(31 * 24 * 3600);
/// Prometheus refuses range queries of more than 11,000 points per series.
const MAX_STEPS: u64 = 11_000;

/// `metrics:`, each a PromQL template checked for its variables, with
/// the window and step of its range query.
pub(super) fn read_metric_sources(r: &mut Reader, node: &Node) -> Vec<MetricSource> {
    let Value::Map(entries) = &node.value else {
        r.problem(
            node.line,
            format!(
                "`metrics` must be a mapping of metric name to source, not {}",
                node.value.kind()
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, decl) in entries {
        let what = format!("metric `{name}`");
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            r.problem(
                decl.line,
                format!("{what}: a metric name is 1 to 128 visible characters"),
            );
            continue;
        }
        let Some(fields) = r.map(decl, &what, keys::<MetricDoc>()) else {
            continue;
        };
        let (field, source) = match (
            get(fields, "prometheus"),
            get(fields, "source"),
            get(fields, "query"),
        ) {
            (Some(_), None, None) => ("prometheus", None),
            (None, Some(s), Some(_)) => {
                let Some(source) = r.text(s, &format!("`source` of {what}")) else {
                    continue;
                };
                if source.parse::<crate::policy::Name>().is_err() {
                    r.problem(
                        s.line,
                        format!(
                            "`source` of {what}: `{source}` is not a source name (1 to 64 lowercase letters, digits, `-`, `_` or `.`)"
                        ),
                    );
                    continue;
                }
                ("query", Some(source))
            }
            (Some(_), _, _) => {
                r.problem(
                    decl.line,
                    format!("{what}: give `prometheus`, or `source` and `query`, not both"),
                );
                continue;
            }
            (None, Some(_), None) => {
                r.problem(decl.line, format!("missing field `query` in {what}"));
                continue;
            }
            (None, None, Some(_)) => {
                r.problem(
                    decl.line,
                    format!("missing field `source` in {what}: which source runs `query`"),
                );
                continue;
            }
            (None, None, None) => {
                r.problem(
                    decl.line,
                    format!("missing field `prometheus` (or `source` and `query`) in {what}"),
                );
                continue;
            }
        };
        let Some(query) = get(fields, field).and_then(|q| {
            let text = r.text(q, &format!("`{field}` of {what}"))?;
            match crate::policy::template::variables(&text) {
                Ok(used) => Some((text, used.iter().any(|v| v == "track"))),
                Err(e) => {
                    r.problem(q.line, format!("`{field}` of {what}: {e}"));
                    None
                }
            }
        }) else {
            continue;
        };
        let window = get(fields, "window")
            .and_then(|n| r.duration(n, &format!("`window` of {what}"), MAX_WINDOW));
        let step = get(fields, "step").map_or(Some(Duration::from_secs(30)), |n| {
            r.duration(n, &format!("`step` of {what}"), MAX_WINDOW)
        });
        let Some(step) = step else { continue };
        if step.as_secs() == 0 {
            r.problem(decl.line, format!("`step` of {what} must be at least 1s"));
            continue;
        }
        if let Some(w) = window
            && source.is_none()
            && w.as_secs() / step.as_secs() > MAX_STEPS
        {
            r.problem(
                decl.line,
                format!(
                    "{what}: a window of {} at a step of {} is more than Prometheus's {MAX_STEPS} points; raise `step`",
                    humantime::format_duration(w),
                    humantime::format_duration(step)
                ),
            );
            continue;
        }
        out.push(MetricSource {
            name: name.clone(),
            source,
            query: query.0,
            window,
            step,
            uses_track: query.1,
            line: decl.line,
        });
    }
    out
}

/// `tracks:`, each defaulting to Flagger's name.
pub(super) fn read_tracks(r: &mut Reader, node: &Node) -> Tracks {
    let mut tracks = Tracks::default();
    let Some(fields) = r.map(node, "`tracks`", keys::<TracksDoc>()) else {
        return tracks;
    };
    if let Some(v) = get(fields, "current").and_then(|n| r.text(n, "`tracks.current`")) {
        tracks.current = v;
    }
    if let Some(v) = get(fields, "baseline").and_then(|n| r.text(n, "`tracks.baseline`")) {
        tracks.baseline = v;
    }
    tracks
}
