//! The first-party source plugins against the real backends of
//! [`crate::source_servers`], through the CLI (and, for InfluxDB, the
//! server): the canary policy's decisions for the demo services, with the
//! metrics read by the `influxdb`, `prometheus` (VictoriaMetrics),
//! `graphite` and `loki` plugins, as `tests/e2e/prometheus.rs` checks them
//! for the native Prometheus path:
//!
//! | service | decision |
//! |---|---|
//! | `checkout` | promote, at every stage |
//! | `payments-spike` | rollback: the `error-rate-spike` trigger |
//! | `search-slow` | rollback: the p95 gate fails |
//! | `cart-drop` | hold: the `conversion-drop` trigger |
//! | `ghost` (no data) | hold (exit 1): the gates are inconclusive, the policy has no `on_no_data` |
//!
//! Loki is the exception: no Grafana Loki runs here (Debian's `loki` is a
//! genetics program), so its plugin runs against a server that answers as
//! Loki's HTTP API documents ([`source_servers::documented_loki`]).
//!
//! and the faults: an unreachable backend is an error naming the source,
//! its URL and the metric (exit 2, as for an unreachable Prometheus); a
//! query the backend refuses is an error quoting the backend.
//!
//! Each backend's policy is under `tests/data/sources/`; a test passes
//! the backend's URL with `--source NAME=URL`, which overrides the URL of
//! the source its `--sources` file names (the file carries the settings:
//! InfluxDB's database, the `prometheus` plugin for VictoriaMetrics, the
//! Loki tenant header).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::source_servers::{self, Backend};
use crate::support::{Run, Server, repo, tollgate, write};

/// How one backend is read.
struct Case {
    /// The source's name in the policy and the sources file.
    source: &'static str,
    /// `tests/data/sources/<policy>`.
    policy: &'static str,
    /// `tests/data/sources/<sources>`, if the source needs settings.
    sources: Option<&'static str>,
    /// The request path every query's URL starts with.
    path: &'static str,
    /// Points per 30-minute query: a 30 s step answers 61 (60 if the
    /// newest bucket is empty yet), Graphite's 15 s storage 120.
    points: std::ops::RangeInclusive<u64>,
}

const INFLUXDB: Case = Case {
    source: "influxdb",
    policy: "canary-influxdb.yaml",
    sources: Some("influxdb.sources.yaml"),
    path: "/query?db=telemetry&q=SELECT",
    points: 59..=61,
};

const VICTORIAMETRICS: Case = Case {
    source: "victoriametrics",
    policy: "canary-victoriametrics.yaml",
    sources: Some("victoriametrics.sources.yaml"),
    path: "/api/v1/query_range",
    points: 60..=61,
};

const GRAPHITE: Case = Case {
    source: "graphite",
    policy: "canary-graphite.yaml",
    sources: None,
    path: "/render?target=demo.",
    points: 118..=120,
};

const LOKI: Case = Case {
    source: "loki",
    policy: "canary-loki.yaml",
    sources: Some("loki.sources.yaml"),
    path: "/loki/api/v1/query_range?query=",
    points: 59..=61,
};

fn data(file: &str) -> PathBuf {
    repo(&format!("tests/data/sources/{file}"))
}

/// `tollgate eval` of `policy` for `service` at `stage`, reading the
/// source at `url`.
fn eval(case: &Case, policy: &Path, url: &str, service: &str, stage: &str, elapsed: &str) -> Run {
    let source = format!("{}={url}", case.source);
    let sources = case.sources.map(data);
    let mut args = vec![
        "eval",
        "--policy",
        policy.to_str().unwrap(),
        "--stage",
        stage,
        "--elapsed",
        elapsed,
        "--service",
        service,
        "--version",
        "2.1.0",
        "--source",
        &source,
        "--format",
        "json",
    ];
    if let Some(file) = &sources {
        args.extend(["--sources", file.to_str().unwrap()]);
    }
    tollgate(&args, "")
}

