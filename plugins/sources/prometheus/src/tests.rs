//! Native tests: the request built, and answers recorded from Debian's
//! Prometheus 2.42 and VictoriaMetrics 1.79 serving the demo telemetry of
//! `scripts/prometheus-demo.py`, plus the examples of the Prometheus HTTP
//! API documentation.

use tollgate_sdk::source::{ConfigValue, Method, Sample};

use super::*;

fn query(text: &str) -> SourceQuery {
    SourceQuery {
        metric: "error_rate".into(),
        text: text.into(),
        start: 1_796_569_515,
        end: 1_796_571_315,
        step_seconds: 30,
        variables: vec![("service".into(), "checkout".into())],
    }
}

fn answer(status: u16, body: &str) -> Response {
    Response {
        status,
        content_type: Some("application/json".into()),
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
fn the_request_is_the_native_clients_form_post() {
    let r = request(&query(
        r#"sum(rate(http_requests_total{service="checkout"}[1m]))"#,
    ));
    assert_eq!(r.method, Method::Post);
    assert_eq!(r.path, "/api/v1/query_range");
    assert_eq!(
        r.headers,
        vec![(
            "Content-Type".to_string(),
            "application/x-www-form-urlencoded".to_string()
        )]
    );
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        "query=sum%28rate%28http_requests_total%7Bservice%3D%22checkout%22%7D%5B1m%5D%29%29\
         &start=1796569515&end=1796571315&step=30s"
    );
    let mut q = query("up");
    q.step_seconds = 0;
    let body = String::from_utf8(request(&q).body).unwrap();
    assert!(
        body.ends_with("&step=1s"),
        "a step is at least a second: {body}"
    );
}

#[test]
fn settings_are_refused_since_there_are_none() {
    assert_eq!(Prometheus::validate_config(vec![]), Ok(()));
    let err = Prometheus::validate_config(vec![("database".into(), ConfigValue::Text("x".into()))])
        .unwrap_err();
    assert!(err.contains("unknown setting `database`"), "{err}");
}

/// VictoriaMetrics 1.79, `sum by (track) (rate(http_requests_total{service="checkout",code="500"}[1m]))`.
#[test]
fn a_victoriametrics_matrix_is_one_series_per_label_set() {
    let body = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"track":"canary"},"values":[[1796571255,"0.004999999999999982"],[1796571285,"0.004999999999999982"],[1796571315,"0.005000000000000012"]]},{"metric":{"track":"primary"},"values":[[1796571255,"0.004999999999999982"],[1796571285,"0.004999999999999982"],[1796571315,"0.005000000000000012"]]}]}}"#;
    let series = parse(&answer(200, body)).unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(labels(&series[0]), vec![("track", "canary")]);
    assert_eq!(labels(&series[1]), vec![("track", "primary")]);
    assert_eq!(
        series[0].points[2],
        Sample {
            timestamp: 1_796_571_315,
            value: 0.005000000000000012
        }
    );
}

/// VictoriaMetrics 1.79, a raw counter: `__name__` is not a label gates see.
#[test]
fn the_metric_name_is_dropped() {
    let body = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"http_requests_total","code":"500","service":"checkout","track":"canary"},"values":[[1796571285,"11.85"],[1796571315,"12"]]}]}}"#;
    let series = parse(&answer(200, body)).unwrap();
    assert_eq!(
        labels(&series[0]),
        vec![
            ("code", "500"),
            ("service", "checkout"),
            ("track", "canary")
        ]
    );
    assert_eq!(series[0].points.len(), 2);
}

/// Prometheus 2.42 answers `NaN` for 0/0; those points are skipped, the
/// series stays.
#[test]
fn nan_points_are_skipped() {
    let body = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1796571255,"NaN"],[1796571285,"NaN"],[1796571315,"NaN"]]}]}}"#;
    let series = parse(&answer(200, body)).unwrap();
    assert_eq!(series.len(), 1);
    assert!(series[0].points.is_empty());
    let body = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1796571255,"+Inf"],[1796571285.5,"2455.223880597015"]]}]}}"#;
    let series = parse(&answer(200, body)).unwrap();
    assert_eq!(
        series[0].points,
        vec![Sample {
            timestamp: 1_796_571_286,
            value: 2455.223880597015
        }]
    );
}

