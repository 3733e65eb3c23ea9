//! The `cloudwatch` source: Amazon CloudWatch `GetMetricData` with a
//! Metrics Insights query (`SELECT AVG(…) FROM SCHEMA(…) WHERE … GROUP BY …`),
//! sent exactly as botocore sends it.
//!
//! botocore 1.44 reads CloudWatch's `protocols` (`smithy-rpc-v2-cbor`,
//! `json`, `query`) in its own order of preference and picks AWS JSON 1.0:
//! `POST /` with `Content-Type: application/x-amz-json-1.0`,
//! `X-Amz-Target: GraniteServiceVersion20100801.GetMetricData`, and, since
//! the service is `awsQueryCompatible`, `x-amzn-query-mode: true`. The body
//! is the bytes Python's `json.dumps` writes for the parameters in the
//! order they are given (`, ` and `: ` separators, everything outside
//! printable ASCII escaped), so the host's SigV4 signature over it is the
//! one botocore computes. The host signs (`sigv4:` in the source's
//! configuration, service `monitoring`) and adds `X-Amz-Date` and any
//! session token; the plugin sets no `X-Amz-*` header but `X-Amz-Target`.
//!
//! The query is `MetricDataQueries[0].Expression` with id `q1`, `Period`
//! the policy's step, `StartTime`/`EndTime` the window. Further pages
//! (`NextToken`) are more rounds, the series read so far carried in the
//! round's state. Each result becomes a series labelled `label=<Label>`
//! (for a `GROUP BY`, the group's values). A result whose `StatusCode` is
//! `Forbidden` or `InternalError`, or an operation-level `Messages` entry
//! (the data may be partial), fails the query with CloudWatch's message.

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
    self, Config, Guest, Method, Request, Response, Round, Series, SourceQuery, Step, serde_json,
};

/// `X-Amz-Target` of `GetMetricData`: the service's `targetPrefix` and the
/// operation.
pub const TARGET: &str = "GraniteServiceVersion20100801.GetMetricData";
/// AWS JSON 1.0, CloudWatch's `jsonVersion`.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.0";
/// The id of the one query; CloudWatch wants `^[a-z][a-zA-Z0-9_]*$`.
const QUERY_ID: &str = "q1";

/// Python's `json.dumps` of a string with `ensure_ascii` (its default):
/// `"` and `\` escaped, `\n \r \t \b \f` by name, and every other
/// character outside printable ASCII (`' '..='~'`) as `\uXXXX` in
/// lowercase hex, as a surrogate pair above U+FFFF.
fn py_json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

/// The `GetMetricData` body botocore serialises for
/// `get_metric_data(MetricDataQueries=[{"Id", "Expression", "Period"}],
/// StartTime=…, EndTime=…[, NextToken=…])`, byte for byte: timestamps are
/// whole epoch seconds (botocore's `unixtimestamp` of a time without
/// microseconds).
fn body(q: &SourceQuery, next_token: Option<&str>) -> String {
    let mut out = format!(
        "{{\"MetricDataQueries\": [{{\"Id\": {}, \"Expression\": {}, \"Period\": {}}}], \"StartTime\": {}, \"EndTime\": {}",
        py_json_string(QUERY_ID),
        py_json_string(&q.text),
        q.step_seconds,
        q.start,
        q.end
    );
    if let Some(token) = next_token {
        out.push_str(&format!(", \"NextToken\": {}", py_json_string(token)));
    }
    out.push('}');
    out
}

fn request(q: &SourceQuery, next_token: Option<&str>) -> Request {
    Request {
        method: Method::Post,
        path: "/".into(),
        headers: vec![
            ("X-Amz-Target".into(), TARGET.into()),
            ("Content-Type".into(), CONTENT_TYPE.into()),
            ("x-amzn-query-mode".into(), "true".into()),
        ],
        body: body(q, next_token).into_bytes(),
    }
}

/// Checks the settings (there are none) and the query.
fn check(config: &Config, q: &SourceQuery) -> Result<(), String> {
    let s = Settings::new(config);
    s.finish()?;
    if q.text.trim().is_empty() {
        return Err("the query is empty: give a Metrics Insights query such as `SELECT AVG(CPUUtilization) FROM SCHEMA(\"AWS/EC2\", InstanceId)`".into());
    }
    let period = q.step_seconds;
    if !(matches!(period, 1 | 5 | 10 | 20 | 30) || (period > 0 && period.is_multiple_of(60))) {
        return Err(format!(
            "CloudWatch's `Period` must be 1, 5, 10, 20, 30 or a multiple of 60 seconds; the metric's `step` is {period}s"
        ));
    }
    Ok(())
}

