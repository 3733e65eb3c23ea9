//! Native tests: the request built, and answers recorded from Debian's
//! graphite-web 1.1.8 over carbon-cache 1.1.7 (demo series stored at a
//! 15 s resolution, dotted and tagged), plus the render API
//! documentation's JSON example.

use tollgate_sdk::source::{ConfigValue, Method, Sample};

use super::*;

fn query(text: &str) -> SourceQuery {
    SourceQuery {
        metric: "error_rate".into(),
        text: text.into(),
        start: 1_796_571_075,
        end: 1_796_571_195,
        step_seconds: 30,
        variables: vec![],
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
fn the_request_is_a_render_of_the_window_as_json() {
    let r = request(&query("seriesByTag('name=error_rate','service=checkout')"));
    assert_eq!(r.method, Method::Get);
    assert!(r.headers.is_empty() && r.body.is_empty());
    assert_eq!(
        r.path,
        "/render?target=seriesByTag%28%27name%3Derror_rate%27%2C%27service%3Dcheckout%27%29\
         &from=1796571075&until=1796571195&format=json"
    );
}

#[test]
fn settings_are_refused_since_there_are_none() {
    assert_eq!(Graphite::validate_config(vec![]), Ok(()));
    let err = Graphite::validate_config(vec![("step".into(), ConfigValue::Text("1m".into()))])
        .unwrap_err();
    assert!(err.contains("unknown setting `step`"), "{err}");
}

/// graphite-web 1.1.8, `demo.payments-spike.canary.error_rate` from
/// `end - 120` to `end`: the points after `from` up to `until`.
#[test]
fn a_dotted_path_is_one_series_labelled_by_target_and_name() {
    let body = r#"[{"target": "demo.payments-spike.canary.error_rate", "tags": {"name": "demo.payments-spike.canary.error_rate"}, "datapoints": [[0.05, 1796571090], [0.05, 1796571105], [0.05, 1796571120], [0.05, 1796571135], [0.05, 1796571150], [0.05, 1796571165], [0.05, 1796571180], [0.05, 1796571195]]}]"#;
    let series = parse(&answer(200, "application/json", body)).unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(
        labels(&series[0]),
        vec![
            ("target", "demo.payments-spike.canary.error_rate"),
            ("name", "demo.payments-spike.canary.error_rate")
        ]
    );
    assert_eq!(series[0].points.len(), 8);
    assert_eq!(
        series[0].points[0],
        Sample {
            timestamp: 1_796_571_090,
            value: 0.05
        }
    );
}

/// graphite-web 1.1.8, `demo.*.canary.error_rate`: a series per match.
#[test]
fn a_wildcard_is_a_series_per_path() {
    let body = r#"[{"target": "demo.checkout.canary.error_rate", "tags": {"name": "demo.checkout.canary.error_rate"}, "datapoints": [[5e-05, 1796571150], [5e-05, 1796571165], [5e-05, 1796571180], [5e-05, 1796571195]]}, {"target": "demo.payments-spike.canary.error_rate", "tags": {"name": "demo.payments-spike.canary.error_rate"}, "datapoints": [[0.05, 1796571150], [0.05, 1796571165], [0.05, 1796571180], [0.05, 1796571195]]}]"#;
    let series = parse(&answer(200, "application/json", body)).unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(series[0].points[3].value, 5e-05);
    assert_eq!(
        series[1].labels[0].1,
        "demo.payments-spike.canary.error_rate"
    );
}

/// graphite-web 1.1.8, `seriesByTag('name=error_rate','service=payments-spike','track=canary')`
/// past the last point written: the tags are labels, `null` is skipped.
#[test]
fn tags_are_labels_and_nulls_are_skipped() {
    let body = r#"[{"target": "error_rate;service=payments-spike;track=canary", "tags": {"service": "payments-spike", "track": "canary", "name": "error_rate"}, "datapoints": [[0.05, 1796571180], [0.05, 1796571195], [0.05, 1796571210], [null, 1796571225]]}]"#;
    let series = parse(&answer(200, "application/json", body)).unwrap();
    assert_eq!(
        labels(&series[0]),
        vec![
            ("target", "error_rate;service=payments-spike;track=canary"),
            ("name", "error_rate"),
            ("service", "payments-spike"),
            ("track", "canary")
        ]
    );
    assert_eq!(series[0].points.len(), 3);
}

/// graphite-web 1.1.8, `sumSeries(demo.*.canary.error_rate)` where nothing
/// was written: the series stays, with no points.
#[test]
fn a_function_of_only_nulls_has_no_points() {
    let body = r#"[{"target": "sumSeries(demo.*.canary.error_rate)", "tags": {"name": "sumSeries(demo.*.canary.error_rate)", "aggregatedBy": "sum"}, "datapoints": [[null, 1796571495], [null, 1796571510], [null, 1796571525]]}]"#;
    let series = parse(&answer(200, "application/json", body)).unwrap();
    assert_eq!(series.len(), 1);
    assert!(series[0].points.is_empty());
    assert!(labels(&series[0]).contains(&("aggregatedBy", "sum")));
}

/// graphite-web 1.1.8 for a path nothing matches: `[]`.
#[test]
fn no_data_is_no_series() {
    assert_eq!(
        parse(&answer(200, "application/json", "[]")).unwrap(),
        vec![]
    );
}

/// The render API documentation's JSON example (graphite-web 1.0 and
/// older write no `tags`).
#[test]
fn the_documented_answer_reads() {
    let body = r#"[{
  "target": "entries",
  "datapoints": [
    [1.0, 1311836008],
    [2.0, 1311836009],
    [3.0, 1311836010],
    [5.0, 1311836011],
    [6.0, 1311836012]
  ]
}]"#;
    let series = parse(&answer(200, "application/json", body)).unwrap();
    assert_eq!(labels(&series[0]), vec![("target", "entries")]);
    assert_eq!(series[0].points.len(), 5);
    assert_eq!(series[0].points[4].value, 6.0);
}

