//! What each gate looked at, redrawn from the snapshot it judged: the
//! points of every selection the host served it ([`Read`]), canary and
//! baseline side by side, with the threshold and the observed aggregate
//! where the gate says they are in that metric's units.
//!
//! Charts show evidence; they never judge. Every output that draws a chart
//! (Markdown summaries, the web view) takes it from here.

use serde::Serialize;

use super::decision::{Decision, GateResult, Read, Verdict};
use crate::snapshot::{Point, Query, Snapshot, Track};

/// Charts drawn per gate; a gate that read more metrics shows the first.
pub const MAX_CHARTS_PER_GATE: usize = 8;

/// Points per series a chart carries; longer windows are averaged into
/// this many runs ([`thin`]), so a chart stays small whatever the snapshot.
pub const MAX_POINTS: usize = 500;

/// The detail a gate sets to say its observed value and threshold are in
/// the units of this metric (the first-party `threshold` gate does).
pub const METRIC_DETAIL: &str = "metric";

/// One metric as one gate saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chart {
    pub gate: String,
    pub verdict: Verdict,
    pub metric: String,
    /// The window the gate read, in seconds before `taken_at`; absent when
    /// it read every point.
    pub window_seconds: Option<u64>,
    pub taken_at: i64,
    /// The version under evaluation (the canary).
    pub current: Vec<Point>,
    /// The stable or control version, when the gate read it.
    pub baseline: Vec<Point>,
    /// Drawn as lines only when the gate names this metric as the one they
    /// are measured in (`details.metric`).
    pub observed: Option<f64>,
    pub threshold: Option<f64>,
    /// Whether a series had more than [`MAX_POINTS`] and was averaged.
    pub thinned: bool,
}

/// The charts of every gate of `decision` that read windowed points, in
/// gate order, redrawn from `snapshot` (the one the decision judged).
pub fn charts(decision: &Decision, snapshot: &Snapshot) -> Vec<Chart> {
    decision
        .gates
        .iter()
        .flat_map(|g| gate_charts(g, snapshot))
        .collect()
}

fn points(snapshot: &Snapshot, read: &Read) -> (Vec<Point>, bool) {
    let all = snapshot.points(&Query {
        metric: &read.metric,
        selector: &read.selector,
        window_seconds: read.window_seconds,
        track: read.track,
    });
    thin(&all, MAX_POINTS)
}

fn gate_charts(g: &GateResult, snapshot: &Snapshot) -> Vec<Chart> {
    let mut metrics: Vec<&str> = Vec::new();
    for r in &g.reads {
        if !metrics.contains(&r.metric.as_str()) && metrics.len() < MAX_CHARTS_PER_GATE {
            metrics.push(&r.metric);
        }
    }
    let measured_in = g.details.get(METRIC_DETAIL).map(String::as_str);
    metrics
        .into_iter()
        .map(|metric| {
            let first = |track: Track| {
                g.reads
                    .iter()
                    .find(|r| r.metric == metric && r.track == track)
            };
            let current = first(Track::Current);
            let baseline = first(Track::Baseline);
            let lines = measured_in == Some(metric);
            let (current, thin_current) = current.map(|r| points(snapshot, r)).unwrap_or_default();
            let (baseline, thin_baseline) =
                baseline.map(|r| points(snapshot, r)).unwrap_or_default();
            Chart {
                gate: g.name.clone(),
                verdict: g.verdict,
                metric: metric.to_string(),
                window_seconds: first(Track::Current)
                    .or(first(Track::Baseline))
                    .and_then(|r| r.window_seconds),
                taken_at: snapshot.taken_at,
                current,
                baseline,
                observed: g.observed.filter(|_| lines),
                threshold: g.threshold.filter(|_| lines),
                thinned: thin_current || thin_baseline,
            }
        })
        .collect()
}

/// At most `max` points of `points` for a chart: when there are more, the
/// mean of each run of consecutive points, stamped with its last. Says
/// whether it averaged.
pub fn thin(points: &[Point], max: usize) -> (Vec<Point>, bool) {
    if points.len() <= max || max == 0 {
        return (points.to_vec(), false);
    }
    let per = points.len().div_ceil(max);
    let thinned = points
        .chunks(per)
        .map(|c| {
            let n = c.len() as f64;
            Point {
                timestamp: c[c.len() - 1].timestamp,
                value: c.iter().map(|p| p.value).sum::<f64>() / n,
            }
        })
        .collect();
    (thinned, true)
}
