//! The SaaS sources (Datadog, New Relic, CloudWatch), whose servers cannot
//! run here, checked against what the providers' official clients send.
//!
//! Each test runs `tollgate eval --sources …` with the first-party plugin
//! pointed at a capture server in this file (it records every request and
//! answers a canned answer shaped as the provider documents it), then runs
//! `tests/sources/official/capture.py` (datadog-api-client, boto3 and
//! botocore, pinned in its requirements.txt) for the same query, window and
//! step, and compares the two requests: method, path, decoded query
//! parameters, headers, and the body (as JSON for Datadog's JSON; byte for
//! byte for CloudWatch, whose SigV4 signature covers the body). For
//! CloudWatch the host's `Authorization` is compared byte for byte with the
//! one botocore's `SigV4Auth` computes for the same request at the host's
//! own `X-Amz-Date`. New Relic has no official client that builds a
//! NerdGraph request: its request is compared with the one New Relic's
//! NerdGraph documentation shows. Each test then checks the decision the
//! parsed answer led to, and that a query the provider refuses fails with
//! the provider's message.
//!
//! A missing `python3` or Python module (`pip install -r
//! tests/sources/official/requirements.txt`) is a missing tool: the test
//! is reported SKIPPED (a failure under `TOLLGATE_REQUIRE_ALL=1`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::plugin_kit::tollgate_in;
use crate::support::{Run, repo, skip, write};

/// The end of every query window: 2026-12-06T12:00:00Z (`--at`). The
/// canned answers' points lie in the five minutes before it.
const AT: i64 = 1_796_558_400;
/// The window and step every policy here asks for.
const WINDOW_SECONDS: i64 = 300;
const STEP_SECONDS: i64 = 60;

/// The fixed credentials capture.py gives the official clients; the
/// sources here read the same values from files, so the headers compare.
const DD_API_KEY: &str = "dd-api-key-for-tests";
const DD_APPLICATION_KEY: &str = "dd-app-key-for-tests";
const NR_API_KEY: &str = "NRAK-TESTKEY0000000000000000000";
const AWS_ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
const AWS_SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// Headers that are transport, not the query: what capture.py drops from
/// the official client's request (its `NOISE`), dropped here from the
/// host's too. `accept` is kept for Datadog, whose client sends
/// `application/json`; reqwest's default `*/*` is dropped where the
/// official client sends none (see [`compared_headers`]).
const NOISE: [&str; 7] = [
    "user-agent",
    "accept-encoding",
    "connection",
    "content-length",
    "host",
    "amz-sdk-invocation-id",
    "amz-sdk-request",
];

/// One request as the capture server read it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    /// Path and query string, as sent.
    target: String,
    /// Lowercased names, in the order sent.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query parameters, decoded and sorted.
    fn query(&self) -> Vec<(String, String)> {
        let query = self.target.split_once('?').map_or("", |(_, q)| q);
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        pairs.sort();
        pairs
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A canned answer: status, content type, body.
type Answer = (u16, &'static str, Vec<u8>);

/// An HTTP server on 127.0.0.1 that records each request and answers the
/// n-th with `answers[n]` (the last one again past the end).
struct Capture {
    url: String,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

impl Capture {
    fn start(answers: Vec<Answer>) -> Capture {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(request) = read_request(&stream) else {
                    continue;
                };
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push(request);
                    log.len() - 1
                };
                let (status, content_type, body) = &answers[n.min(answers.len() - 1)];
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    if *status == 200 { "OK" } else { "Error" },
                    body.len()
                );
                let _ = stream.write_all(body);
            }
        });
        Capture { url, seen }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }
}

fn read_request(stream: &std::net::TcpStream) -> Option<Recorded> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Recorded {
        method,
        target,
        headers,
        body,
    })
}

/// A canned answer of `tests/sources/official/responses/`, the one
/// capture.py answers the official client with.
fn canned(name: &str) -> Vec<u8> {
    std::fs::read(repo(&format!("tests/sources/official/responses/{name}"))).unwrap()
}

/// Whether `python3` can import every module of `modules`; when it cannot,
/// the test is reported skipped, naming what to install.
fn python_modules(modules: &[&str]) -> bool {
    if !crate::support::need("python3") {
        return false;
    }
    for module in modules {
        let ok = Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            skip(&format!(
                "no Python module `{module}`: python3 -m pip install -r tests/sources/official/requirements.txt"
            ));
            return false;
        }
    }
    true
}

