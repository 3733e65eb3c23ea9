//! The `datadog` source: Datadog metric queries, over either of Datadog's
//! two query APIs, as its official client `datadog-api-client` sends them.
//!
//! - `api: v1` (the default): `GET /api/v1/query?from=…&to=…&query=…`
//!   (`MetricsApi.query_metrics`), window bounds in unix seconds. The
//!   answer's `series[].pointlist` is `[[unix ms, value or null], …]`;
//!   each series is labelled with the tags of its `scope` and `tag_set`
//!   (`version:2.1.0` becomes `version=2.1.0`).
//! - `api: scalar`: `POST /api/v2/query/scalar` (`MetricsApi.query_scalar_data`)
//!   with a `ScalarFormulaQueryRequest` of one metrics query named `a`,
//!   bounds in milliseconds, reduced by `aggregator` (`avg` by default).
//!   Each group of the answer becomes one series of one point at the end
//!   of the window, labelled with the group's tags.
//!
//! The plugin never sees a credential: the operator's `api_keys`
//! (`DD-API-KEY`, `DD-APPLICATION-KEY`) are added by the host. A query
//! Datadog refuses (`errors`, or `status: error`) fails with Datadog's own
//! message; a query that matches nothing is an empty answer, not an error.

#![cfg_attr(
    not(any(target_arch = "wasm32", test)),
    allow(
        dead_code,
        reason = "natively only the unit tests call the plugin: the component export is Wasm only"
    )
)]

use std::collections::BTreeMap;

use serde_json::Value;
use tollgate_sdk::config::Settings;
use tollgate_sdk::source::{
    self, Config, Guest, Request, Response, Round, Series, SourceQuery, Step, serde_json,
};

/// Which of Datadog's query APIs a source uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    /// `GET /api/v1/query`: timeseries points.
    V1,
    /// `POST /api/v2/query/scalar`: one value per group over the window.
    Scalar,
}

/// The aggregators `MetricsAggregator` allows for a scalar query.
const AGGREGATORS: [&str; 9] = [
    "avg",
    "min",
    "max",
    "sum",
    "last",
    "percentile",
    "mean",
    "l2norm",
    "area",
];

/// A source's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Options {
    api: Api,
    /// The scalar query's reducer.
    aggregator: String,
}

impl Options {
    fn read(config: &Config) -> Result<Self, String> {
        let s = Settings::new(config);
        let api = match s.opt_text("api")?.unwrap_or("v1") {
            "v1" => Api::V1,
            "scalar" => Api::Scalar,
            other => {
                return Err(format!(
                    "`api` must be `v1` (GET /api/v1/query) or `scalar` (POST /api/v2/query/scalar), not `{other}`"
                ));
            }
        };
        let aggregator = s.opt_text("aggregator")?;
        s.finish()?;
        if api == Api::V1 && aggregator.is_some() {
            return Err(
                "`aggregator` applies to `api: scalar` only; a v1 query reduces in its own text (`avg:…`)"
                    .into(),
            );
        }
        let aggregator = aggregator.unwrap_or("avg");
        if !AGGREGATORS.contains(&aggregator) {
            return Err(format!(
                "`aggregator` must be one of {}, not `{aggregator}`",
                AGGREGATORS.join(", ")
            ));
        }
        Ok(Self {
            api,
            aggregator: aggregator.to_string(),
        })
    }
}

/// `Accept: application/json`, as the official client sends on every call.
fn accept_json(mut request: Request) -> Request {
    request
        .headers
        .push(("Accept".into(), "application/json".into()));
    request
}

/// The v1 request: `from`, `to` and `query`, in the official client's order.
fn v1_request(q: &SourceQuery) -> Request {
    let (from, to) = (q.start.to_string(), q.end.to_string());
    accept_json(source::get(
        "/api/v1/query",
        &[("from", &from), ("to", &to), ("query", &q.text)],
    ))
}

/// The `ScalarFormulaQueryRequest` body `datadog-api-client` builds for one
/// metrics query named `a` over the window (bounds in milliseconds).
fn scalar_body(q: &SourceQuery, aggregator: &str) -> Value {
    serde_json::json!({
        "data": {
            "attributes": {
                "from": q.start.saturating_mul(1000),
                "queries": [{
                    "name": "a",
                    "aggregator": aggregator,
                    "data_source": "metrics",
                    "query": q.text,
                }],
                "to": q.end.saturating_mul(1000),
            },
            "type": "scalar_request",
        }
    })
}

fn scalar_request(q: &SourceQuery, aggregator: &str) -> Request {
    accept_json(source::post_json(
        "/api/v2/query/scalar",
        &scalar_body(q, aggregator),
    ))
}

