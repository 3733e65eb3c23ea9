//! CI report files from the real tools: pytest's JUnit XML, coverage.py's
//! lcov and Cobertura XML, and ruff's SARIF, produced here from a small
//! fixture project; and a SARIF log as a code scanner writes it.
//!
//! Needs `pytest`, `coverage` and `ruff` (PyPI; `.ci/run` installs them);
//! without them the tests that run them say why and skip.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{repo, tollgate, write};

fn python_tool(module: &str) -> bool {
    Command::new("python3")
        .args(["-m", module, "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs the fixture project's tests with coverage and lints it, writing
/// `junit.xml`, `coverage.info`, `coverage.xml` and `ruff.sarif` in `dir`.
fn produce_reports(dir: &Path) -> bool {
    for m in ["pytest", "coverage", "ruff"] {
        if !python_tool(m) {
            crate::support::skip(&format!("no python module `{m}`"));
            return false;
        }
    }
    for f in ["calc.py", "test_calc.py"] {
        std::fs::copy(repo(&format!("tests/fixtures/pyproject/{f}")), dir.join(f)).unwrap();
    }
    let run = |args: &[&str]| {
        let out = Command::new("python3")
            .args(args)
            .current_dir(dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .unwrap();
        // pytest exits 1 on the fixture's failing test, ruff on its findings.
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    run(&[
        "-m",
        "coverage",
        "run",
        "--branch",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--junitxml=junit.xml",
    ]);
    run(&["-m", "coverage", "lcov", "-o", "coverage.info"]);
    run(&["-m", "coverage", "xml", "-o", "coverage.xml"]);
    let sarif = run(&[
        "-m",
        "ruff",
        "check",
        "--no-cache",
        "--output-format",
        "sarif",
        "--select",
        "E,F,C901",
        "--config",
        "lint.mccabe.max-complexity=3",
        "calc.py",
        "test_calc.py",
    ]);
    std::fs::write(dir.join("ruff.sarif"), sarif).unwrap();
    true
}

fn build(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["snapshot", "build", "--at", "1764000000"];
    all.extend_from_slice(args);
    let run = tollgate(&all, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}

fn value(snapshot: &serde_json::Value, name: &str) -> f64 {
    snapshot["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no `{name}` in {snapshot}"))["points"][0][1]
        .as_f64()
        .unwrap()
}

#[test]
fn real_pytest_coverage_and_ruff_reports_become_metrics() {
    let dir = tempfile::tempdir().unwrap();
    if !produce_reports(dir.path()) {
        return;
    }
    let p = |f: &str| format!("{}", dir.path().join(f).display());
    let lcov = build(&["--report", &format!("coverage={}", p("coverage.info"))]);
    let xml = build(&["--report", &format!("coverage={}", p("coverage.xml"))]);
    // Both coverage formats agree on the same run.
    let line = value(&lcov, "test_coverage_percent");
    assert!(
        (line - value(&xml, "test_coverage_percent")).abs() < 0.01,
        "{line}"
    );
    assert!((50.0..100.0).contains(&line), "{line}");
    assert!(
        (value(&lcov, "test_branch_coverage_percent")
            - value(&xml, "test_branch_coverage_percent"))
        .abs()
            < 0.01
    );
    let tests = build(&["--report", &format!("tests={}", p("junit.xml"))]);
    assert_eq!(value(&tests, "tests_total"), 5.0);
    assert_eq!(value(&tests, "tests_failed"), 1.0);
    assert_eq!(value(&tests, "tests_skipped"), 1.0);
    let lint = build(&["--report", &format!("lint={}", p("ruff.sarif"))]);
    // F401 (unused `os`) and C901 (`classify` too complex).
    assert_eq!(value(&lint, "lint_errors"), 2.0);

    // One command from the three reports to a decision, as the README's
    // CI example runs it: the bundled policy for exactly these reports.
    let run = tollgate(
        &[
            "eval",
            "--policy",
            "ci-reports",
            "--report",
            &format!("coverage={}", p("coverage.info")),
            "--report",
            &format!("tests={}", p("junit.xml")),
            "--report",
            &format!("lint={}", p("ruff.sarif")),
            "--format",
            "json",
        ],
        "",
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let d = run.json();
    assert_eq!(d["decision"], "rollback");
    // The fixture project has a failing test and two lint findings; every
    // gate decided, none waits for data it cannot have.
    assert_eq!(run.gate("all-tests-pass")["verdict"], "fail");
    assert_eq!(run.gate("lint-errors")["verdict"], "fail");
    assert_eq!(run.gate("tests-ran")["verdict"], "pass");
    assert!(
        d["gates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["verdict"] != "inconclusive"),
        "{}",
        d["gates"]
    );
    let reports = d["sources"]["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 3);
    assert_eq!(reports[1]["kind"], "tests");
    assert!(
        reports[0]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
}

#[test]
fn code_scanning_security_severity_falls_into_cvss_bands() {
    let file = repo("tests/fixtures/reports/code-scanning.sarif");
    let s = build(&["--report", &format!("security={}", file.display())]);
    assert_eq!(value(&s, "vulnerabilities_critical"), 1.0);
    assert_eq!(value(&s, "vulnerabilities_high"), 3.0);
    assert_eq!(value(&s, "vulnerabilities_medium"), 1.0);
    assert_eq!(value(&s, "vulnerabilities_low"), 0.0);
}

#[test]
fn malformed_reports_are_errors_naming_the_file_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &[u8], &str)] = &[
        ("coverage", "cut.info", b"SF:a.py\nDA:1,1\nLF:1\n", "truncated"),
        ("tests", "cut.xml", b"<testsuites><testsuite tests=\"1\"><testcase name=\"a\">", "truncated"),
        ("lint", "cut.sarif", b"{\"version\": \"2.1.0\", \"runs\": [", "truncated at line 1"),
        (
            "tests",
            "bomb.xml",
            b"<?xml version=\"1.0\"?><!DOCTYPE b [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]><testsuite><testcase name=\"&b;\"/></testsuite>",
            "document type declarations are not accepted",
        ),
    ];
    for (kind, name, bytes, expected) in cases {
        let file = write(dir.path(), name, bytes);
        let run = tollgate(
            &[
                "snapshot",
                "build",
                "--report",
                &format!("{kind}={}", file.display()),
            ],
            "",
        );
        assert_eq!(run.code, 2, "{name}: {}", run.stdout);
        assert!(
            run.stderr.contains(&format!("report `{}`", file.display()))
                && run.stderr.contains(expected),
            "{name}: {}",
            run.stderr
        );
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    }
    let run = tollgate(&["snapshot", "build", "--report", "coverage=/dev/zero"], "");
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);
}

/// The first-party `junit-report` gate reads pytest's real JUnit XML itself,
/// through the directory its policy grants, and names the failing test;
/// without the grant the file does not exist for it.
#[test]
fn the_junit_report_gate_reads_a_real_pytest_report_through_its_grant() {
    let home = tempfile::tempdir().unwrap();
    let reports = home.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    if !produce_reports(&reports) {
        return;
    }
    let policy = |with: &str, grants: &str| {
        format!(
            "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {{ name: tests }}\nstages:\n  - name: ci\n    gates:\n      - name: tests-pass\n        plugin: junit-report\n        key: true\n{grants}        with: {with}\n"
        )
    };
    let grant = "        grants: { files: [ { host: ./reports, guest: /reports } ] }\n";
    let snapshot = write(
        home.path(),
        "snapshot.json",
        br#"{"service":"calc","version":"1.0.0","taken_at":1764237600,"metrics":[]}"#,
    );
    let snapshot = snapshot.to_str().unwrap();
    let eval = |name: &str, text: String| {
        let path = write(home.path(), name, text.as_bytes());
        let path = path.to_str().unwrap();
        let run = tollgate(
            &["eval", "-p", path, "-s", snapshot, "--format", "json"],
            "",
        );
        let decision: serde_json::Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}{}", run.stdout, run.stderr));
        decision["gates"][0].clone()
    };

    let found = eval("strict.yaml", policy("{ path: /reports/junit.xml }", grant));
    assert_eq!(found["verdict"], "fail", "{found}");
    let reason = found["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("5 test(s): 1 failed, 0 errored, 1 skipped in /reports/junit.xml, more than the 0 allowed; first: test_calc.test_known_bug (failed): assert"),
        "{reason}"
    );
    assert_eq!(found["details"]["failed"], "1", "{found}");
    assert_eq!(found["details"]["tests"], "5", "{found}");

    let found = eval(
        "lenient.yaml",
        policy("{ path: /reports, allowed_failures: 1 }", grant),
    );
    assert_eq!(found["verdict"], "pass", "{found}");
    assert!(
        found["reason"]
            .as_str()
            .unwrap()
            .ends_with("in 1 report(s) under /reports"),
        "coverage.xml beside it is passed over: {found}"
    );

    let found = eval("ungranted.yaml", policy("{ path: /reports/junit.xml }", ""));
    assert_eq!(found["verdict"], "inconclusive", "{found}");
    assert!(
        found["reason"]
            .as_str()
            .unwrap()
            .starts_with("cannot read /reports/junit.xml: "),
        "{found}"
    );
}

/// Runs `program args` in `dir` and returns its stdout; `None` (the test
/// skips, saying why) when the tool is not installed.
fn tool_output(dir: &Path, program: &str, args: &[&str]) -> Option<Vec<u8>> {
    if !crate::support::need(program) {
        return None;
    }
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // detect-secrets and jscpd exit 0; radon too, even on findings.
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out.stdout)
}

/// radon's complexity and maintainability, jscpd's duplication and
/// detect-secrets' findings, from the real tools, become the seed's metrics.
#[test]
fn real_radon_jscpd_and_detect_secrets_reports_become_metrics() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["calc.py", "test_calc.py"] {
        std::fs::copy(
            repo(&format!("tests/fixtures/pyproject/{f}")),
            dir.path().join(f),
        )
        .unwrap();
    }
    let Some(cc) = tool_output(
        dir.path(),
        "radon",
        &["cc", "-j", "calc.py", "test_calc.py"],
    ) else {
        return;
    };
    let Some(mi) = tool_output(
        dir.path(),
        "radon",
        &["mi", "-j", "calc.py", "test_calc.py"],
    ) else {
        return;
    };
    write(dir.path(), "cc.json", &cc);
    write(dir.path(), "mi.json", &mi);
    let p = |f: &str| format!("{}", dir.path().join(f).display());
    let snapshot = build(&[
        "--report",
        &format!("complexity={}", p("cc.json")),
        "--report",
        &format!("maintainability={}", p("mi.json")),
    ]);
    // `classify` has four paths; radon agrees.
    assert_eq!(value(&snapshot, "cyclomatic_complexity_max"), 4.0);
    let mi: serde_json::Value = serde_json::from_slice(&mi).unwrap();
    let lowest = mi
        .as_object()
        .unwrap()
        .values()
        .map(|f| f["mi"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(value(&snapshot, "maintainability_index"), lowest);

    // Two files sharing a long block: jscpd's own percentage comes through.
    let code = std::fs::create_dir(dir.path().join("src"));
    code.unwrap();
    let body: String = (0..12)
        .map(|i| format!("    total += values[{i}] * {i} + offset\n"))
        .collect();
    for name in ["a", "b"] {
        std::fs::write(
            dir.path().join(format!("src/{name}.py")),
            format!("def compute_{name}(values, offset):\n    total = 0\n{body}    return total\n\n\ndef other_{name}():\n    return 1\n"),
        )
        .unwrap();
    }
    if tool_output(
        dir.path(),
        "jscpd",
        &[
            "--reporters",
            "json",
            "--output",
            "jscpd",
            "--silent",
            "src",
        ],
    )
    .is_some()
    {
        let report = dir.path().join("jscpd/jscpd-report.json");
        let raw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let snapshot = build(&["--report", &format!("duplication={}", report.display())]);
        let percent = value(&snapshot, "duplication_percent");
        assert_eq!(
            percent,
            raw["statistics"]["total"]["percentage"].as_f64().unwrap()
        );
        assert!(percent > 3.0, "{percent}");
    }

    // An AWS-style key and a password: detect-secrets finds both.
    std::fs::write(
        dir.path().join("settings.py"),
        "AWS_ACCESS_KEY_ID = \"AKIAIOSFODNN7EXAMPLE\"\npassword = \"hunter2hunter2\"\n",
    )
    .unwrap();
    if let Some(found) = tool_output(dir.path(), "detect-secrets", &["scan", "settings.py"]) {
        write(dir.path(), "secrets.json", &found);
        let snapshot = build(&["--report", &format!("secrets={}", p("secrets.json"))]);
        assert_eq!(value(&snapshot, "secrets_detected"), 2.0);
        let clean = tool_output(dir.path(), "detect-secrets", &["scan", "calc.py"]).unwrap();
        write(dir.path(), "clean.json", &clean);
        let snapshot = build(&["--report", &format!("secrets={}", p("clean.json"))]);
        assert_eq!(value(&snapshot, "secrets_detected"), 0.0);
    }

    // A report of the wrong tool names what was expected.
    let run = tollgate(
        &[
            "snapshot",
            "build",
            "--report",
            &format!("secrets={}", p("mi.json")),
        ],
        "",
    );
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("expected detect-secrets' JSON with `results`"),
        "{}",
        run.stderr
    );
}

/// pip-audit's real JSON: the reader counts vulnerable and unaudited
/// dependencies exactly as the report lists them (whether or not its
/// vulnerability service is reachable from where the test runs), and the
/// CI pipeline's audit gates refuse a partial audit that pip-audit itself
/// calls "No known vulnerabilities found".
#[test]
fn a_real_pip_audit_report_counts_vulnerable_and_unaudited_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("requirements.txt"), "requests==2.19.0\n").unwrap();
    let Some(out) = tool_output(
        dir.path(),
        "pip-audit",
        &[
            "-r",
            "requirements.txt",
            "--no-deps",
            "-f",
            "json",
            "--progress-spinner",
            "off",
        ],
    ) else {
        return;
    };
    write(dir.path(), "audit.json", &out);
    let raw: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let deps = raw["dependencies"].as_array().unwrap();
    let vulnerable = deps
        .iter()
        .filter(|d| d["vulns"].as_array().is_some_and(|v| !v.is_empty()))
        .count();
    let unaudited = deps
        .iter()
        .filter(|d| d.get("skip_reason").is_some())
        .count();
    let p = format!("{}", dir.path().join("audit.json").display());
    let snapshot = build(&["--report", &format!("dependencies={p}")]);
    assert_eq!(value(&snapshot, "dependencies_total"), deps.len() as f64);
    assert_eq!(
        value(&snapshot, "dependencies_vulnerable"),
        vulnerable as f64
    );
    assert_eq!(value(&snapshot, "dependencies_unaudited"), unaudited as f64);
    // requests 2.19.0 has known advisories: audited, it is vulnerable;
    // unaudited, it is not silently clean.
    assert!(vulnerable + unaudited >= 1, "{raw}");
    let run = tollgate(
        &[
            "eval",
            "-p",
            repo("policies/ci-pipeline.yaml").to_str().unwrap(),
            "--stage",
            "security-compliance",
            "--report",
            &format!("dependencies={p}"),
            "--format",
            "json",
        ],
        "",
    );
    let d = run.json();
    let failed: Vec<&str> = d["gates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["verdict"] == "fail")
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert!(
        failed.contains(&"dependency-audit") || failed.contains(&"dependency-audit-complete"),
        "{d}"
    );
}