/// `capture.py ARGS` with `stdin`, its one JSON line parsed.
fn capture_py(args: &[&str], stdin: &str) -> Value {
    let mut child = Command::new("python3")
        .arg(repo("tests/sources/official/capture.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "capture.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "capture.py printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A policy whose `error_rate` comes from `source` (`query`, the window
/// and step above), gated by `max(error_rate) < threshold`.
fn policy(dir: &Path, source: &str, query: &str, threshold: f64) {
    let text = format!(
        "apiVersion: tollgate.dev/v1
kind: Policy
metadata:
  name: {source}-contract
metrics:
  error_rate:
    source: {source}
    query: '{}'
    window: {WINDOW_SECONDS}s
    step: {STEP_SECONDS}s
stages:
  - name: canary
    gates:
      - name: error-rate
        plugin: threshold
        key: true
        with: {{ metric: error_rate, aggregate: max, op: \"<\", threshold: {threshold} }}
",
        query.replace('\'', "''")
    );
    write(dir, "policy.yaml", text.as_bytes());
}

/// `tollgate eval` of `policy.yaml` with `sources.yaml`, in `dir`, at [`AT`].
fn eval(dir: &Path) -> Run {
    tollgate_in(
        dir,
        &[
            "eval",
            "--policy",
            "policy.yaml",
            "--sources",
            "sources.yaml",
            "--service",
            "checkout",
            "--version",
            "2.1.0",
            "--at",
            &AT.to_string(),
            "--schedule",
            "caller",
            "--format",
            "json",
        ],
    )
}

/// The decision of a run that decided, and its one source query.
fn decided(run: &Run) -> (Value, Value) {
    assert!(
        run.code == 0 || run.code == 1,
        "exit {}: {}{}",
        run.code,
        run.stdout,
        run.stderr
    );
    let decision: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", run.stdout, run.stderr));
    let query = decision["sources"]["queries"][0].clone();
    assert_eq!(query["start"], AT - WINDOW_SECONDS, "{query}");
    assert_eq!(query["end"], AT, "{query}");
    assert_eq!(query["step_seconds"], STEP_SECONDS, "{query}");
    (decision, query)
}

/// A run that failed on its source, with `message` quoted.
fn refused(run: &Run, message: &str) {
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(message),
        "the provider's message `{message}` is not quoted: {}",
        run.stderr
    );
}

/// The headers of a request that are compared: all but [`NOISE`] and the
/// names in `also_dropped`, lowercased and sorted.
fn compared_headers(
    headers: &[(String, String)],
    also_dropped: &[&str],
) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(k, _)| !NOISE.contains(&k.as_str()) && !also_dropped.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// capture.py's headers as a map.
fn official_headers(official: &Value, also_dropped: &[&str]) -> BTreeMap<String, String> {
    official["headers"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !also_dropped.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// capture.py's query parameters as sorted pairs.
fn official_query(official: &Value) -> Vec<(String, String)> {
    official["query"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn datadog_sources(dir: &Path, name: &str, url: &str, with: &str) {
    write(dir, "dd.key", format!("{DD_API_KEY}\n").as_bytes());
    write(dir, "dd.app", format!("{DD_APPLICATION_KEY}\n").as_bytes());
    write(
        dir,
        "sources.yaml",
        format!(
            "sources:\n  {name}:\n    url: {url}\n    plugin: datadog\n    with: {with}\n    api_keys: {{ DD-API-KEY: dd.key, DD-APPLICATION-KEY: dd.app }}\n    retries: 0\n"
        )
        .as_bytes(),
    );
}

const DD_QUERY: &str = "avg:checkout.errors.rate{service:${service}} by {version}";

#[test]
fn datadog_v1_sends_what_datadog_api_client_sends() {
    if !python_modules(&["datadog_api_client"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Capture::start(vec![(200, "application/json", canned("datadog-v1.json"))]);
    datadog_sources(dir.path(), "datadog", &server.url, "{}");
    policy(dir.path(), "datadog", DD_QUERY, 0.01);
    let run = eval(dir.path());
    let (decision, query) = decided(&run);

    // The answer, parsed: one series (the null point dropped), below 1%.
    assert_eq!(decision["decision"], "promote", "{decision}");
    assert_eq!(decision["gates"][0]["verdict"], "pass", "{decision}");
    assert_eq!(decision["gates"][0]["observed"], 0.002, "{decision}");
    assert_eq!(
        (query["series"].as_u64(), query["points"].as_u64()),
        (Some(1), Some(4)),
        "{query}"
    );
    assert_eq!(query["source"], "datadog", "{query}");
    assert!(
        !run.stdout.contains(DD_API_KEY),
        "a key leaked into the decision"
    );

    // The request, against MetricsApi.query_metrics for the same query.
    let sent = server.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let host = &sent[0];
    let text = query["query"].as_str().unwrap();
    assert_eq!(
        text,
        "avg:checkout.errors.rate{service:checkout} by {version}"
    );
    let official = capture_py(
        &[
            "datadog-v1",
            "--query",
            text,
            "--from",
            &(AT - WINDOW_SECONDS).to_string(),
            "--to",
            &AT.to_string(),
        ],
        "",
    );
    assert_eq!(host.method, official["method"], "{official}");
    assert_eq!(host.path(), official["path"], "{official}");
    assert_eq!(host.query(), official_query(&official), "{official}");
    assert_eq!(
        compared_headers(&host.headers, &[]),
        official_headers(&official, &[]),
        "{official}"
    );
    assert!(host.body.is_empty() && official["body"] == "", "{official}");
    // capture.py's own client read the same canned answer the same way.
    assert_eq!(official["parsed"][0]["points"], 5, "{official}");

    // A query Datadog refuses fails with Datadog's message.
    let server = Capture::start(vec![(
        400,
        "application/json",
        br#"{"errors":["Error parsing query: unable to parse avg:checkout.errors.rate{: Rule 'scope_expr' didn't match"]}"#.to_vec(),
    )]);
    datadog_sources(dir.path(), "datadog", &server.url, "{}");
    refused(
        &eval(dir.path()),
        "Datadog refused the query (HTTP 400): Error parsing query: unable to parse avg:checkout.errors.rate{: Rule 'scope_expr' didn't match",
    );
}

#[test]
fn datadog_scalar_sends_what_datadog_api_client_sends() {
    if !python_modules(&["datadog_api_client"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Capture::start(vec![(
        200,
        "application/json",
        canned("datadog-scalar.json"),
    )]);
    datadog_sources(
        dir.path(),
        "datadog-scalar",
        &server.url,
        "{ api: scalar, aggregator: max }",
    );
    policy(dir.path(), "datadog-scalar", DD_QUERY, 0.01);
    let run = eval(dir.path());
    let (decision, query) = decided(&run);
    assert_eq!(decision["decision"], "promote", "{decision}");
    assert_eq!(decision["gates"][0]["observed"], 0.0015, "{decision}");
    assert_eq!(
        (query["series"].as_u64(), query["points"].as_u64()),
        (Some(2), Some(2)),
        "{query}"
    );

    let sent = server.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let host = &sent[0];
    let official = capture_py(
        &[
            "datadog-scalar",
            "--query",
            query["query"].as_str().unwrap(),
            "--from-ms",
            &((AT - WINDOW_SECONDS) * 1000).to_string(),
            "--to-ms",
            &(AT * 1000).to_string(),
            "--aggregator",
            "max",
        ],
        "",
    );
    assert_eq!(host.method, official["method"], "{official}");
    assert_eq!(host.path(), official["path"], "{official}");
    assert_eq!(host.query(), official_query(&official), "{official}");
    assert_eq!(
        compared_headers(&host.headers, &[]),
        official_headers(&official, &[]),
        "{official}"
    );
    let host_body: Value = serde_json::from_slice(&host.body).unwrap();
    let official_body: Value = serde_json::from_str(official["body"].as_str().unwrap()).unwrap();
    assert_eq!(host_body, official_body, "the JSON bodies differ");
    assert_eq!(official["parsed"][0]["values"][0][0], "2.1.0", "{official}");
}

/// The request New Relic's NerdGraph documentation shows
/// (docs.newrelic.com, "Introduction to New Relic NerdGraph", Requirements
/// and endpoints):
///
/// ```text
/// curl -X POST https://api.newrelic.com/graphql \
/// -H 'Content-Type: application/json' \
/// -H 'API-Key: YOUR_NEW_RELIC_USER_KEY' \
/// -d '{ "query":  "{ requestContext { userId apiKey } }" } '
/// ```
///
/// with the NRQL as in "NerdGraph tutorial: Query your data using NRQL"
/// (`actor { account(id: …) { nrql(query: "…") { results } } }`), and the
/// account and NRQL passed as GraphQL variables the way New Relic's own Go
/// client documents it (`query($accountId: Int!, $nrqlQuery: Nrql!) { actor
/// { account(id: $accountId) { nrql(query: $nrqlQuery, timeout: 5) {
/// results } } } }` with `{"accountId": …, "nrqlQuery": "…"}`).
const NERDGRAPH_METHOD: &str = "POST";
const NERDGRAPH_PATH: &str = "/graphql";
const NERDGRAPH_CONTENT_TYPE: &str = "application/json";

#[test]
fn newrelic_sends_the_documented_nerdgraph_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = Capture::start(vec![(200, "application/json", canned("newrelic.json"))]);
    write(dir.path(), "nr.key", format!("{NR_API_KEY}\n").as_bytes());
    let sources = |url: &str| {
        format!(
            "sources:\n  newrelic:\n    url: {url}\n    with: {{ account_id: 1234567 }}\n    api_keys: {{ API-Key: nr.key }}\n    retries: 0\n"
        )
    };
    write(dir.path(), "sources.yaml", sources(&server.url).as_bytes());
    let nrql = "SELECT percentage(count(*), WHERE error IS true) AS 'error_rate' FROM Transaction WHERE appName = '${service}' FACET appVersion";
    policy(dir.path(), "newrelic", nrql, 1.0);
    let run = eval(dir.path());
    let (decision, query) = decided(&run);
    // Two facets of five buckets, one a null: percentages under 1%.
    assert_eq!(decision["decision"], "promote", "{decision}");
    assert_eq!(decision["gates"][0]["observed"], 0.12, "{decision}");
    assert_eq!(
        (query["series"].as_u64(), query["points"].as_u64()),
        (Some(2), Some(9)),
        "{query}"
    );

    let sent = server.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let host = &sent[0];
    assert_eq!(host.method, NERDGRAPH_METHOD);
    assert_eq!(host.target, NERDGRAPH_PATH);
    assert_eq!(
        compared_headers(&host.headers, &["accept"]),
        BTreeMap::from([
            ("api-key".to_string(), NR_API_KEY.to_string()),
            (
                "content-type".to_string(),
                NERDGRAPH_CONTENT_TYPE.to_string()
            ),
        ])
    );
    let body: Value = serde_json::from_slice(&host.body).unwrap();
    let expected_nrql = format!(
        "{} SINCE {} UNTIL {} TIMESERIES {STEP_SECONDS} seconds",
        query["query"].as_str().unwrap(),
        (AT - WINDOW_SECONDS) * 1000,
        AT * 1000
    );
    assert_eq!(
        body,
        serde_json::json!({
            "query": "query($accountId: Int!, $nrql: Nrql!) { actor { account(id: $accountId) { nrql(query: $nrql, timeout: 5) { results } } } }",
            "variables": { "accountId": 1_234_567, "nrql": expected_nrql },
        })
    );

    // A GraphQL error (NerdGraph answers 200) fails with its first message.
    let server = Capture::start(vec![(
        200,
        "application/json",
        br#"{"data":{"actor":{"account":{"nrql":null}}},"errors":[{"locations":[{"column":50,"line":1}],"message":"NRQL Syntax Error: Error at line 1 position 60, unexpected 'FORM'","path":["actor","account","nrql"]}]}"#.to_vec(),
    )]);
    write(dir.path(), "sources.yaml", sources(&server.url).as_bytes());
    refused(
        &eval(dir.path()),
        "New Relic refused the query: NRQL Syntax Error: Error at line 1 position 60, unexpected 'FORM'",
    );
}

/// The request recorded by the capture server as capture.py's `sigv4`
/// reads it: the headers the host signed (those its `SignedHeaders` names).
fn sigv4_input(server: &Capture, host: &Recorded) -> String {
    let authorization = host.header("authorization").unwrap();
    let signed = authorization
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap();
    let headers: serde_json::Map<String, Value> = signed
        .split(';')
        .map(|name| {
            let value = host
                .header(name)
                .unwrap_or_else(|| panic!("signed header `{name}` was not sent"));
            (name.to_string(), Value::from(value))
        })
        .collect();
    serde_json::json!({
        "method": host.method,
        "url": format!("{}{}", server.url, host.target),
        "headers": headers,
        "body": String::from_utf8(host.body.clone()).unwrap(),
    })
    .to_string()
}

fn signed_headers(authorization: &str) -> &str {
    authorization
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap()
}

#[test]
fn cloudwatch_sends_what_botocore_sends_and_signs_as_botocore_signs() {
    if !python_modules(&["boto3", "botocore"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Capture::start(vec![
        (200, "application/x-amz-json-1.0", canned("cloudwatch.json")),
        (
            200,
            "application/x-amz-json-1.0",
            canned("cloudwatch-page2.json"),
        ),
    ]);
    write(
        dir.path(),
        "aws.id",
        format!("{AWS_ACCESS_KEY_ID}\n").as_bytes(),
    );
    write(
        dir.path(),
        "aws.secret",
        format!("{AWS_SECRET_ACCESS_KEY}\n").as_bytes(),
    );
    let sources = |url: &str| {
        format!(
            "sources:\n  cloudwatch:\n    url: {url}\n    sigv4: {{ region: us-east-1, service: monitoring, access_key_id_file: aws.id, secret_access_key_file: aws.secret }}\n    retries: 0\n"
        )
    };
    write(dir.path(), "sources.yaml", sources(&server.url).as_bytes());
    let expression = "SELECT AVG(ErrorRate) FROM SCHEMA(\"Checkout/HTTP\", ServiceName) WHERE ServiceName = '${service}' GROUP BY ServiceName";
    policy(dir.path(), "cloudwatch", expression, 0.01);
    let run = eval(dir.path());
    let (decision, query) = decided(&run);
    // Two pages of one series, merged.
    assert_eq!(decision["decision"], "promote", "{decision}");
    assert_eq!(decision["gates"][0]["observed"], 0.002, "{decision}");
    assert_eq!(
        (query["series"].as_u64(), query["points"].as_u64()),
        (Some(1), Some(5)),
        "{query}"
    );
    assert_eq!(query["requests"].as_array().unwrap().len(), 2, "{query}");
    assert!(!run.stdout.contains(AWS_SECRET_ACCESS_KEY));

    let sent = server.requests();
    assert_eq!(sent.len(), 2, "both pages: {sent:?}");
    let text = query["query"].as_str().unwrap();
    for (page, host) in sent.iter().enumerate() {
        let amz_date = host.header("x-amz-date").expect("the host sets X-Amz-Date");
        let mut args = vec![
            "cloudwatch",
            "--expression",
            text,
            "--period",
            "60",
            "--start",
        ];
        let (start, end) = ((AT - WINDOW_SECONDS).to_string(), AT.to_string());
        args.extend([
            start.as_str(),
            "--end",
            end.as_str(),
            "--amz-date",
            amz_date,
        ]);
        if page == 1 {
            args.extend(["--next-token", "page-2-of-q1"]);
        }
        let official = capture_py(&args, "");
        assert_eq!(
            official["parsed"]["protocol"], "json",
            "botocore's pick: {official}"
        );
        assert_eq!(host.method, official["method"], "page {page}: {official}");
        assert_eq!(host.path(), official["path"], "page {page}: {official}");
        assert_eq!(
            host.query(),
            official_query(&official),
            "page {page}: {official}"
        );
        // The body byte for byte: the signature covers its hash.
        assert_eq!(
            String::from_utf8(host.body.clone()).unwrap(),
            official["body"].as_str().unwrap(),
            "page {page}"
        );
        // Every header botocore sends but the signature (whose `Host` is
        // capture.py's own server) and the transport's; reqwest's default
        // `Accept: */*` is unsigned and not botocore's.
        let host_headers = compared_headers(&host.headers, &["authorization", "accept"]);
        assert_eq!(
            host_headers,
            official_headers(&official, &["authorization"]),
            "page {page}: {official}"
        );
        // The same headers signed, and the same signature for the host's
        // own request at its own time.
        let host_auth = host.header("authorization").unwrap();
        assert_eq!(
            signed_headers(host_auth),
            signed_headers(official["headers"]["authorization"].as_str().unwrap()),
            "page {page}"
        );
        let botocore = capture_py(
            &[
                "sigv4",
                "--region",
                "us-east-1",
                "--service",
                "monitoring",
                "--amz-date",
                amz_date,
            ],
            &sigv4_input(&server, host),
        );
        assert_eq!(
            host_auth,
            botocore["authorization"].as_str().unwrap(),
            "page {page}: the host's SigV4 differs from botocore's"
        );
    }

    // A query CloudWatch refuses fails with CloudWatch's message.
    let server = Capture::start(vec![(
        400,
        "application/x-amz-json-1.0",
        br#"{"__type":"com.amazonaws.monitoring#InvalidParameterValueException","message":"The Metrics Insights query is invalid: unexpected token FORM"}"#.to_vec(),
    )]);
    write(dir.path(), "sources.yaml", sources(&server.url).as_bytes());
    refused(
        &eval(dir.path()),
        "CloudWatch refused the request (HTTP 400, InvalidParameterValueException): The Metrics Insights query is invalid: unexpected token FORM",
    );
}

/// One hosted source for [`hosted_sources_decide_every_case_through_the_cli_and_the_server`]:
/// its canned answer (as its API documents it) and what that answer reads
/// as, an answer with no series, its query, and its `sources:` entry
/// (writing the key files it names into the directory).
struct Hosted {
    name: &'static str,
    content_type: &'static str,
    answer: &'static str,
    observed: f64,
    empty: &'static str,
    query: &'static str,
    entry: fn(&Path, &str) -> String,
}

const HOSTED: [Hosted; 3] = [
    Hosted {
        name: "datadog",
        content_type: "application/json",
        answer: "datadog-v1.json",
        observed: 0.002,
        empty: r#"{"status":"ok","res_type":"time_series","series":[],"from_date":1796558100000,"to_date":1796558400000,"query":"avg:checkout.errors.rate{service:checkout}"}"#,
        query: DD_QUERY,
        entry: |dir, url| {
            write(dir, "dd.key", format!("{DD_API_KEY}\n").as_bytes());
            write(dir, "dd.app", format!("{DD_APPLICATION_KEY}\n").as_bytes());
            format!(
                "  datadog:\n    url: {url}\n    api_keys: {{ DD-API-KEY: dd.key, DD-APPLICATION-KEY: dd.app }}\n    retries: 0\n    timeout: 2s\n"
            )
        },
    },
    Hosted {
        name: "newrelic",
        content_type: "application/json",
        answer: "newrelic.json",
        observed: 0.12,
        empty: r#"{"data":{"actor":{"account":{"nrql":{"results":[]}}}}}"#,
        query: "SELECT percentage(count(*), WHERE error IS true) AS 'error_rate' FROM Transaction WHERE appName = '${service}' FACET appVersion",
        entry: |dir, url| {
            write(dir, "nr.key", format!("{NR_API_KEY}\n").as_bytes());
            format!(
                "  newrelic:\n    url: {url}\n    with: {{ account_id: 1234567 }}\n    api_keys: {{ API-Key: nr.key }}\n    retries: 0\n    timeout: 2s\n"
            )
        },
    },
    Hosted {
        name: "cloudwatch",
        content_type: "application/x-amz-json-1.0",
        answer: "cloudwatch-page2.json",
        observed: 0.002,
        empty: r#"{"MetricDataResults":[],"Messages":[]}"#,
        query: "SELECT AVG(ErrorRate) FROM SCHEMA(\"Checkout/HTTP\", ServiceName) WHERE ServiceName = '${service}' GROUP BY ServiceName",
        entry: |dir, url| {
            write(dir, "aws.id", format!("{AWS_ACCESS_KEY_ID}\n").as_bytes());
            write(
                dir,
                "aws.secret",
                format!("{AWS_SECRET_ACCESS_KEY}\n").as_bytes(),
            );
            format!(
                "  cloudwatch:\n    url: {url}\n    sigv4: {{ region: us-east-1, service: monitoring, access_key_id_file: aws.id, secret_access_key_file: aws.secret }}\n    retries: 0\n    timeout: 2s\n"
            )
        },
    },
];

/// Each hosted source decides each case a canary meets, through the CLI
/// and through the server: a healthy answer promotes, the same answer
/// against a tighter threshold (a spike, a slow release) does not, an
/// answer with no series leaves the gate inconclusive, and an unreachable
/// endpoint is an error naming the source (a 503 from the server).
#[test]
fn hosted_sources_decide_every_case_through_the_cli_and_the_server() {
    for h in &HOSTED {
        let dir = tempfile::tempdir().unwrap();
        let with = |status: u16, body: Vec<u8>| {
            let server = Capture::start(vec![(status, h.content_type, body)]);
            let entry = (h.entry)(dir.path(), &server.url);
            write(
                dir.path(),
                "sources.yaml",
                format!("sources:\n{entry}").as_bytes(),
            );
            server
        };
        let _healthy = with(200, canned(h.answer));
        policy(dir.path(), h.name, h.query, h.observed * 10.0);
        let (decision, _) = decided(&eval(dir.path()));
        assert_eq!(decision["decision"], "promote", "{}: {decision}", h.name);

        policy(dir.path(), h.name, h.query, h.observed / 2.0);
        let (decision, _) = decided(&eval(dir.path()));
        assert_ne!(decision["decision"], "promote", "{}: {decision}", h.name);
        assert_eq!(
            decision["gates"][0]["verdict"], "fail",
            "{}: {decision}",
            h.name
        );

        let _empty = with(200, h.empty.as_bytes().to_vec());
        let (decision, query) = decided(&eval(dir.path()));
        assert_eq!(query["series"], 0, "{}: {query}", h.name);
        assert_ne!(decision["decision"], "promote", "{}: {decision}", h.name);
        assert_eq!(
            decision["gates"][0]["verdict"], "inconclusive",
            "{}: {decision}",
            h.name
        );

        let entry = (h.entry)(dir.path(), "http://127.0.0.1:1");
        write(
            dir.path(),
            "sources.yaml",
            format!("sources:\n{entry}").as_bytes(),
        );
        let run = eval(dir.path());
        assert_eq!(run.code, 2, "{}: {}{}", h.name, run.stdout, run.stderr);
        assert!(
            run.stderr.contains(&format!(
                "cannot query source `{}` at http://127.0.0.1:1",
                h.name
            )),
            "{}",
            run.stderr
        );

        // The server, for a request that sends no snapshot.
        let healthy = Capture::start(vec![(200, h.content_type, canned(h.answer))]);
        policy(dir.path(), h.name, h.query, h.observed * 10.0);
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        std::fs::copy(dir.path().join("policy.yaml"), policies.join("policy.yaml")).unwrap();
        let serve = |url: &str| {
            let entry = (h.entry)(dir.path(), url).replace("\n  ", "\n    ");
            let config = write(
                dir.path(),
                "tollgate.yaml",
                format!("telemetry:\n  sources:\n  {entry}").as_bytes(),
            );
            crate::support::Server::start(&[
                "--config",
                config.to_str().unwrap(),
                "--policies",
                policies.to_str().unwrap(),
                "--insecure-no-auth",
            ])
        };
        let body = format!(
            r#"{{"policy": "{}-contract", "service": "checkout", "version": "2.1.0", "at": {AT}}}"#,
            h.name
        );
        let server = serve(&healthy.url);
        let answer = server.request(
            "POST",
            "/v1/evaluate",
            &[("content-type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(answer.status, 200, "{}: {}", h.name, answer.text());
        assert_eq!(answer.json()["decision"], "promote", "{}", answer.text());
        assert!(!answer.text().contains("-for-tests") && !answer.text().contains("NRAK-"));
        drop(server);
        let server = serve("http://127.0.0.1:1");
        let answer = server.request(
            "POST",
            "/v1/evaluate",
            &[("content-type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(answer.status, 503, "{}: {}", h.name, answer.text());
        assert!(
            answer.text().contains(&format!("source `{}`", h.name)),
            "{}",
            answer.text()
        );
    }
}
