//! Issue 3's rollout semantics end to end: triggers, the circuit breaker
//! across `--state` runs, actions, `tollgate test` and `tollgate flag`.

use serde_json::json;

use crate::support::{TAKEN_AT, repo, tollgate, write};

fn eval_file(policy: &str, snapshot: &str, extra: &[&str]) -> crate::support::Run {
    let policy = repo(policy);
    let snapshot = repo(snapshot);
    let mut args = vec![
        "eval",
        "-p",
        policy.to_str().unwrap(),
        "-s",
        snapshot.to_str().unwrap(),
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    tollgate(&args, "")
}

fn trigger(run: &crate::support::Run, name: &str) -> serde_json::Value {
    run.json()["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
        .unwrap()
}

#[test]
fn errors_above_1_percent_for_10_minutes_roll_back_naming_the_trigger_and_rate() {
    let run = eval_file(
        "policies/canary.yaml",
        "tests/fixtures/canary-error-spike.json",
        &[],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let d = run.json();
    assert_eq!(d["decision"], "rollback");
    let summary = d["summary"].as_str().unwrap();
    assert!(
        summary.contains("trigger `error-rate-spike` fired immediate-rollback"),
        "{summary}"
    );
    assert!(summary.contains("latest 0.018"), "{summary}");
    let t = trigger(&run, "error-rate-spike");
    assert_eq!(t["fire"], "immediate-rollback");
    assert_eq!(t["observed"], 0.018);
    assert_eq!(t["details"]["breaching_for_seconds"], "600");
}

#[test]
fn the_same_shape_at_0_05_percent_promotes_from_the_initial_canary() {
    let run = eval_file(
        "policies/canary.yaml",
        "tests/fixtures/canary-error-005.json",
        &["--stage", "initial-canary", "--elapsed", "20m"],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let d = run.json();
    assert_eq!(d["decision"], "promote");
    assert!(
        d["triggers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["fire"] == "none"),
        "{d}"
    );
    assert_eq!(
        d["actions"][0]["actions"],
        json!([{"type": "set-weight", "percent": 25}, {"type": "promote"}])
    );
}

/// `eval --state STATE --format json` of `policy` over the snapshot file.
pub(crate) fn eval_with_state(
    policy: &std::path::Path,
    snapshot: &std::path::Path,
    state: &std::path::Path,
) -> crate::support::Run {
    let args = [
        "eval",
        "-p",
        policy.to_str().unwrap(),
        "-s",
        snapshot.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--format",
        "json",
    ];
    tollgate(&args, "")
}

/// A policy whose only trigger is the circuit breaker on `error_rate > 1%`.
const BREAKER_POLICY: &[u8] = b"apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: breaker}\nstages:\n  - name: s\n    gates:\n      - name: always\n        plugin: threshold\n        on_no_data: pass\n        with: {metric: none, op: '<', threshold: 1}\ntriggers:\n  - name: breaker\n    plugin: circuit-breaker\n    with: {metric: error_rate, threshold: 0.01}\n";

/// A snapshot whose error-rate points are `values`, one every 10 s, ending at `at`.
fn errors(at: i64, values: &[f64]) -> serde_json::Value {
    let n = values.len() as i64;
    json!({
        "service": "checkout", "version": "2.1.0", "taken_at": at,
        "metrics": [{"name": "error_rate", "points": values.iter().enumerate()
            .map(|(i, v)| json!([at - 10 * (n - 1 - i as i64), v])).collect::<Vec<_>>()}],
    })
}

#[test]
fn the_circuit_breaker_walks_closed_open_half_open_closed_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "breaker.yaml", BREAKER_POLICY);
    let state = dir.path().join("state.json");
    let step = |snapshot: serde_json::Value| {
        let path = write(dir.path(), "snap.json", snapshot.to_string().as_bytes());
        let run = eval_with_state(&policy, &path, &state);
        assert_ne!(run.code, 2, "{}", run.stderr);
        (run.json()["decision"].clone(), trigger(&run, "breaker"))
    };
    let t0 = TAKEN_AT;
    // 1. Four failures: still closed.
    let (d, t) = step(errors(t0, &[0.02, 0.03, 0.02, 0.05]));
    assert_eq!(
        (
            d.as_str(),
            t["fire"].as_str(),
            t["details"]["state"].as_str()
        ),
        (Some("promote"), Some("none"), Some("closed"))
    );
    assert!(
        t["reason"]
            .as_str()
            .unwrap()
            .contains("4 of 5 consecutive failures"),
        "{t}"
    );
    // 2. A fifth consecutive failure opens it: immediate rollback.
    let (d, t) = step(errors(t0 + 10, &[0.04]));
    assert_eq!(d, "rollback");
    assert_eq!(t["details"]["transition"], "closed -> open", "{t}");
    assert_eq!(t["details"]["allowed_traffic_percent"], "0");
    // 3. 20 s later, still within the 30 s reset timeout: stays open.
    let (d, t) = step(errors(t0 + 30, &[0.0]));
    assert_eq!(
        (d.as_str(), t["details"]["state"].as_str()),
        (Some("rollback"), Some("open"))
    );
    // 4. 35 s after opening, no new samples: half-open with a 5% canary.
    let (d, t) = step(
        json!({"service": "checkout", "version": "2.1.0", "taken_at": t0 + 45, "metrics": []}),
    );
    assert_eq!(t["fire"], "alert");
    assert_eq!(t["details"]["transition"], "open -> half-open");
    assert_eq!(t["details"]["allowed_traffic_percent"], "5");
    assert_eq!(d, "promote", "an alert without `hold` does not hold");
    // 5. A healthy trial sample closes it.
    let (d, t) = step(errors(t0 + 55, &[0.001]));
    assert_eq!(d, "promote");
    assert_eq!(t["details"]["transition"], "half-open -> closed", "{t}");
    // The state file is readable text.
    let text = std::fs::read_to_string(&state).unwrap();
    assert!(text.contains("\"breaker/checkout/breaker\""), "{text}");
    assert!(text.contains("closed last_seen="), "{text}");
}

#[test]
fn a_failed_half_open_trial_reopens_the_circuit() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "breaker.yaml", BREAKER_POLICY);
    let state = dir.path().join("state.json");
    std::fs::write(&state, format!("{{\"version\":1,\"triggers\":{{\"breaker/checkout/breaker\":{{\"text\":\"half-open last_seen={TAKEN_AT} since={TAKEN_AT}\"}}}}}}")).unwrap();
    let snap = write(
        dir.path(),
        "s.json",
        errors(TAKEN_AT + 10, &[0.2]).to_string().as_bytes(),
    );
    let run = eval_with_state(&policy, &snap, &state);
    assert_eq!(run.code, 1);
    assert_eq!(
        trigger(&run, "breaker")["details"]["transition"],
        "half-open -> open"
    );
}

#[test]
fn a_corrupt_state_file_is_an_error_not_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    let state = write(dir.path(), "state.json", b"{broken");
    let run = eval_file(
        "policies/canary.yaml",
        "tests/fixtures/canary-steady.json",
        &["--state", state.to_str().unwrap()],
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("state file") && run.stderr.contains("is corrupt"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read(&state).unwrap(),
        b"{broken",
        "never overwritten"
    );
}

#[test]
fn tollgate_test_passes_every_bundled_policy_test() {
    let run = tollgate(&["test", repo("policies").to_str().unwrap()], "");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let last = run.stdout.lines().last().unwrap();
    let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 20, "{last}");
    assert_eq!(last, format!("{passed} passed, 0 failed"));
    for policy in ["canary", "ci-quality-gates", "hotfix", "release-version"] {
        assert!(
            run.stdout.contains(&format!("{policy}.test.yaml")),
            "{policy}"
        );
    }
}