/// The demo's decisions through `case`'s plugin, against `backend`.
fn decides_the_canary_policy(case: &Case, backend: &Backend) {
    let policy = data(case.policy);
    let url = backend.url.as_str();
    let canary = |service: &str| eval(case, &policy, url, service, "initial-canary", "20m");

    let healthy = canary("checkout");
    assert_eq!(
        healthy.code,
        0,
        "{}{}\n{}",
        healthy.stdout,
        healthy.stderr,
        backend.log()
    );
    let d = healthy.json();
    assert_eq!(
        d["decision"], "promote",
        "{}: {}",
        case.source, d["summary"]
    );
    let queries = d["sources"]["queries"].as_array().unwrap();
    assert_eq!(
        queries.len(),
        6,
        "three metrics, canary and primary: {queries:#?}"
    );
    for q in queries {
        assert_eq!(q["source"], case.source, "{q}");
        assert_eq!(q["series"], 1, "{q}");
        let points = q["points"].as_u64().unwrap();
        assert!(
            case.points.contains(&points),
            "{}: {points} points: {q}",
            case.source
        );
        let requests = q["requests"].as_array().unwrap();
        assert_eq!(requests.len(), 1, "{q}");
        assert_eq!(requests[0]["status"], 200, "{q}");
        let sent = requests[0]["url"].as_str().unwrap();
        assert!(
            sent.starts_with(&format!("{url}{}", case.path)),
            "{}: {sent}",
            case.source
        );
    }
    assert!(
        queries
            .iter()
            .filter(|q| q["track"] == "baseline")
            .all(|q| q["query"].as_str().unwrap().contains("primary")),
        "the primary is queried into `baseline`: {queries:#?}"
    );
    assert_eq!(
        queries.iter().filter(|q| q["track"] == "baseline").count(),
        3,
        "{queries:#?}"
    );
    assert_eq!(
        d["sources"]["sources"][case.source], url,
        "{}",
        d["sources"]
    );

    // Healthy at every stage: the tightest error gate (< 0.01%) passes too.
    for (stage, elapsed) in [("expanded-canary", "35m"), ("full-rollout", "35m")] {
        let run = eval(case, &policy, url, "checkout", stage, elapsed);
        let d = run.json();
        assert_eq!(
            (run.code, d["decision"].as_str()),
            (0, Some("promote")),
            "{}, {stage}: {}",
            case.source,
            d["summary"]
        );
    }

    let slow = canary("search-slow").json();
    assert_eq!(
        slow["decision"], "rollback",
        "{}: {}",
        case.source, slow["summary"]
    );
    assert_eq!(
        slow["gates"][1]["verdict"], "fail",
        "the p95 gate fails: {}",
        slow["gates"][1]
    );

    let spike = canary("payments-spike").json();
    assert_eq!(
        spike["decision"], "rollback",
        "{}: {}",
        case.source, spike["summary"]
    );
    assert!(
        spike["summary"]
            .as_str()
            .unwrap()
            .starts_with("trigger `error-rate-spike` fired immediate-rollback"),
        "{}: {}",
        case.source,
        spike["summary"]
    );

    let drop = canary("cart-drop").json();
    assert_eq!(
        drop["decision"], "hold",
        "{}: {}",
        case.source, drop["summary"]
    );
    assert!(
        drop["summary"]
            .as_str()
            .unwrap()
            .contains("conversion-drop"),
        "{}: {}",
        case.source,
        drop["summary"]
    );

    // No data is no series, never an error: the gates are inconclusive and
    // the canary policy, with no `on_no_data`, holds.
    let ghost = canary("ghost");
    assert_eq!(ghost.code, 1, "{}{}", ghost.stdout, ghost.stderr);
    let g = ghost.json();
    assert_eq!(g["decision"], "hold", "{}: {}", case.source, g["summary"]);
    assert_eq!(
        g["gates"][0]["verdict"], "inconclusive",
        "{}",
        g["gates"][0]
    );
    assert!(
        g["sources"]["queries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|q| q["series"] == 0),
        "{}",
        g["sources"]
    );
}

/// An unreachable backend, and a query the backend refuses: errors, never
/// verdicts. `bad_query` is refused by the backend with a message holding
/// `quoted`.
fn faults_are_errors(case: &Case, backend: &Backend, bad_query: &str, quoted: &str) {
    let policy = data(case.policy);
    let unreachable = eval(
        case,
        &policy,
        "http://127.0.0.1:1",
        "checkout",
        "initial-canary",
        "20m",
    );
    assert_eq!(
        unreachable.code, 2,
        "{}{}",
        unreachable.stdout, unreachable.stderr
    );
    let report = unreachable.json();
    assert!(report.get("decision").is_none(), "{report}");
    let named = format!(
        "cannot query source `{}` at http://127.0.0.1:1",
        case.source
    );
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&named),
        "{report}"
    );
    assert!(
        unreachable.stderr.contains(&named)
            && unreachable.stderr.contains("for metric `error_rate`"),
        "{}",
        unreachable.stderr
    );

    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {{name: refused}}\nmetrics:\n  m: {{source: {}, query: {}, window: 2m, step: 15s}}\nstages:\n  - name: s\n    gates:\n      - {{name: g, plugin: threshold, with: {{metric: m, op: '<', threshold: 1}}}}\n",
        case.source,
        serde_json::to_string(bad_query).unwrap()
    );
    let bad = write(dir.path(), "refused.yaml", text.as_bytes());
    let run = eval(case, &bad, &backend.url, "checkout", "s", "1m");
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains(&format!("cannot query source `{}`", case.source))
            && run.stderr.contains(quoted),
        "{}: {}",
        case.source,
        run.stderr
    );
}

