//! What a new user hit, one test per item of the report.

use crate::support::{repo, tollgate};

fn eval_canary(fixture: &str, format: &str, extra: &[&str]) -> crate::support::Run {
    let policy = repo("policies/canary.yaml");
    let snap = repo(&format!("tests/fixtures/{fixture}"));
    let mut args = vec![
        "eval",
        "--policy",
        policy.to_str().unwrap(),
        "--snapshot",
        snap.to_str().unwrap(),
        "--stage",
        "initial-canary",
        "--format",
        format,
    ];
    args.extend_from_slice(extra);
    tollgate(&args, "")
}

/// `failures="N"` and friends, read from the suite element.
fn suite_count(xml: &str, attr: &str) -> usize {
    let suite = xml.split("<testsuite ").nth(1).unwrap();
    let value = suite.split(&format!("{attr}=\"")).nth(1).unwrap();
    value.split('"').next().unwrap().parse().unwrap()
}

#[test]
fn junit_counts_match_the_elements_when_triggers_fire() {
    let run = eval_canary("canary-error-spike.json", "junit", &["--elapsed", "20m"]);
    let xml = run.stdout;
    assert_eq!(
        suite_count(&xml, "failures"),
        xml.matches("<failure ").count(),
        "{xml}"
    );
    assert_eq!(suite_count(&xml, "errors"), xml.matches("<error ").count());
    assert_eq!(
        suite_count(&xml, "skipped"),
        xml.matches("<skipped ").count()
    );
    assert_eq!(
        suite_count(&xml, "tests"),
        xml.matches("<testcase ").count()
    );
    assert!(suite_count(&xml, "failures") >= 2, "{xml}");
}

#[test]
fn junit_shows_a_hold_caused_by_a_trigger_as_a_failure() {
    let run = eval_canary(
        "canary-conversion-drop.json",
        "junit",
        &["--elapsed", "20m"],
    );
    assert_eq!(run.code, 1);
    let xml = run.stdout;
    assert!(
        xml.contains("<property name=\"decision\" value=\"hold\"/>"),
        "{xml}"
    );
    assert!(
        suite_count(&xml, "failures") >= 1,
        "a CI job must not see green: {xml}"
    );
    assert!(xml.contains("type=\"prepare-rollback\""), "{xml}");
}

#[test]
fn the_table_prints_the_score_once_with_rounded_numbers_and_headers() {
    let run = eval_canary("canary-steady.json", "table", &["--elapsed", "20m"]);
    let out = run.stdout;
    assert_eq!(out.matches("score ").count(), 1, "the score once: {out}");
    assert!(out.contains("bands over the gates that counted"), "{out}");
    assert!(out.contains("\nTRIGGER "), "{out}");
    assert!(out.contains("FIRE"), "{out}");
    assert!(out.contains("ACTION: PLAN"), "{out}");
    for line in out.lines().filter(|l| l.starts_with("error-rate")) {
        let observed = line.split_whitespace().nth(3).unwrap();
        assert!(observed.len() <= 12, "raw float in `{line}`");
    }
}

#[test]
fn the_table_says_how_an_ignored_error_counted() {
    let dir = tempfile::tempdir().unwrap();
    crate::support::write(
        dir.path(),
        "trap.wasm",
        &crate::hostile::component_for("trap", &repo("wit")),
    );
    let policy = crate::support::write(
        dir.path(),
        "p.yaml",
        b"apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: p}\nplugins:\n  trap: {path: trap.wasm}\nstages:\n  - name: s\n    gates:\n      - {name: broken, plugin: trap, on_error: ignore}\n      - {name: cov, plugin: threshold, on_no_data: inconclusive, with: {metric: cov, op: '>=', threshold: 80}}\n",
    );
    let snap = crate::support::write(
        dir.path(),
        "s.json",
        crate::support::values(&[]).to_string().as_bytes(),
    );
    let run = crate::support::eval_files(&policy, &snap, &[]);
    assert!(run.stdout.contains("error → ignored"), "{}", run.stdout);
    assert!(
        run.stdout.contains("1 of 2 gate(s) inconclusive"),
        "{}",
        run.stdout
    );
}

