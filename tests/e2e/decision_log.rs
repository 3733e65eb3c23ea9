//! The decision log: every decision committed before it is answered, looked
//! up, replayed exactly, pruned, and shared by replicas through PostgreSQL.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, repo, tollgate, write};

const TOKEN: &str = "ci-token-0123456789abcdef";

fn tokens(dir: &Path) -> String {
    write(dir, "tokens", format!("{TOKEN}\n").as_bytes())
        .display()
        .to_string()
}

fn auth() -> String {
    format!("Bearer {TOKEN}")
}

fn fixture(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo(&format!("tests/fixtures/{name}"))).unwrap())
        .unwrap()
}

fn evaluate(server: &Server, body: &Value, key: Option<&str>) -> crate::support::HttpResponse {
    let auth = auth();
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    if let Some(k) = key {
        headers.push(("Idempotency-Key", k));
    }
    server.request(
        "POST",
        "/v1/evaluate",
        &headers,
        body.to_string().as_bytes(),
    )
}

fn get(server: &Server, path: &str) -> crate::support::HttpResponse {
    let auth = auth();
    server.request("GET", path, &[("Authorization", auth.as_str())], b"")
}

/// `tollgate eval` of the CI policy over `snapshot` (a file), committing
/// the decision to the log `log`; `extra` arguments follow.
fn eval_ci_logged(snapshot: &Path, log: &str, extra: &[&str]) -> crate::support::Run {
    let mut args = vec![
        "eval".to_string(),
        "-p".into(),
        repo("policies/ci-quality-gates.yaml").display().to_string(),
        "-s".into(),
        snapshot.display().to_string(),
        "--log".into(),
        log.to_string(),
    ];
    args.extend(extra.iter().map(ToString::to_string));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    tollgate(&args, "")
}

/// A throwaway PostgreSQL database, or `None` (with the reason printed) when
/// no test cluster is configured.
pub(crate) fn postgres() -> Option<String> {
    let Some(base) = std::env::var("TOLLGATE_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        crate::support::skip("no PostgreSQL: TOLLGATE_TEST_POSTGRES is not set");
        return None;
    };
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .unwrap();
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        drop(client);
        let _ = task.await;
    });
    let (head, _) = base.rsplit_once('/').unwrap();
    Some(format!("{head}/{name}"))
}

