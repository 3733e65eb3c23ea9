//! Snapshot JSON v1: the wire shape, read strictly.
//!
//! Unknown fields are refused rather than ignored, so a misspelt `baselin`
//! never silently evaluates without a baseline.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::{Commit, Point, Series, Snapshot};

/// A snapshot that could not be read; `path` is the JSON path of the problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct SnapshotError {
    /// JSON path such as `metrics[3].points[0]`; empty for the document itself.
    pub path: String,
    pub message: String,
}

/// A telemetry snapshot: the series a decision is computed over.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "tollgate snapshot v1")]
struct RawSnapshot {
    service: String,
    version: String,
    /// When the snapshot was taken: unix seconds or RFC 3339. Windows end here.
    #[serde(deserialize_with = "taken_at")]
    #[schemars(with = "TakenAt")]
    taken_at: i64,
    metrics: Vec<RawSeries>,
    #[serde(default)]
    baseline: Vec<RawSeries>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    commits: Vec<RawCommit>,
}

/// A named, labelled series: `points`, or a single `value` at `taken_at`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Series")]
struct RawSeries {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    points: Option<Vec<RawPoint>>,
    value: Option<Finite>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Commit")]
struct RawCommit {
    sha: String,
    message: String,
    timestamp: i64,
}

/// `[unix_seconds, number]`.
struct RawPoint(i64, f64);

/// A number that must be finite.
struct Finite(f64);

/// Unix seconds or an RFC 3339 timestamp.
struct TakenAt;

impl schemars::JsonSchema for RawPoint {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Point".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "[unix_seconds, value]; the value is a finite number",
            "type": "array",
            "prefixItems": [{"type": "integer"}, {"type": "number"}],
            "minItems": 2,
            "maxItems": 2
        })
    }
}

impl schemars::JsonSchema for Finite {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Finite".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "number", "description": "a finite number"})
    }
}

impl schemars::JsonSchema for TakenAt {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TakenAt".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "oneOf": [
                {"type": "integer", "description": "unix seconds"},
                {"type": "string", "format": "date-time", "description": "RFC 3339"}
            ]
        })
    }
}

/// Snapshot JSON v1 as JSON Schema, generated from the types that read it.
pub(super) fn schema() -> serde_json::Value {
    crate::base::schema::generate::<RawSnapshot>()
}

const POINT_SHAPE: &str = "expected [unix_seconds, number]";

impl<'de> Deserialize<'de> for RawPoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PointVisitor;
        impl<'de> Visitor<'de> for PointVisitor {
            type Value = RawPoint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[unix_seconds, number]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawPoint, A::Error> {
                let ts: i64 = seq
                    .next_element::<i64>()
                    .map_err(|_| de::Error::custom(POINT_SHAPE))?
                    .ok_or_else(|| de::Error::custom(POINT_SHAPE))?;
                let value: f64 = seq
                    .next_element::<f64>()
                    .map_err(|_| de::Error::custom(POINT_SHAPE))?
                    .ok_or_else(|| de::Error::custom(POINT_SHAPE))?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom(POINT_SHAPE));
                }
                if !value.is_finite() {
                    return Err(de::Error::custom("value must be a finite number"));
                }
                Ok(RawPoint(ts, value))
            }
        }
        d.deserialize_any(PointVisitor).map_err(|e: D::Error| {
            let text = e.to_string();
            if text.starts_with("invalid type") {
                de::Error::custom(POINT_SHAPE)
            } else {
                e
            }
        })
    }
}

impl<'de> Deserialize<'de> for Finite {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if v.is_finite() {
            Ok(Finite(v))
        } else {
            Err(de::Error::custom("value must be a finite number"))
        }
    }
}

fn taken_at<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct TakenAt;
    impl Visitor<'_> for TakenAt {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("unix seconds or an RFC 3339 timestamp")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom("timestamp out of range"))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
            time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .map(|t| t.unix_timestamp())
                .map_err(|e| E::custom(format!("`{v}` is not an RFC 3339 timestamp: {e}")))
        }
    }
    d.deserialize_any(TakenAt)
}

