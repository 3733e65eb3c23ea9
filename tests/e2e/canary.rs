//! `policies/canary.yaml`: each stage's success criteria at their boundaries.

use crate::support::{eval, repo, steady};

/// (stage, minutes of data, error-rate limit, p95 limit in ms)
const STAGES: &[(&str, i64, f64, f64)] = &[
    ("initial-canary", 15, 0.001, 500.0),
    ("expanded-canary", 30, 0.0005, 400.0),
    ("full-rollout", 30, 0.0001, 300.0),
];

fn decide(stage: &str, minutes: i64, error_rate: f64, p95: f64) -> crate::support::Run {
    let snapshot = steady(
        &[("error_rate", error_rate), ("response_time_p95_ms", p95)],
        minutes,
    );
    eval(&repo("policies/canary.yaml"), &snapshot, Some(stage))
}

#[test]
fn every_stage_promotes_just_under_its_limits() {
    for &(stage, minutes, err, p95) in STAGES {
        let run = decide(stage, minutes, err * 0.99, p95 - 1.0);
        assert_eq!(run.code, 0, "{stage}: {}{}", run.stdout, run.stderr);
        assert_eq!(run.json()["stage"], stage);
        assert_eq!(run.json()["decision"], "promote");
    }
}

#[test]
fn every_stage_rolls_back_at_its_error_rate_limit() {
    for &(stage, minutes, err, p95) in STAGES {
        let run = decide(stage, minutes, err, p95 - 1.0);
        assert_eq!(run.code, 1, "{stage}: {}", run.stdout);
        assert_eq!(run.json()["decision"], "rollback", "{stage}");
        assert_eq!(run.gate("error-rate")["verdict"], "fail", "{stage}");
        assert_eq!(run.gate("error-rate")["observed"], err, "{stage}");
        assert_eq!(run.gate("response-time-p95")["verdict"], "pass", "{stage}");
    }
}

#[test]
fn every_stage_rolls_back_at_its_p95_limit() {
    for &(stage, minutes, err, p95) in STAGES {
        let run = decide(stage, minutes, err / 2.0, p95);
        assert_eq!(run.code, 1, "{stage}: {}", run.stdout);
        assert_eq!(run.gate("response-time-p95")["verdict"], "fail", "{stage}");
        assert_eq!(run.gate("error-rate")["verdict"], "pass", "{stage}");
    }
}

#[test]
fn a_single_p95_spike_inside_the_window_fails_the_stage() {
    let mut snapshot = steady(
        &[("error_rate", 0.0001), ("response_time_p95_ms", 250.0)],
        15,
    );
    snapshot["metrics"][1]["points"][3][1] = serde_json::json!(650.0);
    let run = eval(
        &repo("policies/canary.yaml"),
        &snapshot,
        Some("initial-canary"),
    );
    assert_eq!(run.code, 1);
    assert_eq!(run.gate("response-time-p95")["observed"], 650.0);
}

#[test]
fn points_older_than_the_window_are_ignored() {
    // 20 minutes of data: the 5 oldest minutes are bad but outside the 15m window.
    let mut snapshot = steady(
        &[("error_rate", 0.0002), ("response_time_p95_ms", 250.0)],
        20,
    );
    for i in 15..20 {
        snapshot["metrics"][0]["points"][i][1] = serde_json::json!(0.5);
    }
    let run = eval(
        &repo("policies/canary.yaml"),
        &snapshot,
        Some("initial-canary"),
    );
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.gate("error-rate")["details"]["points"], "15");
}

#[test]
fn the_first_stage_is_used_without_stage_and_an_unknown_stage_is_an_error() {
    let snapshot = serde_json::from_str(
        &std::fs::read_to_string(repo("tests/fixtures/canary-healthy.json")).unwrap(),
    )
    .unwrap();
    let run = eval(&repo("policies/canary.yaml"), &snapshot, None);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.json()["stage"], "initial-canary");
    let run = eval(
        &repo("policies/canary.yaml"),
        &snapshot,
        Some("half-rollout"),
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("unknown stage `half-rollout`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("initial-canary, expanded-canary, full-rollout"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_large_snapshot_fits_the_default_plugin_memory() {
    // 50,000 points a series: every gate and trigger copies them into its
    // sandbox, past the first megabyte of heap.
    let n = 50_000i64;
    let series = |value: f64| {
        serde_json::json!(
            (0..n)
                .map(|i| serde_json::json!([crate::support::TAKEN_AT - i, value]))
                .collect::<Vec<_>>()
        )
    };
    let snapshot = serde_json::json!({
        "service": "checkout", "version": "2.1.0", "taken_at": crate::support::TAKEN_AT,
        "metrics": [
            {"name": "error_rate", "points": series(0.0002)},
            {"name": "response_time_p95_ms", "points": series(250.0)},
        ],
    });
    let run = eval(
        &repo("policies/canary.yaml"),
        &snapshot,
        Some("initial-canary"),
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.gate("error-rate")["details"]["points"], "900");
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