/// graphite-web 1.1.8, `fooBar(demo.x)`: HTTP 400, one line of text.
#[test]
fn an_unknown_function_quotes_the_server() {
    let body = r#"Invalid parameters (Received request for unknown function: fooBar); targets: "fooBar(demo.x)""#;
    assert_eq!(
        parse(&answer(400, "text/html; charset=utf-8", body)).unwrap_err(),
        r#"graphite-web refused the query (HTTP 400): Invalid parameters (Received request for unknown function: fooBar); targets: "fooBar(demo.x)""#
    );
}

/// graphite-web 1.1.8, `movingAverage(demo.*.canary.error_rate,"abc")`:
/// HTTP 500 and an HTML page (shortened here) whose traceback ends with
/// the cause.
#[test]
fn a_failed_function_quotes_the_end_of_its_traceback() {
    let body = r#"<body style="background-color: #666666; color: black;">
<center>
<h2 style='font-family: "Arial", sans-serif'>
<p>Graphite encountered an unexpected error while handling your request.</p>
<p>Please contact your site administrator if the problem persists.</p>
</h2>
<br/>
<div style="width: 50%; text-align: center; font-family: monospace; background-color: black; font-weight: bold; color: #ff4422;">

</div>

<div style="width: 70%; text-align: left; background-color: black; color: #44ff22; border: thin solid gray;">
<pre>
Traceback (most recent call last):
  File &quot;/usr/lib/python3/dist-packages/graphite/render/attime.py&quot;, line 166, in parseTimeOffset
    raise KeyError(&#x27;Invalid offset: %s&#x27; % offset)
KeyError: &#x27;Invalid offset: abc&#x27;

</pre>
</div>

</center>
"#;
    assert_eq!(
        parse(&answer(500, "text/html; charset=utf-8", body)).unwrap_err(),
        "graphite-web refused the query (HTTP 500): KeyError: 'Invalid offset: abc'"
    );
    // A page without a traceback: its text, without tags.
    let body = "<html><body><h1>Server Error (500)</h1></body></html>";
    assert_eq!(
        parse(&answer(500, "text/html", body)).unwrap_err(),
        "graphite-web refused the query (HTTP 500): Server Error (500)"
    );
}

#[test]
fn other_answers_are_named() {
    let err = parse(&answer(200, "application/json", r#"{"series":[]}"#)).unwrap_err();
    assert!(
        err.starts_with("the answer is not a list of series"),
        "{err}"
    );
    let err = parse(&answer(200, "application/json", r#"[{"datapoints":[]}]"#)).unwrap_err();
    assert_eq!(err, "malformed answer: series 0 has no `target`");
    let err = parse(&answer(200, "text/html", "<html>")).unwrap_err();
    assert!(
        err.starts_with("HTTP 200 with an answer that is not JSON"),
        "{err}"
    );
}

#[test]
fn next_reads_the_first_answer() {
    let step = Graphite::next(
        vec![],
        query("x"),
        vec![],
        vec![answer(200, "application/json", "[]")],
    );
    assert_eq!(step.unwrap(), Step::Done(vec![]));
    assert!(Graphite::next(vec![], query("x"), vec![], vec![]).is_err());
}
