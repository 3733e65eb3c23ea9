//! Three `serve` replicas on one PostgreSQL, as the `ha` overlay runs them,
//! behind a round-robin client; one is killed with SIGKILL mid-load. No
//! answered decision is lost, no request with an idempotency key is
//! decided twice (retried on the next replica, it gets the same decision),
//! and no circuit-breaker transition is lost or made twice.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::decision_log::{BREAKER_POLICY, errors, postgres};
use crate::support::{Server, repo, write};

const TOKEN: &str = "replica-token-0123456789abcdef";

fn send(
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
    key: Option<&str>,
) -> Option<(u16, Value, bool)> {
    let auth = format!("Bearer {TOKEN}");
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    if let Some(k) = key {
        headers.push(("Idempotency-Key", k));
    }
    let r = crate::support::http(addr, method, path, &headers, body).ok()?;
    let replayed = r.header("idempotent-replayed") == Some("true");
    let value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    Some((r.status, value, replayed))
}

/// A CI evaluation of release `9.N.0`, keyed `key-N`.
fn keyed(n: usize) -> (Vec<u8>, String) {
    let mut snapshot: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("tests/fixtures/ci-passing.json")).unwrap(),
    )
    .unwrap();
    snapshot["version"] = json!(format!("9.{n}.0"));
    let body = json!({"policy": "ci-quality-gates", "snapshot": snapshot});
    (body.to_string().into_bytes(), format!("key-{n}"))
}

/// Every decision of `policy` in the log, through `addr`.
fn logged(addr: &str, policy: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/v1/decisions?policy={policy}&limit=1000{cursor}");
        let (status, page, _) = send(addr, "GET", &path, b"", None).unwrap();
        assert_eq!(status, 200, "{page}");
        out.extend(page["decisions"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

#[test]
fn killing_one_of_three_replicas_mid_load_loses_and_doubles_nothing() {
    let Some(url) = postgres() else {
        return; // `postgres` reported the skip
    };
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    write(&policies, "breaker.yaml", BREAKER_POLICY.as_bytes());
    std::fs::copy(
        repo("policies/ci-quality-gates.yaml"),
        policies.join("ci-quality-gates.yaml"),
    )
    .unwrap();
    let tokens = write(dir.path(), "tokens", format!("{TOKEN}\n").as_bytes());
    let args = [
        "--tokens-file",
        tokens.to_str().unwrap(),
        "--store",
        &url,
        "--policies",
        policies.to_str().unwrap(),
    ];
    let mut replicas: Vec<Server> = (0..3).map(|_| Server::start(&args)).collect();
    let addrs: Vec<String> = replicas.iter().map(|s| s.addr.clone()).collect();
    let stop = AtomicBool::new(false);
    let next = AtomicUsize::new(0);
    // (N, decision id) for every keyed request answered 200, retries and
    // deliberate repeats included; breaker decisions answered 200.
    let keyed_answers = Mutex::new(Vec::<(usize, String, bool)>::new());
    let breaker_answers = Mutex::new(Vec::<String>::new());
    let t0 = 1_764_237_600;
    let tick = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let (body, key) = keyed(n);
                    // Round-robin; a refused connection or a 5xx is
                    // retried, with the same key, on the next replica.
                    let mut answered = None;
                    for attempt in 0..3 {
                        let addr = &addrs[(n + attempt) % 3];
                        if let Some((200, d, replayed)) =
                            send(addr, "POST", "/v1/evaluate", &body, Some(&key))
                        {
                            let id = d["decision_id"].as_str().unwrap().to_string();
                            keyed_answers.lock().unwrap().push((n, id, replayed));
                            answered = Some(attempt);
                            break;
                        }
                    }
                    // Every fifth request is sent again to another replica.
                    if let Some(attempt) = answered
                        && n.is_multiple_of(5)
                    {
                        for hop in 1..3 {
                            let addr = &addrs[(n + attempt + hop) % 3];
                            if let Some((200, d, replayed)) =
                                send(addr, "POST", "/v1/evaluate", &body, Some(&key))
                            {
                                assert!(replayed, "a repeat of key-{n} was decided again: {d}");
                                let id = d["decision_id"].as_str().unwrap().to_string();
                                keyed_answers.lock().unwrap().push((n, id, replayed));
                                break;
                            }
                        }
                    }
                }
            });
        }
        for _ in 0..2 {
            let tick = Arc::clone(&tick);
            let (stop, addrs, breaker_answers) = (&stop, &addrs, &breaker_answers);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let i = tick.fetch_add(1, Ordering::Relaxed);
                    let body = json!({"policy": "breaker", "snapshot": errors(t0 + 10 * i as i64, &[0.02])});
                    if let Some((200, d, _)) =
                        send(&addrs[i % 3], "POST", "/v1/evaluate", body.to_string().as_bytes(), None)
                    {
                        breaker_answers
                            .lock()
                            .unwrap()
                            .push(d["decision_id"].as_str().unwrap().to_string());
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(2000));
        // SIGKILL: no drain, no flush.
        replicas[2].child.kill().unwrap();
        replicas[2].child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(2000));
        stop.store(true, Ordering::Relaxed);
    });
    let keyed_answers = keyed_answers.into_inner().unwrap();
    let breaker_answers = breaker_answers.into_inner().unwrap();
    assert!(
        keyed_answers.len() > 30,
        "{} keyed answers",
        keyed_answers.len()
    );
    assert!(
        breaker_answers.len() > 10,
        "{} breaker answers",
        breaker_answers.len()
    );
    let a = &addrs[0];
    // Every release was decided at most once, and an answered one is the
    // decision every answer for its key gave.
    let mut by_version: std::collections::HashMap<String, Vec<String>> = Default::default();
    for d in logged(a, "ci-quality-gates") {
        by_version
            .entry(d["version"].as_str().unwrap().to_string())
            .or_default()
            .push(d["decision_id"].as_str().unwrap().to_string());
    }
    let doubled: Vec<_> = by_version.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(doubled.is_empty(), "requests decided twice: {doubled:?}");
    for (n, id, _) in &keyed_answers {
        assert_eq!(
            by_version.get(&format!("9.{n}.0")),
            Some(&vec![id.clone()]),
            "key-{n}: answered {id}, which the log does not hold as its only decision"
        );
    }
    // Every breaker transition answered is logged, and each decision
    // advanced the state version it read: 0, 1, 2, … once each.
    let breaker = logged(a, "breaker");
    let ids: std::collections::HashSet<&str> = breaker
        .iter()
        .map(|d| d["decision_id"].as_str().unwrap())
        .collect();
    let lost: Vec<_> = breaker_answers
        .iter()
        .filter(|id| !ids.contains(id.as_str()))
        .collect();
    assert!(lost.is_empty(), "answered breaker decisions lost: {lost:?}");
    let mut versions: Vec<i64> = breaker
        .iter()
        .map(|d| {
            let path = format!("/v1/decisions/{}", d["decision_id"].as_str().unwrap());
            let (_, record, _) = send(a, "GET", &path, b"", None).unwrap();
            record["state_versions"]["breaker"].as_i64().unwrap_or(0)
        })
        .collect();
    versions.sort_unstable();
    let expected: Vec<i64> = (0..i64::try_from(versions.len()).unwrap()).collect();
    assert_eq!(
        versions, expected,
        "a breaker transition was lost or made twice"
    );
    eprintln!(
        "replicas: {} keyed answers ({} releases), {} breaker decisions, all logged once",
        keyed_answers.len(),
        by_version.len(),
        breaker.len()
    );
}
