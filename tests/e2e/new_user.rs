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
    assert_eq!(
        run.stderr.trim(),
        "error: cannot read policy `/no/such/policy.yaml`: No such file or directory (os error 2)"
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