/// Datadog's messages in an error answer: `errors` is a list of strings
/// (the v2 API also sends one string there); v1 says `status: error` with
/// `error`.
fn datadog_errors(json: &Value) -> Option<String> {
    let listed: Vec<String> = match &json["errors"] {
        Value::Array(items) => items
            .iter()
            .map(|e| match e {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Value::String(s) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    };
    if !listed.is_empty() {
        return Some(listed.join("; "));
    }
    if json["status"].as_str() == Some("error") {
        return Some(
            json["error"]
                .as_str()
                .filter(|e| !e.is_empty())
                .unwrap_or("status `error` without a message")
                .to_string(),
        );
    }
    None
}

/// The answer as JSON, or the query's failure quoting Datadog's message.
fn answer_json(answer: &Response) -> Result<Value, String> {
    let ok = (200..300).contains(&answer.status);
    match serde_json::from_slice::<Value>(&answer.body) {
        Ok(json) => match datadog_errors(&json) {
            Some(message) if ok => Err(format!("Datadog refused the query: {}", quote(&message))),
            Some(message) => Err(format!(
                "Datadog refused the query (HTTP {}): {}",
                answer.status,
                quote(&message)
            )),
            None if ok => Ok(json),
            None => source::json(answer),
        },
        Err(_) => source::json(answer),
    }
}

/// A message on one line, bounded, as the SDK quotes answers.
fn quote(message: &str) -> String {
    source::quote(message.as_bytes())
}

/// Labels from Datadog tags: `key:value` becomes `key=value`, a bare tag
/// `tag=""`, `*` (every source) nothing; a key met twice keeps both values,
/// comma-separated.
fn tag_labels<'a>(tags: impl IntoIterator<Item = &'a str>) -> Vec<(String, String)> {
    let mut labels: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for tag in tags {
        let tag = tag.trim();
        if tag.is_empty() || tag == "*" {
            continue;
        }
        let (key, value) = tag.split_once(':').unwrap_or((tag, ""));
        let values = labels.entry(key.to_string()).or_default();
        if !values.iter().any(|v| v == value) {
            values.push(value.to_string());
        }
    }
    labels.into_iter().map(|(k, v)| (k, v.join(","))).collect()
}

/// The v1 answer's series.
fn read_v1(answer: &Response) -> Result<Vec<Series>, String> {
    let json = answer_json(answer)?;
    let Some(list) = json["series"].as_array() else {
        return match json.get("series") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(_) => Err("Datadog's answer has a `series` that is not a list".into()),
        };
    };
    let mut out = Vec::with_capacity(list.len());
    for s in list {
        let scope = s["scope"].as_str().unwrap_or_default();
        let tag_set = s["tag_set"].as_array().into_iter().flatten();
        let tags = scope.split(',').chain(tag_set.filter_map(Value::as_str));
        let points = s["pointlist"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((source::timestamp(&p[0], true)?, source::number(&p[1])?)));
        out.push(source::series(tag_labels(tags), points));
    }
    Ok(out)
}

