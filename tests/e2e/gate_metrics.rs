//! What the gates judged, as Prometheus metrics: a real Prometheus scrapes a
//! real `tollgate serve`, and every query of the Grafana dashboard in
//! `deploy/grafana` returns data; the label cap on services holds.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, repo, write};

const TOKEN: &str = "metrics-token-0123456789abcdef";
const READER: &str = "grafana-token-0123456789abcdef";

struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Prometheus scraping `target`'s `/metrics` every second with the read
/// token, as an operator would configure it.
fn scrape(target: &str) -> Option<Prometheus> {
    if !crate::support::need("prometheus") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "prometheus.yml",
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: tollgate\n    authorization:\n      credentials: {READER}\n    static_configs:\n      - targets: ['{target}']\n"
        )
        .as_bytes(),
    );
    let port = crate::support::free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("db").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Some(Prometheus {
        child,
        addr: format!("127.0.0.1:{port}"),
        _dir: dir,
    })
}

fn query(prom: &Prometheus, expr: &str) -> Value {
    let path = format!("/api/v1/query?query={}", url_escape(expr));
    match crate::support::http(&prom.addr, "GET", &path, &[], b"") {
        Ok(r) if r.status == 200 => r.json(),
        Ok(r) => json!({"status": "error", "error": r.text()}),
        Err(e) => json!({"status": "error", "error": e.to_string()}),
    }
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn evaluate(server: &Server, policy: &str, stage: &str, fixture: &str, service: &str) {
    let mut snapshot: Value = serde_json::from_str(
        &std::fs::read_to_string(repo(&format!("tests/fixtures/{fixture}"))).unwrap(),
    )
    .unwrap();
    snapshot["service"] = json!(service);
    let body = json!({"policy": policy, "stage": stage, "elapsed": "40m", "snapshot": snapshot});
    let auth = format!("Bearer {TOKEN}");
    let r = server.request(
        "POST",
        "/v1/evaluate",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

fn metrics(server: &Server) -> String {
    let auth = format!("Bearer {READER}");
    let r = server.request("GET", "/metrics", &[("Authorization", &auth)], b"");
    assert_eq!(r.status, 200);
    r.text()
}

fn tokens(dir: &std::path::Path) -> String {
    write(
        dir,
        "tokens",
        format!("{TOKEN}\n{READER} read\n").as_bytes(),
    )
    .display()
    .to_string()
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus_scraping_serve() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["--tokens-file", &tokens(dir.path())]);
    let Some(prom) = scrape(&server.addr) else {
        return; // `scrape` reported the skip by name
    };
    // A rollback (a gate failing) and a promote, for two services.
    evaluate(
        &server,
        "canary",
        "expanded-canary",
        "canary-error-005.json",
        "checkout",
    );
    evaluate(
        &server,
        "canary",
        "initial-canary",
        "canary-steady.json",
        "cart",
    );
    let exposed = metrics(&server);
    assert!(
        exposed.contains(
            r#"tollgate_gate_threshold{policy="canary",stage="expanded-canary",gate="error-rate",service="checkout"} 0.0005"#
        ),
        "{exposed}"
    );
    assert!(
        exposed.contains(
            r#"tollgate_last_decision{policy="canary",service="checkout",decision="rollback"} 1"#
        ),
        "{exposed}"
    );
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("deploy/grafana/tollgate-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut exprs: Vec<String> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 10, "{exprs:?}");
    // Grafana's "All" for each variable.
    let all = |e: &str| {
        e.replace("$policy", ".*")
            .replace("$service", ".*")
            .replace("$stage", ".*")
    };
    let started = Instant::now();
    let mut last_missing = Vec::new();
    while started.elapsed() < Duration::from_secs(90) {
        // More decisions between scrapes, so every rate has an increase.
        evaluate(
            &server,
            "canary",
            "initial-canary",
            "canary-steady.json",
            "cart",
        );
        last_missing = exprs
            .iter()
            .filter(|e| {
                let r = query(&prom, &all(e));
                r["status"] != "success" || r["data"]["result"].as_array().is_none_or(Vec::is_empty)
            })
            .cloned()
            .collect();
        if last_missing.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        last_missing.is_empty(),
        "dashboard queries without data: {last_missing:#?}"
    );
    // Each template variable lists values from the scraped labels.
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        let Some(q) = v["query"]["query"].as_str() else {
            continue;
        };
        let (metric, label) = q
            .trim_start_matches("label_values(")
            .trim_end_matches(')')
            .rsplit_once(", ")
            .unwrap();
        let metric = all(metric);
        let path = format!(
            "/api/v1/label/{label}/values?match[]={}",
            url_escape(&metric)
        );
        let r = crate::support::http(&prom.addr, "GET", &path, &[], b"").unwrap();
        let values = r.json()["data"].as_array().cloned().unwrap_or_default();
        assert!(!values.is_empty(), "variable `{q}` lists nothing");
    }
}

#[test]
fn services_past_the_cap_are_counted_not_labelled() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&[
        "--tokens-file",
        &tokens(dir.path()),
        "--metrics-max-services",
        "2",
    ]);
    for service in ["a", "b", "c", "d", "a"] {
        evaluate(
            &server,
            "canary",
            "initial-canary",
            "canary-steady.json",
            service,
        );
    }
    let exposed = metrics(&server);
    let labelled: std::collections::BTreeSet<&str> = exposed
        .lines()
        .filter(|l| l.starts_with("tollgate_last_decision{"))
        .filter_map(|l| l.split("service=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(labelled, ["a", "b"].into(), "{exposed}");
    assert!(
        exposed.contains("tollgate_metrics_services_over_cap_total 2"),
        "{exposed}"
    );
}