#[test]
fn influxdb_decides_the_canary_policy() {
    let Some(influx) = source_servers::influxdb() else {
        return; // `influxdb` reported the skip
    };
    decides_the_canary_policy(&INFLUXDB, &influx);
}

#[test]
fn influxdb_faults_are_errors() {
    let Some(influx) = source_servers::influxdb() else {
        return; // `influxdb` reported the skip
    };
    faults_are_errors(
        &INFLUXDB,
        &influx,
        r#"SELECT mean("error_rate" FROM "requests" WHERE $timeFilter"#,
        "error parsing query: found FROM, expected )",
    );
    // A query without `$timeFilter` is refused by the plugin, naming it.
    faults_are_errors(
        &INFLUXDB,
        &influx,
        r#"SELECT mean("error_rate") FROM "requests""#,
        "`$timeFilter`",
    );
    // `--source influxdb=URL` alone has no database: the plugin's
    // validate-config says so before any query.
    let policy = data(INFLUXDB.policy);
    let source = format!("influxdb={}", influx.url);
    let run = tollgate(
        &[
            "eval",
            "--policy",
            policy.to_str().unwrap(),
            "--service",
            "checkout",
            "--source",
            &source,
        ],
        "",
    );
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr.contains("influxdb") && run.stderr.contains("`database` is required"),
        "{}",
        run.stderr
    );
}

/// `audit --sources` shows the plugin's world and where it may reach.
#[test]
fn influxdb_source_is_audited() {
    let sources = data("influxdb.sources.yaml");
    let run = tollgate(
        &[
            "audit",
            "--sources",
            sources.to_str().unwrap(),
            "--format",
            "json",
        ],
        "",
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report[0]["world"], "source", "{report}");
    assert!(
        report[0]["capabilities"]
            .to_string()
            .contains("reach: http://127.0.0.1:8086"),
        "{report}"
    );
}

