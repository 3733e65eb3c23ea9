//! The real `tollgate serve` binary on a loopback port.

use serde_json::json;

use crate::server_router::{slow_policy_dir, snapshot};
use crate::support::{Server, repo, write};

const TOKEN: &str = "ci-token-0123456789abcdef";
const ADMIN: &str = "ops-token-0123456789abcdef";

fn tokens_file(dir: &std::path::Path) -> String {
    write(
        dir,
        "tokens",
        format!("# test tokens\n{TOKEN}\n{ADMIN} admin\n").as_bytes(),
    )
    .display()
    .to_string()
}

fn auth(token: &str) -> String {
    format!("Bearer {token}")
}

fn evaluate_body(policy: &str, stage: &str, snap: &str) -> Vec<u8> {
    json!({"policy": policy, "stage": stage, "snapshot": snapshot(snap)})
        .to_string()
        .into_bytes()
}

#[test]
fn auth_bodies_and_errors_over_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["--tokens-file", &tokens_file(dir.path())]);
    let good = auth(TOKEN);
    let bearer = [
        ("authorization", good.as_str()),
        ("content-type", "application/json"),
    ];
    assert_eq!(server.request("GET", "/healthz", &[], b"").status, 200);
    assert_eq!(server.request("GET", "/readyz", &[], b"").status, 200);
    let none = server.request(
        "POST",
        "/v1/evaluate",
        &[("content-type", "application/json")],
        &evaluate_body("canary", "initial-canary", "canary-steady.json"),
    );
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["error"]["code"], "unauthorized");
    let bad = server.request(
        "GET",
        "/v1/policies",
        &[("authorization", "Bearer not-a-real-token-000")],
        b"",
    );
    assert_eq!(bad.status, 401);
    let ok = server.request(
        "POST",
        "/v1/evaluate",
        &bearer,
        &evaluate_body("canary", "initial-canary", "canary-error-spike.json"),
    );
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["decision"], "rollback");

    let big = vec![b'x'; 5 << 20];
    let r = server.request("POST", "/v1/evaluate", &bearer, &big);
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["code"], "body_too_large");
    let r = server.request("POST", "/v1/evaluate", &bearer, b"{\"policy\": ");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "malformed_json");
    let r = server.request(
        "POST",
        "/v1/evaluate",
        &bearer,
        &json!({"policy": "nope", "snapshot": snapshot("canary-steady.json")})
            .to_string()
            .into_bytes(),
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["field"], "policy");
    assert!(!server.log().contains("panicked"));
}

#[test]
fn an_idempotent_retry_over_the_wire_returns_the_same_decision() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["--tokens-file", &tokens_file(dir.path())]);
    let good = auth(TOKEN);
    let headers = [
        ("authorization", good.as_str()),
        ("content-type", "application/json"),
        ("idempotency-key", "release-2.1.0"),
    ];
    let body = evaluate_body("canary", "initial-canary", "canary-steady.json");
    let first = server.request("POST", "/v1/evaluate", &headers, &body);
    let retry = server.request("POST", "/v1/evaluate", &headers, &body);
    assert_eq!((first.status, retry.status), (200, 200));
    assert_eq!(first.json()["decision_id"], retry.json()["decision_id"]);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    let other = server.request(
        "POST",
        "/v1/evaluate",
        &headers,
        &evaluate_body("canary", "full-rollout", "canary-steady.json"),
    );
    assert_eq!(other.status, 422);
}