pub(super) fn write(s: &Snapshot) -> serde_json::Value {
    let series = |set: &[Series]| -> Vec<serde_json::Value> {
        set.iter()
            .map(|x| {
                serde_json::json!({
                    "name": x.name,
                    "labels": x.labels,
                    "points": x.points.iter().map(|p| (p.timestamp, p.value)).collect::<Vec<_>>(),
                })
            })
            .collect()
    };
    serde_json::json!({
        "service": s.service,
        "version": s.version,
        "taken_at": s.taken_at,
        "metrics": series(&s.metrics),
        "baseline": series(&s.baseline),
        "attributes": s.attributes,
        "commits": s.commits,
    })
}

pub(super) fn parse(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    // RFC 8259 lets a parser ignore a byte-order mark, and editors on
    // Windows write one.
    let bytes = crate::base::files::without_bom(bytes);
    // Otherwise `["s","1",100]` would be a snapshot, and a scalar's error
    // would name an internal type.
    let document = |message: String| SnapshotError {
        path: String::new(),
        message,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(document(
            "empty document; a snapshot is a JSON object".into(),
        ));
    }
    if let Some(kind) = crate::base::files::json_not_an_object(bytes) {
        return Err(document(format!("a snapshot is a JSON object, not {kind}")));
    }
    // Tracking the path of every value costs about a third of the reading,
    // and only an error needs it: read without, and read again with it to
    // name where a snapshot that failed went wrong.
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let raw = match RawSnapshot::deserialize(&mut *de).and_then(|raw| de.end().map(|()| raw)) {
        Ok(raw) => raw,
        Err(_) => read_tracked(bytes)?,
    };
    convert(raw)
}

/// Reads `bytes` naming the JSON path of the first problem.
fn read_tracked(bytes: &[u8]) -> Result<RawSnapshot, SnapshotError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let raw: RawSnapshot = serde_path_to_error::deserialize(&mut *de).map_err(path_error)?;
    // A second value after the first is not ignored: which one would count?
    de.end().map_err(|e| SnapshotError {
        path: String::new(),
        message: format!(
            "more JSON after the snapshot's closing `}}` (line {}, column {})",
            e.line(),
            e.column()
        ),
    })?;
    Ok(raw)
}

/// The fields a partial snapshot may leave out, and what they then are.
const PARTIAL_DEFAULTS: [&str; 4] = ["service", "version", "taken_at", "metrics"];

/// Reads a snapshot that may leave out `service`, `version` (then empty),
/// `metrics` (then none) and `taken_at` (then `taken_at`): a file that only
/// adds attributes or a few series to what other sources give. Everything
/// it does hold is checked as strictly as by [`parse`].
pub(super) fn parse_partial(bytes: &[u8], taken_at: i64) -> Result<Snapshot, SnapshotError> {
    let trimmed = crate::base::files::without_bom(bytes);
    let Ok(serde_json::Value::Object(mut object)) =
        serde_json::from_slice::<serde_json::Value>(trimmed)
    else {
        // Not an object: the strict reader names the problem.
        return parse(bytes);
    };
    if PARTIAL_DEFAULTS.iter().all(|k| object.contains_key(*k)) {
        return parse(bytes);
    }
    for key in PARTIAL_DEFAULTS {
        if !object.contains_key(key) {
            let value = match key {
                "taken_at" => serde_json::Value::from(taken_at),
                "metrics" => serde_json::Value::Array(Vec::new()),
                _ => serde_json::Value::from(""),
            };
            object.insert(key.to_string(), value);
        }
    }
    let raw: RawSnapshot =
        serde_path_to_error::deserialize(serde_json::Value::Object(object)).map_err(path_error)?;
    convert(raw)
}

/// A reader's error at its JSON path.
fn path_error<E: std::fmt::Display>(e: serde_path_to_error::Error<E>) -> SnapshotError {
    let mut path = e.path().to_string();
    // A point's own elements are not separate fields: report the point.
    if path.ends_with(']')
        && let Some(open) = path.rfind('[')
        && path[..open].ends_with(']')
        && path[..open].contains(".points[")
    {
        path.truncate(open);
    }
    SnapshotError {
        // `?` is serde_path_to_error's path before the first key.
        path: if path == "." || path == "?" {
            String::new()
        } else {
            path
        },
        message: e.into_inner().to_string(),
    }
}