/// CloudWatch's error: `__type` (its part after `#`) and `message`.
fn aws_error(answer: &Response) -> String {
    let json = serde_json::from_slice::<Value>(&answer.body).unwrap_or(Value::Null);
    let kind = json["__type"]
        .as_str()
        .map(|t| t.rsplit('#').next().unwrap_or(t).to_string());
    let message = json["message"]
        .as_str()
        .or_else(|| json["Message"].as_str())
        .map(str::to_string);
    match (kind, message) {
        (Some(kind), Some(message)) => format!(
            "CloudWatch refused the request (HTTP {}, {kind}): {}",
            answer.status,
            source::quote(message.as_bytes())
        ),
        (Some(kind), None) => format!(
            "CloudWatch refused the request (HTTP {}, {kind})",
            answer.status
        ),
        (None, Some(message)) => format!(
            "CloudWatch refused the request (HTTP {}): {}",
            answer.status,
            source::quote(message.as_bytes())
        ),
        (None, None) => format!("HTTP {}: {}", answer.status, source::quote(&answer.body)),
    }
}

/// `Messages` as `Code: Value; …`.
fn messages(list: &Value) -> Option<String> {
    let items: Vec<String> = list
        .as_array()?
        .iter()
        .map(|m| {
            let code = m["Code"].as_str().unwrap_or_default();
            let value = m["Value"].as_str().unwrap_or_default();
            match (code.is_empty(), value.is_empty()) {
                (false, false) => format!("{code}: {value}"),
                (false, true) => code.to_string(),
                _ => value.to_string(),
            }
        })
        .filter(|m| !m.is_empty())
        .collect();
    (!items.is_empty()).then(|| items.join("; "))
}

/// Points read so far, by label.
type Pages = BTreeMap<String, Vec<(i64, f64)>>;

/// One page: its points added to `pages`, and its `NextToken`.
fn read_page(answer: &Response, pages: &mut Pages) -> Result<Option<String>, String> {
    if !(200..300).contains(&answer.status) {
        return Err(aws_error(answer));
    }
    let json = source::json(answer)?;
    if let Some(m) = messages(&json["Messages"]) {
        return Err(format!(
            "CloudWatch answered with a message about the whole query (its data may be partial): {}",
            source::quote(m.as_bytes())
        ));
    }
    for result in json["MetricDataResults"].as_array().into_iter().flatten() {
        let status = result["StatusCode"].as_str().unwrap_or("Complete");
        if matches!(status, "Forbidden" | "InternalError") {
            let why = messages(&result["Messages"]).unwrap_or_else(|| "no message".into());
            return Err(format!(
                "CloudWatch answered {status} for `{}`: {}",
                result["Label"].as_str().unwrap_or(QUERY_ID),
                source::quote(why.as_bytes())
            ));
        }
        let label = result["Label"]
            .as_str()
            .filter(|l| !l.is_empty())
            .or_else(|| result["Id"].as_str())
            .unwrap_or(QUERY_ID)
            .to_string();
        let times = result["Timestamps"].as_array().cloned().unwrap_or_default();
        let values = result["Values"].as_array().cloned().unwrap_or_default();
        if times.len() != values.len() {
            return Err(format!(
                "CloudWatch's result `{label}` has {} timestamps and {} values",
                times.len(),
                values.len()
            ));
        }
        let points = pages.entry(label).or_default();
        for (t, v) in times.iter().zip(&values) {
            if let (Some(t), Some(v)) = (source::timestamp(t, false), source::number(v)) {
                points.push((t, v));
            }
        }
    }
    Ok(json["NextToken"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_string))
}

/// The pages read so far, as the round's state.
fn encode(pages: &Pages) -> Result<Vec<u8>, String> {
    serde_json::to_vec(pages).map_err(|e| format!("cannot keep the pages read so far: {e}"))
}

fn decode(state: &[u8]) -> Result<Pages, String> {
    if state.is_empty() {
        return Ok(Pages::new());
    }
    serde_json::from_slice(state)
        .map_err(|e| format!("the state between pages is not what this plugin wrote: {e}"))
}