#[test]
fn sighup_reloads_a_good_set_and_keeps_serving_on_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::copy(repo("policies/hotfix.yaml"), policies.join("hotfix.yaml")).unwrap();
    let server = Server::start(&[
        "--tokens-file",
        &tokens_file(dir.path()),
        "--policies",
        policies.to_str().unwrap(),
    ]);
    let good = auth(TOKEN);
    let headers = [("authorization", good.as_str())];
    let names = |s: &Server| -> Vec<String> {
        s.request("GET", "/v1/policies", &headers, b"").json()["policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&server), vec!["hotfix"]);
    let wait_for = |s: &Server, want: &[&str]| {
        for _ in 0..300 {
            if names(s) == want {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("policies never became {want:?}: {}", s.log());
    };
    std::fs::copy(repo("policies/canary.yaml"), policies.join("canary.yaml")).unwrap();
    server.signal("HUP");
    wait_for(&server, &["canary", "hotfix"]);
    write(&policies, "broken.yaml", b"apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: broken}\nstages:\n  - name: s\n    gates:\n      - name: g\n        plugin: nope\n");
    server.signal("HUP");
    for _ in 0..300 {
        if server.log().contains("reload failed") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = server.log();
    assert!(
        log.contains("reload failed") && log.contains("unknown plugin `nope`"),
        "{log}"
    );
    assert_eq!(
        names(&server),
        vec!["canary", "hotfix"],
        "the old set keeps serving"
    );
    // The admin endpoint reports the same error in its response.
    let admin = auth(ADMIN);
    let r = server.request(
        "POST",
        "/v1/admin/reload",
        &[("authorization", admin.as_str())],
        b"",
    );
    assert_eq!(r.status, 422);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown plugin `nope`")
    );
}

#[test]
fn sigterm_drains_an_in_flight_request_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    slow_policy_dir(dir.path(), "2500ms");
    let mut server = Server::start(&[
        "--tokens-file",
        &tokens_file(dir.path()),
        "--policies",
        dir.path().to_str().unwrap(),
    ]);
    let addr = server.addr.clone();
    let in_flight = std::thread::spawn(move || {
        let token = auth(TOKEN);
        let body =
            json!({"policy": "slow", "snapshot": snapshot("canary-steady.json")}).to_string();
        crate::support::http(
            &addr,
            "POST",
            "/v1/evaluate",
            &[
                ("authorization", token.as_str()),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        )
    });
    std::thread::sleep(std::time::Duration::from_millis(800));
    server.signal("TERM");
    let response = in_flight.join().unwrap().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["gates"][0]["cause"], "deadline");
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(server.log().contains("draining in-flight requests"));
}

#[test]
fn a_hostile_plugin_does_not_disturb_concurrent_requests() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "bomb.wasm",
        &crate::hostile::component_for("memory-bomb", &repo("wit")),
    );
    write(
        dir.path(),
        "spin.wasm",
        &crate::hostile::component_for("infinite-loop", &repo("wit")),
    );
    write(
        dir.path(),
        "hostile.yaml",
        b"apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: hostile}\nplugins:\n  bomb: {path: bomb.wasm}\n  spin: {path: spin.wasm}\nstages:\n  - name: s\n    gates:\n      - name: bomb\n        plugin: bomb\n      - name: spin\n        plugin: spin\n        deadline: 300ms\n",
    );
    std::fs::copy(repo("policies/canary.yaml"), dir.path().join("canary.yaml")).unwrap();
    let server = Server::start(&[
        "--tokens-file",
        &tokens_file(dir.path()),
        "--policies",
        dir.path().to_str().unwrap(),
    ]);
    let addr = server.addr.clone();
    let mut handles = Vec::new();
    for i in 0..12 {
        let addr = addr.clone();
        handles.push(std::thread::spawn(move || {
            let token = auth(TOKEN);
            let headers = [
                ("authorization", token.as_str()),
                ("content-type", "application/json"),
            ];
            if i % 4 == 0 {
                let body = json!({"policy": "hostile", "snapshot": snapshot("canary-steady.json")})
                    .to_string();
                let r =
                    crate::support::http(&addr, "POST", "/v1/evaluate", &headers, body.as_bytes())
                        .unwrap();
                assert_eq!(r.status, 200);
                let d = r.json();
                assert_eq!(d["decision"], "rollback");
                assert_eq!(d["gates"][0]["cause"], "memory");
                assert_eq!(d["gates"][1]["cause"], "deadline");
            } else {
                // Trigger state is per service: the spiking service's open
                // circuit must not leak into the healthy one.
                let (snap, service, want) = if i % 2 == 0 {
                    ("canary-error-spike.json", "payments", "rollback")
                } else {
                    ("canary-error-005.json", "ledger", "promote")
                };
                let mut snapshot = snapshot(snap);
                snapshot["service"] = json!(service);
                let body =
                    json!({"policy": "canary", "stage": "initial-canary", "elapsed": "20m", "snapshot": snapshot})
                        .to_string();
                let r =
                    crate::support::http(&addr, "POST", "/v1/evaluate", &headers, body.as_bytes())
                        .unwrap();
                assert_eq!(r.status, 200);
                assert_eq!(r.json()["decision"], want, "{snap}");
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    let token = auth(TOKEN);
    let metrics = String::from_utf8(
        server
            .request("GET", "/metrics", &[("authorization", token.as_str())], b"")
            .body,
    )
    .unwrap();
    assert!(
        metrics.contains("tollgate_plugin_traps_total{cause=\"memory\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tollgate_plugin_traps_total{cause=\"deadline\"} 3"),
        "{metrics}"
    );
    assert_eq!(server.request("GET", "/healthz", &[], b"").status, 200);
}

#[test]
fn without_a_token_file_a_token_is_generated_and_insecure_mode_warns() {
    let server = Server::start(&[]);
    let log = server.log();
    let token = log
        .lines()
        .skip_while(|l| !l.starts_with("no token file configured"))
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    assert!(token.starts_with("tg_"), "{log}");
    let bearer = auth(&token);
    assert_eq!(
        server
            .request(
                "GET",
                "/v1/plugins",
                &[("authorization", bearer.as_str())],
                b""
            )
            .status,
        200
    );
    assert_eq!(server.request("GET", "/v1/plugins", &[], b"").status, 401);
    drop(server);
    let open = Server::start(&["--insecure-no-auth"]);
    assert!(
        open.log().contains("authentication is off"),
        "{}",
        open.log()
    );
    assert_eq!(open.request("GET", "/v1/plugins", &[], b"").status, 200);
}

#[test]
fn json_logs_are_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&[
        "--tokens-file",
        &tokens_file(dir.path()),
        "--log-format",
        "json",
    ]);
    let token = auth(TOKEN);
    server.request(
        "GET",
        "/v1/policies",
        &[("authorization", token.as_str())],
        b"",
    );
    let log = server.log();
    let json_lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let listening = json_lines
        .iter()
        .find(|l| l["fields"]["message"] == "listening" && l["level"] == "INFO");
    let Some(listening) = listening else {
        panic!("no `listening` line: {log}")
    };
    // The bundled policies' plugins came compiled with the binary.
    assert!(
        listening["fields"]["plugins_precompiled"].as_u64() >= Some(5),
        "{listening}"
    );
}

#[test]
fn every_request_gets_an_access_log_line_and_every_decision_an_info_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&[
        "--tokens-file",
        &tokens_file(dir.path()),
        "--log-format",
        "json",
    ]);
    let token = auth(TOKEN);
    let r = server.request(
        "POST",
        "/v1/evaluate",
        &[
            ("authorization", token.as_str()),
            ("content-type", "application/json"),
        ],
        &evaluate_body("canary", "initial-canary", "canary-error-spike.json"),
    );
    assert_eq!(r.status, 200);
    let id = r.json()["decision_id"].as_str().unwrap().to_string();
    // The lines are written after the response; give the logger a moment.
    let mut found = (false, false);
    for _ in 0..50 {
        let log = server.log();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        found.0 = lines.iter().any(|l| {
            let f = &l["fields"];
            f["message"] == "request"
                && f["route"] == "/v1/evaluate"
                && f["status"] == 200
                && f["decision_id"] == id.as_str()
                && f["token"].as_str().is_some_and(|t| t.starts_with("tok_"))
                && f["duration_ms"].is_number()
        });
        found.1 = lines.iter().any(|l| {
            let f = &l["fields"];
            f["message"] == "decision"
                && f["decision_id"] == id.as_str()
                && f["decision"] == "rollback"
                && f["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("error-rate-spike"))
        });
        if found == (true, true) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(found, (true, true), "{}", server.log());
    assert!(
        !server.log().contains(TOKEN),
        "the token itself is never logged"
    );
}

#[test]
fn request_text_in_text_logs_has_its_control_characters_escaped() {
    let server = Server::start(&["--insecure-no-auth"]);
    let hook = json!({"name": "evil\u{1b}[2J\u{1b}[32mPROMOTE\r", "namespace": "ns\u{7}", "phase": "Progressing",
        "checksum": "x", "metadata": {"stage": "initial-canary", "elapsed": "20m",
        "snapshot": snapshot("canary-steady.json").to_string()}});
    let r = server.request(
        "POST",
        "/v1/compat/flagger/canary/rollout",
        &[("content-type", "application/json")],
        hook.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200);
    let mut log = String::new();
    for _ in 0..50 {
        log = server.log();
        if log.contains("flagger webhook") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(log.contains("evil\\x1b[2J"), "{log}");
    assert!(!log.contains('\u{1b}') && !log.contains('\u{7}'), "{log:?}");
}

/// The access log gives a request's duration in milliseconds to the
/// microsecond (`duration_ms=6.19`), not as a float's every digit.
#[test]
fn the_access_log_rounds_durations_to_the_microsecond() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["--tokens-file", &tokens_file(dir.path())]);
    let token = auth(TOKEN);
    for _ in 0..5 {
        let r = server.request(
            "POST",
            "/v1/evaluate",
            &[
                ("authorization", token.as_str()),
                ("content-type", "application/json"),
            ],
            &evaluate_body("canary", "initial-canary", "canary-steady.json"),
        );
        assert_eq!(r.status, 200);
    }
    let mut durations = Vec::new();
    for _ in 0..50 {
        durations = server
            .log()
            .lines()
            .filter_map(|l| l.split("duration_ms=").nth(1))
            .map(|v| v.split_whitespace().next().unwrap_or_default().to_string())
            .collect();
        if durations.len() >= 5 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(durations.len() >= 5, "{}", server.log());
    for d in &durations {
        let value: f64 = d.parse().unwrap_or_else(|_| panic!("`{d}` is no number"));
        assert!(value >= 0.0);
        let decimals = d.split('.').nth(1).map_or(0, str::len);
        assert!(decimals <= 3, "duration_ms={d}: {}", server.log());
    }
}
