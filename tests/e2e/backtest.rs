//! Backtesting on a log built through the server: a tightened threshold
//! flips known releases and a relaxed one unflips them, releases are
//! labelled from a later rollback and from a hotfix, the confusion table is
//! exact, stateful triggers replay in order per service, and past decisions
//! become policy test cases that pass.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::{Server, repo, tollgate, write};

pub(crate) const TOKEN: &str = "backtest-token-0123456789abcdef";

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub(crate) fn server(dir: &Path) -> (Server, String) {
    let tokens = write(dir, "tokens", format!("{TOKEN}\n").as_bytes());
    let log = dir.join("log.db").display().to_string();
    let server = Server::start(&["--tokens-file", tokens.to_str().unwrap(), "--store", &log]);
    (server, log)
}

pub(crate) fn evaluate(server: &Server, body: &Value) -> Value {
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
    r.json()
}

/// A CI snapshot of `service` `version` at `taken_at` with this coverage.
pub(crate) fn ci(service: &str, version: &str, taken_at: i64, coverage: f64) -> Value {
    json!({"policy": "ci-quality-gates", "snapshot": {
        "service": service, "version": version, "taken_at": taken_at,
        "metrics": [
            {"name": "test_coverage_percent", "value": coverage},
            {"name": "lint_errors", "value": 0},
            {"name": "vulnerabilities_critical", "value": 0},
            {"name": "performance_regression_percent", "value": 1},
            {"name": "response_time_p95_ms", "value": 120},
            {"name": "compliance_score_percent", "value": 98}]}})
}

/// The bundled CI policy with the coverage threshold at `threshold`.
pub(crate) fn candidate(dir: &Path, name: &str, threshold: u32) -> String {
    let text = std::fs::read_to_string(repo("policies/ci-quality-gates.yaml")).unwrap();
    let changed = text.replace(
        "op: \">=\", threshold: 80,",
        &format!("op: \">=\", threshold: {threshold},"),
    );
    assert_ne!(
        text, changed,
        "the coverage threshold moved in the bundled policy"
    );
    write(dir, name, changed.as_bytes()).display().to_string()
}