#[test]
fn unknown_stage_time_holds_when_the_policy_owns_the_schedule() {
    let run = eval_canary("canary-steady.json", "json", &[]);
    assert_eq!(run.code, 1);
    let d = run.json();
    assert_eq!(d["decision"], "hold");
    let summary = d["summary"].as_str().unwrap();
    assert!(
        summary.contains("must run 15m")
            && summary.contains("--elapsed")
            && summary.contains("stage_started_at"),
        "{summary}"
    );
    // With the time known, the same stage promotes.
    assert_eq!(
        eval_canary("canary-steady.json", "json", &["--elapsed", "20m"]).code,
        0
    );
    // And a caller that keeps the clock itself declares it.
    assert_eq!(
        eval_canary("canary-steady.json", "json", &["--schedule", "caller"]).code,
        0
    );
}

#[tokio::test]
async fn unknown_stage_time_is_the_callers_for_flagger_and_argo() {
    use crate::server_router::{READER, call, json_of, snapshot, state_with};
    let s = state_with(tollgate::server::ServerConfig::default());
    let body = serde_json::json!({"policy": "canary", "stage": "initial-canary", "snapshot": snapshot("canary-steady.json")});
    let (_, _, r) = call(
        &s,
        "POST",
        "/v1/evaluate",
        Some(READER),
        Some(body.to_string().into_bytes()),
    )
    .await;
    assert_eq!(
        json_of(&r)["decision"],
        "hold",
        "the policy's clock, unknown"
    );
    let argo =
        serde_json::json!({"stage": "initial-canary", "snapshot": snapshot("canary-steady.json")});
    let (_, _, r) = call(
        &s,
        "POST",
        "/v1/compat/argo/canary",
        Some(READER),
        Some(argo.to_string().into_bytes()),
    )
    .await;
    assert_eq!(
        json_of(&r)["decision"],
        "promote",
        "Argo advances the steps itself"
    );
}

#[test]
fn audit_reports_every_plugin_when_one_path_is_unreadable_and_suggests_names() {
    let run = tollgate(
        &["audit", "threshold", "/no/such/plugin.wasm", "thresold"],
        "",
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let reports = run.json();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 3);
    assert_eq!(reports[0]["verdict"], "accepted");
    assert_eq!(reports[0]["source"], "builtin:threshold");
    assert_eq!(reports[1]["verdict"], "refused");
    // Nothing was read, so there is no digest of nothing to show.
    assert!(reports[1].get("digest").is_none(), "{}", reports[1]);
    assert!(reports[1].get("size_bytes").is_none(), "{}", reports[1]);
    assert!(
        reports[0]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(
        reports[1]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot read `/no/such/plugin.wasm`")
    );
    assert!(
        reports[2]["reason"]
            .as_str()
            .unwrap()
            .contains("did you mean the first-party plugin `threshold`?"),
        "{}",
        reports[2]
    );
}

#[tokio::test]
async fn the_plugins_endpoint_gives_the_audit_report_for_every_plugin() {
    use crate::server_router::{READER, call, json_of, state_with};
    let s = state_with(tollgate::server::ServerConfig::default());
    let (_, _, body) = call(&s, "GET", "/v1/plugins", Some(READER), None).await;
    let listed = json_of(&body);
    let plugins = listed["plugins"].as_array().unwrap();
    let audit = tollgate(&["audit", "threshold"], "").json();
    let served = plugins.iter().find(|p| p["plugin"] == "threshold").unwrap();
    for key in audit[0].as_object().unwrap().keys() {
        assert_eq!(served[key], audit[0][key], "field `{key}`");
    }
    // Every first-party plugin is listed, used or not.
    assert!(plugins.len() >= 8, "{}", plugins.len());
}

#[test]
fn validate_exits_2_for_a_missing_file() {
    let run = tollgate(&["validate", "/no/such/policy.yaml"], "");
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("cannot read policy `/no/such/policy.yaml`"),
        "{}",
        run.stderr
    );
}

