//! Native tests: settings, the request built, and answers recorded from
//! Debian's InfluxDB 1.6.7 serving the demo telemetry (measurement
//! `requests`, tags `service` and `track`, fields `error_rate`, `p95_ms`
//! and `conversion_rate`), plus the examples of InfluxDB 1.x's API
//! documentation.

use tollgate_sdk::source::{ConfigValue, Method, Sample};

use super::*;

fn config(pairs: &[(&str, &str)]) -> Config {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), ConfigValue::Text(v.to_string())))
        .collect()
}

fn query(text: &str) -> SourceQuery {
    SourceQuery {
        metric: "error_rate".into(),
        text: text.into(),
        start: 1_796_571_270,
        end: 1_796_571_390,
        step_seconds: 30,
        variables: vec![("service".into(), "payments-spike".into())],
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

fn params(path: &str) -> Vec<(String, String)> {
    let (_, q) = path.split_once('?').unwrap();
    q.split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            (k.to_string(), decode(v))
        })
        .collect()
}

/// Form-decoding, enough for these tests.
fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn the_database_is_required_and_unknown_settings_refused() {
    assert_eq!(
        Options::read(&config(&[("database", "telemetry")])),
        Ok(Options {
            database: "telemetry".into(),
            retention_policy: None
        })
    );
    assert_eq!(
        Options::read(&config(&[("database", "t"), ("retention_policy", "week")]))
            .unwrap()
            .retention_policy
            .as_deref(),
        Some("week")
    );
    assert_eq!(
        InfluxDb::validate_config(vec![]).unwrap_err(),
        "`database` is required"
    );
    assert_eq!(
        InfluxDb::validate_config(config(&[("databse", "t")])).unwrap_err(),
        "`database` is required; `databse` is not a setting: did you mean `database`?"
    );
    let err = InfluxDb::validate_config(config(&[("database", "t"), ("rp", "x")])).unwrap_err();
    assert!(err.starts_with("unknown setting `rp`"), "{err}");
    assert!(InfluxDb::validate_config(config(&[("database", " ")])).is_err());
}

#[test]
fn time_filter_and_interval_become_the_window_and_step() {
    let q = query(
        r#"SELECT mean("error_rate") FROM "requests" WHERE "service" = 'payments-spike' AND $timeFilter GROUP BY time($interval) fill(none)"#,
    );
    assert_eq!(
        influxql(&q).unwrap(),
        r#"SELECT mean("error_rate") FROM "requests" WHERE "service" = 'payments-spike' AND time > 1796571270s AND time <= 1796571390s GROUP BY time(30s) fill(none)"#
    );
    let q = query("SELECT mean(v) FROM m WHERE $timeFilter GROUP BY time($__interval)");
    assert_eq!(
        influxql(&q).unwrap(),
        "SELECT mean(v) FROM m WHERE time > 1796571270s AND time <= 1796571390s GROUP BY time(30s)"
    );
}

#[test]
fn a_query_without_time_filter_is_refused_naming_it() {
    let err = influxql(&query("SELECT mean(v) FROM m GROUP BY time(30s)")).unwrap_err();
    assert!(err.contains("`$timeFilter`"), "{err}");
    let err = InfluxDb::start(config(&[("database", "t")]), query("SELECT v FROM m")).unwrap_err();
    assert!(err.contains("`$timeFilter`"), "{err}");
}

#[test]
fn the_request_is_a_get_of_query_with_seconds() {
    let options = Options {
        database: "telemetry".into(),
        retention_policy: Some("autogen".into()),
    };
    let r = request(&options, &query("SELECT v FROM m WHERE $timeFilter")).unwrap();
    assert_eq!(r.method, Method::Get);
    assert!(r.path.starts_with("/query?"), "{}", r.path);
    assert!(r.body.is_empty() && r.headers.is_empty());
    assert_eq!(
        params(&r.path),
        vec![
            ("db".to_string(), "telemetry".to_string()),
            ("rp".to_string(), "autogen".to_string()),
            (
                "q".to_string(),
                "SELECT v FROM m WHERE time > 1796571270s AND time <= 1796571390s".to_string()
            ),
            ("epoch".to_string(), "s".to_string()),
        ]
    );
    let options = Options {
        database: "telemetry".into(),
        retention_policy: None,
    };
    let r = request(&options, &query("SELECT v FROM m WHERE $timeFilter")).unwrap();
    assert!(!r.path.contains("rp="), "{}", r.path);
}