/// The series: one per label, oldest point first (CloudWatch sends the
/// newest first by default).
fn finish(pages: Pages) -> Vec<Series> {
    pages
        .into_iter()
        .map(|(label, mut points)| {
            points.sort_by_key(|p| p.0);
            points.dedup_by_key(|p| p.0);
            source::series([("label", label)], points)
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

struct CloudWatch;

impl Guest for CloudWatch {
    fn validate_config(config: Config) -> Result<(), String> {
        Settings::new(&config).finish()
    }

    fn start(config: Config, query: SourceQuery) -> Result<Round, String> {
        check(&config, &query)?;
        Ok(Round::one(request(&query, None)))
    }

    fn next(
        config: Config,
        query: SourceQuery,
        state: Vec<u8>,
        answers: Vec<Response>,
    ) -> Result<Step, String> {
        check(&config, &query)?;
        let answer = answers.first().ok_or("CloudWatch sent no answer to read")?;
        let mut pages = decode(&state)?;
        Ok(match read_page(answer, &mut pages)? {
            Some(token) => Step::Fetch(Round {
                requests: vec![request(&query, Some(&token))],
                state: encode(&pages)?,
            }),
            None => Step::Done(finish(pages)),
        })
    }
}

// Natively (unit tests) there is no component to export: the names of
// component exports are not valid native symbols.
#[cfg(target_arch = "wasm32")]
tollgate_sdk::source::export_source!(CloudWatch);

#[cfg(test)]
mod tests {
    use super::*;

    const EXPRESSION: &str = "SELECT AVG(ErrorRate) FROM SCHEMA(\"Checkout/HTTP\", ServiceName) WHERE ServiceName = 'checkout' GROUP BY ServiceName";

    fn query(text: &str) -> SourceQuery {
        SourceQuery {
            metric: "error_rate".into(),
            text: text.into(),
            start: 1_796_558_100,
            end: 1_796_558_400,
            step_seconds: 60,
            variables: vec![],
        }
    }

    fn response(status: u16, body: &[u8]) -> Response {
        Response {
            status,
            content_type: Some(CONTENT_TYPE.into()),
            body: body.to_vec(),
        }
    }

    fn canned(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../../../tests/sources/official/responses/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    /// What boto3 1.44.18 / botocore 1.44.18 sent for the same query
    /// (`tests/sources/official/capture.py cloudwatch`), byte for byte.
    #[test]
    fn the_request_is_botocores_byte_for_byte() {
        let round = CloudWatch::start(Vec::new(), query(EXPRESSION)).unwrap();
        let r = &round.requests[0];
        assert_eq!((r.method, r.path.as_str()), (Method::Post, "/"));
        assert_eq!(
            r.headers,
            vec![
                (
                    "X-Amz-Target".into(),
                    "GraniteServiceVersion20100801.GetMetricData".into()
                ),
                ("Content-Type".into(), "application/x-amz-json-1.0".into()),
                ("x-amzn-query-mode".into(), "true".into()),
            ]
        );
        assert_eq!(
            String::from_utf8(r.body.clone()).unwrap(),
            r#"{"MetricDataQueries": [{"Id": "q1", "Expression": "SELECT AVG(ErrorRate) FROM SCHEMA(\"Checkout/HTTP\", ServiceName) WHERE ServiceName = 'checkout' GROUP BY ServiceName", "Period": 60}], "StartTime": 1796558100, "EndTime": 1796558400}"#
        );
        assert_eq!(
            body(&query(EXPRESSION), Some("page-2-of-q1")),
            r#"{"MetricDataQueries": [{"Id": "q1", "Expression": "SELECT AVG(ErrorRate) FROM SCHEMA(\"Checkout/HTTP\", ServiceName) WHERE ServiceName = 'checkout' GROUP BY ServiceName", "Period": 60}], "StartTime": 1796558100, "EndTime": 1796558400, "NextToken": "page-2-of-q1"}"#
        );
    }

    /// `json.dumps("a\"\\\n\t\u0001\u007fé😀/")` in Python.
    #[test]
    fn strings_are_escaped_as_python_escapes_them() {
        assert_eq!(
            py_json_string("a\"\\\n\t\u{1}\u{7f}é😀/\u{8}\u{c}\r"),
            r#""a\"\\\n\t\u0001\u007f\u00e9\ud83d\ude00/\b\f\r""#
        );
    }

    #[test]
    fn pages_are_followed_and_merged() {
        let Step::Fetch(round) = CloudWatch::next(
            Vec::new(),
            query(EXPRESSION),
            Vec::new(),
            vec![response(200, &canned("cloudwatch.json"))],
        )
        .unwrap() else {
            panic!("a second page")
        };
        let body = String::from_utf8(round.requests[0].body.clone()).unwrap();
        assert!(
            body.ends_with(r#", "NextToken": "page-2-of-q1"}"#),
            "{body}"
        );
        let Step::Done(series) = CloudWatch::next(
            Vec::new(),
            query(EXPRESSION),
            round.state,
            vec![response(200, &canned("cloudwatch-page2.json"))],
        )
        .unwrap() else {
            panic!("the last page")
        };
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].labels, vec![("label".into(), "checkout".into())]);
        let points: Vec<(i64, f64)> = series[0]
            .points
            .iter()
            .map(|p| (p.timestamp, p.value))
            .collect();
        assert_eq!(
            points,
            vec![
                (1_796_558_160, 0.001),
                (1_796_558_220, 0.001),
                (1_796_558_280, 0.002),
                (1_796_558_340, 0.001),
                (1_796_558_400, 0.002)
            ]
        );
    }

    #[test]
    fn no_data_is_an_empty_answer() {
        let body = br#"{"MetricDataResults":[{"Id":"q1","Label":"q1","Timestamps":[],"Values":[],"StatusCode":"Complete"}],"Messages":[]}"#;
        assert_eq!(
            CloudWatch::next(
                Vec::new(),
                query(EXPRESSION),
                Vec::new(),
                vec![response(200, body)]
            )
            .unwrap(),
            Step::Done(vec![])
        );
        // Timestamps as JSON 1.0 services write them: epoch seconds, maybe fractional.
        let body = br#"{"MetricDataResults":[{"Id":"q1","Label":"api","Timestamps":[1.7965584E9],"Values":[0.5],"StatusCode":"Complete"}]}"#;
        let Step::Done(series) = CloudWatch::next(
            Vec::new(),
            query(EXPRESSION),
            Vec::new(),
            vec![response(200, body)],
        )
        .unwrap() else {
            panic!("one page")
        };
        assert_eq!(series[0].points[0].timestamp, 1_796_558_400);
    }

    #[test]
    fn refusals_and_messages_fail_the_query() {
        let refused = response(
            400,
            br#"{"__type":"com.amazonaws.monitoring#InvalidParameterValueException","message":"The Metrics Insights query is invalid: unexpected token FORM"}"#,
        );
        assert_eq!(
            CloudWatch::next(Vec::new(), query(EXPRESSION), Vec::new(), vec![refused]).unwrap_err(),
            "CloudWatch refused the request (HTTP 400, InvalidParameterValueException): The Metrics Insights query is invalid: unexpected token FORM"
        );
        let denied = response(403, br#"{"__type":"AccessDeniedException","Message":"not authorized to perform: cloudwatch:GetMetricData"}"#);
        assert!(
            CloudWatch::next(Vec::new(), query(EXPRESSION), Vec::new(), vec![denied])
                .unwrap_err()
                .contains("AccessDeniedException")
        );
        let partial = response(200, br#"{"MetricDataResults":[],"Messages":[{"Code":"MaxMetricsExceeded","Value":"Maximum number of allowed metrics exceeded"}]}"#);
        assert!(
            CloudWatch::next(Vec::new(), query(EXPRESSION), Vec::new(), vec![partial])
                .unwrap_err()
                .ends_with("MaxMetricsExceeded: Maximum number of allowed metrics exceeded")
        );
        let forbidden = response(200, br#"{"MetricDataResults":[{"Id":"q1","Label":"x","Timestamps":[],"Values":[],"StatusCode":"Forbidden","Messages":[{"Code":"Forbidden","Value":"no access to namespace"}]}]}"#);
        assert!(
            CloudWatch::next(Vec::new(), query(EXPRESSION), Vec::new(), vec![forbidden])
                .unwrap_err()
                .contains("Forbidden for `x`")
        );
    }

    #[test]
    fn the_period_and_settings_are_checked() {
        let mut q = query(EXPRESSION);
        for ok in [1, 5, 10, 20, 30, 60, 300] {
            q.step_seconds = ok;
            assert!(CloudWatch::start(Vec::new(), q.clone()).is_ok(), "{ok}");
        }
        for bad in [0, 15, 45, 90] {
            q.step_seconds = bad;
            assert!(
                CloudWatch::start(Vec::new(), q.clone())
                    .unwrap_err()
                    .contains("`Period`"),
                "{bad}"
            );
        }
        let unknown = vec![(
            "region".into(),
            tollgate_sdk::source::ConfigValue::Text("eu-west-1".into()),
        )];
        assert!(
            CloudWatch::validate_config(unknown)
                .unwrap_err()
                .contains("takes no settings")
        );
        assert!(CloudWatch::start(Vec::new(), query(" ")).is_err());
    }
}
