//! Bindings for the `source` world, and the helpers every source plugin
//! needs: building request paths, reading JSON answers, making series.
//!
//! A source never performs I/O. [`Guest::start`] describes the first
//! requests, the host sends them to the base URL the operator configured
//! (adding the credentials the plugin never sees), and [`Guest::next`]
//! reads the answers, asking for more rounds (pages, follow-ups) or
//! finishing with series:
//!
//! ```ignore
//! use tollgate_sdk::source::{self, Config, Guest, Request, Response, Round, SourceQuery, Step};
//!
//! struct MySource;
//!
//! impl Guest for MySource {
//!     fn validate_config(_: Config) -> Result<(), String> { Ok(()) }
//!     fn start(_: Config, q: SourceQuery) -> Result<Round, String> {
//!         Ok(Round::one(source::get("/api/series", &[("q", q.text.as_str())])))
//!     }
//!     fn next(_: Config, _: SourceQuery, _: Vec<u8>, answers: Vec<Response>) -> Result<Step, String> {
//!         let json = source::json(&answers[0])?;
//!         todo!("turn `json` into series")
//!     }
//! }
//!
//! tollgate_sdk::source::export_source!(MySource);
//! ```

wit_bindgen::generate!({
    world: "source",
    path: "wit",
    with: {
        "tollgate:plugin/types@0.1.2": crate::gate::tollgate::plugin::types,
        "tollgate:plugin/host@0.1.2": crate::gate::tollgate::plugin::host,
    },
    pub_export_macro: true,
    additional_derives: [PartialEq],
    export_macro_name: "export_source",
    default_bindings_module: "tollgate_sdk::source",
});

pub use self::exports::tollgate::plugin::source_api::{
    Guest, Method, Request, Response, Round, Sample, Series, SourceQuery, Step,
};
pub use crate::gate::{Config, ConfigValue, Level, log, now};
/// JSON, as every HTTP API here answers.
pub use serde_json;

/// The longest answer body quoted in an error message.
const QUOTED_BODY: usize = 300;

/// `path` with `params` as its query string, form-encoded.
pub fn path_with_query(path: &str, params: &[(&str, &str)]) -> String {
    if params.is_empty() {
        return path.to_string();
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("{path}?{query}")
}

/// A GET of `path` with `params` as its query string.
pub fn get(path: &str, params: &[(&str, &str)]) -> Request {
    Request {
        method: Method::Get,
        path: path_with_query(path, params),
        headers: Vec::new(),
        body: Vec::new(),
    }
}

/// A POST of `params` form-encoded to `path`.
pub fn post_form(path: &str, params: &[(&str, &str)]) -> Request {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    Request {
        method: Method::Post,
        path: path.to_string(),
        headers: vec![(
            "Content-Type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        body: body.into_bytes(),
    }
}

/// A POST of `body` as JSON to `path`.
pub fn post_json(path: &str, body: &serde_json::Value) -> Request {
    Request {
        method: Method::Post,
        path: path.to_string(),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

impl Round {
    /// One request and no state.
    pub fn one(request: Request) -> Self {
        Self {
            requests: vec![request],
            state: Vec::new(),
        }
    }
}

/// The value of `name` among the query's variables (`service`, `version`,
/// `stage`, `track`), or `""`.
pub fn variable<'a>(query: &'a SourceQuery, name: &str) -> &'a str {
    query
        .variables
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// The answer's body as JSON, or an error naming the status and quoting
/// the start of the body when the status is not 2xx or the body is not JSON.
pub fn json(response: &Response) -> Result<serde_json::Value, String> {
    let parsed = serde_json::from_slice::<serde_json::Value>(&response.body);
    if !(200..300).contains(&response.status) {
        return Err(format!(
            "HTTP {}: {}",
            response.status,
            quote(&response.body)
        ));
    }
    parsed.map_err(|e| {
        format!(
            "HTTP {} with an answer that is not JSON ({e}): {}",
            response.status,
            quote(&response.body)
        )
    })
}

/// The start of `body` on one line, for an error message.
pub fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(QUOTED_BODY)
        .collect();
    let line = line.trim().to_string();
    if text.chars().count() > QUOTED_BODY {
        format!("{line}…")
    } else if line.is_empty() {
        "(empty body)".into()
    } else {
        line
    }
}

/// A series from its labels and `(timestamp, value)` pairs, keeping only
/// finite values.
pub fn series<K: Into<String>, V: Into<String>>(
    labels: impl IntoIterator<Item = (K, V)>,
    points: impl IntoIterator<Item = (i64, f64)>,
) -> Series {
    Series {
        labels: labels
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
        points: points
            .into_iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(timestamp, value)| Sample { timestamp, value })
            .collect(),
    }
}

/// A JSON number, or a number written as a string (as Prometheus, Loki
/// and others write sample values); `None` for anything else, `NaN`
/// included.
pub fn number(value: &serde_json::Value) -> Option<f64> {
    let n = match value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }?;
    n.is_finite().then_some(n)
}

/// A timestamp in seconds from a JSON number (seconds or, when `millis`,
/// milliseconds) or a numeric string.
pub fn timestamp(value: &serde_json::Value, millis: bool) -> Option<i64> {
    let t = match value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }?;
    let t = if millis { t / 1000.0 } else { t };
    (t.is_finite() && t.abs() < 1e15).then(|| t.round() as i64)
}

