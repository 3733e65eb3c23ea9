//! Bad input: a clear error naming the problem, exit code 2, never a panic.

use crate::support::{eval, repo, tollgate, values, write};

#[test]
fn a_malformed_snapshot_names_the_json_path() {
    let policy = repo("policies/ci-quality-gates.yaml");
    let snapshot = r#"{"service":"s","version":"1","taken_at":1,"metrics":[
        {"name":"a","value":1},{"name":"b","value":2},{"name":"c","value":3},
        {"name":"error_rate","points":[[1,"high"]]}]}"#;
    let run = tollgate(
        &["eval", "-p", policy.to_str().unwrap(), "-s", "-"],
        snapshot,
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("metrics[3].points[0]: expected [unix_seconds, number]"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"));
}

#[test]
fn snapshot_errors_cover_syntax_types_and_missing_files() {
    let policy = repo("policies/ci-quality-gates.yaml");
    let p = policy.to_str().unwrap();
    let run = tollgate(&["eval", "-p", p, "-s", "-"], "{not json");
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("invalid snapshot `-`"),
        "{}",
        run.stderr
    );
    let run = tollgate(
        &["eval", "-p", p, "-s", "-"],
        r#"{"service":"s","version":"1","taken_at":"soon","metrics":[]}"#,
    );
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("taken_at"), "{}", run.stderr);
    let run = tollgate(&["eval", "-p", p, "-s", "/nonexistent/snap.json"], "");
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("cannot read snapshot `/nonexistent/snap.json`"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_malformed_policy_names_the_field_and_line() {
    let policy = repo("tests/ui/invalid/weight-is-text.yaml");
    let run = eval(&policy, &values(&[("x", 1.0)]), None);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("weight-is-text.yaml:9: `weight` of gate `cov` must be a number, not text"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unknown_plugin_is_named_with_its_gate() {
    let policy = repo("tests/ui/invalid/unknown-plugin.yaml");
    let run = eval(&policy, &values(&[]), None);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("unknown-plugin.yaml:8: unknown plugin `error-rate2` in gate `latency`"),
        "{}",
        run.stderr
    );
}

#[test]
fn validate_reports_every_problem_including_plugin_settings() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::copy(repo("tests/ui/invalid/every-problem.yaml"), &policy).unwrap();
    let run = tollgate(&["validate", policy.to_str().unwrap()], "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("p.yaml:1: unsupported apiVersion `tollgate.dev/v2`"),
        "{}",
        run.stderr
    );
    // Structural problems stop before plugins run; fix the envelope and the
    // plugin checks every gate's settings.
    let fixed = std::fs::read_to_string(&policy)
        .unwrap()
        .replace("v2", "v1");
    std::fs::write(&policy, fixed).unwrap();
    let run = tollgate(&["validate", policy.to_str().unwrap()], "");
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(
            "p.yaml:7: invalid settings for gate `a` (plugin `threshold`): unknown comparison `=>`"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(
            "p.yaml:10: invalid settings for gate `b` (plugin `threshold`): `threshold` is required"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn validate_accepts_every_bundled_policy() {
    let dir = repo("policies");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml")
                && !p.to_string_lossy().ends_with(".test.yaml")
        })
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert!(files.len() >= 2);
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let run = tollgate(&args, "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout.lines().filter(|l| l.starts_with("ok: ")).count(),
        files.len()
    );
}

#[test]
fn a_yaml_bomb_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut doc = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    let mut prev = 'a';
    for name in 'b'..='k' {
        doc.push_str(&format!(
            "{name}: &{name} [{}]\n",
            vec![format!("*{prev}"); 10].join(", ")
        ));
        prev = name;
    }
    let policy = write(dir.path(), "bomb.yaml", doc.as_bytes());
    let run = tollgate(&["validate", policy.to_str().unwrap()], "");
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("expands to more than"),
        "{}",
        run.stderr
    );
}

#[test]
fn extreme_numbers_in_a_snapshot_never_crash_the_evaluation() {
    let mut snapshot = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(repo("tests/fixtures/canary-steady.json")).unwrap(),
    )
    .unwrap();
    snapshot["attributes"] = serde_json::json!({"stage_started_at": i64::MIN.to_string()});
    snapshot["metrics"][0]["points"][0][0] = serde_json::json!(i64::MIN);
    snapshot["metrics"][0]["points"][1][1] = serde_json::json!(1.7e308);
    let run = eval(
        &repo("policies/canary.yaml"),
        &snapshot,
        Some("initial-canary"),
    );
    assert!(
        run.code == 0 || run.code == 1,
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"));
    let d = run.json();
    assert!(
        d["triggers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["error"] == false),
        "{d}"
    );
}

#[test]
fn serve_refuses_settings_under_which_it_could_never_answer() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "c.yaml", b"body_limit: 10\n");
    for (args, want) in [
        (
            vec!["--max-concurrency", "0"],
            "`max_concurrency` is 0; it must be at least 1",
        ),
        (
            vec!["--max-connections", "0"],
            "`max_connections` is 0; it must be at least 1",
        ),
        (
            vec!["--request-timeout", "0s"],
            "`request_timeout` is 0s; it must be longer",
        ),
        (
            vec!["--retain", "0d"],
            "`retain` is 0s; it must be at least 1h",
        ),
        (
            vec!["--config", config.to_str().unwrap()],
            "`body_limit` is 10 bytes; it must be at least 1024",
        ),
    ] {
        let mut all = vec!["serve", "--addr", "127.0.0.1:0", "--store", "memory"];
        all.extend(&args);
        let run = tollgate(&all, "");
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(want), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("listening"), "{}", run.stderr);
    }
}

#[test]
fn a_misspelt_setting_or_field_is_named_with_what_it_meant() {
    let dir = tempfile::tempdir().unwrap();
    // `treshold` for `threshold`: the plugin names both, not only the
    // missing setting.
    let policy = write(
        dir.path(),
        "p.yaml",
        b"apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: p}\nstages:\n  - name: s\n    gates:\n      - {name: g, plugin: threshold, with: {metric: x, op: '<', treshold: 1}}\n      - {name: h, plugin: threshold, with: {metric: x, op: '<', threshold: 1, unti: ms}}\n",
    );
    let run = tollgate(&["validate", policy.to_str().unwrap()], "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "p.yaml:7: invalid settings for gate `g` (plugin `threshold`): `threshold` is required (or `baseline_margin_percent` to compare with the baseline); `treshold` is not a setting: did you mean `threshold`?"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("unknown setting `unti`; did you mean `unit`?"),
        "{}",
        run.stderr
    );
    // `wiht:` for `with:`: the policy reader suggests it before the list.
    let policy = write(
        dir.path(),
        "q.yaml",
        b"apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: q}\nstages:\n  - name: s\n    gates:\n      - name: g\n        plugin: thresold\n        wiht: {metric: x, op: '<', threshold: 1}\n",
    );
    let run = tollgate(&["validate", policy.to_str().unwrap()], "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "q.yaml:9: unknown field `wiht` in gate 1 of stage `s`; did you mean `with`? expected one of name,"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(
            "unknown plugin `thresold` in gate `g`; did you mean `threshold`? known plugins:"
        ),
        "{}",
        run.stderr
    );
}
