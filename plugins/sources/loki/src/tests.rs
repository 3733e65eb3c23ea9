//! Native tests: the request built, and answers from Loki's documentation
//! (the HTTP API reference's `query_range` examples) and its source (the
//! text its `WriteError` writes for a parse error its parser tests name).
//! No Grafana Loki runs here: Debian's `loki` package is an unrelated
//! genetics program (see the e2e's `source_servers.rs`).

use tollgate_sdk::source::{ConfigValue, Method, Sample};

use super::*;

fn query(text: &str) -> SourceQuery {
    SourceQuery {
        metric: "error_rate".into(),
        text: text.into(),
        start: 1_588_889_100,
        end: 1_588_889_221,
        step_seconds: 60,
        variables: vec![("service".into(), "checkout".into())],
    }
}

fn answer(status: u16, content_type: &str, body: &str) -> Response {
    Response {
        status,
        content_type: Some(content_type.into()),
        body: body.as_bytes().to_vec(),
    }
}

fn labels(s: &Series) -> Vec<(&str, &str)> {
    s.labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn the_request_sends_nanoseconds_and_a_duration_step() {
    let r = request(&query(r#"sum(rate({service="checkout"}[1m]))"#)).unwrap();
    assert_eq!(r.method, Method::Get);
    assert!(r.headers.is_empty() && r.body.is_empty());
    assert_eq!(
        r.path,
        "/loki/api/v1/query_range?query=sum%28rate%28%7Bservice%3D%22checkout%22%7D%5B1m%5D%29%29\
         &start=1588889100000000000&end=1588889221000000000&step=60s"
    );
    let mut q = query("x");
    q.start = i64::MAX / 10;
    assert!(request(&q).unwrap_err().contains("out of range"));
}

#[test]
fn settings_are_refused_since_there_are_none() {
    assert_eq!(Loki::validate_config(vec![]), Ok(()));
    let err =
        Loki::validate_config(vec![("tenant".into(), ConfigValue::Text("a".into()))]).unwrap_err();
    assert!(err.contains("unknown setting `tenant`"), "{err}");
}

/// The API reference's answer to `sum(rate({job="varlogs"}[10m])) by (level)`.
#[test]
fn the_documented_matrix_reads() {
    let body = r#"{
  "status": "success",
  "data": {
    "resultType": "matrix",
    "result": [
      {
       "metric": {
          "level": "info"
        },
        "values": [
          [
            1588889221,
            "137.95"
          ],
          [
            1588889221,
            "467.115"
          ],
          [
            1588889221,
            "658.8516666666667"
          ]
        ]
      },
      {
        "metric": {
          "level": "warn"
        },
        "values": [
          [
            1588889221,
            "137.27833333333334"
          ],
          [
            1588889221,
            "467.69"
          ],
          [
            1588889221,
            "660.6933333333334"
          ]
        ]
      }
    ],
    "stats": {}
  }
}"#;
    let series = parse(&answer(200, "application/json", body)).unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(labels(&series[0]), vec![("level", "info")]);
    assert_eq!(labels(&series[1]), vec![("level", "warn")]);
    assert_eq!(
        series[1].points[2],
        Sample {
            timestamp: 1_588_889_221,
            value: 660.6933333333334
        }
    );
}

/// Loki writes `[<float seconds>, "<value>"]`: fractions round, NaN drops.
#[test]
fn fractional_times_round_and_nan_is_skipped() {
    let body = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1588889221.5,"0.05"],[1588889281,"NaN"]]}]}}"#;
    let series = parse(&answer(200, "application/json", body)).unwrap();
    assert_eq!(
        series[0].points,
        vec![Sample {
            timestamp: 1_588_889_222,
            value: 0.05
        }]
    );
}

/// A metric query over streams with no lines: an empty matrix, no series.
#[test]
fn no_data_is_no_series() {
    let body = r#"{"status":"success","data":{"resultType":"matrix","result":[],"stats":{}}}"#;
    assert_eq!(
        parse(&answer(200, "application/json", body)).unwrap(),
        vec![]
    );
}

/// The API reference's answer to the log query `{job="varlogs"}`.
#[test]
fn a_log_query_is_refused_with_a_metric_query_to_use() {
    let body = r#"{
  "status": "success",
  "data": {
    "resultType": "streams",
    "result": [
      {
        "stream": {
          "filename": "/var/log/myproject.log",
          "job": "varlogs",
          "level": "info"
        },
        "values": [
          [
            "1569266497240578000",
            "foo"
          ],
          [
            "1569266492548155000",
            "bar"
          ]
        ]
      }
    ],
    "stats": {}
  }
}"#;
    let err = parse(&answer(200, "application/json", body)).unwrap_err();
    assert!(err.starts_with("the query is a log query"), "{err}");
    assert!(err.contains(r#"sum(rate({app="x"}[1m]))"#), "{err}");
}

/// What Loki 2.4 writes for `{foo="bar"` (its parser test's message,
/// through `http.Error`): plain text, HTTP 400.
#[test]
fn a_syntax_error_quotes_the_server() {
    let body = "parse error at line 1, col 11: syntax error: unexpected $end, expecting } or ,\n";
    assert_eq!(
        parse(&answer(400, "text/plain; charset=utf-8", body)).unwrap_err(),
        "Loki refused the query (HTTP 400): parse error at line 1, col 11: syntax error: unexpected $end, expecting } or ,"
    );
    // Without a tenant when Loki runs with `auth_enabled: true`.
    assert_eq!(
        parse(&answer(401, "text/plain; charset=utf-8", "no org id\n")).unwrap_err(),
        "Loki refused the query (HTTP 401): no org id"
    );
    // A JSON error, as a proxy speaking the Prometheus API's errors writes.
    let body = r#"{"status":"error","errorType":"bad_data","error":"invalid query"}"#;
    assert_eq!(
        parse(&answer(400, "application/json", body)).unwrap_err(),
        "Loki refused the query (HTTP 400): invalid query"
    );
}

#[test]
fn other_answers_are_named() {
    let body = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    assert_eq!(
        parse(&answer(200, "application/json", body)).unwrap_err(),
        "expected a metric query's `matrix`, got a `vector`"
    );
    let err = parse(&answer(200, "text/html", "<html></html>")).unwrap_err();
    assert!(
        err.starts_with("HTTP 200 with an answer that is not JSON"),
        "{err}"
    );
    let err = parse(&answer(200, "application/json", r#"{"data":{}}"#)).unwrap_err();
    assert!(err.starts_with("Loki did not answer with success"), "{err}");
}

#[test]
fn next_reads_the_first_answer() {
    let body = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
    let step = Loki::next(
        vec![],
        query("x"),
        vec![],
        vec![answer(200, "application/json", body)],
    );
    assert_eq!(step.unwrap(), Step::Done(vec![]));
    assert!(Loki::next(vec![], query("x"), vec![], vec![]).is_err());
}