#[test]
fn tollgate_test_reports_a_failing_case_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let canary = repo("policies/canary.yaml");
    let fixture = repo("tests/fixtures/canary-error-spike.json");
    let text = format!(
        "policy: {}\ncases:\n  - name: wrongly expects promote\n    snapshot: {}\n    expect: {{ decision: promote, gates: {{ error-rate: pass }} }}\n  - name: rightly expects rollback\n    snapshot: {}\n    expect: {{ decision: rollback }}\n",
        canary.display(),
        fixture.display(),
        fixture.display()
    );
    let file = write(dir.path(), "x.test.yaml", text.as_bytes());
    let run = tollgate(&["test", file.to_str().unwrap()], "");
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("FAIL"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("expected decision `promote`, got `rollback`"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("gate `error-rate`: expected `pass`, got `fail`"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.trim_end().ends_with("1 passed, 1 failed"),
        "{}",
        run.stdout
    );
}

#[test]
fn flag_membership_is_a_stable_hash_bucket() {
    let run = tollgate(
        &[
            "flag",
            "--flag",
            "newUserDashboard",
            "--percent",
            "50",
            "--user",
            "bob",
        ],
        "",
    );
    assert_eq!(run.code, 0);
    assert!(
        run.stdout
            .starts_with("in (flag `newUserDashboard`, user `bob`, bucket 2180 of 10000"),
        "{}",
        run.stdout
    );
    let run = tollgate(
        &[
            "flag",
            "--flag",
            "newUserDashboard",
            "--percent",
            "50",
            "--user",
            "alice",
        ],
        "",
    );
    assert!(
        run.stdout.starts_with("out (") && run.stdout.contains("bucket 7296"),
        "{}",
        run.stdout
    );
    let run = tollgate(
        &[
            "flag",
            "--flag",
            "newUserDashboard",
            "--percent",
            "100",
            "--segment",
            "beta_users",
            "--user",
            "bob",
            "--user-segment",
            "free",
        ],
        "",
    );
    assert!(run.stdout.starts_with("out"), "{}", run.stdout);
}

#[test]
fn the_canary_judge_compares_canary_with_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "judge.yaml",
        b"apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: judge}\nstages:\n  - name: s\n    gates:\n      - name: judge\n        plugin: canary-judge\n        with:\n          metrics:\n            - {name: response_time_p95_ms, direction: increase, tolerance_percent: 10, critical: true, group: latency}\n            - {name: error_rate, direction: increase, tolerance_percent: 50, group: errors}\n",
    );
    let healthy = repo("tests/fixtures/canary-healthy.json");
    let run = crate::support::eval_files(&policy, &healthy, &["--format", "json"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.gate("judge")["verdict"], "pass");
    // A canary consistently ~30% slower than its baseline.
    let series = |values: &[f64]| {
        json!([{"name": "response_time_p95_ms", "points": values.iter().enumerate()
            .map(|(i, v)| json!([TAKEN_AT - 60 * i as i64, v])).collect::<Vec<_>>()}])
    };
    let slow = json!({
        "service": "checkout", "version": "2.1.0", "taken_at": TAKEN_AT,
        "metrics": series(&[520.0, 540.0, 515.0, 560.0, 533.0, 548.0, 529.0, 551.0, 537.0, 544.0]),
        "baseline": series(&[400.0, 410.0, 405.0, 398.0, 415.0, 402.0, 407.0, 411.0, 399.0, 404.0]),
    });
    let run = crate::support::eval(&policy, &slow, None);
    assert_eq!(run.code, 1);
    let g = run.gate("judge");
    assert_eq!(g["verdict"], "fail");
    assert!(
        g["reason"]
            .as_str()
            .unwrap()
            .contains("critical metric `response_time_p95_ms` failed"),
        "{g}"
    );
}