/// The scalar answer: one series per group (row), one point at `end`.
fn read_scalar(answer: &Response, end: i64) -> Result<Vec<Series>, String> {
    let json = answer_json(answer)?;
    let columns = json["data"]["attributes"]["columns"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let groups: Vec<&Value> = columns.iter().filter(|c| c["type"] == "group").collect();
    let numbers: Vec<&Value> = columns.iter().filter(|c| c["type"] == "number").collect();
    // The query's own column is named `a`; with formulas there could be
    // others, but this plugin sends none.
    let Some(values) = numbers
        .iter()
        .find(|c| c["name"] == "a")
        .or_else(|| numbers.first())
        .and_then(|c| c["values"].as_array())
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(values.len());
    for (row, value) in values.iter().enumerate() {
        let labels: Vec<(String, String)> = groups
            .iter()
            .filter_map(|g| {
                let name = g["name"].as_str()?;
                let cell = &g["values"][row];
                let text = match cell {
                    Value::Array(parts) => parts
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(","),
                    Value::String(s) => s.clone(),
                    _ => return None,
                };
                Some((name.to_string(), text))
            })
            .collect();
        let points = source::number(value).map(|v| (end, v));
        out.push(source::series(labels, points));
    }
    out.retain(|s| !s.points.is_empty());
    Ok(out)
}

struct Datadog;

impl Guest for Datadog {
    fn validate_config(config: Config) -> Result<(), String> {
        Options::read(&config).map(|_| ())
    }

    fn start(config: Config, query: SourceQuery) -> Result<Round, String> {
        let options = Options::read(&config)?;
        if query.text.trim().is_empty() {
            return Err("the query is empty: give a Datadog metric query such as `avg:trace.http.request.errors{service:${service}}`".into());
        }
        Ok(Round::one(match options.api {
            Api::V1 => v1_request(&query),
            Api::Scalar => scalar_request(&query, &options.aggregator),
        }))
    }

    fn next(
        config: Config,
        query: SourceQuery,
        _state: Vec<u8>,
        answers: Vec<Response>,
    ) -> Result<Step, String> {
        let options = Options::read(&config)?;
        let answer = answers.first().ok_or("Datadog sent no answer to read")?;
        let series = match options.api {
            Api::V1 => read_v1(answer)?,
            Api::Scalar => read_scalar(answer, query.end)?,
        };
        Ok(Step::Done(series))
    }
}

// Natively (unit tests) there is no component to export: the names of
// component exports are not valid native symbols.
#[cfg(target_arch = "wasm32")]
tollgate_sdk::source::export_source!(Datadog);

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_sdk::source::{ConfigValue, Method};

    fn query(text: &str) -> SourceQuery {
        SourceQuery {
            metric: "error_rate".into(),
            text: text.into(),
            start: 1_796_558_100,
            end: 1_796_558_400,
            step_seconds: 60,
            variables: vec![("service".into(), "checkout".into())],
        }
    }

    fn config(pairs: &[(&str, &str)]) -> Config {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ConfigValue::Text(v.to_string())))
            .collect()
    }

    fn ok(body: &str) -> Response {
        Response {
            status: 200,
            content_type: Some("application/json".into()),
            body: body.as_bytes().to_vec(),
        }
    }

    const Q: &str = "avg:checkout.errors.rate{service:checkout} by {version}";

    #[test]
    fn settings_default_to_v1_and_refuse_what_they_do_not_know() {
        assert_eq!(Options::read(&config(&[])).unwrap().api, Api::V1);
        let scalar = Options::read(&config(&[("api", "scalar")])).unwrap();
        assert_eq!(
            (scalar.api, scalar.aggregator.as_str()),
            (Api::Scalar, "avg")
        );
        assert!(
            Options::read(&config(&[("api", "v2")]))
                .unwrap_err()
                .contains("`scalar`")
        );
        assert!(
            Options::read(&config(&[("aggregator", "max")]))
                .unwrap_err()
                .contains("`api: scalar` only")
        );
        assert!(
            Options::read(&config(&[("api", "scalar"), ("aggregator", "median")]))
                .unwrap_err()
                .contains("one of avg")
        );
        assert!(
            Options::read(&config(&[("apii", "v1")]))
                .unwrap_err()
                .contains("did you mean `api`")
        );
    }

    #[test]
    fn the_v1_request_is_the_official_clients() {
        let round = Datadog::start(config(&[]), query(Q)).unwrap();
        let r = &round.requests[0];
        assert_eq!(r.method, Method::Get);
        assert_eq!(
            r.path,
            "/api/v1/query?from=1796558100&to=1796558400&query=avg%3Acheckout.errors.rate%7Bservice%3Acheckout%7D+by+%7Bversion%7D"
        );
        assert_eq!(
            r.headers,
            vec![("Accept".into(), "application/json".into())]
        );
        assert!(r.body.is_empty());
        assert!(Datadog::start(config(&[]), query("  ")).is_err());
    }

    #[test]
    fn the_scalar_request_is_the_official_clients() {
        let round = Datadog::start(
            config(&[("api", "scalar"), ("aggregator", "max")]),
            query(Q),
        )
        .unwrap();
        let r = &round.requests[0];
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.path, "/api/v2/query/scalar");
        assert!(
            r.headers
                .contains(&("Content-Type".into(), "application/json".into()))
        );
        assert!(
            r.headers
                .contains(&("Accept".into(), "application/json".into()))
        );
        // What datadog-api-client 2.62.0 sent for the same query
        // (tests/sources/official/capture.py datadog-scalar).
        let official: Value = serde_json::from_str(
            r#"{"data": {"attributes": {"from": 1796558100000, "queries": [{"name": "a", "aggregator": "max", "data_source": "metrics", "query": "avg:checkout.errors.rate{service:checkout} by {version}"}], "to": 1796558400000}, "type": "scalar_request"}}"#,
        )
        .unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&r.body).unwrap(), official);
    }

    /// The shape of Datadog's documented and recorded answers
    /// (datadog-api-client-python's cassette for "Query timeseries points").
    #[test]
    fn v1_series_carry_their_tags_and_skip_nulls() {
        let body = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../tests/sources/official/responses/datadog-v1.json"
        ))
        .unwrap();
        let Step::Done(series) =
            Datadog::next(config(&[]), query(Q), Vec::new(), vec![ok(&body)]).unwrap()
        else {
            panic!("one round")
        };
        assert_eq!(series.len(), 1);
        assert_eq!(
            series[0].labels,
            vec![
                ("service".into(), "checkout".into()),
                ("version".into(), "2.1.0".into())
            ]
        );
        let points: Vec<(i64, f64)> = series[0]
            .points
            .iter()
            .map(|p| (p.timestamp, p.value))
            .collect();
        assert_eq!(
            points,
            vec![
                (1_796_558_160, 0.001),
                (1_796_558_220, 0.002),
                (1_796_558_340, 0.002),
                (1_796_558_400, 0.001)
            ]
        );
        assert_eq!(tag_labels(["*"]), vec![]);
        assert_eq!(
            tag_labels(["env:a", "env:b", "canary", "host:x:y"]),
            vec![
                ("canary".into(), String::new()),
                ("env".into(), "a,b".into()),
                ("host".into(), "x:y".into())
            ]
        );
    }

    #[test]
    fn no_data_is_an_empty_answer() {
        let body =
            r#"{"status":"ok","res_type":"time_series","series":[],"query":"x","message":""}"#;
        let step = Datadog::next(config(&[]), query(Q), Vec::new(), vec![ok(body)]).unwrap();
        assert_eq!(step, Step::Done(Vec::new()));
        let body = r#"{"data":{"type":"scalar_response","attributes":{"columns":[]}}}"#;
        let step = Datadog::next(
            config(&[("api", "scalar")]),
            query(Q),
            Vec::new(),
            vec![ok(body)],
        )
        .unwrap();
        assert_eq!(step, Step::Done(Vec::new()));
    }

    #[test]
    fn a_refused_query_quotes_datadogs_message() {
        // The recorded 400 of datadog-api-client-python's scalar cassette.
        let refused = Response {
            status: 400,
            content_type: Some("application/json".into()),
            body: br#"{"errors":["Queries ending outside the retention date are invalid"]}"#
                .to_vec(),
        };
        assert_eq!(
            Datadog::next(
                config(&[("api", "scalar")]),
                query(Q),
                Vec::new(),
                vec![refused]
            )
            .unwrap_err(),
            "Datadog refused the query (HTTP 400): Queries ending outside the retention date are invalid"
        );
        let v1_error = ok(
            r#"{"status":"error","res_type":"time_series","series":[],"error":"Error parsing query: unable to parse avg:{: Rule 'scope_expr' didn't match"}"#,
        );
        assert_eq!(
            Datadog::next(config(&[]), query(Q), Vec::new(), vec![v1_error]).unwrap_err(),
            "Datadog refused the query: Error parsing query: unable to parse avg:{: Rule 'scope_expr' didn't match"
        );
        let forbidden = Response {
            status: 403,
            content_type: Some("text/html".into()),
            body: b"<html>Forbidden</html>".to_vec(),
        };
        assert_eq!(
            Datadog::next(config(&[]), query(Q), Vec::new(), vec![forbidden]).unwrap_err(),
            "HTTP 403: <html>Forbidden</html>"
        );
    }

    #[test]
    fn scalar_groups_become_series_at_the_end_of_the_window() {
        let body = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../tests/sources/official/responses/datadog-scalar.json"
        ))
        .unwrap();
        let Step::Done(series) = Datadog::next(
            config(&[("api", "scalar")]),
            query(Q),
            Vec::new(),
            vec![ok(&body)],
        )
        .unwrap() else {
            panic!("one round")
        };
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].labels, vec![("version".into(), "2.1.0".into())]);
        assert_eq!(
            (series[0].points[0].timestamp, series[0].points[0].value),
            (1_796_558_400, 0.0015)
        );
        assert_eq!(series[1].labels, vec![("version".into(), "2.0.9".into())]);
        // The recorded answer of an ungrouped query: one series, no labels.
        let body = r#"{"data":{"type":"scalar_response","attributes":{"columns":[{"values":[6.368151928283307],"name":"a","meta":{"unit":[{"short_name":"%","id":17,"plural":"percent","name":"percent","family":"percentage","scale_factor":1.0},null]},"type":"number"}]}}}"#;
        let Step::Done(series) = Datadog::next(
            config(&[("api", "scalar")]),
            query(Q),
            Vec::new(),
            vec![ok(body)],
        )
        .unwrap() else {
            panic!("one round")
        };
        assert_eq!(series.len(), 1);
        assert!(series[0].labels.is_empty());
        assert_eq!(series[0].points[0].value, 6.368151928283307);
    }
}