#[test]
fn eval_names_a_missing_policy_file_and_prints_the_cause_once() {
    let run = tollgate(&["eval", "--policy", "/no/such/policy.yaml"], "");
    assert_eq!(run.code, 2, "{}", run.stderr);
    // The cause once, then what there is instead.
    assert!(
        run.stderr.trim().starts_with(
            "error: cannot read policy `/no/such/policy.yaml`: No such file or directory (os error 2); bundled policies: canary,"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stderr.matches("No such file").count(),
        1,
        "{}",
        run.stderr
    );
}

#[test]
fn files_saved_with_a_byte_order_mark_read_as_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let with_bom = |name: &str, from: &std::path::Path| {
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend(std::fs::read(from).unwrap());
        crate::support::write(dir.path(), name, &bytes)
    };
    let policy = with_bom("p.yaml", &repo("policies/ci-quality-gates.yaml"));
    let snap = with_bom("s.json", &repo("tests/fixtures/ci-passing.json"));
    let run = crate::support::eval_files(&policy, &snap, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("PROMOTE"), "{}", run.stdout);
}

#[test]
fn validate_resolves_every_declared_plugin_even_unused() {
    let dir = tempfile::tempdir().unwrap();
    let policy = crate::support::write(
        dir.path(),
        "p.yaml",
        b"apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: p}\nplugins:\n  ghost: {path: ghost.wasm, digest: 'sha256:0000000000000000000000000000000000000000000000000000000000000000'}\nstages:\n  - name: s\n    gates:\n      - {name: g, plugin: threshold, with: {metric: x, op: '<', threshold: 1}}\n",
    );
    let run = tollgate(&["validate", policy.to_str().unwrap()], "");
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("p.yaml:5: cannot read plugin `ghost`"),
        "{}",
        run.stderr
    );
}

#[test]
fn validate_accepts_a_directory_and_skips_test_files() {
    let run = tollgate(&["validate", repo("policies").to_str().unwrap()], "");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains(".test.yaml"), "{}", run.stdout);
    assert!(run.stdout.matches("ok: ").count() >= 4, "{}", run.stdout);
    // Named explicitly (as a shell glob would), test files are skipped.
    let test_file = repo("policies/canary.test.yaml");
    let run = tollgate(&["validate", test_file.to_str().unwrap()], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("skipped:"), "{}", run.stdout);
}

#[test]
fn shell_completions_and_a_man_page_come_from_the_cli_definition() {
    for shell in ["bash", "zsh", "fish"] {
        let run = tollgate(&["completions", shell], "");
        assert_eq!(run.code, 0, "{shell}: {}", run.stderr);
        for sub in ["eval", "validate", "serve", "snapshot"] {
            assert!(run.stdout.contains(sub), "{shell} completions lack `{sub}`");
        }
    }
    let man = tollgate(&["man"], "");
    assert_eq!(man.code, 0);
    assert!(
        man.stdout.contains(".TH tollgate 1"),
        "{}",
        &man.stdout[..200.min(man.stdout.len())]
    );
    assert!(man.stdout.contains("eval"));
}