#[test]
fn a_gate_can_compare_with_the_baseline_plus_a_margin() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "rel.yaml",
        b"apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: rel}\nstages:\n  - name: s\n    gates:\n      - name: p95-vs-baseline\n        plugin: threshold\n        with: {metric: response_time_p95_ms, aggregate: avg, op: '<=', baseline_margin_percent: 10}\n",
    );
    // canary-healthy: canary p95 averages ~313 ms, baseline ~302 ms: within +10%.
    let run = tollgate(
        &[
            "eval",
            "-p",
            policy.to_str().unwrap(),
            "-s",
            repo("tests/fixtures/canary-healthy.json").to_str().unwrap(),
            "--format",
            "json",
        ],
        "",
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let g = run.gate("p95-vs-baseline");
    let (observed, threshold) = (
        g["observed"].as_f64().unwrap(),
        g["threshold"].as_f64().unwrap(),
    );
    assert!((threshold - 302.333_333 * 1.1).abs() < 1e-3, "{g}");
    assert!(observed <= threshold);
    // The latency spike is far above baseline + 10%.
    let run = tollgate(
        &[
            "eval",
            "-p",
            policy.to_str().unwrap(),
            "-s",
            repo("tests/fixtures/canary-latency-spike.json")
                .to_str()
                .unwrap(),
            "--format",
            "json",
        ],
        "",
    );
    assert_eq!(run.gate("p95-vs-baseline")["verdict"], "fail");
}

