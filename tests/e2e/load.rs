//! Hostile plugins under load: bounded concurrent load on loopback against
//! the real server, with 1% of requests hitting policies whose plugins loop,
//! grow memory, recurse, trap or flood logs.
//!
//! `TOLLGATE_LOAD_REQUESTS` sets the requests per phase (default 5,000; the
//! figures in RELIABILITY.md use 20,000 against a release build).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::hostile::component_for;
use crate::server_router::snapshot;
use crate::support::{Server, http, repo, write};

const HOSTILE: &[(&str, &str)] = &[
    ("infinite-loop", ""),
    ("memory-bomb", ""),
    ("recursion", ""),
    ("trap", ""),
    ("log-flood", "        deadline: 2s\n"),
];

/// The canary policy plus one single-gate policy per hostile plugin.
fn policies(dir: &Path) {
    std::fs::copy(repo("policies/canary.yaml"), dir.join("canary.yaml")).unwrap();
    for (name, limits) in HOSTILE {
        write(
            dir,
            &format!("{name}.wasm"),
            &component_for(name, &repo("wit")),
        );
        let text = format!(
            "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {{name: {name}}}\nplugins:\n  h: {{path: {name}.wasm}}\nstages:\n  - name: s\n    gates:\n      - name: h\n        plugin: h\n{limits}"
        );
        write(dir, &format!("{name}.yaml"), text.as_bytes());
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

struct Phase {
    well_behaved: Vec<Duration>,
    hostile: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Sends `total` requests from 8 client threads; every 100th goes to a
/// hostile policy when `hostile` is set. Checks every answer.
fn phase(server: &Server, total: usize, hostile: bool, expected: &Value) -> Phase {
    let next = Arc::new(AtomicUsize::new(0));
    let good = snapshot("canary-steady.json");
    let body =
        json!({"policy": "canary", "stage": "initial-canary", "elapsed": "20m", "snapshot": good})
            .to_string()
            .into_bytes();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let next = Arc::clone(&next);
            let addr = server.addr.clone();
            let body = body.clone();
            let expected = expected.clone();
            let good = good.clone();
            std::thread::spawn(move || {
                let mut times = Vec::new();
                let mut hostile_seen = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let headers = [("content-type", "application/json")];
                    if hostile && i % 100 == 99 {
                        let (name, _) = HOSTILE[(i / 100) % HOSTILE.len()];
                        let b = json!({"policy": name, "snapshot": good}).to_string();
                        let r =
                            http(&addr, "POST", "/v1/evaluate", &headers, b.as_bytes()).unwrap();
                        assert_eq!(
                            r.status,
                            200,
                            "{name}: {}",
                            String::from_utf8_lossy(&r.body)
                        );
                        let d = r.json();
                        let verdict = &d["gates"][0]["verdict"];
                        if name == "log-flood" {
                            assert_eq!(verdict, "pass", "{d}");
                        } else {
                            assert_eq!(verdict, "error", "{name}: {d}");
                        }
                        hostile_seen += 1;
                        continue;
                    }
                    let started = Instant::now();
                    let r = http(&addr, "POST", "/v1/evaluate", &headers, &body).unwrap();
                    times.push(started.elapsed());
                    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                    let d = r.json();
                    assert_eq!(d["decision"], expected["decision"], "{d}");
                    assert_eq!(d["summary"], expected["summary"], "{d}");
                }
                (times, hostile_seen)
            })
        })
        .collect();
    let mut well_behaved = Vec::new();
    let mut hostile_total = 0;
    for t in threads {
        let (times, h) = t.join().unwrap();
        well_behaved.extend(times);
        hostile_total += h;
    }
    well_behaved.sort();
    Phase {
        well_behaved,
        hostile: hostile_total,
    }
}

#[test]
fn hostile_plugins_under_load_leave_every_other_answer_correct_and_memory_flat() {
    let total: usize = std::env::var("TOLLGATE_LOAD_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5_000);
    let dir = tempfile::tempdir().unwrap();
    policies(dir.path());
    // Trigger state in memory: this test is about hostile plugins, and every
    // request advances one service's breaker, which a durable store
    // serialises at one commit each (`decision_log.rs` loads the log).
    let server = Server::start(&[
        "--store",
        "memory",
        "--insecure-no-auth",
        "--policies",
        dir.path().to_str().unwrap(),
        "--max-concurrency",
        "256",
    ]);
    let headers = [("content-type", "application/json")];
    let body = json!({"policy": "canary", "stage": "initial-canary", "elapsed": "20m", "snapshot": snapshot("canary-steady.json")})
        .to_string();
    let expected = http(
        &server.addr,
        "POST",
        "/v1/evaluate",
        &headers,
        body.as_bytes(),
    )
    .unwrap()
    .json();

    let warm = phase(&server, total / 2, true, &expected);
    assert!(warm.hostile > 0);
    std::thread::sleep(Duration::from_secs(6));
    let rss_warm = rss_kib(server.child.id());

    let calm = phase(&server, total, false, &expected);
    let loaded = phase(&server, total, true, &expected);
    assert_eq!(loaded.hostile, total / 100);
    // Freed memory goes back to the OS within the trim period.
    std::thread::sleep(Duration::from_secs(6));
    let rss_after = rss_kib(server.child.id());

    let report = |name: &str, p: &Phase| {
        format!(
            "{name}: {} well-behaved, p50 {:?}, p99 {:?}, max {:?}, {} hostile",
            p.well_behaved.len(),
            percentile(&p.well_behaved, 0.5),
            percentile(&p.well_behaved, 0.99),
            p.well_behaved.last().copied().unwrap_or_default(),
            p.hostile
        )
    };
    eprintln!("{}", report("without hostile", &calm));
    eprintln!("{}", report("with 1% hostile", &loaded));
    eprintln!("RSS after warm-up {rss_warm} KiB, after the run {rss_after} KiB");
    assert!(
        rss_after as f64 <= rss_warm as f64 * 1.10,
        "RSS grew from {rss_warm} KiB to {rss_after} KiB"
    );
    let bound = Duration::from_secs(10);
    assert!(
        loaded.well_behaved.last().copied().unwrap_or_default() < bound,
        "{}",
        report("with 1% hostile", &loaded)
    );
    assert!(!server.log().contains("panicked"));
}