pub(crate) fn backtest(args: &[&str]) -> Value {
    let mut all = vec!["backtest", "--format", "json"];
    all.extend_from_slice(args);
    let run = tollgate(&all, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.json()
}

fn version_rows(report: &Value) -> Vec<(String, String, String)> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_str().unwrap().to_string(),
                r["before"].as_str().unwrap().to_string(),
                r["after"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

/// Five CI releases of payments, one hotfixed an hour after it shipped.
pub(crate) fn history(server: &Server) {
    let t = now() - 10 * 86_400;
    for (i, (version, coverage)) in [
        ("1.0.0", 82.0),
        ("1.1.0", 85.0),
        ("1.2.0", 88.0),
        ("1.3.0", 95.0),
        ("1.4.0", 79.0),
    ]
    .into_iter()
    .enumerate()
    {
        evaluate(
            server,
            &ci("payments", version, t + 7200 * i as i64, coverage),
        );
    }
    let hotfix = json!({"policy": "hotfix", "snapshot": {
        "service": "payments", "version": "1.1.1", "taken_at": t + 7200 + 3600,
        "metrics": [{"name": "vulnerabilities_critical", "value": 0}, {"name": "lint_errors", "value": 0}]}});
    assert_eq!(evaluate(server, &hotfix)["decision"], "promote");
}

#[test]
fn a_tightened_threshold_flips_known_releases_and_the_confusion_table_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (server, log) = server(dir.path());
    history(&server);
    let stricter = candidate(dir.path(), "stricter.yaml", 90);
    let report = backtest(&["--policy", &stricter, "--log", &log]);
    assert_eq!(report["decisions"], 5);
    assert_eq!(report["changed"], 3, "{report:#}");
    assert_eq!(report["transitions"], json!({"promote → rollback": 3}));
    assert_eq!(
        version_rows(&report),
        [
            ("1.0.0".into(), "promote".into(), "rollback".into()),
            ("1.1.0".into(), "promote".into(), "rollback".into()),
            ("1.2.0".into(), "promote".into(), "rollback".into()),
        ]
    );
    let row = &report["rows"][0];
    assert_eq!(row["gates"][0]["name"], "test-coverage");
    assert_eq!(row["gates"][0]["before"], "pass");
    assert_eq!(row["gates"][0]["after"], "fail");
    assert_eq!(row["gates"][0]["observed_after"], 82.0);
    assert_eq!(row["gates"][0]["threshold_before"], 80.0);
    assert_eq!(row["gates"][0]["threshold_after"], 90.0);
    // 1.1.0 was hotfixed an hour later and 1.4.0 rolled back: bad. The
    // others shipped: good.
    let labels: Vec<(String, Value, Value)> = report["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_str().unwrap().to_string(),
                r["label"].clone(),
                r["because"].clone(),
            )
        })
        .collect();
    assert_eq!(
        labels,
        [
            ("1.0.0".into(), json!("good"), json!("shipped")),
            ("1.1.0".into(), json!("bad"), json!("hotfix 1.1.1")),
            ("1.2.0".into(), json!("good"), json!("shipped")),
            ("1.3.0".into(), json!("good"), json!("shipped")),
            ("1.4.0".into(), json!("bad"), json!("rollback")),
        ]
    );
    assert_eq!(
        report["confusion_before"],
        json!({"stopped_bad": 1, "stopped_good": 0, "passed_bad": 1, "passed_good": 3, "unlabelled": 0})
    );
    assert_eq!(
        report["confusion_after"],
        json!({"stopped_bad": 2, "stopped_good": 2, "passed_bad": 0, "passed_good": 1, "unlabelled": 0})
    );
    // A labels file wins over the log.
    let labels = write(
        dir.path(),
        "labels.csv",
        b"service,version,label\npayments,1.0.0,bad\n",
    );
    let report = backtest(&[
        "--policy",
        &stricter,
        "--log",
        &log,
        "--labels",
        labels.to_str().unwrap(),
    ]);
    assert_eq!(report["releases"][0]["because"], "file");
    assert_eq!(report["confusion_after"]["stopped_bad"], 3);
    // The table says the same for people.
    let table = tollgate(&["backtest", "--policy", &stricter, "--log", &log], "");
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(
        table.stdout.contains("promote → rollback: 3"),
        "{}",
        table.stdout
    );
    assert!(
        table
            .stdout
            .contains("gate test-coverage pass→fail (82 vs 80→90)"),
        "{}",
        table.stdout
    );
    let line = table
        .stdout
        .lines()
        .find(|l| l.starts_with("stopped a good release (false positive)"))
        .unwrap();
    assert!(
        line.split_whitespace().rev().take(2).eq(["2", "0"]),
        "{line}"
    );
    // --fail-on-change makes it a CI check.
    let check = tollgate(
        &[
            "backtest",
            "--policy",
            &stricter,
            "--log",
            &log,
            "--fail-on-change",
        ],
        "",
    );
    assert_eq!(check.code, 1, "{}", check.stderr);
}

#[test]
fn a_relaxed_threshold_unflips_a_rollback_and_a_comparison_policy_is_evaluated_alike() {
    let dir = tempfile::tempdir().unwrap();
    let (server, log) = server(dir.path());
    history(&server);
    let relaxed = candidate(dir.path(), "relaxed.yaml", 75);
    let report = backtest(&["--policy", &relaxed, "--log", &log]);
    assert_eq!(
        version_rows(&report),
        [("1.4.0".into(), "rollback".into(), "promote".into())]
    );
    assert_eq!(report["confusion_after"]["passed_bad"], 2);
    // For a pull request that changes the policy.
    let md = tollgate(
        &[
            "backtest", "--policy", &relaxed, "--log", &log, "--format", "markdown",
        ],
        "",
    );
    assert_eq!(md.code, 0, "{}", md.stderr);
    assert!(
        md.stdout.contains("| rollback → promote | 1 |"),
        "{}",
        md.stdout
    );
    assert!(
        md.stdout.contains("| let a bad release through | 1 | 2 |"),
        "{}",
        md.stdout
    );
    // Against the stricter policy instead of the log: four flips.
    let stricter = candidate(dir.path(), "stricter.yaml", 90);
    let report = backtest(&["--policy", &relaxed, "--against", &stricter, "--log", &log]);
    assert_eq!(report["against"], "ci-quality-gates");
    assert_eq!(report["changed"], 4, "{report:#}");
    assert_eq!(report["transitions"], json!({"rollback → promote": 4}));
}

/// A canary decision of `service` at `taken_at` whose only error-rate point
/// (at `taken_at`) is 2%.
fn failing_canary(service: &str, taken_at: i64) -> Value {
    json!({"policy": "canary", "stage": "initial-canary", "elapsed": "20m", "snapshot": {
        "service": service, "version": "2.0.0", "taken_at": taken_at,
        "metrics": [
            {"name": "error_rate", "points": [[taken_at, 0.02]]},
            {"name": "response_time_p95_ms", "points": [[taken_at, 200]]}]}})
}