/// Runs a policy whose only trigger is `sustained` (error rate > 1% for 5m)
/// over error-rate points given as (seconds before taken_at, value).
fn sustained(points: &[(i64, f64)]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "s.yaml",
        b"apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: s}\nstages:\n  - name: s\n    gates:\n      - name: always\n        plugin: threshold\n        on_no_data: pass\n        with: {metric: none, op: '<', threshold: 1}\ntriggers:\n  - name: spike\n    plugin: sustained\n    with: {metric: error_rate, op: '>', threshold: 0.01, for: 5m}\n",
    );
    let snap = json!({"service": "s", "version": "1", "taken_at": TAKEN_AT, "metrics": [{"name": "error_rate",
        "points": points.iter().map(|(ago, v)| json!([TAKEN_AT - ago, v])).collect::<Vec<_>>()}]});
    let run = crate::support::eval(&policy, &snap, None);
    assert_ne!(run.code, 2, "{}", run.stderr);
    trigger(&run, "spike")
}

#[test]
fn sustained_means_breaching_continuously_for_at_least_the_duration() {
    // Five consecutive breaching one-minute samples cover 5 minutes: fires.
    let t = sustained(&[
        (300, 0.001),
        (240, 0.02),
        (180, 0.02),
        (120, 0.02),
        (60, 0.02),
        (0, 0.02),
    ]);
    assert_eq!(t["fire"], "immediate-rollback", "{t}");
    assert_eq!(t["details"]["breaching_for_seconds"], "300");
    assert_eq!(t["details"]["breaching_points"], "5");
    // Four cover 4 minutes: not yet.
    let t = sustained(&[
        (300, 0.001),
        (240, 0.001),
        (180, 0.02),
        (120, 0.02),
        (60, 0.02),
        (0, 0.02),
    ]);
    assert_eq!(t["fire"], "none", "{t}");
    assert_eq!(t["details"]["breaching_for_seconds"], "240");
    assert!(
        t["reason"]
            .as_str()
            .unwrap()
            .contains("not yet the 5m required"),
        "{t}"
    );
    // One second short of 5 minutes: not yet.
    let t = sustained(&[(299, 0.001), (240, 0.02), (0, 0.02)]);
    assert_eq!(t["fire"], "none", "{t}");
    assert_eq!(t["details"]["breaching_for_seconds"], "299");
    // Exactly at the threshold is not a breach (> 1%), and one healthy point resets the run.
    let t = sustained(&[
        (600, 0.02),
        (300, 0.02),
        (180, 0.01),
        (120, 0.02),
        (0, 0.02),
    ]);
    assert_eq!(t["fire"], "none", "{t}");
    assert_eq!(t["details"]["breaching_for_seconds"], "180");
    // A series that breaches from its first point covers that point's gap too.
    let t = sustained(&[(240, 0.03), (180, 0.03), (120, 0.03), (60, 0.03), (0, 0.03)]);
    assert_eq!(t["fire"], "immediate-rollback", "{t}");
    // A latest point that is healthy never fires, however long the breach before it.
    let t = sustained(&[(900, 0.05), (600, 0.05), (300, 0.05), (0, 0.002)]);
    assert_eq!(t["fire"], "none", "{t}");
    // Stale data (newest point older than 5m) never fires.
    let t = sustained(&[(1200, 0.05), (900, 0.05), (301, 0.05)]);
    assert_eq!(t["fire"], "none", "{t}");
    assert!(t["reason"].as_str().unwrap().contains("no data"), "{t}");
}

#[test]
fn tollgate_test_refuses_a_test_file_that_cannot_fail() {
    let dir = tempfile::tempdir().unwrap();
    let canary = repo("policies/canary.yaml");
    let fixture = repo("tests/fixtures/canary-error-spike.json");
    let case = |expect: &str| {
        format!(
            "policy: {}\ncases:\n  - name: c\n    snapshot: {}\n    expect: {expect}\n",
            canary.display(),
            fixture.display()
        )
    };
    for (name, text, want) in [
        (
            "misspelt",
            case("{ decision: rolled-back }"),
            "cases[0].expect.decision: unknown variant `rolled-back`, expected one of `promote`, `hold`, `rollback`",
        ),
        (
            "verdict",
            case("{ gates: { error-rate: failed } }"),
            "unknown variant `failed`",
        ),
        ("nothing", case("{}"), "case `c`: `expect` checks nothing"),
        (
            "empty",
            format!("policy: {}\ncases: []\n", canary.display()),
            "`cases` is empty",
        ),
    ] {
        let file = write(dir.path(), &format!("{name}.test.yaml"), text.as_bytes());
        let run = tollgate(&["test", file.to_str().unwrap()], "");
        assert_eq!(run.code, 1, "{name}: {}", run.stdout);
        assert!(run.stdout.contains(want), "{name}: {}", run.stdout);
        assert!(
            run.stdout.trim_end().ends_with("0 passed, 1 failed"),
            "{}",
            run.stdout
        );
    }
}