/// No data (a service that sends none) is an empty answer, not an error.
#[test]
fn an_empty_matrix_is_no_series() {
    let body = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
    assert_eq!(parse(&answer(200, body)).unwrap(), vec![]);
}

/// Prometheus 2.42, `sum(rate(x[1m])`: the server's own message, on one line.
#[test]
fn a_prometheus_syntax_error_quotes_the_server() {
    let body = r#"{"status":"error","errorType":"bad_data","error":"1:16: parse error: unclosed left parenthesis"}"#;
    assert_eq!(
        parse(&answer(400, body)).unwrap_err(),
        "the server refused the query (HTTP 400, bad_data): 1:16: parse error: unclosed left parenthesis"
    );
}

/// VictoriaMetrics 1.79 answers 422 with the query in its message.
#[test]
fn a_victoriametrics_syntax_error_quotes_the_server() {
    let body = r#"{"status":"error","errorType":"422","error":"error when executing query=\"sum(rate(x[1m])\" on the time range (start=1796571255000, end=1796571315000, step=30000): cannot execute query: argList: unexpected token \"\"; want \",\", \")\"; unparsed data: \"\""}"#;
    let err = parse(&answer(422, body)).unwrap_err();
    assert!(
        err.starts_with("the server refused the query (HTTP 422, 422): error when executing query=\"sum(rate(x[1m])\""),
        "{err}"
    );
    assert!(err.contains("argList: unexpected token"), "{err}");
}

/// The documentation's example of an expression query answer (an instant
/// `vector`): not what a range query answers, so it is refused clearly.
#[test]
fn a_vector_answer_is_refused() {
    let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"prometheus","instance":"localhost:9090"},"value":[1435781451.781,"1"]}]}}"#;
    let err = parse(&answer(200, body)).unwrap_err();
    assert_eq!(
        err,
        "expected a range query's `matrix`, got a `vector`: is the URL a Prometheus-compatible API?"
    );
}

/// The documentation's range query example.
#[test]
fn the_documented_range_answer_reads() {
    let body = r#"{
   "status" : "success",
   "data" : {
      "resultType" : "matrix",
      "result" : [
         {
            "metric" : {
               "__name__" : "up",
               "job" : "prometheus",
               "instance" : "localhost:9090"
            },
            "values" : [
               [ 1435781430.781, "1" ],
               [ 1435781445.781, "1" ],
               [ 1435781460.781, "1" ]
            ]
         },
         {
            "metric" : {
               "__name__" : "up",
               "job" : "node",
               "instance" : "localhost:9091"
            },
            "values" : [
               [ 1435781430.781, "0" ],
               [ 1435781445.781, "0" ],
               [ 1435781460.781, "1" ]
            ]
         }
      ]
   }
}"#;
    let series = parse(&answer(200, body)).unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(
        labels(&series[1]),
        vec![("instance", "localhost:9091"), ("job", "node")]
    );
    assert_eq!(series[1].points[0].timestamp, 1_435_781_431);
    assert_eq!(series[1].points[2].value, 1.0);
}

#[test]
fn answers_that_are_not_the_api_are_named() {
    let html = Response {
        status: 200,
        content_type: Some("text/html".into()),
        body: b"<html><body>Grafana</body></html>".to_vec(),
    };
    assert!(
        parse(&html)
            .unwrap_err()
            .starts_with("HTTP 200 with an answer that is not JSON")
    );
    let gateway = Response {
        status: 502,
        content_type: Some("text/plain".into()),
        body: b"upstream connect error".to_vec(),
    };
    assert_eq!(
        parse(&gateway).unwrap_err(),
        "HTTP 502: upstream connect error"
    );
    let err = parse(&answer(200, r#"{"data":[]}"#)).unwrap_err();
    assert!(err.contains("not the Prometheus API's"), "{err}");
    let err = parse(&answer(
        200,
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"values":[]}]}}"#,
    ))
    .unwrap_err();
    assert_eq!(err, "malformed matrix: series 0 has no `metric` object");
}

#[test]
fn next_reads_the_first_answer() {
    let body = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
    let step = Prometheus::next(vec![], query("up"), vec![], vec![answer(200, body)]).unwrap();
    assert_eq!(step, Step::Done(vec![]));
    assert!(Prometheus::next(vec![], query("up"), vec![], vec![]).is_err());
}