#[test]
fn stateful_triggers_replay_in_order_per_service() {
    let dir = tempfile::tempdir().unwrap();
    let (server, log) = server(dir.path());
    let t = now() - 3600;
    // Interleaved: a, b, a, a. Each failing point 30 s after the last.
    for (service, at) in [("a", t), ("b", t + 10), ("a", t + 30), ("a", t + 60)] {
        let d = evaluate(&server, &failing_canary(service, at));
        let breaker = d["triggers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == "circuit-breaker")
            .unwrap()
            .clone();
        assert_eq!(
            breaker["fire"], "none",
            "five failures open the logged breaker: {breaker}"
        );
    }
    // The candidate's breaker opens at the second consecutive failure.
    let text = std::fs::read_to_string(repo("policies/canary.yaml")).unwrap();
    let quick = text.replace("failure_threshold: 5,", "failure_threshold: 2,");
    assert_ne!(text, quick);
    let quick = write(dir.path(), "quick.yaml", quick.as_bytes());
    let report = backtest(&["--policy", quick.to_str().unwrap(), "--log", &log]);
    let fired: Vec<(String, String)> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r["triggers"].as_array().unwrap().iter().map(move |t| {
                (
                    r["service"].as_str().unwrap().to_string(),
                    format!(
                        "{}:{}",
                        t["name"].as_str().unwrap(),
                        t["after"].as_str().unwrap()
                    ),
                )
            })
        })
        .collect();
    // a's second failure opens its breaker, and its third meets it open;
    // b's single failure, though it came between them, fires nothing.
    assert_eq!(fired.len(), 2, "{report:#}");
    assert!(fired.iter().all(|(service, _)| service == "a"), "{fired:?}");
    assert_eq!(fired[0].1, "circuit-breaker:immediate-rollback");
    assert_eq!(report["state"], "replayed");
    // With the logged state, the candidate reads what each decision read
    // (closed, 0, 1 and 2 failures): it fires at a's second and third too,
    // from the logged counts rather than its own.
    let logged = backtest(&[
        "--policy",
        quick.to_str().unwrap(),
        "--log",
        &log,
        "--logged-state",
    ]);
    assert_eq!(logged["state"], "logged");
    assert_eq!(logged["rows"].as_array().unwrap().len(), 2, "{logged:#}");
}

#[test]
fn past_decisions_become_policy_tests_that_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (server, log) = server(dir.path());
    history(&server);
    let stricter = candidate(dir.path(), "stricter.yaml", 90);
    let cases = dir.path().join("cases");
    let run = tollgate(
        &[
            "backtest",
            "--policy",
            &stricter,
            "--log",
            &log,
            "--write-cases",
            cases.to_str().unwrap(),
            "--expect",
            "candidate",
        ],
        "",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("wrote 3 case(s)"), "{}", run.stderr);
    let test = tollgate(
        &["test", cases.join("backtest.test.yaml").to_str().unwrap()],
        "",
    );
    assert_eq!(test.code, 0, "{}\n{}", test.stdout, test.stderr);
    assert!(
        test.stdout.contains("3 passed, 0 failed"),
        "{}",
        test.stdout
    );
    // Expecting what was logged, the same cases fail against the candidate:
    // the regression the backtest found, kept as a test.
    let run = tollgate(
        &[
            "backtest",
            "--policy",
            &stricter,
            "--log",
            &log,
            "--write-cases",
            cases.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let test = tollgate(
        &["test", cases.join("backtest.test.yaml").to_str().unwrap()],
        "",
    );
    assert_eq!(test.code, 1, "{}", test.stdout);
    assert!(
        test.stdout.contains("0 passed, 3 failed"),
        "{}",
        test.stdout
    );
}

#[test]
fn a_backtest_with_nothing_to_read_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (server, log) = server(dir.path());
    history(&server);
    drop(server);
    let run = tollgate(
        &[
            "backtest",
            "--policy",
            repo("policies/canary.yaml").to_str().unwrap(),
            "--log",
            &log,
        ],
        "",
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("no decision of policy `canary`"),
        "{}",
        run.stderr
    );
    let missing = tollgate(
        &[
            "backtest",
            "--policy",
            repo("policies/canary.yaml").to_str().unwrap(),
            "--log",
            dir.path().join("nope.db").to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("no decision log"),
        "{}",
        missing.stderr
    );
}