/// The longest `service` and `version`: they key trigger state, locks and
/// records, so a caller must not make them megabytes long.
pub const MAX_NAME: usize = 256;

/// `service` and `version`: at most [`MAX_NAME`] bytes, no control
/// characters.
pub(super) fn check_name(field: &str, value: &str) -> Result<(), SnapshotError> {
    if value.len() > MAX_NAME || value.chars().any(char::is_control) {
        return Err(SnapshotError {
            path: field.to_string(),
            message: format!(
                "must be at most {MAX_NAME} bytes with no control characters ({} bytes given)",
                value.len()
            ),
        });
    }
    Ok(())
}

fn convert(raw: RawSnapshot) -> Result<Snapshot, SnapshotError> {
    check_name("service", &raw.service)?;
    check_name("version", &raw.version)?;
    let metrics = convert_series(raw.metrics, "metrics", raw.taken_at)?;
    let baseline = convert_series(raw.baseline, "baseline", raw.taken_at)?;
    Ok(Snapshot {
        service: raw.service,
        version: raw.version,
        taken_at: raw.taken_at,
        metrics,
        baseline,
        attributes: raw.attributes,
        commits: raw
            .commits
            .into_iter()
            .map(|c| Commit {
                sha: c.sha,
                message: c.message,
                timestamp: c.timestamp,
            })
            .collect(),
    })
}