#[test]
fn release_hygiene_license_and_a_changelog_from_the_history() {
    let license = std::fs::read_to_string(repo("LICENSE")).unwrap();
    assert!(license.contains("Apache License") && license.contains("Version 2.0"));
    let manifest = std::fs::read_to_string(repo("Cargo.toml")).unwrap();
    assert!(manifest.contains("license = \"Apache-2.0\""));
    let changelog = std::fs::read_to_string(repo("CHANGELOG.md")).unwrap();
    // Every feature and fix up to the commit that last wrote the changelog
    // is in it.
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(repo("."))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let Some(last) = git(&["log", "-1", "--format=%H", "--", "CHANGELOG.md"]) else {
        crate::support::skip("no git checkout for the history check");
        return;
    };
    let commits = git(&["log", "--format=%h %s", last.trim()]).unwrap_or_default();
    let mut checked = 0;
    for line in commits.lines() {
        let Some((hash, subject)) = line.split_once(' ') else {
            continue;
        };
        if subject.starts_with("feat") || subject.starts_with("fix") {
            assert!(
                changelog.contains(&format!("[{hash}]")),
                "CHANGELOG.md lacks {hash} `{subject}`"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked}");
}

/// `tollgate` with `args` in `dir`, without the environment's token or
/// log, so what it finds is what `dir` holds.
fn tollgate_at(dir: &std::path::Path, args: &[&str]) -> crate::support::Run {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("TOLLGATE_CACHE_DIR", crate::support::cache_dir())
        .env_remove("TOLLGATE_STORE")
        .env_remove("TOLLGATE_TOKEN")
        .output()
        .unwrap();
    crate::support::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_bundled_policy_is_named_without_a_file_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let snap = repo("tests/fixtures/ci-passing.json");
    let run = tollgate_at(
        dir.path(),
        &[
            "eval",
            "-p",
            "ci-quality-gates",
            "-s",
            snap.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .starts_with("PROMOTE  payments 3.4.1 · policy ci-quality-gates"),
        "{}",
        run.stdout
    );
    // A file of that name wins over the bundled policy.
    std::fs::write(dir.path().join("ci-quality-gates"), "not: [a policy").unwrap();
    let run = tollgate_at(
        dir.path(),
        &[
            "eval",
            "-p",
            "ci-quality-gates",
            "-s",
            snap.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stdout);
}

#[test]
fn a_misspelt_policy_name_or_file_gets_the_closest_and_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let run = tollgate_at(dir.path(), &["eval", "-p", "canry", "--metric", "x=1"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("cannot read policy `canry`")
            && run.stderr.contains("did you mean `canary`?")
            && run.stderr.contains(
                "bundled policies: canary, ci-pipeline, ci-quality-gates, ci-reports, environment-promotion"
            ),
        "{}",
        run.stderr
    );
    let typo = repo("policies/ci-quality-gate.yaml");
    let run = tollgate_at(
        dir.path(),
        &["eval", "-p", typo.to_str().unwrap(), "--metric", "x=1"],
    );
    assert_eq!(run.code, 2);
    let meant = repo("policies/ci-quality-gates.yaml");
    assert!(
        run.stderr
            .contains(&format!("did you mean `{}`?", meant.display()))
            && run.stderr.contains("canary.yaml, ci-pipeline.yaml"),
        "{}",
        run.stderr
    );
    // A bundled name written as a file in a directory that has no such file.
    let run = tollgate_at(dir.path(), &["validate", "hotfix.yaml"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("did you mean the bundled policy `hotfix`"),
        "{}",
        run.stderr
    );
    let run = tollgate_at(dir.path(), &["validate", "hotfix"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// The XML parses, whatever a decision or an error put in it.
fn assert_well_formed(xml: &str) {
    let mut reader = quick_xml::Reader::from_str(xml);
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("not well-formed XML ({e}): {xml}"),
        }
    }
}

#[test]
fn junit_fails_the_decision_itself_when_it_holds_or_rolls_back() {
    // Every gate that ran passed; one had no data: a hold, and before
    // this, a green suite (failures="0") beside a failed job.
    let dir = tempfile::tempdir().unwrap();
    let snap = crate::support::write(
        dir.path(),
        "s.json",
        crate::support::values(&[
            ("test_coverage_percent", 90.0),
            ("lint_errors", 0.0),
            ("vulnerabilities_critical", 0.0),
            ("performance_regression_percent", 1.0),
            ("response_time_p95_ms", 120.0),
        ])
        .to_string()
        .as_bytes(),
    );
    let policy = repo("policies/ci-quality-gates.yaml");
    let run = crate::support::eval_files(&policy, &snap, &["--format", "junit"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let xml = run.stdout;
    assert_well_formed(&xml);
    assert!(
        xml.contains(r#"<testcase classname="ci-quality-gates/ci" name="decision""#),
        "{xml}"
    );
    assert!(xml.contains(r#"type="hold"/>"#), "{xml}");
    assert_eq!(suite_count(&xml, "failures"), 1, "{xml}");
    assert_eq!(suite_count(&xml, "skipped"), 1, "{xml}");
    // A promote passes it.
    let passing = repo("tests/fixtures/ci-passing.json");
    let run = crate::support::eval_files(&policy, &passing, &["--format", "junit"]);
    assert_eq!(run.code, 0);
    assert!(
        run.stdout.contains(r#"name="decision" time="0.000000"/>"#),
        "{}",
        run.stdout
    );
    assert_eq!(suite_count(&run.stdout, "failures"), 0);
}

#[test]
fn without_a_decision_junit_and_json_still_report_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = tollgate_at(dir.path(), &["eval", "-p", "nope", "--format", "junit"]);
    assert_eq!(run.code, 2);
    assert_well_formed(&run.stdout);
    assert!(run.stdout.contains(r#"errors="1""#), "{}", run.stdout);
    assert!(
        run.stdout
            .contains(r#"<error message="cannot read policy `nope`"#),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("cannot read policy `nope`"),
        "{}",
        run.stderr
    );
    let run = tollgate_at(
        dir.path(),
        &["eval", "-p", "ci-quality-gates", "--format", "json"],
    );
    assert_eq!(run.code, 2);
    let report = run.json();
    assert!(report.get("decision").is_none(), "{report}");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("no telemetry"),
        "{report}"
    );
    // The table is for people: the error goes to stderr only.
    let run = tollgate_at(dir.path(), &["eval", "-p", "ci-quality-gates"]);
    assert_eq!((run.code, run.stdout.as_str()), (2, ""));
}

#[test]
fn junit_gives_each_stage_of_a_pipeline_its_own_suite() {
    let snap = repo("tests/fixtures/ci-pipeline-passing.json");
    let run = tollgate(
        &[
            "eval",
            "-p",
            "ci-pipeline",
            "-s",
            snap.to_str().unwrap(),
            "--stage",
            "all",
            "--metric",
            "tests_failed=3",
            "--format",
            "junit",
        ],
        "",
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let xml = run.stdout;
    assert_well_formed(&xml);
    let suites: Vec<&str> = xml
        .split("<testsuite name=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .collect();
    assert_eq!(
        suites,
        [
            "ci-pipeline/code-integration",
            "ci-pipeline/automated-testing"
        ],
        "{xml}"
    );
    // Each suite counts its own cases; the total adds them up.
    let (mut tests, mut failures) = (0, 0);
    for suite in xml.split("<testsuite ").skip(1) {
        let body = suite.split("</testsuite>").next().unwrap();
        let count = |attr: &str| -> usize {
            body.split(&format!("{attr}=\""))
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        assert_eq!(count("tests"), body.matches("<testcase ").count(), "{body}");
        assert_eq!(
            count("failures"),
            body.matches("<failure ").count(),
            "{body}"
        );
        tests += count("tests");
        failures += count("failures");
    }
    let all = xml.split("<testsuites ").nth(1).unwrap();
    let total = |attr: &str| -> usize {
        all.split(&format!("{attr}=\""))
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!((total("tests"), total("failures")), (tests, failures));
}

#[test]
fn attributes_and_partial_snapshots_come_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let gate = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "-p",
            "ci-pipeline",
            "--stage",
            "security-compliance",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        let run = tollgate_at(dir.path(), &args);
        assert_ne!(run.code, 2, "{}", run.stderr);
        run.gate("approved-base-images")
    };
    let g = gate(&["--attribute", "base_image=python:3.12"]);
    assert_eq!(g["verdict"], "fail", "{g}");
    assert!(g["reason"].as_str().unwrap().contains("docker.io"), "{g}");
    let g = gate(&["--attribute", "base_image=registry.example.com/base:1"]);
    assert_eq!(g["verdict"], "pass", "{g}");
    // A file that only adds attributes needs no `taken_at`: like the
    // flags, it is about now.
    crate::support::write(
        dir.path(),
        "attrs.json",
        br#"{"attributes": {"base_image": "ghcr.io/example-org/base:2"}}"#,
    );
    let run = tollgate_at(
        dir.path(),
        &[
            "eval",
            "-p",
            "ci-pipeline",
            "--stage",
            "security-compliance",
            "-s",
            "attrs.json",
            "--metric",
            "secrets_detected=0",
            "--format",
            "json",
        ],
    );
    assert_ne!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.gate("approved-base-images")["verdict"], "pass");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let taken_at = run.json()["taken_at"].as_i64().unwrap();
    assert!((now - taken_at).abs() < 60, "{taken_at} is not now ({now})");
    // The attribute flag wins over the file's.
    let run = tollgate_at(
        dir.path(),
        &[
            "eval",
            "-p",
            "ci-pipeline",
            "--stage",
            "security-compliance",
            "-s",
            "attrs.json",
            "--attribute",
            "base_image=python:3.12",
            "--format",
            "json",
        ],
    );
    assert_eq!(run.gate("approved-base-images")["verdict"], "fail");
}

#[test]
fn a_decision_without_a_service_says_so_in_the_table_and_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let run = tollgate_at(
        dir.path(),
        &[
            "eval",
            "-p",
            "ci-quality-gates",
            "--metric",
            "lint_errors=3",
            "--log",
            "log.db",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let header = run.stdout.lines().next().unwrap();
    assert_eq!(
        header,
        "ROLLBACK  (no service) · policy ci-quality-gates · stage ci"
    );
    let list = tollgate_at(dir.path(), &["decisions", "list", "--log", "log.db"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    let row = list.stdout.lines().nth(1).unwrap();
    assert!(
        row.contains("  (no service)     -          ci-quality-gates"),
        "{row}"
    );
}

#[test]
fn eval_help_names_every_report_kind_the_parser_takes() {
    // The parser's own list of kinds, from its refusal.
    let refused = tollgate(&["eval", "-p", "canary", "--report", "nope=x"], "");
    let kinds = refused
        .stderr
        .split("expected ")
        .nth(1)
        .unwrap()
        .split(['\n', '\''])
        .next()
        .unwrap()
        .replace(" or ", ", ");
    let kinds: Vec<&str> = kinds.split(", ").map(str::trim).collect();
    assert_eq!(kinds.len(), 9, "{kinds:?}");
    let help = tollgate(&["eval", "--help"], "").stdout;
    let report = help
        .split("--report")
        .nth(1)
        .unwrap()
        .split("--metric")
        .next()
        .unwrap();
    for kind in kinds {
        assert!(
            report.contains(kind),
            "`--report` help lacks `{kind}`: {report}"
        );
    }
}

/// The summary and the action plan name the trigger that decided: the
/// first that fired the strongest, in the policy's order.
#[test]
fn a_trigger_rollback_names_the_same_trigger_in_summary_and_plan() {
    let run = eval_canary("canary-error-spike.json", "json", &["--elapsed", "20m"]);
    let d = run.json();
    assert_eq!(d["decision"], "rollback");
    let summary = d["summary"].as_str().unwrap();
    let fired: Vec<&str> = d["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["fire"] == "immediate-rollback")
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        fired.len() >= 2,
        "two triggers fire on the spike: {fired:?}"
    );
    assert!(
        summary.starts_with(&format!("trigger `{}` fired", fired[0])),
        "{summary}"
    );
    let rollback = d["actions"][0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "rollback")
        .unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        rollback.starts_with(&format!("trigger `{}`", fired[0])),
        "the plan names another trigger than the summary: {rollback} / {summary}"
    );
}

#[test]
fn read_commands_never_create_a_decision_log() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["decisions", "list"],
        vec!["decisions", "show", "01a2489d-deb5-7113-88f4-9e78db03482b"],
        vec!["decisions", "prune", "--retain", "90d"],
        vec!["replay", "--all"],
        vec!["report", "dora", "--service", "checkout"],
    ] {
        let run = tollgate_at(dir.path(), &args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stdout);
        assert!(
            run.stderr
                .contains("no decision log at `.tollgate/tollgate.db`: nothing was logged there"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            !dir.path().join(".tollgate").exists(),
            "{args:?} created a log"
        );
    }
    // Named explicitly, the same.
    let run = tollgate_at(dir.path(), &["decisions", "list", "--log", "typo.db"]);
    assert_eq!(run.code, 2);
    assert!(!dir.path().join("typo.db").exists());
}

#[test]
fn decisions_show_prints_trigger_state_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let snap = repo("tests/fixtures/canary-error-spike.json");
    let mut id = String::new();
    // The second evaluation reads the state the first left.
    for _ in 0..2 {
        let run = tollgate_at(
            dir.path(),
            &[
                "eval",
                "-p",
                "canary",
                "-s",
                snap.to_str().unwrap(),
                "--stage",
                "initial-canary",
                "--elapsed",
                "20m",
                "--log",
                "log.db",
                "--format",
                "json",
            ],
        );
        assert_eq!(run.code, 1, "{}", run.stderr);
        id = run.json()["decision_id"].as_str().unwrap().to_string();
    }
    let show = tollgate_at(dir.path(), &["decisions", "show", &id, "--log", "log.db"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    let record = show.json();
    let breaker = record["state_in"]["circuit-breaker"].as_str().unwrap();
    assert!(
        breaker.starts_with("open ") || breaker.starts_with("closed "),
        "{breaker}"
    );
    let table = tollgate_at(
        dir.path(),
        &[
            "decisions",
            "show",
            &id,
            "--log",
            "log.db",
            "--format",
            "table",
        ],
    );
    assert!(
        table.stdout.contains("TRIGGER STATE READ"),
        "{}",
        table.stdout
    );
    assert!(
        table
            .stdout
            .contains(&format!("circuit-breaker (version 1): {breaker}")),
        "{}",
        table.stdout
    );
}

#[test]
fn audit_prints_a_table_for_people_and_json_for_programs() {
    let table = tollgate(&["audit", "--format", "table", "threshold", "thresold"], "");
    assert_eq!(table.code, 1);
    let mut lines = table.stdout.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("PLUGIN     VERDICT   WORLD  WIT"),
        "{header}"
    );
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("threshold  accepted  gate   0.1.2"),
        "{row}"
    );
    assert!(
        table
            .stdout
            .contains("did you mean the first-party plugin `threshold`?"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("  digest      sha256:"),
        "{}",
        table.stdout
    );
    // Not on a terminal, the default is the JSON programs read.
    let json = tollgate(&["audit", "threshold"], "");
    assert_eq!(json.json()[0]["plugin"], "threshold");
}

#[test]
fn serve_help_lists_every_token_scope() {
    let help = tollgate(&["serve", "--help"], "").stdout;
    let tokens = help
        .split("--tokens-file")
        .nth(1)
        .unwrap()
        .split("--insecure-no-auth")
        .next()
        .unwrap();
    for scope in [
        "`evaluate`",
        "`evaluate:a,b`",
        "`read`",
        "`approve`",
        "`admin`",
        "`as:NAME`",
        "`group:a,b`",
    ] {
        assert!(tokens.contains(scope), "{scope}: {tokens}");
    }
}

#[test]
fn test_outside_a_checkout_says_what_to_pass() {
    let dir = tempfile::tempdir().unwrap();
    let run = tollgate_at(dir.path(), &["test"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr.contains("no `policies` directory here")
            && run.stderr.contains("`tollgate test my-gate`"),
        "{}",
        run.stderr
    );
    let run = tollgate_at(dir.path(), &["test", "my-gaet"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("cannot read `my-gaet`"),
        "{}",
        run.stderr
    );
}

#[test]
fn man_pages_exist_for_every_command_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let run = tollgate(&["man", "--dir", dir.path().to_str().unwrap()], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for page in [
        "tollgate.1",
        "tollgate-eval.1",
        "tollgate-decisions-list.1",
        "tollgate-plugin-build.1",
    ] {
        assert!(pages.iter().any(|p| p == page), "{page}: {pages:?}");
    }
    for page in &pages {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        for named in text
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|w| w.ends_with("(1)"))
        {
            let file = format!("{}.1", named.trim_end_matches("(1)").replace("\\-", "-"));
            assert!(
                pages.contains(&file),
                "{page} names {named}, which has no page"
            );
        }
        assert!(
            text.contains(".SH \"EXIT STATUS\"") || text.contains(".SH EXIT STATUS"),
            "{page}"
        );
    }
    let eval = std::fs::read_to_string(dir.path().join("tollgate-eval.1")).unwrap();
    assert!(
        eval.contains("TOLLGATE_TOKEN") && eval.contains("\\-\\-attribute"),
        "{eval}"
    );
    assert!(eval.contains("hold or rollback"), "{eval}");
    // One page on stdout, and a typo is named.
    let one = tollgate(&["man", "decisions", "list"], "");
    assert!(
        one.stdout.contains(".TH tollgate-decisions-list 1"),
        "{}",
        &one.stdout[..200.min(one.stdout.len())]
    );
    assert!(one.stdout.contains("TOLLGATE_STORE"));
    let typo = tollgate(&["man", "evl"], "");
    assert_eq!(typo.code, 2);
    assert!(
        typo.stderr.contains("did you mean `eval`?"),
        "{}",
        typo.stderr
    );
}
