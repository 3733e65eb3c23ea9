//! Two clocks, never confused: the caller's `taken_at` positions telemetry,
//! and the deciding host's clock (`decided_at`) judges what is allowed now
//! (windows, freezes, approval ages) and bounds what trigger state may see.
//! Each test is a finding of the trust review, through the real binary.

use serde_json::{Value, json};

use crate::support::{Server, tollgate, write};

const EVAL: &str = "eval-token-0123456789abcdef";
const APPROVER: &str = "approver-token-0123456789a";

/// One hundred years, in seconds.
const CENTURY: i64 = 100 * 365 * 86_400;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A policy whose only trigger is the circuit breaker on `error_rate > 1%`.
const BREAKER: &str = "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: breaker}\nstages:\n  - name: s\n    gates:\n      - name: always\n        plugin: threshold\n        on_no_data: pass\n        with: {metric: none, op: '<', threshold: 1}\ntriggers:\n  - name: breaker\n    plugin: circuit-breaker\n    with: {metric: error_rate, threshold: 0.01, reset_timeout: 30s}\n";

/// A policy frozen from a day ago until a day from now, plus an approval
/// gate that wants one approval no older than an hour.
fn frozen_policy(now: i64) -> String {
    let day = |t: i64| {
        let t = time::OffsetDateTime::from_unix_timestamp(t).unwrap();
        format!("{}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
    };
    format!(
        "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {{name: frozen}}\nstages:\n  - name: go\n    gates:\n      - name: window\n        plugin: window\n        key: true\n        with:\n          timezone: UTC\n          freezes:\n            - {{ name: incident-freeze, from: \"{}\", until: \"{}\" }}\n  - name: approved\n    gates:\n      - name: approval\n        plugin: approval\n        key: true\n        with: {{ count: 1, max_age: 1h }}\n",
        day(now - 86_400),
        day(now + 2 * 86_400),
    )
}

fn errors(at: i64, values: &[f64]) -> Value {
    let n = values.len() as i64;
    json!({
        "service": "victim-svc", "version": "2.1.0", "taken_at": at,
        "metrics": [{"name": "error_rate", "points": values.iter().enumerate()
            .map(|(i, v)| json!([at - 10 * (n - 1 - i as i64), v])).collect::<Vec<_>>()}],
    })
}

/// A server with the breaker and frozen policies and its own SQLite log.
fn server(dir: &std::path::Path, clock: Option<i64>) -> Option<Server> {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    write(&policies, "breaker.yaml", BREAKER.as_bytes());
    write(
        &policies,
        "frozen.yaml",
        frozen_policy(clock.unwrap_or_else(now)).as_bytes(),
    );
    let tokens = write(
        dir,
        "tokens",
        format!("{EVAL} evaluate read\n{APPROVER} approve read as:alice\n").as_bytes(),
    );
    let log = dir.join("log.db");
    let args = [
        "--tokens-file",
        tokens.to_str().unwrap(),
        "--policies",
        policies.to_str().unwrap(),
        "--store",
        log.to_str().unwrap(),
    ];
    match clock {
        Some(at) => Server::start_at(at, &args),
        None => Some(Server::start(&args)),
    }
}

fn post(server: &Server, token: &str, path: &str, body: &Value) -> crate::support::HttpResponse {
    let auth = format!("Bearer {token}");
    server.request(
        "POST",
        path,
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
}

fn evaluate(
    server: &Server,
    policy: &str,
    stage: &str,
    snapshot: Value,
) -> crate::support::HttpResponse {
    post(
        server,
        EVAL,
        "/v1/evaluate",
        &json!({"policy": policy, "stage": stage, "snapshot": snapshot}),
    )
}

#[test]
fn a_future_taken_at_is_refused_naming_both_times_and_cannot_poison_a_breaker() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), None).unwrap();
    let t = now();

    // The finding: an error spike "observed" a century ahead opened the
    // breaker until a time that never comes. Now it is refused, whole.
    let ahead = evaluate(&server, "breaker", "s", errors(t + CENTURY, &[0.5; 6]));
    assert_eq!(ahead.status, 422, "{}", ahead.text());
    let error = &ahead.json()["error"];
    assert_eq!(error["code"], "taken_at_in_future");
    assert_eq!(error["field"], "taken_at");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("`taken_at` 21"), "{message}");
    assert!(
        message.contains("ahead of this server's clock (20"),
        "{message}"
    );
    assert!(message.contains("5m"), "{message}");

    // Points from the future inside a present snapshot are refused too.
    let mut sneaky = errors(t, &[0.5; 6]);
    sneaky["metrics"][0]["points"][5][0] = json!(t + CENTURY);
    let refused = evaluate(&server, "breaker", "s", sneaky);
    assert_eq!(refused.status, 422, "{}", refused.text());
    assert!(
        refused
            .text()
            .contains("a point of `error_rate` in `metrics`"),
        "{}",
        refused.text()
    );

    // Within the skew, telemetry from a minute ahead is judged but moves no
    // state: the spike rolls this decision back, and the next healthy
    // evaluation at the real time is not held by a breaker opened "later".
    let early = evaluate(&server, "breaker", "s", errors(t + 60, &[0.5; 6]));
    assert_eq!(early.status, 200, "{}", early.text());
    assert_eq!(early.json()["decision"], "rollback", "{}", early.text());
    let healthy = evaluate(&server, "breaker", "s", errors(t - 120, &[0.001; 6]));
    assert_eq!(healthy.status, 200, "{}", healthy.text());
    assert_eq!(healthy.json()["decision"], "promote", "{}", healthy.text());

    // And state advanced by telemetry at the server's clock still works.
    let spike = evaluate(&server, "breaker", "s", errors(now(), &[0.5; 6]));
    assert_eq!(spike.json()["decision"], "rollback");
    let after = evaluate(&server, "breaker", "s", errors(now(), &[]));
    assert_eq!(
        after.json()["decision"],
        "rollback",
        "the breaker stays open"
    );
}