#[test]
fn the_server_reads_influxdb_for_a_request_without_a_snapshot() {
    let Some(influx) = source_servers::influxdb() else {
        return; // `influxdb` reported the skip
    };
    let home = tempfile::tempdir().unwrap();
    let policies = home.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::copy(data(INFLUXDB.policy), policies.join("canary-influxdb.yaml")).unwrap();
    let config = |url: &str| {
        write(
            home.path(),
            "tollgate.yaml",
            format!(
                "telemetry:\n  sources:\n    influxdb:\n      url: {url}\n      plugin: influxdb\n      with: {{ database: telemetry }}\n      timeout: 5s\n"
            )
            .as_bytes(),
        )
    };
    let start = |url: &str| {
        Server::start(&[
            "--config",
            config(url).to_str().unwrap(),
            "--policies",
            policies.to_str().unwrap(),
            "--insecure-no-auth",
        ])
    };
    let evaluate = |server: &Server, service: &str| {
        let body = json!({"policy": "canary-influxdb", "stage": "initial-canary", "elapsed": "20m",
            "service": service, "version": "2.1.0"});
        server.request(
            "POST",
            "/v1/evaluate",
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
    };
    let server = start(&influx.url);
    let r = evaluate(&server, "checkout");
    assert_eq!(r.status, 200, "{}", r.text());
    let d = r.json();
    assert_eq!(d["decision"], "promote", "{}", d["summary"]);
    assert_eq!(d["sources"]["queries"].as_array().unwrap().len(), 6);
    assert_eq!(d["sources"]["sources"]["influxdb"], influx.url.as_str());
    let r = evaluate(&server, "payments-spike");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["decision"], "rollback");
    drop(server);

    let server = start("http://127.0.0.1:1");
    let r = evaluate(&server, "checkout");
    assert_eq!(r.status, 503, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["code"], "telemetry_unavailable", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot query source `influxdb` at http://127.0.0.1:1"),
        "{e}"
    );
}

#[test]
fn victoriametrics_decides_the_canary_policy_through_the_prometheus_plugin() {
    let Some(vm) = source_servers::victoria_metrics() else {
        return; // `victoria_metrics` reported the skip
    };
    decides_the_canary_policy(&VICTORIAMETRICS, &vm);
}

#[test]
fn victoriametrics_faults_are_errors() {
    let Some(vm) = source_servers::victoria_metrics() else {
        return; // `victoria_metrics` reported the skip
    };
    faults_are_errors(
        &VICTORIAMETRICS,
        &vm,
        "sum(rate(x[1m])",
        r#"the server refused the query (HTTP 422, 422): error when executing query="sum(rate(x[1m])""#,
    );
}

#[test]
fn graphite_decides_the_canary_policy() {
    let Some(graphite) = source_servers::graphite() else {
        return; // `graphite` reported the skip
    };
    decides_the_canary_policy(&GRAPHITE, &graphite);
}

#[test]
fn graphite_faults_are_errors() {
    let Some(graphite) = source_servers::graphite() else {
        return; // `graphite` reported the skip
    };
    faults_are_errors(
        &GRAPHITE,
        &graphite,
        "fooBar(demo.checkout.canary.error_rate)",
        "graphite-web refused the query (HTTP 400): Invalid parameters (Received request for unknown function: fooBar)",
    );
}

#[test]
fn loki_decides_the_canary_policy_as_its_documented_api_answers() {
    decides_the_canary_policy(&LOKI, &source_servers::documented_loki());
}

#[test]
fn loki_faults_are_errors() {
    let loki = source_servers::documented_loki();
    faults_are_errors(
        &LOKI,
        &loki,
        r#"sum(rate({service="checkout"[1m]))"#,
        "Loki refused the query (HTTP 400): parse error",
    );
    // Without the tenant header, a multi-tenant Loki refuses every query.
    let policy = data(LOKI.policy);
    let source = format!("loki={}", loki.url);
    let run = tollgate(
        &[
            "eval",
            "--policy",
            policy.to_str().unwrap(),
            "--stage",
            "initial-canary",
            "--service",
            "checkout",
            "--source",
            &source,
        ],
        "",
    );
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("no org id"), "{}", run.stderr);
}