/// InfluxDB 1.6.7, `SELECT mean("error_rate") … GROUP BY time(30s) fill(none)`
/// for the spiking canary: one series, no tags.
#[test]
fn a_grouped_mean_is_one_series() {
    let body = r#"{"results":[{"statement_id":0,"series":[{"name":"requests","columns":["time","mean"],"values":[[1796571270,0.05],[1796571300,0.05],[1796571330,0.05],[1796571360,0.05],[1796571390,0.05]]}]}]}"#;
    let series = parse(&answer(200, body)).unwrap();
    assert_eq!(series.len(), 1);
    assert!(series[0].labels.is_empty());
    assert_eq!(series[0].points.len(), 5);
    assert_eq!(
        series[0].points[4],
        Sample {
            timestamp: 1_796_571_390,
            value: 0.05
        }
    );
}

/// InfluxDB 1.6.7, `… GROUP BY time(60s), "track"`: the tags are the labels.
#[test]
fn tags_are_labels() {
    let body = r#"{"results":[{"statement_id":0,"series":[{"name":"requests","tags":{"track":"canary"},"columns":["time","mean"],"values":[[1796571240,0.05],[1796571300,0.05],[1796571360,0.05000000000000001]]},{"name":"requests","tags":{"track":"primary"},"columns":["time","mean"],"values":[[1796571240,0.00005],[1796571300,0.00005],[1796571360,0.00005]]}]}]}"#;
    let series = parse(&answer(200, body)).unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(labels(&series[0]), vec![("track", "canary")]);
    assert_eq!(labels(&series[1]), vec![("track", "primary")]);
    assert_eq!(series[1].points[2].value, 0.00005);
}

/// InfluxDB 1.6.7, `SELECT "error_rate", "p95_ms" …`: a series per field.
#[test]
fn several_value_columns_are_a_series_each_labelled_by_field() {
    let body = r#"{"results":[{"statement_id":0,"series":[{"name":"requests","columns":["time","error_rate","p95_ms"],"values":[[1796571375,0.00005,2455.223880597015],[1796571390,0.00005,2455.223880597015]]}]}]}"#;
    let series = parse(&answer(200, body)).unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(labels(&series[0]), vec![("field", "error_rate")]);
    assert_eq!(labels(&series[1]), vec![("field", "p95_ms")]);
    assert_eq!(series[1].points[0].value, 2455.223880597015);
    assert_eq!(series[1].points[0].timestamp, 1_796_571_375);
}

/// InfluxDB 1.6.7 under `fill(null)` past the data's end: nulls are skipped.
#[test]
fn null_values_are_skipped() {
    let body = r#"{"results":[{"statement_id":0,"series":[{"name":"requests","columns":["time","mean"],"values":[[1796571360,2455.223880597015],[1796571390,2455.223880597015],[1796571420,null],[1796571450,null]]}]}]}"#;
    let series = parse(&answer(200, body)).unwrap();
    assert_eq!(series[0].points.len(), 2);
}

/// InfluxDB 1.6.7 for a service with no data: a statement without series.
#[test]
fn no_data_is_no_series() {
    let body = r#"{"results":[{"statement_id":0}]}"#;
    assert_eq!(parse(&answer(200, body)).unwrap(), vec![]);
}

/// InfluxDB 1.6.7, two statements: both statements' series are read.
#[test]
fn every_statement_is_read() {
    let body = r#"{"results":[{"statement_id":0,"series":[{"name":"requests","columns":["time","mean"],"values":[[1796571270,0.00629375]]}]},{"statement_id":1,"series":[{"name":"requests","tags":{"service":"cart-drop"},"columns":["time","max"],"values":[[1796571285,207.14285714285708]]},{"name":"requests","tags":{"service":"checkout"},"columns":["time","max"],"values":[[1796571285,207.14285714285708]]}]}]}"#;
    let series = parse(&answer(200, body)).unwrap();
    assert_eq!(series.len(), 3);
    assert_eq!(labels(&series[2]), vec![("service", "checkout")]);
}