#[test]
fn every_answered_decision_is_in_the_log_and_replays_identically() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["--tokens-file", &tokens(dir.path())]);
    let mut ids = Vec::new();
    for (policy, stage, snap) in [
        ("ci-quality-gates", None, "ci-passing.json"),
        ("canary", Some("initial-canary"), "canary-error-spike.json"),
        ("canary", Some("initial-canary"), "canary-steady.json"),
        ("canary", Some("expanded-canary"), "canary-healthy.json"),
        // Every stage in order: the record and the replay cover all three.
        ("ci-pipeline", Some("all"), "ci-pipeline-passing.json"),
    ] {
        let mut body = json!({"policy": policy, "snapshot": fixture(snap), "elapsed": "40m"});
        if let Some(s) = stage {
            body["stage"] = json!(s);
        }
        let r = evaluate(&server, &body, None);
        assert_eq!(r.status, 200, "{}", r.text());
        if stage == Some("all") {
            let answered = r.json();
            let stages: Vec<&str> = answered["pipeline"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["stage"].as_str().unwrap())
                .collect();
            assert_eq!(
                stages,
                [
                    "code-integration",
                    "automated-testing",
                    "security-compliance"
                ]
            );
            assert_eq!(r.json()["decision"], "promote");
        }
        ids.push((
            r.json()["decision_id"].as_str().unwrap().to_string(),
            r.json(),
        ));
    }
    for (id, answered) in &ids {
        let r = get(&server, &format!("/v1/decisions/{id}"));
        assert_eq!(r.status, 200, "{}", r.text());
        let record = r.json();
        assert_eq!(
            &record["decision"], answered,
            "the log holds what was answered"
        );
        assert!(record["token_id"].as_str().unwrap().starts_with("tok_"));
        assert!(
            !r.text().contains(TOKEN),
            "the token itself is never logged"
        );
        assert!(
            record["policy_text"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        assert!(record["recorded_at_ms"].as_i64().unwrap() > 0);
        let replay = server.request(
            "POST",
            &format!("/v1/decisions/{id}/replay"),
            &[("Authorization", auth().as_str())],
            b"",
        );
        assert_eq!(replay.status, 200, "{}", replay.text());
        let report = replay.json();
        assert_eq!(report["identical"], true, "{report}");
        assert!(report["findings"].as_array().unwrap().len() >= 2);
    }
    // Newest first, a page at a time, with filters.
    let page = get(&server, "/v1/decisions?limit=3").json();
    let listed: Vec<&str> = page["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["decision_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 3);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = get(&server, &format!("/v1/decisions?limit=3&cursor={cursor}")).json();
    assert_eq!(rest["decisions"].as_array().unwrap().len(), 2);
    assert!(rest["next_cursor"].is_null());
    let taken: Vec<i64> = page["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["decisions"].as_array().unwrap())
        .map(|d| d["taken_at"].as_i64().unwrap())
        .collect();
    assert!(
        taken.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {taken:?}"
    );
    let rollbacks = get(&server, "/v1/decisions?decision=rollback&policy=canary").json();
    assert!(
        rollbacks["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["decision"] == "rollback" && d["policy"] == "canary")
    );
    let bad = get(&server, "/v1/decisions?limit=0");
    assert_eq!(bad.status, 422);
    assert_eq!(bad.json()["error"]["field"], "limit");
    assert_eq!(get(&server, "/v1/decisions/nope").status, 404);
    // A UUID that is not in the log, and a path that is no id at all.
    let absent = get(
        &server,
        "/v1/decisions/01a22685-13fd-77ae-b93a-e4abf840dc42",
    );
    assert_eq!(absent.status, 404);
    assert_eq!(
        absent.json()["error"]["message"],
        "no decision `01a22685-13fd-77ae-b93a-e4abf840dc42` in the log"
    );
    let long = get(&server, &format!("/v1/decisions/{}", "a".repeat(5000)));
    assert_eq!(long.status, 404);
    let message = long.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.len() < 200, "{message}");
    assert!(message.contains("is not a decision id"), "{message}");
}

#[test]
fn every_policy_test_case_replays_identically_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let db = db.to_str().unwrap();
    let run = tollgate(
        &["test", repo("policies").to_str().unwrap(), "--log", db],
        "",
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let passed: usize = run
        .stdout
        .lines()
        .last()
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    let replay = tollgate(&["replay", "--all", "--log", db], "");
    assert_eq!(replay.code, 0, "{}", replay.stdout);
    assert!(
        replay.stdout.contains(&format!(
            "{passed} of {passed} decision(s) replayed identically"
        )),
        "{}",
        replay.stdout
    );
}

#[test]
fn replay_refuses_a_plugin_whose_logged_bytes_were_altered() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let run = eval_ci_logged(
        &repo("tests/fixtures/ci-passing.json"),
        db.to_str().unwrap(),
        &["--format", "json"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let id = run.json()["decision_id"].as_str().unwrap().to_string();
    let digest = run.json()["digests"]["plugins"]["threshold"]
        .as_str()
        .unwrap()
        .to_string();
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let mut bytes: Vec<u8> = conn
            .query_row(
                "SELECT bytes FROM blobs WHERE digest = ?1",
                [&digest],
                |r| r.get(0),
            )
            .unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        conn.execute(
            "UPDATE blobs SET bytes = ?1 WHERE digest = ?2",
            rusqlite::params![bytes, digest],
        )
        .unwrap();
    }
    let replay = tollgate(&["replay", &id, "--log", db.to_str().unwrap()], "");
    assert_eq!(replay.code, 1, "{}", replay.stdout);
    assert!(replay.stdout.contains("REFUSED"), "{}", replay.stdout);
    assert!(
        replay
            .stdout
            .contains(&format!("not to the digest `{digest}`")),
        "the refusal names the digest: {}",
        replay.stdout
    );
}

#[test]
fn a_locked_log_gives_503_and_nothing_is_reported_or_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let server = Server::start(&[
        "--tokens-file",
        &tokens(dir.path()),
        "--store",
        db.to_str().unwrap(),
    ]);
    let body = json!({"policy": "ci-quality-gates", "snapshot": fixture("ci-passing.json")});
    assert_eq!(evaluate(&server, &body, None).status, 200);
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let r = evaluate(&server, &body, Some("locked-key"));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "store_unavailable");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("database is locked"),
        "{}",
        r.text()
    );
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    let again = evaluate(&server, &body, Some("locked-key"));
    assert_eq!(again.status, 200, "{}", again.text());
    assert!(
        again.header("idempotent-replayed").is_none(),
        "the failed attempt stored no answer"
    );
    let page = get(&server, "/v1/decisions").json();
    assert_eq!(page["decisions"].as_array().unwrap().len(), 2, "{page}");
    // The CLI refuses to print a decision it could not log: exit 2.
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let run = eval_ci_logged(
        &repo("tests/fixtures/ci-passing.json"),
        db.to_str().unwrap(),
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(run.stdout.is_empty(), "nothing reported: {}", run.stdout);
    assert!(
        run.stderr.contains("the decision was not logged"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unreachable_postgres_is_a_clear_error() {
    let port = crate::support::free_port();
    let url = format!("postgres://tollgate:secret@127.0.0.1:{port}/nothing");
    let run = eval_ci_logged(&repo("tests/fixtures/ci-passing.json"), &url, &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("unavailable"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("secret"),
        "the password is never printed: {}",
        run.stderr
    );
}

#[test]
fn idempotency_keys_and_trigger_state_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let args = [
        "--tokens-file".to_string(),
        tokens(dir.path()),
        "--store".to_string(),
        db.display().to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let body = json!({"policy": "canary", "stage": "initial-canary", "snapshot": fixture("canary-error-spike.json")});
    let first = {
        let server = Server::start(&args);
        let r = evaluate(&server, &body, Some("release-1"));
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    };
    let server = Server::start(&args);
    let again = evaluate(&server, &body, Some("release-1"));
    assert_eq!(again.status, 200);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json()["decision_id"], first["decision_id"]);
    // Keys are scoped to the token and the policy: another body for the
    // same policy conflicts.
    let other = evaluate(
        &server,
        &json!({"policy": "canary", "stage": "initial-canary", "snapshot": fixture("canary-steady.json")}),
        Some("release-1"),
    );
    assert_eq!(other.status, 422);
    assert_eq!(other.json()["error"]["code"], "idempotency_conflict");
}

#[test]
fn retention_prunes_old_decisions_and_keeps_referenced_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let log = db.to_str().unwrap();
    for _ in 0..2 {
        let run = eval_ci_logged(&repo("tests/fixtures/ci-passing.json"), log, &[]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE decisions SET recorded_at = 1000 WHERE rowid = (SELECT min(rowid) FROM decisions)",
        [],
    )
    .unwrap();
    let blobs = |c: &rusqlite::Connection| -> i64 {
        c.query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
            .unwrap()
    };
    let before = blobs(&conn);
    // A retention that would empty the log is refused, and nothing goes.
    let zero = tollgate(&["decisions", "prune", "--retain", "0d", "--log", log], "");
    assert_eq!(zero.code, 2, "{}", zero.stdout);
    assert!(
        zero.stderr.contains("it must be at least 1h"),
        "{}",
        zero.stderr
    );
    assert_eq!(blobs(&conn), before);
    let run = tollgate(&["decisions", "prune", "--retain", "90d", "--log", log], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("pruned 1 decision(s), 0 blob(s)"),
        "{}",
        run.stdout
    );
    assert_eq!(
        blobs(&conn),
        before,
        "blobs the remaining decision uses are kept"
    );
    let replay = tollgate(&["replay", "--all", "--log", log], "");
    assert!(
        replay
            .stdout
            .contains("1 of 1 decision(s) replayed identically"),
        "{}",
        replay.stdout
    );
}

/// The finding: a server remembered which blobs it had stored, so after a
/// prune removed the only decision referencing its policy and plugins (here
/// `decisions prune` in another process), its next decision referenced
/// blobs that were gone, and could never be replayed.
#[test]
fn a_decision_made_after_a_prune_still_replays() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let log = db.to_str().unwrap();
    let server = Server::start(&["--tokens-file", &tokens(dir.path()), "--store", log]);
    let body = json!({"policy": "ci-quality-gates", "snapshot": fixture("ci-passing.json")});
    assert_eq!(evaluate(&server, &body, None).status, 200);
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE decisions SET recorded_at = 1000", [])
        .unwrap();
    let run = tollgate(&["decisions", "prune", "--retain", "90d", "--log", log], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("pruned 1 decision(s)"),
        "{}",
        run.stdout
    );
    let again = evaluate(&server, &body, None);
    assert_eq!(again.status, 200, "{}", again.text());
    let id = again.json()["decision_id"].as_str().unwrap().to_string();
    let auth = auth();
    let replay = server.request(
        "POST",
        &format!("/v1/decisions/{id}/replay"),
        &[("Authorization", auth.as_str())],
        b"",
    );
    assert_eq!(replay.status, 200, "{}", replay.text());
    assert_eq!(replay.json()["identical"], true, "{}", replay.text());
}

/// A snapshot of the CI policy at `at`, passing or not, with its oldest
/// commit at `commit`.
fn ci_snapshot(at: i64, passing: bool, commit: i64) -> Value {
    let mut s = fixture("ci-passing.json");
    s["taken_at"] = json!(at);
    s["commits"] = json!([{"sha": "a1", "message": "feat: x", "timestamp": commit}, {"sha": "a2", "message": "fix: y", "timestamp": commit + 600}]);
    if !passing {
        for m in s["metrics"].as_array_mut().unwrap() {
            if m["name"] == "test_coverage_percent" {
                m["value"] = json!(50.0);
            }
        }
    }
    s
}

#[test]
fn the_dora_report_matches_a_log_built_with_known_answers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let log = db.to_str().unwrap();
    const H: i64 = 3600;
    let t0 = 1_764_000_000;
    // Promotions (the CI policy's only stage is its last) at 10 h, 30 h and
    // 50 h with lead times 4 h, 2 h and 8 h; a rollback at 29.5 h, restored
    // by the promotion half an hour later.
    for (at, passing, commit) in [
        (t0 + 10 * H, true, t0 + 6 * H),
        (t0 + 29 * H + 1800, false, t0 + 28 * H),
        (t0 + 30 * H, true, t0 + 28 * H),
        (t0 + 50 * H, true, t0 + 42 * H),
    ] {
        let path = write(
            dir.path(),
            "snap.json",
            ci_snapshot(at, passing, commit).to_string().as_bytes(),
        );
        let run = eval_ci_logged(&path, log, &[]);
        assert_ne!(run.code, 2, "{}", run.stderr);
    }
    let until = (t0 + 4 * 24 * H).to_string();
    let run = tollgate(
        &[
            "report",
            "dora",
            "--service",
            "payments",
            "--window",
            "4days",
            "--until",
            &until,
            "--log",
            log,
            "--format",
            "json",
        ],
        "",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let check = |report: &Value| {
        assert_eq!(report["deployments"], 3, "{report}");
        assert_eq!(report["rollbacks"], 1);
        let figure = |n: &str| {
            report["figures"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == n)
                .unwrap()
                .clone()
        };
        assert_eq!(figure("deployment_frequency")["value"], 0.75);
        assert_eq!(figure("deployment_frequency")["target"], "Daily");
        assert_eq!(figure("lead_time_for_changes")["value"], 4.0);
        // Where each figure stands among DORA's bands, not a fixed text.
        assert_eq!(figure("lead_time_for_changes")["band"], "elite");
        assert_eq!(
            figure("lead_time_for_changes")["benchmark"],
            "elite: under a day"
        );
        assert_eq!(figure("deployment_frequency")["band"], "high");
        assert_eq!(
            figure("deployment_frequency")["benchmark"],
            "high: weekly to daily; elite: daily or more (on demand)"
        );
        assert_eq!(figure("change_failure_rate")["band"], "low");
        let cfr = figure("change_failure_rate")["value"].as_f64().unwrap();
        assert!((cfr - 100.0 / 3.0).abs() < 1e-9);
        assert_eq!(figure("change_failure_rate")["meets_target"], false);
        assert_eq!(figure("time_to_restore")["value"], 30.0);
        assert_eq!(figure("time_to_restore")["meets_target"], true);
    };
    check(&run.json());
    let server = Server::start(&["--tokens-file", &tokens(dir.path()), "--store", log]);
    let r = get(
        &server,
        &format!("/v1/reports/dora?service=payments&window=4days&until={until}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    check(&r.json());
}

/// A policy whose only trigger is the circuit breaker on `error_rate > 1%`.
pub(crate) const BREAKER_POLICY: &str = "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: breaker}\nstages:\n  - name: s\n    gates:\n      - name: always\n        plugin: threshold\n        on_no_data: pass\n        with: {metric: none, op: '<', threshold: 1}\ntriggers:\n  - name: breaker\n    plugin: circuit-breaker\n    with: {metric: error_rate, threshold: 0.01}\n";

pub(crate) fn errors(at: i64, values: &[f64]) -> Value {
    let n = values.len() as i64;
    json!({
        "service": "checkout", "version": "2.1.0", "taken_at": at,
        "metrics": [{"name": "error_rate", "points": values.iter().enumerate()
            .map(|(i, v)| json!([at - 10 * (n - 1 - i as i64), v])).collect::<Vec<_>>()}],
    })
}

/// Two `serve` processes on one fresh PostgreSQL database, serving the
/// breaker policy; `None` without a test cluster.
fn breaker_replicas() -> Option<(tempfile::TempDir, Server, Server)> {
    let url = postgres()?;
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    write(&policies, "breaker.yaml", BREAKER_POLICY.as_bytes());
    let tokens = tokens(dir.path());
    let p = policies.to_str().unwrap();
    let a = Server::start(&["--tokens-file", &tokens, "--store", &url, "--policies", p]);
    let b = Server::start(&["--tokens-file", &tokens, "--store", &url, "--policies", p]);
    Some((dir, a, b))
}

#[test]
fn two_replicas_on_postgres_share_the_circuit_breaker_and_idempotency_keys() {
    let Some((_dir, a, b)) = breaker_replicas() else {
        return;
    };
    let t0 = 1_764_237_600;
    let breaker = |r: &crate::support::HttpResponse| {
        r.json()["triggers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "breaker")
            .unwrap()
            .clone()
    };
    // Five consecutive failures through replica A open the circuit.
    let r = evaluate(
        &a,
        &json!({"policy": "breaker", "snapshot": errors(t0, &[0.02, 0.03, 0.02, 0.05, 0.04])}),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(breaker(&r)["details"]["state"], "open", "{}", r.text());
    // Replica B, 20 s later with healthy samples, sees it open still.
    let r = evaluate(
        &b,
        &json!({"policy": "breaker", "snapshot": errors(t0 + 20, &[0.0])}),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(breaker(&r)["details"]["state"], "open", "{}", r.text());
    assert_eq!(r.json()["decision"], "rollback");
    // An idempotency key used on A replays on B.
    let body = json!({"policy": "breaker", "snapshot": errors(t0 + 25, &[0.0])});
    let first = evaluate(&a, &body, Some("shared-key"));
    assert_eq!(first.status, 200);
    let second = evaluate(&b, &body, Some("shared-key"));
    assert_eq!(second.status, 200);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second.json()["decision_id"], first.json()["decision_id"]);
    // Both replicas read one log, and replay a decision the other made.
    let id = first.json()["decision_id"].as_str().unwrap().to_string();
    let replay = b.request(
        "POST",
        &format!("/v1/decisions/{id}/replay"),
        &[("Authorization", auth().as_str())],
        b"",
    );
    assert_eq!(replay.json()["identical"], true, "{}", replay.text());
}

#[test]
fn concurrent_replicas_never_both_advance_one_breaker() {
    let Some((_dir, a, b)) = breaker_replicas() else {
        return;
    };
    let t0 = 1_764_237_600;
    // 20 evaluations, each one failing sample 10 s apart, split across the
    // replicas and sent at once: each must see the count the previous one
    // left, so the consecutive-failure counts logged are all distinct.
    std::thread::scope(|s| {
        for i in 0..20i64 {
            let server = if i % 2 == 0 { &a } else { &b };
            s.spawn(move || {
                let r = evaluate(
                    server,
                    &json!({"policy": "breaker", "snapshot": errors(t0 + 10 * i, &[0.02])}),
                    None,
                );
                assert!(r.status == 200 || r.status == 503, "{}", r.text());
            });
        }
    });
    let page = get(&a, "/v1/decisions?limit=100").json();
    let mut versions = Vec::new();
    for d in page["decisions"].as_array().unwrap() {
        let record = get(
            &a,
            &format!("/v1/decisions/{}", d["decision_id"].as_str().unwrap()),
        )
        .json();
        versions.push(record["state_versions"]["breaker"].as_i64().unwrap_or(0));
    }
    versions.sort_unstable();
    assert!(versions.len() >= 10, "{versions:?}");
    // Each committed decision advanced the version it read: 0, 1, 2, … once each.
    let expected: Vec<i64> = (0..i64::try_from(versions.len()).unwrap()).collect();
    assert_eq!(
        versions, expected,
        "two evaluations advanced from the same state"
    );
}

/// Evaluations from `clients` threads until `stop`; the decision ids
/// answered with 200.
fn load(addr: &str, clients: usize, stop: &std::sync::atomic::AtomicBool) -> Vec<String> {
    let body =
        json!({"policy": "ci-quality-gates", "snapshot": fixture("ci-passing.json")}).to_string();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let body = body.clone();
                s.spawn(move || {
                    let auth = auth();
                    let mut ids = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let Ok(r) = crate::support::http(
                            addr,
                            "POST",
                            "/v1/evaluate",
                            &[
                                ("Authorization", auth.as_str()),
                                ("Content-Type", "application/json"),
                            ],
                            body.as_bytes(),
                        ) else {
                            break;
                        };
                        if r.status == 200 {
                            ids.push(r.json()["decision_id"].as_str().unwrap().to_string());
                        }
                    }
                    ids
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// kill -9 in the middle of a bounded load: every decision a client got a
/// 200 for is in the log after a restart.
fn survives_kill_9(store: &str, dir: &Path) {
    let tokens = tokens(dir);
    let mut server = Server::start(&["--tokens-file", &tokens, "--store", store]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let addr = server.addr.clone();
    let ids = std::thread::scope(|s| {
        let clients = s.spawn(|| load(&addr, 8, &stop));
        std::thread::sleep(Duration::from_millis(1500));
        // SIGKILL: no shutdown, no flush.
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        clients.join().unwrap()
    });
    assert!(
        ids.len() > 20,
        "only {} decisions before the kill",
        ids.len()
    );
    let server = Server::start(&["--tokens-file", &tokens, "--store", store]);
    let started = Instant::now();
    let missing: Vec<&String> = ids
        .iter()
        .filter(|id| get(&server, &format!("/v1/decisions/{id}")).status != 200)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered decisions lost: {missing:?}",
        missing.len(),
        ids.len()
    );
    eprintln!(
        "{} answered decisions all found after kill -9 ({:?} to check)",
        ids.len(),
        started.elapsed()
    );
}

#[test]
fn kill_9_under_load_loses_no_answered_decision_with_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    survives_kill_9(db.to_str().unwrap(), dir.path());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn kill_9_under_load_loses_no_answered_decision_with_postgres() {
    let Some(url) = postgres() else {
        return; // `postgres` reported the skip
    };
    let dir = tempfile::tempdir().unwrap();
    survives_kill_9(&url, dir.path());
}

/// The PostgreSQL writer commits decisions in batches, a savepoint around
/// each commit's conditional writes: concurrent requests with one
/// idempotency key land in one batch or several, and exactly one decision
/// is logged while every answer is that decision; the other requests,
/// committed in the same batches, are all logged.
#[test]
fn batched_postgres_commits_keep_one_decision_per_idempotency_key() {
    let Some(url) = postgres() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens(dir.path());
    let server = Server::start(&["--tokens-file", &tokens, "--store", &url]);
    let body = json!({"policy": "ci-quality-gates", "snapshot": fixture("ci-passing.json")});
    let (keyed, plain): (Vec<String>, Vec<String>) = std::thread::scope(|s| {
        let keyed: Vec<_> = (0..16)
            .map(|_| s.spawn(|| evaluate(&server, &body, Some("one-key"))))
            .collect();
        let plain: Vec<_> = (0..16)
            .map(|_| s.spawn(|| evaluate(&server, &body, None)))
            .collect();
        let id = |r: crate::support::HttpResponse| {
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()["decision_id"].as_str().unwrap().to_string()
        };
        (
            keyed.into_iter().map(|h| id(h.join().unwrap())).collect(),
            plain.into_iter().map(|h| id(h.join().unwrap())).collect(),
        )
    });
    assert!(keyed.iter().all(|id| *id == keyed[0]), "{keyed:?}");
    let logged: Vec<String> = get(&server, "/v1/decisions?limit=100").json()["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["decision_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(logged.len(), 17, "{logged:?}");
    for id in plain.iter().chain([&keyed[0]]) {
        assert!(logged.contains(id), "{id} answered but not logged");
    }
    // A few replays (the token may start 10 a minute).
    for id in plain.iter().take(3).chain([&keyed[0]]) {
        let replay = server.request(
            "POST",
            &format!("/v1/decisions/{id}/replay"),
            &[("Authorization", auth().as_str())],
            b"",
        );
        assert_eq!(replay.json()["identical"], true, "{}", replay.text());
    }
}
