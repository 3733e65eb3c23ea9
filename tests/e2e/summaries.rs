//! Explanations and CI summaries: `--format markdown` rendered by a
//! GitHub-flavoured Markdown renderer with its Mermaid charts parsed by
//! Mermaid itself (`tests/node`), `tollgate explain`, and the explanation
//! and chart endpoints of a real server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::support::{Server, repo, tollgate, write};

const TOKEN: &str = "summary-token-0123456789abcdef";

/// `tests/node`'s renderer and Mermaid, installed by the test command
/// (`npm ci --prefix tests/node`); `None`, reported skipped, without them.
fn node_tools() -> Option<PathBuf> {
    let dir = repo("tests/node");
    if !crate::support::need("node") {
        return None;
    }
    if !dir.join("node_modules/mermaid").is_dir() {
        crate::support::skip("no tests/node/node_modules: run `npm ci --prefix tests/node`");
        return None;
    }
    Some(dir.join("markdown-check.mjs"))
}

/// `markdown` rendered as GitHub would, and each Mermaid block parsed.
fn render(script: &Path, markdown: &str) -> Value {
    use std::io::Write as _;
    let mut child = Command::new("node")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(markdown.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Markdown check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn all_charts_parse(rendered: &Value) -> usize {
    let charts = rendered["mermaid"].as_array().unwrap();
    for c in charts {
        assert_eq!(c["ok"], true, "a chart does not parse: {c}");
        assert_eq!(c["type"], "xychart", "{c}");
    }
    charts.len()
}

fn eval_markdown(policy: &Path, snapshot: &Path, stage: &str) -> crate::support::Run {
    tollgate(
        &[
            "eval",
            "--policy",
            policy.to_str().unwrap(),
            "--snapshot",
            snapshot.to_str().unwrap(),
            "--stage",
            stage,
            "--schedule",
            "caller",
            "--format",
            "markdown",
        ],
        "",
    )
}

#[test]
fn a_markdown_summary_renders_as_github_does_failing_gates_first_with_charts_that_parse() {
    let Some(script) = node_tools() else {
        return; // `node_tools` reported the skip by name
    };
    let run = eval_markdown(
        &repo("policies/canary.yaml"),
        &repo("tests/fixtures/canary-error-005.json"),
        "expanded-canary",
    );
    assert_eq!(run.code, 1, "rollback exits 1: {}", run.stderr);
    let md = &run.stdout;
    let rendered = render(&script, md);
    let html = rendered["html"].as_str().unwrap();
    assert!(html.contains("<table>"), "{html}");
    // The failing gate is the table's first row, before the passing one.
    let first_row = html.split("<tbody>").nth(1).unwrap();
    let error_at = first_row.find("error-rate").unwrap();
    let latency_at = first_row.find("response-time-p95").unwrap();
    assert!(error_at < latency_at, "{html}");
    assert!(first_row[..latency_at].contains("fail"), "{html}");
    // Details are collapsed.
    assert!(html.contains("<details><summary>"), "{html}");
    // A chart per windowed gate, each parsed by Mermaid, the threshold and
    // the observed aggregate drawn over the points.
    assert_eq!(all_charts_parse(&rendered), 2, "{md}");
    assert!(md.contains("red threshold 0.0005"), "{md}");
    assert!(md.contains("green observed 0.0005"), "{md}");
    // The 30 points of the 30-minute window, one column each.
    let chart = md.split("```mermaid").nth(1).unwrap();
    let line = chart.lines().find(|l| l.contains("line [")).unwrap();
    assert_eq!(line.matches(',').count() + 1, 30, "{line}");
}

#[test]
fn a_gate_that_compares_with_the_baseline_overlays_it_and_hostile_names_stay_text() {
    let Some(script) = node_tools() else {
        return; // `node_tools` reported the skip by name
    };
    let dir = tempfile::tempdir().unwrap();
    // A metric name a caller chose, written to break out of Markdown, HTML
    // and Mermaid all at once.
    let metric = "x<img src=q onerror=alert(1)>|\"]\n```";
    let policy = write(
        dir.path(),
        "p.yaml",
        serde_json::to_string(&json!({
            "apiVersion": "tollgate.dev/v1",
            "kind": "Policy",
            "metadata": {"name": "cmp"},
            "stages": [{"name": "canary", "gates": [{
                "name": "latency",
                "plugin": "threshold",
                "with": {"metric": metric, "aggregate": "avg", "window": "10m",
                         "op": "<=", "baseline_margin_percent": 10}
            }]}]
        }))
        .unwrap()
        .as_bytes(),
    );
    let t = crate::support::TAKEN_AT;
    let series = |v: f64| {
        (0..10)
            .map(|i| json!([t - 60 * i, v + i as f64]))
            .collect::<Vec<_>>()
    };
    let snapshot = write(
        dir.path(),
        "s.json",
        json!({"service": "checkout", "version": "2.1.0", "taken_at": t,
               "metrics": [{"name": metric, "points": series(300.0)}],
               "baseline": [{"name": metric, "points": series(250.0)}]})
        .to_string()
        .as_bytes(),
    );
    let run = eval_markdown(&policy, &snapshot, "canary");
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let md = &run.stdout;
    let rendered = render(&script, md);
    assert_eq!(all_charts_parse(&rendered), 1, "{md}");
    assert!(
        md.contains("blue canary, orange baseline, red threshold"),
        "{md}"
    );
    let html = rendered["html"].as_str().unwrap();
    assert!(!html.contains("<img"), "{html}");
    // The table still has its one gate row of six cells.
    let body = html.split("<tbody>").nth(1).unwrap();
    let row = body.split("</tr>").next().unwrap();
    assert_eq!(row.matches("<td>").count(), 6, "{row}");
}

fn logged_rollback(dir: &Path) -> (String, String) {
    let log = dir.join("log.db").display().to_string();
    let run = tollgate(
        &[
            "eval",
            "--policy",
            repo("policies/canary.yaml").to_str().unwrap(),
            "--snapshot",
            repo("tests/fixtures/canary-error-005.json")
                .to_str()
                .unwrap(),
            "--stage",
            "expanded-canary",
            "--schedule",
            "caller",
            "--format",
            "json",
            "--log",
            &log,
        ],
        "",
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let id = run.json()["decision_id"].as_str().unwrap().to_string();
    (log, id)
}

#[test]
fn explain_names_the_deciding_gate_its_distance_and_the_change_that_would_promote() {
    let dir = tempfile::tempdir().unwrap();
    let (log, id) = logged_rollback(dir.path());
    let run = tollgate(&["explain", &id, "--log", &log, "--format", "json"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let e = run.json();
    assert_eq!(e["decision"], "rollback");
    assert_eq!(e["decided_by"]["by"], "gates", "{e}");
    let gate = |name: &str| {
        e["gates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == name)
            .unwrap()
            .clone()
    };
    let errors = gate("error-rate");
    assert_eq!(errors["counted_as"], "fail");
    assert_eq!(errors["deciding"], true);
    assert_eq!(errors["weight_percent"], 50.0);
    assert_eq!(errors["score_points"], 0.0);
    assert_eq!(gate("response-time-p95")["score_points"], 50.0);
    assert_eq!(gate("response-time-p95")["deciding"], false, "{e}");
    // 0.0005 against `< 0.0005`: on the threshold, 0% away.
    assert_eq!(errors["distance"], 0.0, "{errors}");
    let promote = e["alternatives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["decision"] == "promote")
        .unwrap();
    assert_eq!(
        promote["changes"],
        json!([[{"gate": "error-rate", "from": "fail", "to": "pass"}]]),
        "{e}"
    );
    let table = tollgate(&["explain", &id, "--log", &log], "");
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(table.stdout.contains("WOULD HAVE BEEN"), "{}", table.stdout);
    assert!(
        table
            .stdout
            .contains("promote   if `error-rate` pass (was fail)"),
        "{}",
        table.stdout
    );
    let unknown = tollgate(
        &[
            "explain",
            "0190c0de-0000-7000-8000-000000000000",
            "--log",
            &log,
        ],
        "",
    );
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(unknown.stderr.contains("no decision"), "{}", unknown.stderr);
}

#[test]
fn a_logged_decision_and_its_explanation_render_as_markdown() {
    let Some(script) = node_tools() else {
        return; // `node_tools` reported the skip by name
    };
    let dir = tempfile::tempdir().unwrap();
    let (log, id) = logged_rollback(dir.path());
    let shown = tollgate(
        &[
            "decisions",
            "show",
            &id,
            "--log",
            &log,
            "--format",
            "markdown",
        ],
        "",
    );
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    // Charts redrawn from the logged snapshot.
    assert_eq!(all_charts_parse(&render(&script, &shown.stdout)), 2);
    let explained = tollgate(&["explain", &id, "--log", &log, "--format", "markdown"], "");
    assert_eq!(explained.code, 0, "{}", explained.stderr);
    let html = render(&script, &explained.stdout)["html"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(html.contains("<table>"), "{html}");
    assert!(
        html.contains("<strong>promote</strong> if error-rate pass (was fail)"),
        "{html}"
    );
}

#[test]
fn a_server_explains_and_charts_a_logged_decision_to_a_read_token() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write(
        dir.path(),
        "tokens",
        format!("{TOKEN}\nread-only-0123456789abcdef read\n").as_bytes(),
    );
    let server = Server::start(&["--tokens-file", tokens.to_str().unwrap()]);
    let auth = format!("Bearer {TOKEN}");
    let snapshot: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("tests/fixtures/canary-error-005.json")).unwrap(),
    )
    .unwrap();
    let body = json!({"policy": "canary", "stage": "expanded-canary", "elapsed": "40m", "snapshot": snapshot});
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
    let id = r.json()["decision_id"].as_str().unwrap().to_string();
    let read = "Bearer read-only-0123456789abcdef";
    let e = server.request(
        "GET",
        &format!("/v1/decisions/{id}/explanation"),
        &[("Authorization", read)],
        b"",
    );
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(e.json()["decided_by"]["by"], "gates");
    let c = server.request(
        "GET",
        &format!("/v1/decisions/{id}/charts"),
        &[("Authorization", read)],
        b"",
    );
    assert_eq!(c.status, 200, "{}", c.text());
    let charts = c.json()["charts"].as_array().unwrap().clone();
    assert_eq!(charts.len(), 2, "{charts:?}");
    assert_eq!(charts[0]["metric"], "error_rate");
    assert_eq!(charts[0]["current"].as_array().unwrap().len(), 30);
    assert_eq!(charts[0]["threshold"], 0.0005);
    // Without a token, or for a decision that is not there: refused.
    let anon = server.request("GET", &format!("/v1/decisions/{id}/charts"), &[], b"");
    assert_eq!(anon.status, 401);
    let missing = server.request(
        "GET",
        "/v1/decisions/0190c0de-0000-7000-8000-000000000000/explanation",
        &[("Authorization", read)],
        b"",
    );
    assert_eq!(missing.status, 404, "{}", missing.text());
}
