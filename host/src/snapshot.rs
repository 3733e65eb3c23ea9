//! The telemetry snapshot a decision is computed over: its model, the JSON v1
//! reader, and the window and label queries plugins make against it.

mod json;

use std::collections::BTreeMap;

use serde::Serialize;

pub use self::json::{MAX_NAME, SnapshotError};

/// Checks a `service` and `version` given apart from a snapshot (a query's
/// inputs) as a snapshot's own are checked: at most [`MAX_NAME`] bytes, no
/// control characters.
pub fn check_names(service: &str, version: &str) -> Result<(), SnapshotError> {
    json::check_name("service", service)?;
    json::check_name("version", version)
}

/// One measurement: unix seconds and a finite value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct Point {
    pub timestamp: i64,
    pub value: f64,
}

/// A named, labelled time series.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Series {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub points: Vec<Point>,
}

/// A commit that is part of the release.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Commit {
    pub sha: String,
    pub message: String,
    pub timestamp: i64,
}

/// A validated telemetry snapshot. Every number in it is finite.
///
/// Its serde form is the canonical JSON whose digest identifies an input
/// (`digests.input`); the decision log stores it, and reads it back only
/// after checking that digest. Untrusted input goes through
/// [`Snapshot::from_json`], which validates.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub service: String,
    pub version: String,
    /// When the snapshot was taken, unix seconds; the evaluation clock.
    pub taken_at: i64,
    pub metrics: Vec<Series>,
    pub baseline: Vec<Series>,
    pub attributes: BTreeMap<String, String>,
    pub commits: Vec<Commit>,
}

/// Which set of series a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Track {
    /// The version under evaluation.
    Current,
    /// The stable or control version beside it.
    Baseline,
}

/// A selection of points: metric name, label selector and window.
#[derive(Debug, Clone, PartialEq)]
pub struct Query<'a> {
    pub metric: &'a str,
    pub selector: &'a [(String, String)],
    /// Keep points in `(taken_at - window, taken_at]`; `None` keeps every point.
    pub window_seconds: Option<u64>,
    pub track: Track,
}

impl Snapshot {
    /// A snapshot with no data, for calls that need none (config validation).
    pub fn empty() -> Self {
        Self {
            service: String::new(),
            version: String::new(),
            taken_at: 0,
            metrics: Vec::new(),
            baseline: Vec::new(),
            attributes: BTreeMap::new(),
            commits: Vec::new(),
        }
    }

    /// Parses snapshot JSON v1, naming the JSON path of the first problem.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SnapshotError> {
        json::parse(bytes)
    }

    /// Parses a partial snapshot: JSON v1 that may leave out `service`,
    /// `version`, `metrics` and `taken_at` (then `taken_at` is the given
    /// time), for a file that adds attributes or series to other sources.
    pub fn from_partial_json(bytes: &[u8], taken_at: i64) -> Result<Self, SnapshotError> {
        json::parse_partial(bytes, taken_at)
    }

    /// Snapshot JSON v1 as JSON Schema, generated from the reader's types.
    pub fn schema() -> serde_json::Value {
        json::schema()
    }

    /// The snapshot in the JSON v1 wire shape that [`Snapshot::from_json`]
    /// reads: what `tollgate snapshot build` prints.
    pub fn to_json_v1(&self) -> serde_json::Value {
        json::write(self)
    }

    /// The series that match `query`, each holding only its windowed points.
    /// Without a selector every series of that name matches.
    pub fn select(&self, query: &Query<'_>) -> Vec<Series> {
        let set = match query.track {
            Track::Current => &self.metrics,
            Track::Baseline => &self.baseline,
        };
        set.iter()
            .filter(|s| s.name == query.metric)
            .filter(|s| {
                query
                    .selector
                    .iter()
                    .all(|(k, v)| s.labels.get(k) == Some(v))
            })
            .map(|s| Series {
                name: s.name.clone(),
                labels: s.labels.clone(),
                points: s
                    .points
                    .iter()
                    .copied()
                    .filter(|p| self.in_window(p.timestamp, query.window_seconds))
                    .collect(),
            })
            .collect()
    }

    /// The windowed points of every matching series pooled, oldest first.
    pub fn points(&self, query: &Query<'_>) -> Vec<Point> {
        Self::pool(self.select(query))
    }

    /// The points of `selected` (what [`Snapshot::select`] gave) pooled,
    /// oldest first.
    pub fn pool(selected: Vec<Series>) -> Vec<Point> {
        let mut points: Vec<Point> = selected.into_iter().flat_map(|s| s.points).collect();
        points.sort_by_key(|p| p.timestamp);
        points
    }

    fn in_window(&self, timestamp: i64, window_seconds: Option<u64>) -> bool {
        match window_seconds {
            None => true,
            Some(w) => {
                let start = self
                    .taken_at
                    .saturating_sub(i64::try_from(w).unwrap_or(i64::MAX));
                timestamp > start && timestamp <= self.taken_at
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        Snapshot::from_json(
            br#"{"service":"s","version":"1.0.0","taken_at":1000,
                "metrics":[
                  {"name":"e","labels":{"track":"canary"},"points":[[700,1],[701,2],[1000,3],[1001,4]]},
                  {"name":"e","labels":{"track":"stable"},"points":[[900,5]]},
                  {"name":"c","value":80.0}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn window_is_open_at_the_start_and_closed_at_taken_at() {
        let s = snap();
        let sel = vec![("track".to_string(), "canary".to_string())];
        let q = Query {
            metric: "e",
            selector: &sel,
            window_seconds: Some(300),
            track: Track::Current,
        };
        let values: Vec<f64> = s.points(&q).iter().map(|p| p.value).collect();
        assert_eq!(values, vec![2.0, 3.0]);
    }

    #[test]
    fn no_selector_pools_every_series_of_the_name() {
        let s = snap();
        let q = Query {
            metric: "e",
            selector: &[],
            window_seconds: None,
            track: Track::Current,
        };
        assert_eq!(s.select(&q).len(), 2);
        let values: Vec<f64> = s.points(&q).iter().map(|p| p.value).collect();
        assert_eq!(values, vec![1.0, 2.0, 5.0, 3.0, 4.0]);
    }

    #[test]
    fn value_shorthand_is_one_point_at_taken_at() {
        let s = snap();
        let q = Query {
            metric: "c",
            selector: &[],
            window_seconds: Some(1),
            track: Track::Current,
        };
        assert_eq!(
            s.points(&q),
            vec![Point {
                timestamp: 1000,
                value: 80.0
            }]
        );
    }
}