#[test]
fn a_back_dated_snapshot_does_not_pass_a_freeze() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), None).unwrap();
    let t = now();
    for taken_at in [t, t - 30 * 86_400] {
        let snapshot =
            json!({"service": "checkout", "version": "2.1.0", "taken_at": taken_at, "metrics": []});
        let r = evaluate(&server, "frozen", "go", snapshot);
        assert_eq!(r.status, 200, "{}", r.text());
        let d = r.json();
        assert_eq!(d["decision"], "hold", "taken_at {taken_at}: {d}");
        assert!(
            d["gates"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("incident-freeze"),
            "{d}"
        );
        let decided = d["decided_at"].as_i64().unwrap();
        assert!((t..t + 60).contains(&decided), "decided_at {decided}");
        assert!(d.get("what_if").is_none(), "{d}");
    }
    // The CLI decides at its host's clock too.
    let policy = write(dir.path(), "frozen.yaml", frozen_policy(t).as_bytes());
    let snap = write(
        dir.path(),
        "old.json",
        json!({"service": "checkout", "version": "2.1.0", "taken_at": t - 30 * 86_400, "metrics": []})
            .to_string()
            .as_bytes(),
    );
    let run = tollgate(
        &[
            "eval",
            "-p",
            policy.to_str().unwrap(),
            "-s",
            snap.to_str().unwrap(),
            "--format",
            "json",
        ],
        "",
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.json()["decision"], "hold");
}

#[test]
fn eval_at_another_time_is_a_labelled_what_if_that_is_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    let policy = write(dir.path(), "frozen.yaml", frozen_policy(t).as_bytes());
    let snap = write(
        dir.path(),
        "s.json",
        json!({"service": "checkout", "version": "2.1.0", "taken_at": t, "metrics": []})
            .to_string()
            .as_bytes(),
    );
    let month_ago = (t - 30 * 86_400).to_string();
    let base = [
        "eval",
        "-p",
        policy.to_str().unwrap(),
        "-s",
        snap.to_str().unwrap(),
        "--at",
        &month_ago,
    ];
    let run = tollgate(&[&base[..], &["--format", "json"]].concat(), "");
    assert_eq!(
        run.code, 0,
        "a month ago there was no freeze: {}{}",
        run.stdout, run.stderr
    );
    let d = run.json();
    assert_eq!(d["what_if"], true);
    assert_eq!(d["decided_at"], t - 30 * 86_400);
    let table = tollgate(&base, "");
    assert!(
        table.stdout.contains("what-if: decided as at "),
        "{}",
        table.stdout
    );
    let log = dir.path().join("log.db");
    for (flag, value) in [
        ("--log", log.to_str().unwrap()),
        ("--state", dir.path().join("state.json").to_str().unwrap()),
    ] {
        let run = tollgate(&[&base[..], &[flag, value]].concat(), "");
        assert_eq!(run.code, 2, "{flag}: {}", run.stdout);
        assert!(
            run.stderr.contains(&format!(
                "`--at` makes a what-if evaluation as at another time, which `{flag}` cannot take"
            )),
            "{}",
            run.stderr
        );
    }
    assert!(!log.exists(), "nothing was logged");
}

#[test]
fn approval_age_is_measured_at_the_server_clock_not_the_snapshot_time() {
    let dir = tempfile::tempdir().unwrap();
    // Monday 2025-12-01 10:00 UTC: an approval is recorded.
    let monday = 1_764_583_200;
    {
        let Some(server) = server(dir.path(), Some(monday)) else {
            return; // `server` reported the skip
        };
        let approved = post(
            &server,
            APPROVER,
            "/v1/approvals",
            &json!({"service": "checkout", "version": "2.1.0"}),
        );
        assert_eq!(approved.status, 201, "{}", approved.text());
        let snapshot =
            json!({"service": "checkout", "version": "2.1.0", "taken_at": monday, "metrics": []});
        let fresh = evaluate(&server, "frozen", "approved", snapshot);
        assert_eq!(fresh.json()["decision"], "promote", "{}", fresh.text());
    }
    // Two hours later the approval is stale, whatever `taken_at` says: a
    // snapshot dated at the approval's time does not make it fresh again.
    let Some(server) = server(dir.path(), Some(monday + 7200)) else {
        return;
    };
    let snapshot =
        json!({"service": "checkout", "version": "2.1.0", "taken_at": monday, "metrics": []});
    let stale = evaluate(&server, "frozen", "approved", snapshot);
    assert_eq!(stale.status, 200, "{}", stale.text());
    let d = stale.json();
    assert_eq!(d["decision"], "hold", "{d}");
    assert_eq!(
        d["gates"][0]["details"]["not counted"], "alice (too old)",
        "{d}"
    );
    assert_eq!(d["decided_at"].as_i64().unwrap() / 60, (monday + 7200) / 60);
    // The replay judges at the logged decision time and agrees.
    let id = d["decision_id"].as_str().unwrap();
    let auth = format!("Bearer {EVAL}");
    let replay = server.request(
        "POST",
        &format!("/v1/decisions/{id}/replay"),
        &[("Authorization", auth.as_str())],
        b"",
    );
    assert_eq!(replay.status, 200, "{}", replay.text());
    assert_eq!(replay.json()["identical"], true, "{}", replay.text());
}