/// InfluxDB 1.6.7, `SELECT mean("error_rate" FROM "requests"`: HTTP 400.
#[test]
fn a_syntax_error_quotes_the_server() {
    let body = r#"{"error":"error parsing query: found FROM, expected ) at line 1, char 26"}"#;
    assert_eq!(
        parse(&answer(400, body)).unwrap_err(),
        "InfluxDB refused the query (HTTP 400): error parsing query: found FROM, expected ) at line 1, char 26"
    );
}

/// InfluxDB 1.6.7, an unknown database: HTTP 200 with the statement's error.
#[test]
fn a_statement_error_quotes_the_server() {
    let body = r#"{"results":[{"statement_id":0,"error":"database not found: nope"}]}"#;
    assert_eq!(
        parse(&answer(200, body)).unwrap_err(),
        "InfluxDB refused statement 0: database not found: nope"
    );
}

/// InfluxDB's answer to a request whose credentials do not parse (HTTP 401).
#[test]
fn a_credentials_error_quotes_the_server() {
    let body = r#"{"error":"unable to parse authentication credentials"}"#;
    assert_eq!(
        parse(&answer(401, body)).unwrap_err(),
        "InfluxDB refused the query (HTTP 401): unable to parse authentication credentials"
    );
}

/// The documentation's `SELECT * FROM "mymeas"` example, its RFC3339
/// times written as the seconds `epoch=s` asks for, and marked `partial`
/// as the server marks a series cut at its `max-row-limit` (the handler's
/// code in `services/httpd/handler.go`): refused as truncated.
#[test]
fn a_truncated_answer_is_an_error() {
    let body = r#"{"results":[{"statement_id":0,"series":[{"name":"mymeas","columns":["time","myfield","mytag1","mytag2"],"values":[[1488327378,33.1,null,null],[1488327438,12.4,"12","14"]],"partial":true}]}]}"#;
    let err = parse(&answer(200, body)).unwrap_err();
    assert!(err.starts_with("InfluxDB truncated the answer"), "{err}");
}

/// The documentation's `SELECT * FROM "mymeas"` (times as seconds): tag columns hold text,
/// which is no number and so no point; `myfield` reads.
#[test]
fn the_documented_select_star_reads_its_numbers() {
    let body = r#"{"results":[{"statement_id":0,"series":[{"name":"mymeas","columns":["time","myfield","mytag1","mytag2"],"values":[[1488327378,33.1,null,null],[1488327438,12.4,"12","14"]]}]}]}"#;
    let series = parse(&answer(200, body)).unwrap();
    assert_eq!(series.len(), 3);
    assert_eq!(labels(&series[0]), vec![("field", "myfield")]);
    assert_eq!(series[0].points.len(), 2);
    // Tag values written as numeric text read as numbers: 12 and 14.
    assert_eq!(series[1].points.len(), 1);
}

#[test]
fn answers_without_time_or_results_are_named() {
    let body = r#"{"results":[{"statement_id":0,"series":[{"name":"requests","columns":["tagKey"],"values":[["service"],["track"]]}]}]}"#;
    let err = parse(&answer(200, body)).unwrap_err();
    assert!(err.contains("no `time` column (columns: tagKey)"), "{err}");
    let err = parse(&answer(200, r#"{"status":"success"}"#)).unwrap_err();
    assert!(err.contains("no `results` list"), "{err}");
    let err = parse(&Response {
        status: 502,
        content_type: None,
        body: b"<html>Bad Gateway</html>".to_vec(),
    })
    .unwrap_err();
    assert_eq!(err, "HTTP 502: <html>Bad Gateway</html>");
    let body = r#"{"results":[{"statement_id":0,"series":[{"name":"m","columns":["time","v"],"values":[["2017-03-01T00:16:18Z",1]]}]}]}"#;
    assert!(
        parse(&answer(200, body))
            .unwrap_err()
            .contains("no unix time")
    );
}

#[test]
fn next_reads_the_first_answer() {
    let body = r#"{"results":[{"statement_id":0}]}"#;
    let c = config(&[("database", "t")]);
    let q = query("SELECT v FROM m WHERE $timeFilter");
    assert_eq!(
        InfluxDb::next(c.clone(), q.clone(), vec![], vec![answer(200, body)]).unwrap(),
        Step::Done(vec![])
    );
    assert!(InfluxDb::next(c, q, vec![], vec![]).is_err());
}