/// A Prometheus-style `matrix` result, as Prometheus, VictoriaMetrics,
/// Mimir, Thanos and Loki answer a range query:
/// `[{"metric": {…}, "values": [[t, "v"], …]}, …]`. `__name__` is dropped
/// from the labels, and so are points that are not finite (`NaN` for 0/0).
pub fn matrix(result: &serde_json::Value) -> Result<Vec<Series>, String> {
    let list = result
        .as_array()
        .ok_or("malformed matrix: `data.result` is not a list")?;
    list.iter()
        .enumerate()
        .map(|(i, entry)| {
            let labels = entry["metric"]
                .as_object()
                .ok_or_else(|| format!("malformed matrix: series {i} has no `metric` object"))?
                .iter()
                .filter(|(k, _)| k.as_str() != "__name__")
                .map(|(k, v)| {
                    let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    (k.clone(), text)
                });
            let values = match entry.get("values") {
                None => &[][..],
                Some(v) => v.as_array().map(Vec::as_slice).ok_or_else(|| {
                    format!("malformed matrix: `values` of series {i} is not a list")
                })?,
            };
            let points = values
                .iter()
                .map(|p| {
                    let t = timestamp(&p[0], false).ok_or_else(|| {
                        format!("malformed matrix: a point of series {i} has no timestamp: {p}")
                    })?;
                    Ok((t, number(&p[1])))
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(series(
                labels,
                points.into_iter().filter_map(|(t, v)| Some((t, v?))),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_carry_encoded_queries() {
        assert_eq!(
            path_with_query("/query", &[("q", "SELECT mean(\"v\") FROM m"), ("db", "x")]),
            "/query?q=SELECT+mean%28%22v%22%29+FROM+m&db=x"
        );
        assert_eq!(path_with_query("/p", &[]), "/p");
    }

    #[test]
    fn a_failed_answer_names_its_status_and_quotes_its_body() {
        let r = Response {
            status: 400,
            content_type: None,
            body: b"{\"error\":\"bad query\"}\n".to_vec(),
        };
        assert_eq!(json(&r).unwrap_err(), "HTTP 400: {\"error\":\"bad query\"}");
        let r = Response {
            status: 200,
            content_type: None,
            body: b"<html>".to_vec(),
        };
        assert!(
            json(&r)
                .unwrap_err()
                .starts_with("HTTP 200 with an answer that is not JSON")
        );
    }

    #[test]
    fn numbers_and_timestamps_read_both_spellings() {
        let v = serde_json::json!(["1.5", 2, "NaN", null, 1_700_000_000_123_i64]);
        assert_eq!(number(&v[0]), Some(1.5));
        assert_eq!(number(&v[1]), Some(2.0));
        assert_eq!(number(&v[2]), None);
        assert_eq!(number(&v[3]), None);
        assert_eq!(timestamp(&v[4], true), Some(1_700_000_000));
        let s = series([("a", "b")], [(1, 1.0), (2, f64::NAN)]);
        assert_eq!(s.points.len(), 1);
    }
}