fn convert_series(
    raw: Vec<RawSeries>,
    field: &str,
    taken_at: i64,
) -> Result<Vec<Series>, SnapshotError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, s)| {
            let at = |message: &str| SnapshotError {
                path: format!("{field}[{i}]"),
                message: message.to_string(),
            };
            if s.name.is_empty() {
                return Err(SnapshotError {
                    path: format!("{field}[{i}].name"),
                    message: "must not be empty".into(),
                });
            }
            let points = match (s.points, s.value) {
                (Some(_), Some(_)) => return Err(at("give either `points` or `value`, not both")),
                (None, None) => return Err(at("needs `points` or `value`")),
                (Some(points), None) => points
                    .into_iter()
                    .map(|p| Point {
                        timestamp: p.0,
                        value: p.1,
                    })
                    .collect(),
                (None, Some(v)) => vec![Point {
                    timestamp: taken_at,
                    value: v.0,
                }],
            };
            Ok(Series {
                name: s.name,
                labels: s.labels,
                points,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> SnapshotError {
        parse(json.as_bytes()).unwrap_err()
    }

    const HEAD: &str = r#""service":"s","version":"1","taken_at":100"#;

    #[test]
    fn names_the_path_of_a_malformed_point() {
        let e = err(&format!(
            r#"{{{HEAD},"metrics":[{{"name":"a","value":1}},{{"name":"b","points":[[1,2],[1,"x"]]}}]}}"#
        ));
        assert_eq!(e.path, "metrics[1].points[1]");
        assert!(
            e.message.starts_with("expected [unix_seconds, number]"),
            "{e}"
        );
        let e = err(&format!(
            r#"{{{HEAD},"metrics":[{{"name":"b","points":[[1]]}}]}}"#
        ));
        assert!(
            e.to_string()
                .starts_with("metrics[0].points[0]: expected [unix_seconds, number]"),
            "{e}"
        );
        let e = err(&format!(
            r#"{{{HEAD},"metrics":[{{"name":"b","points":[5]}}]}}"#
        ));
        assert!(
            e.to_string()
                .starts_with("metrics[0].points[0]: expected [unix_seconds, number]"),
            "{e}"
        );
    }

    #[test]
    fn refuses_out_of_range_numbers_and_unknown_fields() {
        let e = err(&format!(
            r#"{{{HEAD},"metrics":[{{"name":"a","value":1e999}}]}}"#
        ));
        assert_eq!(e.path, "metrics[0].value");
        let e = err(&format!(r#"{{{HEAD},"metrics":[],"baselin":[]}}"#));
        assert!(e.message.contains("unknown field `baselin`"), "{e}");
    }

    #[test]
    fn needs_exactly_one_of_points_and_value() {
        let e = err(&format!(r#"{{{HEAD},"metrics":[{{"name":"a"}}]}}"#));
        assert_eq!(e.to_string(), "metrics[0]: needs `points` or `value`");
        let e = err(&format!(
            r#"{{{HEAD},"metrics":[{{"name":"a","value":1,"points":[]}}]}}"#
        ));
        assert_eq!(e.path, "metrics[0]");
    }

    #[test]
    fn a_byte_order_mark_is_ignored_and_an_array_or_nothing_is_named() {
        let with_bom = format!("\u{feff}{{{HEAD},\"metrics\":[]}}");
        assert_eq!(parse(with_bom.as_bytes()).unwrap().service, "s");
        let e = err(r#"["s","1",100,[]]"#);
        assert_eq!(e.to_string(), "a snapshot is a JSON object, not an array");
        assert_eq!(
            err(" \n").to_string(),
            "empty document; a snapshot is a JSON object"
        );
        assert_eq!(err("{").path, "");
        assert_eq!(
            err("5").to_string(),
            "a snapshot is a JSON object, not a number"
        );
        // Text that is not JSON keeps the parser's own syntax error.
        assert!(err("x").to_string().contains("line 1 column 1"));
    }

    #[test]
    fn taken_at_accepts_unix_seconds_and_rfc3339() {
        let s = parse(
            br#"{"service":"s","version":"1","taken_at":"2025-11-27T10:00:00+01:00","metrics":[]}"#,
        )
        .unwrap();
        assert_eq!(s.taken_at, 1_764_234_000);
        let e = err(r#"{"service":"s","version":"1","taken_at":"yesterday","metrics":[]}"#);
        assert_eq!(e.path, "taken_at");
        let e = err(r#"{"service":"s","version":"1","taken_at":1.5,"metrics":[]}"#);
        assert_eq!(e.path, "taken_at");
    }

    #[test]
    fn a_partial_snapshot_takes_defaults_and_is_otherwise_strict() {
        let s = parse_partial(br#"{"attributes":{"base_image":"python:3.12"}}"#, 1_000).unwrap();
        assert_eq!((s.service.as_str(), s.taken_at), ("", 1_000));
        assert_eq!(s.attributes["base_image"], "python:3.12");
        let s = parse_partial(br#"{"metrics":[{"name":"a","value":2}]}"#, 7).unwrap();
        assert_eq!(
            s.metrics[0].points[0].timestamp, 7,
            "a value is at the default time"
        );
        let s = parse_partial(br#"{"taken_at":5,"metrics":[]}"#, 7).unwrap();
        assert_eq!(s.taken_at, 5, "a given time wins");
        let e = parse_partial(br#"{"atributes":{}}"#, 7).unwrap_err();
        assert!(e.message.contains("unknown field `atributes`"), "{e}");
        let e = parse_partial(br#"{"metrics":[{"name":"a","points":[[1,"x"]]}]}"#, 7).unwrap_err();
        assert_eq!(e.path, "metrics[0].points[0]");
        assert!(parse_partial(b"[1]", 7).is_err());
    }

    #[test]
    fn json_after_the_snapshot_is_refused_with_where_it_starts() {
        let e = err(&format!("{{{HEAD},\"metrics\":[]}} {{}}"));
        assert_eq!(e.path, "");
        assert!(
            e.message
                .starts_with("more JSON after the snapshot's closing `}` (line 1, column"),
            "{e}"
        );
    }

    #[test]
    fn the_untracked_and_the_tracked_reader_read_the_same_snapshot() {
        let text = format!(
            r#"{{{HEAD},"metrics":[{{"name":"a","labels":{{"k":"v"}},"points":[[90,1.5],[100,2]]}}],
               "baseline":[{{"name":"a","value":3}}],"attributes":{{"x":"y"}},
               "commits":[{{"sha":"abc","message":"m","timestamp":5}}]}}"#
        );
        let fast = parse(text.as_bytes()).unwrap();
        let tracked = convert(read_tracked(text.as_bytes()).unwrap()).unwrap();
        assert_eq!(fast, tracked);
        assert_eq!(fast.metrics[0].points.len(), 2);
        assert_eq!(fast.baseline[0].points[0].value, 3.0);
    }

    #[test]
    fn missing_required_field_is_named() {
        let e = err(r#"{"service":"s","taken_at":1,"metrics":[]}"#);
        assert!(e.message.contains("missing field `version`"), "{e}");
    }
}
