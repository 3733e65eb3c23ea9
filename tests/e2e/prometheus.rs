//! A real Prometheus, over demo data loaded with `promtool`: the policy's
//! `metrics:` are queried through the CLI and through the server, including
//! a Flagger and an Argo request that send no snapshot.
//!
//! Needs `prometheus` and `promtool` (Debian package `prometheus`, which
//! `.ci/run` installs); without them each test says why and skips.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, repo, tollgate, write};

/// A Prometheus serving the demo data, stopped when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Generates the demo data, loads it with promtool and starts Prometheus
/// on a free loopback port; `None` (with the reason printed) when the
/// binaries are absent.
fn start() -> Option<Prometheus> {
    if !crate::support::need("prometheus") || !crate::support::need("promtool") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo.om");
    let status = Command::new("python3")
        .arg(repo("scripts/prometheus-demo.py"))
        .arg("--out")
        .arg(&data)
        .status()
        .unwrap();
    assert!(status.success());
    let db = dir.path().join("db");
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&data)
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = write(
        dir.path(),
        "prometheus.yml",
        b"global:\n  scrape_interval: 15s\n",
    );
    let port = crate::support::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", db.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=30d")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let prom = Prometheus {
        child,
        url,
        _dir: dir,
    };
    let started = Instant::now();
    loop {
        let addr = prom.url.trim_start_matches("http://");
        if let Ok(r) = crate::support::http(addr, "GET", "/-/ready", &[], b"")
            && r.status == 200
        {
            return Some(prom);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "Prometheus did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn eval(prom_url: &str, service: &str, extra: &[&str]) -> crate::support::Run {
    let policy = repo("policies/canary.yaml");
    let mut args = vec![
        "eval",
        "--policy",
        policy.to_str().unwrap(),
        "--stage",
        "initial-canary",
        "--elapsed",
        "20m",
        "--service",
        service,
        "--version",
        "2.1.0",
        "--prometheus",
        prom_url,
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    tollgate(&args, "")
}

#[test]
fn cli_decisions_from_a_real_prometheus() {
    let Some(prom) = start() else {
        return; // `start` reported the skip
    };
    let healthy = eval(&prom.url, "checkout", &[]);
    assert_eq!(healthy.code, 0, "{}{}", healthy.stdout, healthy.stderr);
    let d = healthy.json();
    assert_eq!(d["decision"], "promote", "{}", d["summary"]);
    let queries = d["sources"]["queries"].as_array().unwrap();
    assert_eq!(queries.len(), 6, "three metrics, canary and primary");
    assert!(
        queries[0]["query"]
            .as_str()
            .unwrap()
            .contains(r#"service="checkout",track="canary""#),
        "{}",
        queries[0]
    );
    assert!(
        queries
            .iter()
            .all(|q| q["series"] == 1 && q["points"] == 61)
    );
    assert_eq!(d["sources"]["prometheus"], prom.url);

    let slow = eval(&prom.url, "search-slow", &[]).json();
    assert_eq!(slow["decision"], "rollback");
    assert_eq!(
        slow["gates"][1]["verdict"], "fail",
        "the p95 gate fails: {}",
        slow["gates"][1]
    );

    let spike = eval(&prom.url, "payments-spike", &[]).json();
    assert_eq!(spike["decision"], "rollback");
    assert!(
        spike["summary"]
            .as_str()
            .unwrap()
            .starts_with("trigger `error-rate-spike` fired immediate-rollback"),
        "{}",
        spike["summary"]
    );

    let drop = eval(&prom.url, "cart-drop", &[]).json();
    assert_eq!(drop["decision"], "hold");
    assert!(
        drop["summary"]
            .as_str()
            .unwrap()
            .contains("conversion-drop"),
        "{}",
        drop["summary"]
    );

    let ghost = eval(&prom.url, "ghost", &[]);
    assert_eq!(ghost.code, 1);
    let g = ghost.json();
    assert_eq!(g["decision"], "hold");
    assert_eq!(g["gates"][0]["verdict"], "inconclusive");
}

/// "Healthy" in the demo means healthy at every stage: the tightest error
/// gate (full rollout, < 0.01% over 30 minutes) passes too.
#[test]
fn the_demo_healthy_service_promotes_at_every_canary_stage() {
    let Some(prom) = start() else {
        return; // `start` reported the skip
    };
    for (stage, elapsed) in [
        ("initial-canary", "20m"),
        ("expanded-canary", "35m"),
        ("full-rollout", "35m"),
    ] {
        let policy = repo("policies/canary.yaml");
        let run = tollgate(
            &[
                "eval",
                "--policy",
                policy.to_str().unwrap(),
                "--stage",
                stage,
                "--elapsed",
                elapsed,
                "--service",
                "checkout",
                "--version",
                "2.1.0",
                "--prometheus",
                &prom.url,
                "--format",
                "json",
            ],
            "",
        );
        let d = run.json();
        assert_eq!(
            (run.code, d["decision"].as_str()),
            (0, Some("promote")),
            "{stage}: {}",
            d["summary"]
        );
        assert!(
            d["gates"]
                .as_array()
                .unwrap()
                .iter()
                .all(|g| g["verdict"] == "pass"),
            "{stage}: {}",
            d["gates"]
        );
    }
}

#[test]
fn an_explicit_snapshot_wins_over_queried_series_of_the_same_name() {
    let Some(prom) = start() else {
        return; // `start` reported the skip
    };
    let dir = tempfile::tempdir().unwrap();
    // The queried checkout data is healthy; this file says otherwise for
    // the error rate, and its series must be the ones judged.
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let points: Vec<Value> = (0..30).map(|i| json!([end - 60 * i, 0.2])).collect();
    let snap = json!({"service": "checkout", "version": "2.1.0", "taken_at": end,
        "metrics": [{"name": "error_rate", "points": points}]});
    let file = write(dir.path(), "s.json", snap.to_string().as_bytes());
    let run = eval(
        &prom.url,
        "checkout",
        &["--snapshot", file.to_str().unwrap()],
    );
    let d = run.json();
    assert_eq!(d["decision"], "rollback", "{}", d["summary"]);
    assert_eq!(d["gates"][0]["observed"], 0.2);
}

#[test]
fn prometheus_faults_are_errors_never_verdicts() {
    let Some(prom) = start() else {
        return; // `start` reported the skip
    };
    let unreachable = eval(
        "http://127.0.0.1:1",
        "checkout",
        &["--prometheus-timeout", "2s"],
    );
    assert_eq!(unreachable.code, 2, "{}", unreachable.stdout);
    // No decision, but a JSON report of the error for whatever reads stdout.
    let report = unreachable.json();
    assert!(report.get("decision").is_none(), "{report}");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot query Prometheus at http://127.0.0.1:1"),
        "{report}"
    );
    assert!(
        unreachable
            .stderr
            .contains("cannot query Prometheus at http://127.0.0.1:1 for metric `error_rate`"),
        "{}",
        unreachable.stderr
    );
    assert_eq!(
        unreachable.stderr.matches("Connection refused").count(),
        1,
        "{}",
        unreachable.stderr
    );

    let dir = tempfile::tempdir().unwrap();
    let policy = |name: &str, query: &str| -> PathBuf {
        let text = format!(
            "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {{name: {name}}}\nmetrics:\n  m: {{prometheus: '{query}', window: 2m, step: 15s}}\nstages:\n  - name: s\n    gates:\n      - {{name: g, plugin: threshold, with: {{metric: m, op: '<', threshold: 1}}}}\n"
        );
        write(dir.path(), &format!("{name}.yaml"), text.as_bytes())
    };
    let run_policy = |path: &Path| {
        tollgate(
            &[
                "eval",
                "--policy",
                path.to_str().unwrap(),
                "--service",
                "checkout",
                "--prometheus",
                &prom.url,
            ],
            "",
        )
    };
    let bad = run_policy(&policy("promql", "sum(rate(x[1m])"));
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("Prometheus refused the query") && bad.stderr.contains("parse error"),
        "{}",
        bad.stderr
    );
    let wide = run_policy(&policy("wide", "many_series"));
    assert_eq!(wide.code, 2);
    assert!(
        wide.stderr.contains("1200 series exceed the limit of 1000"),
        "{}",
        wide.stderr
    );
}

#[test]
fn the_server_queries_prometheus_when_a_request_sends_no_snapshot() {
    let Some(prom) = start() else {
        return; // `start` reported the skip
    };
    let server = Server::start(&["--insecure-no-auth", "--prometheus", &prom.url]);
    let headers = [("content-type", "application/json")];
    let body = json!({"policy": "canary", "stage": "initial-canary", "elapsed": "20m",
        "service": "checkout", "version": "2.1.0"});
    let r = server.request(
        "POST",
        "/v1/evaluate",
        &headers,
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let d = r.json();
    assert_eq!(d["decision"], "promote", "{}", d["summary"]);
    assert_eq!(d["sources"]["queries"].as_array().unwrap().len(), 6);

    // Flagger's webhook names the canary; its metadata carries the stage.
    let flagger = json!({"name": "payments-spike", "namespace": "prod", "phase": "Progressing",
        "checksum": "6d5f7c6c8c", "metadata": {"stage": "initial-canary", "elapsed": "20m"}});
    let r = server.request(
        "POST",
        "/v1/compat/flagger/canary",
        &headers,
        flagger.to_string().as_bytes(),
    );
    assert_eq!(r.status, 412, "a spiking canary fails the rollout check");
    assert!(String::from_utf8_lossy(&r.body).contains(": rollback (canary / initial-canary)"));

    // Argo's web provider, with the service templated into the body.
    let argo = json!({"stage": "initial-canary", "elapsed": "20m", "service": "search-slow", "version": "2.1.0"});
    let r = server.request(
        "POST",
        "/v1/compat/argo/canary",
        &headers,
        argo.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["decision"], "rollback");
}

#[test]
fn an_unreachable_prometheus_is_a_503_naming_it() {
    let Some(_prom) = start() else {
        return; // `start` reported the skip
    };
    let server = Server::start(&["--insecure-no-auth", "--prometheus", "http://127.0.0.1:1"]);
    let body = json!({"policy": "canary", "service": "checkout"});
    let r = server.request(
        "POST",
        "/v1/evaluate",
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    let e = r.json();
    assert_eq!(e["error"]["code"], "telemetry_unavailable");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("http://127.0.0.1:1 for metric `error_rate`"),
        "{e}"
    );
}

#[test]
fn a_backtest_queries_what_the_log_lacks_from_a_real_prometheus() {
    let Some(prom) = start() else {
        return; // `start` reported the skip
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.db").display().to_string();
    // Decisions logged from snapshots that carry the error rate only: the
    // latency gate had nothing to read.
    let taken_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 30;
    let points: Vec<Value> = (0..=30)
        .map(|i| json!([taken_at - 900 + 30 * i, 0.00005]))
        .collect();
    let server = Server::start(&["--insecure-no-auth", "--store", &log]);
    for service in ["checkout", "search-slow"] {
        let body = json!({"policy": "canary", "stage": "initial-canary", "elapsed": "20m",
            "snapshot": {"service": service, "version": "2.1.0", "taken_at": taken_at,
                "metrics": [{"name": "error_rate", "points": points}]}});
        let r = server.request(
            "POST",
            "/v1/evaluate",
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    drop(server);
    let canary = repo("policies/canary.yaml");
    let backtest = |extra: &[&str]| {
        let mut args = vec![
            "backtest",
            "--policy",
            canary.to_str().unwrap(),
            "--log",
            &log,
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        let run = tollgate(&args, "");
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.json()
    };
    // Without a source, the gate that lacks data is named and counted.
    let report = backtest(&[]);
    assert_eq!(report["no_data"]["response-time-p95"], 2, "{report:#}");
    assert!(report.get("requeried").is_none());
    // With Prometheus, the latency is queried at each decision's time.
    let report = backtest(&["--prometheus", &prom.url]);
    assert_eq!(report["prometheus"], prom.url.as_str());
    assert_eq!(report["requeried"]["response_time_p95_ms"], 2, "{report:#}");
    assert!(
        report
            .get("no_data")
            .is_none_or(|n| n.get("response-time-p95").is_none())
    );
    let row = |service: &str| {
        report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["service"] == service)
            .cloned()
            .unwrap_or_else(|| panic!("no row for {service}: {report:#}"))
    };
    let slow = row("search-slow");
    assert_ne!(slow["after"], "promote", "{slow:#}");
    let gate = slow["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "response-time-p95")
        .unwrap();
    assert_eq!(gate["after"], "fail", "{slow:#}");
    assert!(gate["observed_after"].as_f64().unwrap() > 500.0, "{gate}");
    assert!(
        slow["requeried"]
            .as_array()
            .unwrap()
            .contains(&json!("response_time_p95_ms"))
    );
    assert_eq!(row("checkout")["after"], "promote", "{report:#}");
    // The server's backtest job does the same with its own Prometheus.
    let server = Server::start(&[
        "--insecure-no-auth",
        "--store",
        &log,
        "--prometheus",
        &prom.url,
    ]);
    let text = std::fs::read_to_string(&canary).unwrap();
    let r = server.request(
        "POST",
        "/v1/backtests",
        &[("content-type", "application/json")],
        json!({"policy": text, "prometheus": true})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let started = Instant::now();
    let job = loop {
        let job = server
            .request("GET", &format!("/v1/backtests/{id}"), &[], b"")
            .json();
        if job["status"] != "running" && job["status"] != "queued" {
            break job;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{job}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(job["status"], "done", "{job:#}");
    assert_eq!(job["report"]["requeried"]["response_time_p95_ms"], 2);
    // A query no served policy runs is not sent with the server's
    // credentials: a candidate cannot read other series through it.
    let other = text.replace(
        "1000 * histogram_quantile(0.95,",
        "1000 * histogram_quantile(0.99,",
    );
    assert_ne!(other, text);
    let r = server.request(
        "POST",
        "/v1/backtests",
        &[("content-type", "application/json")],
        json!({"policy": other, "prometheus": true})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["error"]["field"], "prometheus");
    assert!(
        r.text().contains("metric `response_time_p95_ms`"),
        "{}",
        r.text()
    );
}

/// The native Prometheus client and the first-party `prometheus` source
/// plugin build the same snapshot from the same Prometheus: the bundled
/// canary policy's PromQL, asked once through `prometheus:` and once
/// through `source: prometheus`.
#[test]
fn the_prometheus_source_plugin_builds_the_native_snapshot() {
    let Some(prom) = start() else {
        return; // `start` reported the skip
    };
    let dir = tempfile::tempdir().unwrap();
    let native = std::fs::read_to_string(repo("policies/canary.yaml")).unwrap();
    let plugin = native.replace("    prometheus: ", "    source: prometheus\n    query: ");
    assert_eq!(plugin.matches("source: prometheus").count(), 3);
    let plugin = write(dir.path(), "canary-plugin.yaml", plugin.as_bytes());
    let at = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60)
        .to_string();
    let build = |policy: &str, flag: &str, value: &str| {
        let run = tollgate(
            &[
                "snapshot",
                "build",
                "--policy",
                policy,
                "--stage",
                "initial-canary",
                "--service",
                "payments-spike",
                "--version",
                "2.1.0",
                "--at",
                &at,
                flag,
                value,
            ],
            "",
        );
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        run.json()
    };
    let from_native = build(
        repo("policies/canary.yaml").to_str().unwrap(),
        "--prometheus",
        &prom.url,
    );
    let from_plugin = build(
        plugin.to_str().unwrap(),
        "--source",
        &format!("prometheus={}", prom.url),
    );
    let points = |s: &Value| {
        s["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["points"].as_array().map_or(0, Vec::len))
            .sum::<usize>()
    };
    assert!(points(&from_native) > 100, "{from_native}");
    assert_eq!(from_native, from_plugin);
}
