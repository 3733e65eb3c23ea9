//! `policies/ci-quality-gates.yaml`: every gate passes and fails, at its
//! exact boundary.

use crate::support::{eval, repo, values};

const PASSING: &[(&str, f64)] = &[
    ("test_coverage_percent", 88.1),
    ("lint_errors", 0.0),
    ("vulnerabilities_critical", 0.0),
    ("performance_regression_percent", 1.2),
    ("response_time_p95_ms", 120.0),
    ("compliance_score_percent", 98.5),
];

fn with(metric: &str, value: f64) -> serde_json::Value {
    let metrics: Vec<(&str, f64)> = PASSING
        .iter()
        .map(|&(n, v)| if n == metric { (n, value) } else { (n, v) })
        .collect();
    values(&metrics)
}

fn check(gate: &str, metric: &str, passing: f64, failing: f64) {
    let policy = repo("policies/ci-quality-gates.yaml");
    let ok = eval(&policy, &with(metric, passing), None);
    assert_eq!(
        ok.code, 0,
        "{gate} at {passing}: {}{}",
        ok.stdout, ok.stderr
    );
    assert_eq!(ok.json()["decision"], "promote");
    assert_eq!(ok.gate(gate)["verdict"], "pass");

    let bad = eval(&policy, &with(metric, failing), None);
    assert_eq!(
        bad.code, 1,
        "{gate} at {failing}: {}{}",
        bad.stdout, bad.stderr
    );
    let d = bad.json();
    assert_eq!(d["decision"], "rollback");
    assert_eq!(bad.gate(gate)["verdict"], "fail");
    assert_eq!(bad.gate(gate)["observed"], failing);
    assert!(
        d["summary"].as_str().unwrap().contains(gate),
        "{}",
        d["summary"]
    );
    let others_pass = d["gates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["name"] != gate)
        .all(|g| g["verdict"] == "pass");
    assert!(others_pass, "{d}");
}

#[test]
fn coverage_80_passes_and_79_9_fails() {
    check("test-coverage", "test_coverage_percent", 80.0, 79.9);
}

#[test]
fn lint_errors_must_be_zero() {
    check("lint-errors", "lint_errors", 0.0, 1.0);
}

#[test]
fn critical_vulnerabilities_must_be_zero() {
    check(
        "critical-vulnerabilities",
        "vulnerabilities_critical",
        0.0,
        1.0,
    );
}

#[test]
fn performance_regression_must_stay_below_5_percent() {
    check(
        "performance-regression",
        "performance_regression_percent",
        4.99,
        5.0,
    );
}

#[test]
fn api_p95_must_stay_below_200_ms() {
    check("api-response-time", "response_time_p95_ms", 199.9, 200.0);
}

#[test]
fn compliance_must_be_at_least_95_percent() {
    check("compliance-score", "compliance_score_percent", 95.0, 94.9);
}

#[test]
fn the_shared_example_passes_every_gate() {
    let snapshot: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("tests/fixtures/ci-passing.json")).unwrap(),
    )
    .unwrap();
    let run = eval(&repo("policies/ci-quality-gates.yaml"), &snapshot, None);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let d = run.json();
    assert_eq!(d["score"], 100.0);
    assert_eq!(d["gates"].as_array().unwrap().len(), 6);
    for key in ["policy", "input"] {
        assert!(
            d["digests"][key].as_str().unwrap().starts_with("sha256:"),
            "{d}"
        );
    }
    assert!(
        d["digests"]["plugins"]["threshold"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(d["gates"][0]["duration_us"].as_u64().is_some());
}

#[test]
fn a_missing_metric_is_inconclusive_and_holds() {
    let metrics: Vec<(&str, f64)> = PASSING
        .iter()
        .copied()
        .filter(|(n, _)| *n != "compliance_score_percent")
        .collect();
    let run = eval(
        &repo("policies/ci-quality-gates.yaml"),
        &values(&metrics),
        None,
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let d = run.json();
    assert_eq!(d["decision"], "hold");
    assert_eq!(d["stage_result"], "inconclusive");
    let gate = run.gate("compliance-score");
    assert_eq!(gate["verdict"], "inconclusive");
    assert!(
        gate["reason"].as_str().unwrap().contains("no data"),
        "{gate}"
    );
}

#[test]
fn table_and_junit_formats_render_the_decision() {
    let policy = repo("policies/ci-quality-gates.yaml");
    let snapshot = with("test_coverage_percent", 79.9).to_string();
    let table = crate::support::tollgate(
        &["eval", "-p", policy.to_str().unwrap(), "-s", "-"],
        &snapshot,
    );
    assert_eq!(table.code, 1);
    assert!(table.stdout.starts_with("ROLLBACK"), "{}", table.stdout);
    assert!(
        table.stdout.contains("test-coverage (key)"),
        "{}",
        table.stdout
    );
    assert!(!table.stdout.contains('\x1b'), "no colour off a TTY");
    let junit = crate::support::tollgate(
        &[
            "eval",
            "-p",
            policy.to_str().unwrap(),
            "-s",
            "-",
            "--format",
            "junit",
        ],
        &snapshot,
    );
    assert_eq!(junit.code, 1);
    // The failing gate, and the decision (a rollback) as a failure too.
    assert!(junit.stdout.contains("failures=\"2\""), "{}", junit.stdout);
    assert!(
        junit
            .stdout
            .contains("<failure message=\"key gate `test-coverage` failed"),
        "{}",
        junit.stdout
    );
    assert!(
        junit
            .stdout
            .contains("<failure message=\"last of `test_coverage_percent` = 79.9%"),
        "{}",
        junit.stdout
    );
}

/// `--stage all` over `policies/ci-pipeline.yaml`: the stages in order, a
/// stop at the first that does not pass, each reported in every format.
#[test]
fn stage_all_runs_the_pipeline_in_order_and_stops_at_the_first_failure() {
    let policy = repo("policies/ci-pipeline.yaml");
    let passing = repo("tests/fixtures/ci-pipeline-passing.json");
    let eval = |stage: &str, extra: &[&str]| {
        let mut args = vec![
            "eval",
            "-p",
            policy.to_str().unwrap(),
            "-s",
            passing.to_str().unwrap(),
            "--stage",
            stage,
        ];
        args.extend_from_slice(extra);
        crate::support::tollgate(&args, "")
    };
    let run = |extra: &[&str]| eval("all", extra);
    let ok = run(&["--format", "json"]);
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    let d = ok.json();
    assert_eq!(d["stage"], "security-compliance");
    assert_eq!(d["pipeline"].as_array().unwrap().len(), 3);

    // Coverage fails stage 1: stages 2 and 3 are not evaluated.
    let bad = run(&["--metric", "test_coverage_percent=70", "--format", "json"]);
    assert_eq!(bad.code, 1);
    let d = bad.json();
    assert_eq!(d["stage"], "code-integration");
    assert_eq!(d["pipeline"].as_array().unwrap().len(), 1);
    assert!(
        d["summary"].as_str().unwrap().starts_with(
            "stage `code-integration` (1 of 3) did not pass: key gate `test-coverage` failed"
        ),
        "{}",
        d["summary"]
    );

    // The table names each stage; JUnit gives each stage's gates its class.
    let table = run(&["--metric", "tests_failed=3"]);
    assert_eq!(table.code, 1);
    assert!(table.stdout.contains("STAGE"), "{}", table.stdout);
    assert!(
        table.stdout.contains("code-integration   pass"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("automated-testing  fail"),
        "{}",
        table.stdout
    );
    let junit = run(&["--metric", "tests_failed=3", "--format", "junit"]);
    assert!(
        junit
            .stdout
            .contains(r#"<testcase classname="ci-pipeline/code-integration" name="test-coverage""#),
        "{}",
        junit.stdout
    );
    // One suite per stage evaluated; the deciding stage's holds the
    // decision, which fails: 11 gates and the decision, 2 failures.
    assert!(
        junit
            .stdout
            .contains(r#"<testsuites name="tollgate ci-pipeline" tests="12" failures="2""#),
        "{}",
        junit.stdout
    );
    assert!(
        junit
            .stdout
            .contains(r#"<testsuite name="ci-pipeline/code-integration" tests="6" failures="0""#),
        "{}",
        junit.stdout
    );

    // `all` is not a stage name a policy may use, and an unknown stage says so.
    let unknown = eval("nope", &[]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("or `all` for every stage in order"),
        "{}",
        unknown.stderr
    );
}
