//! Trust of decisions: who may ask, what a caller's request may reach, and
//! what it may cost. A caller's idempotency keys are its own, a token may be
//! held to services and to its share of the evaluation slots, requests not
//! yet authenticated share a bounded budget of the bytes they actually
//! sent, snapshot files are opened beneath their directory only and show
//! nothing of themselves, replays cost what an evaluation costs, log lines
//! cannot be forged, ambiguous input is refused, request text in errors is
//! escaped and bounded, token ids are keyed, and tokens reload.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tollgate::server::{AppState, ServerConfig, Tokens, app};
use tower::ServiceExt;

use crate::server_router::{assert_conforms, json_of, runtime, slow_policy_dir, snapshot};
use crate::support::{HttpResponse, Server, repo, write};

const ALICE: &str = "alice-token-0123456789ab";
const BOB: &str = "bob-token-0123456789abcd";
const ADMIN: &str = "ops-token-0123456789abcdef";

/// One in-process request's answer.
struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        json_of(&self.body)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn code(&self) -> Value {
        self.json()["error"]["code"].clone()
    }
}

/// A router over the bundled policies (or `config`'s), a SQLite decision
/// log and the tokens of `tokens` (a token file's text).
fn router(dir: &Path, config: ServerConfig, tokens: &str) -> AppState {
    std::fs::create_dir_all(dir).unwrap();
    let file = write(dir, "tokens", tokens.as_bytes());
    let store: Arc<dyn tollgate::store::Store> =
        Arc::new(tollgate::store::sqlite::SqliteStore::open(&dir.join("log.db")).unwrap());
    AppState::new(config, runtime(), Tokens::from_file(&file).unwrap(), store).unwrap()
}

/// Sends one request with exactly these headers (no content type unless
/// given) and `token` as a bearer token when there is one.
async fn send(
    state: &AppState,
    method: &str,
    uri: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app(state.clone())
        .oneshot(req.body(Body::from(body.to_vec())).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");

/// `POST /v1/evaluate` as `token`, with an `Idempotency-Key` when given.
async fn evaluate(state: &AppState, token: &str, key: Option<&str>, body: &Value) -> Answer {
    let mut headers = vec![JSON];
    if let Some(k) = key {
        headers.push(("idempotency-key", k));
    }
    send(
        state,
        "POST",
        "/v1/evaluate",
        Some(token),
        &headers,
        body.to_string().as_bytes(),
    )
    .await
}

fn request(policy: &str, stage: &str, snap: &str) -> Value {
    json!({"policy": policy, "stage": stage, "snapshot": snapshot(snap)})
}

/// A fixture snapshot with another service.
fn for_service(snap: &str, service: &str) -> Value {
    let mut s = snapshot(snap);
    s["service"] = json!(service);
    s
}

fn replayed(a: &Answer) -> bool {
    a.headers.contains_key("idempotent-replayed")
}

#[tokio::test]
async fn another_tokens_idempotency_key_neither_replays_nor_conflicts_nor_shows_it_exists() {
    let dir = tempfile::tempdir().unwrap();
    let s = router(
        dir.path(),
        ServerConfig::default(),
        &format!("{ALICE}\n{BOB} evaluate:canary\n"),
    );
    let hotfix = request("hotfix", "hotfix", "canary-steady.json");
    let steady = request("canary", "initial-canary", "canary-steady.json");
    let spike = request("canary", "initial-canary", "canary-error-spike.json");

    let a = evaluate(&s, ALICE, Some("release-42"), &hotfix).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let alices = a.json()["decision_id"].as_str().unwrap().to_string();
    // Bob may not evaluate hotfix: Alice's key and body get him a 403,
    // never her stored decision.
    let b = evaluate(&s, BOB, Some("release-42"), &hotfix).await;
    assert_eq!(b.status, StatusCode::FORBIDDEN, "{}", b.text());
    assert!(!b.text().contains(&alices), "{}", b.text());
    assert!(!replayed(&b));

    // A key Bob used first does not hold up Alice's request with it.
    let b = evaluate(&s, BOB, Some("shared"), &steady).await;
    assert_eq!((b.status, replayed(&b)), (StatusCode::OK, false));
    let a = evaluate(&s, ALICE, Some("shared"), &spike).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert!(!replayed(&a));
    assert_ne!(a.json()["decision_id"], b.json()["decision_id"]);

    // Probing Alice's key: another body is no 422, the same body no replay.
    let a = evaluate(&s, ALICE, Some("alices-canary"), &steady).await;
    assert_eq!(a.status, StatusCode::OK);
    let a2 = evaluate(&s, ALICE, Some("alices-other"), &steady).await;
    assert_eq!(a2.status, StatusCode::OK);
    let probe = evaluate(&s, BOB, Some("alices-other"), &spike).await;
    assert_eq!(probe.status, StatusCode::OK, "{}", probe.text());
    assert!(!replayed(&probe));
    let same = evaluate(&s, BOB, Some("alices-canary"), &steady).await;
    assert_eq!(same.status, StatusCode::OK);
    assert!(!replayed(&same));
    assert_ne!(same.json()["decision_id"], a.json()["decision_id"]);

    // One caller's key is scoped to the policy too.
    let other_policy = evaluate(&s, ALICE, Some("release-42"), &steady).await;
    assert_eq!(other_policy.status, StatusCode::OK);
    assert!(!replayed(&other_policy));
    // And the caller's own retry still replays, and its own conflict is 422.
    let retry = evaluate(&s, ALICE, Some("release-42"), &hotfix).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert!(replayed(&retry));
    assert_eq!(retry.json()["decision_id"], alices.as_str());
    let conflict = evaluate(
        &s,
        ALICE,
        Some("release-42"),
        &request("hotfix", "hotfix", "canary-error-spike.json"),
    )
    .await;
    assert_eq!(conflict.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(conflict.code(), "idempotency_conflict");
}

#[tokio::test]
async fn a_token_held_to_services_can_neither_evaluate_nor_disturb_another() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = dir.path().join("snapshots");
    std::fs::create_dir(&snapshots).unwrap();
    write(
        &snapshots,
        "payments.json",
        for_service("canary-error-spike.json", "payments")
            .to_string()
            .as_bytes(),
    );
    const CHECKOUT: &str = "checkout-token-0123456789";
    const TEAM: &str = "team-a-token-0123456789";
    const CAROL: &str = "carol-token-0123456789ab";
    let s = router(
        dir.path(),
        ServerConfig {
            snapshot_dir: Some(snapshots.clone()),
            ..ServerConfig::default()
        },
        &format!(
            "{ALICE}\n{CHECKOUT} evaluate:canary@checkout,cart\n{TEAM} evaluate:*@team-a-*\n{CAROL} approve@cart as:carol\n"
        ),
    );
    let ok = evaluate(
        &s,
        CHECKOUT,
        None,
        &request("canary", "initial-canary", "canary-steady.json"),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    // Another service, however it is named: in the snapshot, in the
    // request (before any query), in Flagger's canary name, in a file.
    let spike = for_service("canary-error-spike.json", "payments");
    let refused = [
        evaluate(
            &s,
            CHECKOUT,
            None,
            &json!({"policy": "canary", "stage": "initial-canary", "snapshot": spike}),
        )
        .await,
        evaluate(
            &s,
            CHECKOUT,
            None,
            &json!({"policy": "canary", "service": "payments", "version": "1.0.0"}),
        )
        .await,
        send(
            &s,
            "POST",
            "/v1/compat/argo/canary",
            Some(CHECKOUT),
            &[JSON],
            json!({"stage": "initial-canary", "snapshot": spike})
                .to_string()
                .as_bytes(),
        )
        .await,
        send(
            &s,
            "POST",
            "/v1/compat/flagger/canary/rollout",
            None,
            &[JSON],
            json!({"name": "payments", "namespace": "prod", "phase": "Progressing",
                   "metadata": {"stage": "initial-canary", "token": CHECKOUT,
                                "snapshot": spike.to_string()}})
            .to_string()
            .as_bytes(),
        )
        .await,
        send(
            &s,
            "POST",
            "/v1/compat/flagger/canary/rollout",
            None,
            &[JSON],
            json!({"name": "payments", "namespace": "prod", "phase": "Progressing",
                   "metadata": {"stage": "initial-canary", "token": CHECKOUT}})
            .to_string()
            .as_bytes(),
        )
        .await,
        evaluate(
            &s,
            TEAM,
            None,
            &json!({"policy": "hotfix", "stage": "hotfix", "snapshot": spike}),
        )
        .await,
    ];
    for (i, r) in refused.iter().enumerate() {
        assert_eq!(r.status, StatusCode::FORBIDDEN, "#{i}: {}", r.text());
        assert!(
            r.text().contains("service `payments`"),
            "#{i}: {}",
            r.text()
        );
    }
    // A file's service is the file's to keep: refused, naming the file.
    let r = send(
        &s,
        "GET",
        "/v1/compat/argo/canary?stage=initial-canary&snapshot_file=payments.json",
        Some(CHECKOUT),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(
        r.text().contains("with snapshot file `payments.json`"),
        "{}",
        r.text()
    );
    // Nothing ran for payments: no decision, so no trigger state moved.
    let log = send(
        &s,
        "GET",
        "/v1/decisions?service=payments",
        Some(ALICE),
        &[],
        b"",
    )
    .await;
    assert_eq!(log.json()["decisions"], json!([]), "{}", log.text());
    // A glob: team-a-* services, any policy.
    let team = evaluate(
        &s,
        TEAM,
        None,
        &json!({"policy": "hotfix", "stage": "hotfix",
                "snapshot": for_service("canary-steady.json", "team-a-web")}),
    )
    .await;
    assert_eq!(team.status, StatusCode::OK, "{}", team.text());
    // Approvals are held to their services the same way.
    let approve = |service: &str| {
        let body = json!({"service": service, "version": "2.1.0"}).to_string();
        let s = s.clone();
        async move {
            send(
                &s,
                "POST",
                "/v1/approvals",
                Some(CAROL),
                &[JSON],
                body.as_bytes(),
            )
            .await
        }
    };
    assert_eq!(approve("cart").await.status, StatusCode::CREATED);
    let r = approve("payments").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Opens a connection and sends a Flagger request's headers, announcing
/// `len` body bytes and no `Authorization`, then the bytes of `sent`.
fn open_body(addr: &str, len: usize, sent: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /v1/compat/flagger/canary/rollout HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer before reading the rest; ignore a reset.
    let _ = stream.write_all(sent);
    stream
}

/// The status and `Retry-After` of the answer on `stream`, or `None` when
/// none came within `wait`.
fn answer_within(stream: &mut TcpStream, wait: Duration) -> Option<(u16, Option<String>)> {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    match stream.read(&mut buf) {
        Ok(n) if n > 0 => {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let status = text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let retry = text.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("retry-after:")
                    .map(|v| v.trim().to_string())
            });
            Some((status, retry))
        }
        _ => None,
    }
}

/// A Flagger hook with its token in the metadata, as Flagger sends it.
fn flagger_hook(token: &str) -> Vec<u8> {
    json!({"name": "podinfo", "namespace": "test", "phase": "Progressing",
        "checksum": "6f4d8c",
        "metadata": {"stage": "initial-canary", "token": token,
                     "snapshot": snapshot("canary-steady.json").to_string()}})
    .to_string()
    .into_bytes()
}

#[test]
fn unauthenticated_bodies_share_one_bounded_budget() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write(dir.path(), "tokens", format!("{ALICE}\n").as_bytes());
    let server = Server::start(&["--tokens-file", tokens.to_str().unwrap()]);
    let pid = server.child.id();
    assert_eq!(server.request("GET", "/healthz", &[], b"").status, 200);
    let before = rss_kib(pid);
    // 40 connections without a token, each announcing the most such a
    // body may be and sending all of it but the last byte: 40 MiB sent.
    let len = tollgate::server::UNAUTHENTICATED_BODY_LIMIT;
    let chunk = Arc::new(vec![b' '; len - 1]);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut open = Vec::new();
    for _ in 0..40 {
        let stream = open_body(&server.addr, len, b"");
        let mut writer = stream.try_clone().unwrap();
        let chunk = Arc::clone(&chunk);
        std::thread::spawn(move || {
            let _ = writer.write_all(&chunk);
        });
        let mut reader = stream.try_clone().unwrap();
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(answer_within(&mut reader, Duration::from_secs(8)));
        });
        open.push(stream);
    }
    drop(tx);
    let answers: Vec<_> = rx.iter().collect();
    let grown_mib = rss_kib(pid).saturating_sub(before) / 1024;
    let held = answers.iter().filter(|a| a.is_none()).count();
    let refused = answers
        .iter()
        .filter(|a| matches!(a, Some((503, Some(r))) if r == "1"))
        .count();
    eprintln!(
        "40 unauthenticated 1 MiB bodies sent: {held} held, {refused} refused (503), RSS +{grown_mib} MiB"
    );
    assert_eq!(
        held + refused,
        40,
        "only the budget refuses here: {answers:?}"
    );
    let budget = tollgate::server::UNAUTHENTICATED_BYTES;
    assert!(held <= budget / len, "{held} bodies held");
    assert!(refused >= 40 - budget / len, "{refused} refused");
    assert!(
        grown_mib < 64,
        "RSS grew {grown_mib} MiB for bodies held to {} MiB",
        budget >> 20
    );
    // The server still answers, and a Flagger hook with its token in the
    // metadata still works once the budget is free again.
    drop(open);
    assert_eq!(server.request("GET", "/healthz", &[], b"").status, 200);
    let hook = flagger_hook(ALICE);
    let mut last = 0;
    for _ in 0..50 {
        last = server
            .request(
                "POST",
                "/v1/compat/flagger/canary/rollout",
                &[("content-type", "application/json")],
                &hook,
            )
            .status;
        if last == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(last, 200);
}

#[test]
fn bodies_announced_but_not_sent_leave_room_for_a_flagger_token_in_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write(dir.path(), "tokens", format!("{ALICE}\n").as_bytes());
    let server = Server::start(&["--tokens-file", tokens.to_str().unwrap()]);
    // 8 connections announce 4 MiB and 40 the largest body allowed without
    // a token; each sends one byte. Announced: 72 MiB, over twice the
    // budget; sent: 48 bytes.
    let big: Vec<TcpStream> = (0..8)
        .map(|_| open_body(&server.addr, 4 << 20, b"{"))
        .collect();
    let mut held: Vec<TcpStream> = (0..40)
        .map(|_| {
            open_body(
                &server.addr,
                tollgate::server::UNAUTHENTICATED_BODY_LIMIT,
                b"{",
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Flagger's own request, its token in the metadata, is answered as
    // ever, while all of them wait.
    let r = server.request(
        "POST",
        "/v1/compat/flagger/canary/rollout",
        &[("content-type", "application/json")],
        &flagger_hook(ALICE),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["policy"], "canary", "{}", r.text());
    assert_eq!(r.json()["hook"], "rollout", "{}", r.text());
    // Over the limit for a request without a token: refused at once, as
    // announced. The others are still being read.
    for mut stream in big {
        let answer = answer_within(&mut stream, Duration::from_secs(2));
        assert_eq!(answer.map(|a| a.0), Some(413));
    }
    for stream in &mut held {
        assert_eq!(answer_within(stream, Duration::from_millis(10)), None);
    }
}

/// A snapshot directory with a good file, links out of it (to a file, to
/// a directory, to a secret that is not a snapshot) and a link within it.
fn snapshot_dir(root: &Path) -> std::path::PathBuf {
    let inside = root.join("snapshots");
    let outside = root.join("outside");
    std::fs::create_dir_all(&inside).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::copy(
        repo("tests/fixtures/canary-steady.json"),
        inside.join("ok.json"),
    )
    .unwrap();
    std::fs::copy(
        repo("tests/fixtures/canary-steady.json"),
        outside.join("valid.json"),
    )
    .unwrap();
    write(
        &outside,
        "secret.json",
        br#"{"aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG", "service": "x"}"#,
    );
    let link = |target: &Path, name: &str| {
        std::os::unix::fs::symlink(target, inside.join(name)).unwrap();
    };
    link(&outside.join("valid.json"), "valid-link.json");
    link(&outside.join("secret.json"), "secret-link.json");
    link(Path::new("../outside/valid.json"), "relative-link.json");
    link(&outside, "outdir");
    link(Path::new("ok.json"), "inner-link.json");
    inside
}

#[tokio::test]
async fn snapshot_files_are_read_only_beneath_the_snapshot_dir() {
    let dir = tempfile::tempdir().unwrap();
    let inside = snapshot_dir(dir.path());
    let s = router(
        dir.path(),
        ServerConfig {
            snapshot_dir: Some(inside),
            ..ServerConfig::default()
        },
        &format!("{ALICE}\n"),
    );
    let argo = |file: &str| {
        let s = s.clone();
        let uri = format!("/v1/compat/argo/canary?stage=initial-canary&snapshot_file={file}");
        async move { send(&s, "GET", &uri, Some(ALICE), &[], b"").await }
    };
    for file in ["ok.json", "inner-link.json"] {
        let r = argo(file).await;
        assert_eq!(r.status, StatusCode::OK, "{file}: {}", r.text());
    }
    for file in [
        "valid-link.json",
        "relative-link.json",
        "secret-link.json",
        "outdir/valid.json",
        "outdir/secret.json",
    ] {
        let r = argo(file).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{file}: {}",
            r.text()
        );
        assert_eq!(r.code(), "snapshot_file_refused", "{file}: {}", r.text());
        assert_eq!(r.json()["error"]["field"], "query.snapshot_file");
        assert!(
            r.text().contains("outside the snapshot directory"),
            "{file}: {}",
            r.text()
        );
        assert!(!r.text().contains("aws_secret"), "{file}: {}", r.text());
    }
    // The same through the evaluate and Flagger routes.
    let r = evaluate(
        &s,
        ALICE,
        None,
        &json!({"policy": "canary", "stage": "initial-canary", "snapshot_file": "secret-link.json"}),
    )
    .await;
    assert_eq!(r.code(), "snapshot_file_refused", "{}", r.text());
    assert_eq!(r.json()["error"]["field"], "snapshot_file");
    let hook = json!({"name": "podinfo", "namespace": "test", "phase": "Progressing",
        "metadata": {"stage": "initial-canary", "snapshot_file": "outdir/valid.json"}});
    let r = send(
        &s,
        "POST",
        "/v1/compat/flagger/canary/rollout",
        Some(ALICE),
        &[JSON],
        hook.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.code(), "snapshot_file_refused", "{}", r.text());
    assert_eq!(r.json()["error"]["field"], "metadata.snapshot_file");
    assert_eq!(argo("missing.json").await.status, StatusCode::NOT_FOUND);
}

#[test]
fn a_fifo_named_as_a_snapshot_is_refused_and_the_server_keeps_answering() {
    if !crate::support::need("mkfifo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let inside = snapshot_dir(dir.path());
    let made = std::process::Command::new("mkfifo")
        .arg(inside.join("pipe.json"))
        .status()
        .unwrap();
    assert!(made.success());
    let tokens = write(dir.path(), "tokens", format!("{ALICE}\n").as_bytes());
    let server = Server::start(&[
        "--tokens-file",
        tokens.to_str().unwrap(),
        "--snapshot-dir",
        inside.to_str().unwrap(),
    ]);
    let auth = format!("Bearer {ALICE}");
    // More FIFO requests than the server has async threads.
    let (tx, rx) = std::sync::mpsc::channel();
    for _ in 0..6 {
        let (addr, auth, tx) = (server.addr.clone(), auth.clone(), tx.clone());
        std::thread::spawn(move || {
            let r = crate::support::http(
                &addr,
                "GET",
                "/v1/compat/argo/canary?stage=initial-canary&snapshot_file=pipe.json",
                &[("authorization", auth.as_str())],
                b"",
            );
            let _ = tx.send(r.map(|r| (r.status, r.text())));
        });
    }
    std::thread::sleep(Duration::from_millis(200));
    let (htx, hrx) = std::sync::mpsc::channel();
    let addr = server.addr.clone();
    std::thread::spawn(move || {
        let _ =
            htx.send(crate::support::http(&addr, "GET", "/healthz", &[], b"").map(|r| r.status));
    });
    let health = hrx.recv_timeout(Duration::from_secs(5));
    assert!(
        matches!(health, Ok(Ok(200))),
        "/healthz did not answer while FIFOs were asked for: {health:?}"
    );
    for _ in 0..6 {
        let (status, text) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a FIFO request hung")
            .unwrap();
        assert_eq!(status, 422, "{text}");
        assert!(text.contains("is not a regular file"), "{text}");
    }
}

/// The server child's CPU time so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .unwrap();
    let hz: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(100);
    Duration::from_millis(ticks * 1000 / hz)
}

fn post(server: &Server, token: &str, path: &str, body: &[u8]) -> HttpResponse {
    let auth = format!("Bearer {token}");
    server.request(
        "POST",
        path,
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        body,
    )
}

#[test]
fn replays_and_evaluations_are_rate_limited_per_token() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write(dir.path(), "tokens", format!("{ALICE}\n{BOB}\n").as_bytes());
    let server = Server::start(&[
        "--tokens-file",
        tokens.to_str().unwrap(),
        "--replay-rate",
        "2/m",
        "--evaluate-rate",
        "3/m",
    ]);
    let body = request("canary", "initial-canary", "canary-steady.json").to_string();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = post(&server, ALICE, "/v1/evaluate", body.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        ids.push(r.json()["decision_id"].as_str().unwrap().to_string());
    }
    let r = post(&server, ALICE, "/v1/evaluate", body.as_bytes());
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "rate_limited");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
    // Flagger's metadata token is held to the same rate.
    let hook = json!({"name": "podinfo", "namespace": "test", "phase": "Progressing",
        "metadata": {"stage": "initial-canary", "token": ALICE,
                     "snapshot": snapshot("canary-steady.json").to_string()}});
    let r = server.request(
        "POST",
        "/v1/compat/flagger/canary/rollout",
        &[("content-type", "application/json")],
        hook.to_string().as_bytes(),
    );
    assert_eq!(r.status, 429, "{}", r.text());
    // Another token has its own allowance.
    assert_eq!(
        post(&server, BOB, "/v1/evaluate", body.as_bytes()).status,
        200
    );
    for id in &ids[..2] {
        let r = post(&server, ALICE, &format!("/v1/decisions/{id}/replay"), b"");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = post(
        &server,
        ALICE,
        &format!("/v1/decisions/{}/replay", ids[2]),
        b"",
    );
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    let r = post(
        &server,
        BOB,
        &format!("/v1/decisions/{}/replay", ids[2]),
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_waits_for_its_policys_share_of_workers() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    slow_policy_dir(&policies, "1s");
    std::fs::copy(repo("policies/canary.yaml"), policies.join("canary.yaml")).unwrap();
    let s = router(
        dir.path(),
        ServerConfig {
            policies: Some(policies),
            workers: 4,
            policy_workers: 1,
            request_timeout: Duration::from_millis(400),
            ..ServerConfig::default()
        },
        &format!("{ALICE}\n"),
    );
    let slow = json!({"policy": "slow", "snapshot": snapshot("canary-steady.json")});
    let logged = evaluate(&s, ALICE, None, &slow).await;
    assert_eq!(logged.status, StatusCode::OK, "{}", logged.text());
    let slow_id = logged.json()["decision_id"].as_str().unwrap().to_string();
    let canary = evaluate(
        &s,
        ALICE,
        None,
        &request("canary", "initial-canary", "canary-steady.json"),
    )
    .await;
    let canary_id = canary.json()["decision_id"].as_str().unwrap().to_string();
    // An evaluation of the slow policy holds its one worker for a second.
    let running = tokio::spawn({
        let s = s.clone();
        async move { evaluate(&s, ALICE, None, &slow).await.status }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let replay = |id: String| {
        let s = s.clone();
        async move {
            send(
                &s,
                "POST",
                &format!("/v1/decisions/{id}/replay"),
                Some(ALICE),
                &[],
                b"",
            )
            .await
        }
    };
    let r = replay(slow_id).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert!(r.text().contains("policy `slow`"), "{}", r.text());
    assert_eq!(r.headers["retry-after"], "1");
    // Another policy's replay has its own share.
    let r = replay(canary_id).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["identical"], true);
    assert_eq!(running.await.unwrap(), StatusCode::OK);
}

#[test]
fn a_replay_compiles_no_plugin_again_even_without_the_compile_cache() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write(dir.path(), "tokens", format!("{ALICE}\n").as_bytes());
    let server = Server::start_with_env(
        &["--tokens-file", tokens.to_str().unwrap()],
        &[("TOLLGATE_CACHE_DIR", "off")],
    );
    let body = request("canary", "initial-canary", "canary-steady.json").to_string();
    let r = post(&server, ALICE, "/v1/evaluate", body.as_bytes());
    let id = r.json()["decision_id"].as_str().unwrap().to_string();
    let pid = server.child.id();
    let started = cpu_time(pid);
    for _ in 0..3 {
        let r = post(&server, ALICE, &format!("/v1/decisions/{id}/replay"), b"");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["identical"], true);
    }
    let spent = cpu_time(pid) - started;
    eprintln!("3 replays of a canary decision: {spent:?} of CPU");
    // Compiling the canary policy's plugins costs seconds of CPU in a
    // debug build; evaluating them, milliseconds.
    assert!(
        spent < Duration::from_millis(600),
        "3 replays cost {spent:?} of CPU"
    );
}

/// The fields of a logfmt line, in order: `key=value`, the value unquoted
/// and unescaped; words without `=` are skipped.
fn logfmt(line: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    while chars.peek().is_some() {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == ' ' || c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            continue;
        }
        chars.next();
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => {
                        if let Some(e) = chars.next() {
                            value.push('\\');
                            value.push(e);
                        }
                    }
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        fields.push((key, value));
    }
    fields
}

#[test]
fn a_forged_service_name_is_one_field_in_the_text_log() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write(dir.path(), "tokens", format!("{ALICE}\n").as_bytes());
    let server = Server::start(&["--tokens-file", tokens.to_str().unwrap()]);
    let forged = "checkout decision=\"promote\" reason=all-good";
    let mut snap = for_service("canary-error-spike.json", forged);
    snap["version"] = json!("2.1.0\u{2028}decision=promote");
    let r = post(
        &server,
        ALICE,
        "/v1/evaluate",
        json!({"policy": "canary", "stage": "initial-canary", "snapshot": snap})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["decision_id"].as_str().unwrap().to_string();
    let mut line = None;
    for _ in 0..50 {
        line = server
            .log()
            .lines()
            .find(|l| l.contains(&format!("decision_id={id}")) && l.contains(" decision "))
            .map(str::to_string);
        if line.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let line = line.unwrap_or_else(|| panic!("no decision line: {}", server.log()));
    let fields = logfmt(&line);
    let decisions: Vec<&String> = fields
        .iter()
        .filter(|(k, _)| k == "decision")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(decisions, ["rollback"], "{line}");
    let service = fields.iter().find(|(k, _)| k == "service").unwrap();
    assert_eq!(
        service.1, "checkout decision=\\\"promote\\\" reason=all-good",
        "{line}"
    );
    assert!(
        line.contains("version=\"2.1.0\\u{2028}decision=promote\""),
        "{line}"
    );
    assert!(
        !server.log().contains('\u{2028}'),
        "a raw U+2028 reached the log"
    );
}

#[tokio::test]
async fn ambiguous_input_is_refused_not_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let inside = snapshot_dir(dir.path());
    let s = router(
        dir.path(),
        ServerConfig {
            snapshot_dir: Some(inside),
            ..ServerConfig::default()
        },
        &format!("{ALICE}\nwrong-token-0123456789 evaluate:hotfix\n"),
    );
    // Both a snapshot and a snapshot file.
    let r = evaluate(
        &s,
        ALICE,
        None,
        &json!({"policy": "canary", "stage": "initial-canary",
                "snapshot": snapshot("canary-steady.json"), "snapshot_file": "ok.json"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert_eq!(r.code(), "ambiguous_snapshot");
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("`snapshot`") && message.contains("`snapshot_file`"),
        "{message}"
    );
    let r = send(
        &s,
        "GET",
        "/v1/compat/argo/canary?stage=initial-canary&snapshot_file=ok.json&snapshot=%7B%7D",
        Some(ALICE),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.code(), "ambiguous_snapshot", "{}", r.text());

    // A bad token, then a good one: not the last one wins, a 400.
    let steady = snapshot("canary-steady.json").to_string();
    let twice = format!(
        r#"{{"name":"podinfo","namespace":"test","phase":"Progressing","metadata":{{"stage":"initial-canary","snapshot":{},"token":"wrong-token-0123456789","token":"{ALICE}"}}}}"#,
        serde_json::to_string(&steady).unwrap()
    );
    let r = send(
        &s,
        "POST",
        "/v1/compat/flagger/canary/rollout",
        None,
        &[JSON],
        twice.as_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.code(), "duplicate_key");
    assert_eq!(r.json()["error"]["field"], "metadata.token");
    assert!(
        r.text().contains("duplicate key `token` in `metadata`"),
        "{}",
        r.text()
    );
    assert!(!r.text().contains(ALICE));
    let hooks = format!(
        r#"{{"name":"podinfo","namespace":"test","phase":"Progressing","metadata":{{"hook":"event","hook":"rollout","snapshot":{}}}}}"#,
        serde_json::to_string(&steady).unwrap()
    );
    let r = send(
        &s,
        "POST",
        "/v1/compat/flagger/canary",
        Some(ALICE),
        &[JSON],
        hooks.as_bytes(),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("metadata.hook"))
    );
    for query in [
        "stage=initial-canary&snapshot_file=ok.json&snapshot_file=valid-link.json",
        "stage=initial-canary&service=checkout&service=payments",
        "stage=initial-canary&stage=full-rollout&snapshot_file=ok.json",
    ] {
        let r = send(
            &s,
            "GET",
            &format!("/v1/compat/argo/canary?{query}"),
            Some(ALICE),
            &[],
            b"",
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.text());
        assert_eq!(r.code(), "duplicate_key", "{query}");
        assert!(
            r.json()["error"]["field"]
                .as_str()
                .unwrap()
                .starts_with("query.")
        );
    }
    // Anywhere in a body: the top level, or a snapshot's labels.
    let body = format!(
        r#"{{"policy":"hotfix","policy":"canary","stage":"initial-canary","snapshot":{steady}}}"#
    );
    let r = send(
        &s,
        "POST",
        "/v1/evaluate",
        Some(ALICE),
        &[JSON],
        body.as_bytes(),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("policy"))
    );
    let labels = steady.replacen(r#""labels":{"#, r#""labels":{"track":"primary","#, 1);
    assert_ne!(labels, steady, "the fixture has labels");
    let body = format!(r#"{{"policy":"canary","stage":"initial-canary","snapshot":{labels}}}"#);
    let r = send(
        &s,
        "POST",
        "/v1/evaluate",
        Some(ALICE),
        &[JSON],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(
        r.json()["error"]["field"]
            .as_str()
            .unwrap()
            .ends_with(".labels.track"),
        "{}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_cannot_take_every_evaluation_slot() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    slow_policy_dir(&policies, "1s");
    std::fs::copy(repo("policies/canary.yaml"), policies.join("canary.yaml")).unwrap();
    // Two slots: a token's share is one.
    let s = router(
        dir.path(),
        ServerConfig {
            policies: Some(policies),
            max_concurrency: 2,
            ..ServerConfig::default()
        },
        &format!("{ALICE}\n{BOB}\n"),
    );
    let slow = json!({"policy": "slow", "snapshot": snapshot("canary-steady.json")});
    let spawn_slow = || {
        let (s, slow) = (s.clone(), slow.clone());
        tokio::spawn(async move { evaluate(&s, ALICE, None, &slow).await })
    };
    let (first, second) = (spawn_slow(), spawn_slow());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Alice holds her share; Bob still evaluates.
    let canary = request("canary", "initial-canary", "canary-steady.json");
    let bob = evaluate(&s, BOB, None, &canary).await;
    assert_eq!(bob.status, StatusCode::OK, "{}", bob.text());
    let mut alice = [first.await.unwrap(), second.await.unwrap()];
    alice.sort_by_key(|a| a.status);
    assert_eq!(alice[0].status, StatusCode::OK, "{}", alice[0].text());
    let refused = &alice[1];
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text()
    );
    assert_eq!(refused.headers["retry-after"], "1");
    assert!(
        refused.text().contains("`max_concurrency_per_token`"),
        "{}",
        refused.text()
    );
    // Her share comes back when her evaluation ends.
    let again = evaluate(&s, ALICE, None, &canary).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
}

#[tokio::test]
async fn keys_past_where_the_duplicate_check_reaches_and_json_after_the_body_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = router(
        dir.path(),
        ServerConfig::default(),
        &format!("{ALICE}\nwrong-token-0123456789 evaluate:hotfix\n"),
    );
    let steady = serde_json::to_string(&snapshot("canary-steady.json").to_string()).unwrap();
    // A field Flagger's body does not have, nested past serde_json's 128
    // levels, then the token twice: the last would win.
    let pad = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let twice = format!(
        r#"{{"pad":{pad},"name":"podinfo","namespace":"test","phase":"Progressing","metadata":{{"stage":"initial-canary","snapshot":{steady},"token":"wrong-token-0123456789","token":"{ALICE}"}}}}"#
    );
    let r = send(
        &s,
        "POST",
        "/v1/compat/flagger/canary/rollout",
        None,
        &[JSON],
        twice.as_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.code(), "malformed_json");
    assert!(
        r.text().contains("nested more than 128 levels"),
        "{}",
        r.text()
    );
    let hooks = format!(
        r#"{{"pad":{pad},"name":"podinfo","namespace":"test","phase":"Progressing","metadata":{{"hook":"event","hook":"rollout","snapshot":{steady}}}}}"#
    );
    let r = send(
        &s,
        "POST",
        "/v1/compat/flagger/canary",
        Some(ALICE),
        &[JSON],
        hooks.as_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    // A second JSON value after the body.
    let body = request("canary", "initial-canary", "canary-steady.json").to_string();
    for (uri, body) in [
        ("/v1/evaluate", format!(r#"{body}{{"policy":"hotfix"}}"#)),
        (
            "/v1/compat/argo/canary",
            format!(
                r#"{{"stage":"initial-canary","snapshot":{}}} {{"stage":"full-rollout"}}"#,
                snapshot("canary-steady.json")
            ),
        ),
    ] {
        let r = send(&s, "POST", uri, Some(ALICE), &[JSON], body.as_bytes()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.text());
        assert_eq!(r.code(), "malformed_json", "{uri}");
        assert!(r.text().contains("nothing after it"), "{uri}: {}", r.text());
    }
    // Whitespace after the body is no second value.
    let r = send(
        &s,
        "POST",
        "/v1/evaluate",
        Some(ALICE),
        &[JSON],
        format!("{body}\n  \n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn a_snapshot_file_is_refused_without_showing_its_values_its_service_or_whether_it_exists() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = dir.path().join("snapshots");
    std::fs::create_dir(&snapshots).unwrap();
    write(
        &snapshots,
        "payments.json",
        for_service("canary-steady.json", "payments")
            .to_string()
            .as_bytes(),
    );
    let mut bad_time = snapshot("canary-steady.json");
    bad_time["taken_at"] = json!("sk_live_0123456789");
    write(&snapshots, "bad-time.json", bad_time.to_string().as_bytes());
    let mut unknown = snapshot("canary-steady.json");
    unknown["aws_secret_access_key"] = json!("wJalrXUtnFEMI");
    write(&snapshots, "unknown.json", unknown.to_string().as_bytes());
    const CHECKOUT: &str = "checkout-token-0123456789";
    let s = router(
        dir.path(),
        ServerConfig {
            snapshot_dir: Some(snapshots),
            ..ServerConfig::default()
        },
        &format!("{ALICE}\n{CHECKOUT} evaluate:canary@checkout\n"),
    );
    let argo = |token: &'static str, file: &str| {
        let s = s.clone();
        let uri = format!("/v1/compat/argo/canary?stage=initial-canary&snapshot_file={file}");
        async move { send(&s, "GET", &uri, Some(token), &[], b"").await }
    };
    // Another service's file, and a file that does not exist, are one and
    // the same 403 for a token held to checkout; neither names a service.
    for file in ["payments.json", "missing.json"] {
        let r = argo(CHECKOUT, file).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{file}: {}", r.text());
        assert_eq!(
            r.json()["error"]["message"],
            format!("this token may not evaluate policy `canary` with snapshot file `{file}`"),
        );
        assert_eq!(r.json()["error"]["field"], "query.snapshot_file");
    }
    // A token that may use every service's files learns which are missing.
    assert_eq!(
        argo(ALICE, "missing.json").await.status,
        StatusCode::NOT_FOUND
    );
    // An invalid file: the path of the problem, none of the file's text.
    for token in [ALICE, CHECKOUT] {
        let r = argo(token, "bad-time.json").await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
        assert_eq!(r.code(), "invalid_snapshot");
        assert_eq!(
            r.json()["error"]["message"],
            "snapshot file `bad-time.json` is not a valid snapshot at `taken_at`",
        );
        assert!(!r.text().contains("sk_live"), "{}", r.text());
        let r = argo(token, "unknown.json").await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
        assert!(!r.text().contains("aws_secret"), "{}", r.text());
        assert!(!r.text().contains("wJalr"), "{}", r.text());
    }
}

#[tokio::test]
async fn a_service_version_or_time_beside_a_snapshot_must_be_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = dir.path().join("snapshots");
    std::fs::create_dir(&snapshots).unwrap();
    write(
        &snapshots,
        "payments.json",
        for_service("canary-steady.json", "payments")
            .to_string()
            .as_bytes(),
    );
    let s = router(
        dir.path(),
        ServerConfig {
            snapshot_dir: Some(snapshots),
            ..ServerConfig::default()
        },
        &format!("{ALICE}\n"),
    );
    // The query names checkout; the file, payments.
    let r = send(
        &s,
        "GET",
        "/v1/compat/argo/canary?stage=initial-canary&service=checkout&snapshot_file=payments.json",
        Some(ALICE),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert_eq!(r.code(), "ambiguous_snapshot");
    assert_eq!(r.json()["error"]["field"], "query.service");
    assert!(!r.text().contains("payments`"), "{}", r.text());
    let steady = snapshot("canary-steady.json");
    let taken_at = steady["taken_at"].as_i64().unwrap();
    for (extra, field) in [
        (json!({"service": "payments"}), "service"),
        (json!({"version": "9.9.9"}), "version"),
        (json!({"at": taken_at - 3600}), "at"),
    ] {
        let mut body = json!({"policy": "canary", "stage": "initial-canary", "snapshot": steady});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let r = evaluate(&s, ALICE, None, &body).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}: {}",
            r.text()
        );
        assert_eq!(r.code(), "ambiguous_snapshot", "{field}");
        assert_eq!(r.json()["error"]["field"], field);
    }
    // Flagger's metadata alike; its canary's `name` is no such value.
    let hook = json!({"name": "podinfo", "namespace": "test", "phase": "Progressing",
        "metadata": {"stage": "initial-canary", "service": "payments",
                     "snapshot": steady.to_string()}});
    let r = send(
        &s,
        "POST",
        "/v1/compat/flagger/canary/rollout",
        Some(ALICE),
        &[JSON],
        hook.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.code(), "ambiguous_snapshot", "{}", r.text());
    assert_eq!(r.json()["error"]["field"], "metadata.service");
    // The snapshot's own values beside it are no ambiguity.
    let body = json!({"policy": "canary", "stage": "initial-canary", "snapshot": steady,
        "service": "checkout", "version": steady["version"], "at": taken_at});
    let r = evaluate(&s, ALICE, None, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = send(
        &s,
        "GET",
        "/v1/compat/argo/canary?stage=initial-canary&service=payments&snapshot_file=payments.json",
        Some(ALICE),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["service"], "payments");
}

/// Whether an error message is short, one line and free of raw control
/// characters, whatever the request held.
fn bounded_and_escaped(r: &Answer) -> Result<(), String> {
    let e = &r.json()["error"];
    let message = e["message"].as_str().unwrap_or_default();
    let field = e["field"].as_str().unwrap_or_default();
    for text in [message, field] {
        if text.chars().count() > 400 || text.chars().any(char::is_control) {
            return Err(format!(
                "{} chars: {:?}",
                text.chars().count(),
                &text[..text.len().min(200)]
            ));
        }
    }
    Ok(())
}

#[tokio::test]
async fn request_text_in_error_messages_is_escaped_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let s = router(
        dir.path(),
        ServerConfig::default(),
        &format!("{ALICE}\n{BOB} read approve as:bob\n"),
    );
    // An ESC sequence and 100 KB, in every place a request names something.
    let long = format!("\u{1b}[2J{}", "a".repeat(100_000));
    let steady = snapshot("canary-steady.json");
    let mut bodies = vec![
        json!({"policy": long, "snapshot": steady}),
        json!({"policy": "canary", "stage": long, "snapshot": steady}),
        json!({"policy": "canary", "elapsed": format!("5{long}"), "snapshot": steady}),
        json!({"policy": "canary", "schedule": long, "snapshot": steady}),
    ];
    let mut unknown = json!({"policy": "canary", "snapshot": steady});
    unknown[&long] = json!(1);
    bodies.push(unknown);
    let mut series = steady.clone();
    series["metrics"][0]["points"][0] = json!([1, long]);
    bodies.push(json!({"policy": "canary", "snapshot": series}));
    let mut statuses = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let r = evaluate(&s, ALICE, None, body).await;
        bounded_and_escaped(&r).unwrap_or_else(|e| panic!("#{i} {}: {e}", r.status));
        // Quoted, the ESC is an escape one can read (a point's value is not
        // quoted at all).
        if i < 5 {
            assert!(r.text().contains("\\\\x1b[2Jaaa"), "#{i}: {}", r.text());
        }
        statuses.push(r.status.as_u16());
    }
    assert_eq!(statuses, [404, 404, 422, 422, 422, 422]);
    // In a path or a query: an URI holds less than 64 KiB, so 30 KB.
    let name = format!("%1B%5B2J{}", "a".repeat(30_000));
    for (method, uri, token) in [
        ("GET", format!("/v1/policies/{name}"), ALICE),
        (
            "GET",
            format!("/v1/reports/dora?service=s&window=5{name}"),
            ALICE,
        ),
        ("GET", format!("/v1/approvals?{name}=1"), BOB),
        ("GET", format!("/v1/decisions?{name}=1"), ALICE),
        (
            "GET",
            format!("/v1/compat/argo/canary?{name}=1&{name}=2"),
            ALICE,
        ),
        (
            "GET",
            format!("/v1/compat/argo/canary?elapsed=5{name}&service=s"),
            ALICE,
        ),
        ("POST", format!("/v1/compat/flagger/canary/{name}"), ALICE),
    ] {
        let headers: &[(&str, &str)] = if method == "POST" { &[JSON] } else { &[] };
        let body = if method == "POST" {
            flagger_hook(ALICE)
        } else {
            Vec::new()
        };
        let r = send(&s, method, &uri, Some(token), headers, &body).await;
        assert!(r.status.is_client_error(), "{}: {}", r.status, &uri[..40]);
        bounded_and_escaped(&r).unwrap_or_else(|e| panic!("{}: {e}", &uri[..40]));
    }
}

#[tokio::test]
async fn approvals_refuse_a_repeated_parameter_and_may_be_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let s = router(
        dir.path(),
        ServerConfig {
            approve_rate: Some("1/h".parse().unwrap()),
            ..ServerConfig::default()
        },
        &format!("{ALICE}\n{BOB} read approve as:bob\n"),
    );
    let r = send(
        &s,
        "GET",
        "/v1/approvals?service=checkout&version=2.1.0&service=payments",
        Some(BOB),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.code(), "duplicate_key");
    assert_eq!(r.json()["error"]["field"], "service");
    let approve = json!({"service": "checkout", "version": "2.1.0"}).to_string();
    let first = send(
        &s,
        "POST",
        "/v1/approvals",
        Some(BOB),
        &[JSON],
        approve.as_bytes(),
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text());
    let second = send(
        &s,
        "POST",
        "/v1/approvals",
        Some(BOB),
        &[JSON],
        approve.as_bytes(),
    )
    .await;
    assert_eq!(
        second.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        second.text()
    );
    assert_eq!(second.code(), "rate_limited");
    assert!(
        second.text().contains("`approve_rate`"),
        "{}",
        second.text()
    );
    assert!(second.headers.contains_key("retry-after"));
    // The flags that set both bounds are read by `serve`.
    let tokens = write(
        dir.path(),
        "flags-tokens",
        format!("{BOB} read approve as:bob\n").as_bytes(),
    );
    let server = Server::start(&[
        "--tokens-file",
        tokens.to_str().unwrap(),
        "--approve-rate",
        "1/h",
        "--max-concurrency-per-token",
        "1",
    ]);
    let statuses: Vec<u16> = (0..2)
        .map(|_| post(&server, BOB, "/v1/approvals", approve.as_bytes()).status)
        .collect();
    assert_eq!(statuses, [201, 429]);
}

#[tokio::test]
async fn only_json_content_types_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let s = router(
        dir.path(),
        ServerConfig::default(),
        &format!("{ALICE}\n{ADMIN} admin\n"),
    );
    let body = request("canary", "initial-canary", "canary-steady.json").to_string();
    for (types, expected) in [
        (vec![], StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (
            vec!["application/json-evil"],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            vec!["application/x-www-form-urlencoded"],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (vec!["text/plain"], StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (
            vec!["application/jsonp"],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            vec!["application/+json"],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            vec!["application/json; charset=latin1"],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            vec!["application/json", "text/plain"],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (vec!["application/json"], StatusCode::OK),
        (vec!["Application/JSON; charset=UTF-8"], StatusCode::OK),
        (vec!["application/json;charset=\"utf-8\""], StatusCode::OK),
        (
            vec!["application/vnd.tollgate.evaluate+json"],
            StatusCode::OK,
        ),
    ] {
        let headers: Vec<(&str, &str)> = types.iter().map(|t| ("content-type", *t)).collect();
        let r = send(
            &s,
            "POST",
            "/v1/evaluate",
            Some(ALICE),
            &headers,
            body.as_bytes(),
        )
        .await;
        assert_eq!(r.status, expected, "{types:?}: {}", r.text());
        if expected == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            assert_eq!(r.code(), "unsupported_media_type");
        }
    }
    // The compatibility routes alike; Flagger sends `application/json`.
    let hook = json!({"name": "podinfo", "namespace": "test", "phase": "Progressing",
        "metadata": {"stage": "initial-canary", "token": ALICE,
                     "snapshot": snapshot("canary-steady.json").to_string()}})
    .to_string();
    let r = send(
        &s,
        "POST",
        "/v1/compat/flagger/canary/rollout",
        None,
        &[],
        hook.as_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = send(
        &s,
        "POST",
        "/v1/compat/flagger/canary/rollout",
        None,
        &[JSON],
        hook.as_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let argo =
        json!({"stage": "initial-canary", "snapshot": snapshot("canary-steady.json")}).to_string();
    let r = send(
        &s,
        "PUT",
        "/v1/compat/argo/canary",
        Some(ALICE),
        &[("content-type", "text/json")],
        argo.as_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Requests without a body need no content type.
    let r = send(
        &s,
        "GET",
        "/v1/compat/argo/canary?stage=initial-canary&service=checkout",
        Some(ALICE),
        &[],
        b"",
    )
    .await;
    assert_ne!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.text());
    let r = send(&s, "POST", "/v1/admin/reload", Some(ADMIN), &[], b"").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = send(&s, "GET", "/v1/policies", Some(ALICE), &[], b"").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[test]
fn token_ids_are_keyed_by_a_secret_the_store_keeps() {
    use sha2::Digest as _;
    let dir = tempfile::tempdir().unwrap();
    let tokens = write(dir.path(), "tokens", format!("{ALICE}\n").as_bytes());
    let store = dir.path().join("log.db");
    let body = request("canary", "initial-canary", "canary-steady.json").to_string();
    let token_id = |server: &Server| -> String {
        let r = post(server, ALICE, "/v1/evaluate", body.as_bytes());
        let id = r.json()["decision_id"].as_str().unwrap().to_string();
        let auth = format!("Bearer {ALICE}");
        let record = server.request(
            "GET",
            &format!("/v1/decisions/{id}"),
            &[("authorization", auth.as_str())],
            b"",
        );
        record.json()["token_id"].as_str().unwrap().to_string()
    };
    let args = |store: &str| {
        vec![
            "--tokens-file".to_string(),
            tokens.display().to_string(),
            "--store".to_string(),
            store.to_string(),
            "--log-format".to_string(),
            "json".to_string(),
        ]
    };
    let start = |store: &str| {
        let a = args(store);
        Server::start(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let first = start(store.to_str().unwrap());
    let id = token_id(&first);
    let unsalted = format!(
        "tok_{}",
        hex::encode(&sha2::Sha256::digest(ALICE.as_bytes())[..4])
    );
    assert!(id.starts_with("tok_") && id.len() == 20, "{id}");
    assert!(
        !id.starts_with(&unsalted),
        "{id} is the token's plain SHA-256"
    );
    // A Flagger request's access line names the token from its metadata.
    let hook = json!({"name": "podinfo", "namespace": "test", "phase": "Progressing",
        "metadata": {"stage": "initial-canary", "token": ALICE,
                     "snapshot": snapshot("canary-steady.json").to_string()}});
    let r = first.request(
        "POST",
        "/v1/compat/flagger/canary/rollout",
        &[("content-type", "application/json")],
        hook.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let mut named = false;
    for _ in 0..50 {
        named = first
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|l| {
                let f = &l["fields"];
                f["message"] == "request"
                    && f["route"] == "/v1/compat/flagger/{policy}/{hook}"
                    && f["token"] == id.as_str()
            });
        if named {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(named, "{}", first.log());
    assert!(!first.log().contains(ALICE));
    drop(first);
    // The store keeps the secret: the same id after a restart.
    let again = start(store.to_str().unwrap());
    assert_eq!(token_id(&again), id);
    drop(again);
    // Another store, another secret, another id.
    let other = start(dir.path().join("other.db").to_str().unwrap());
    assert_ne!(token_id(&other), id);
}

#[test]
fn sighup_and_admin_reload_read_the_token_file_again() {
    const CAROL: &str = "carol-token-0123456789ab";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, format!("{ALICE}\n{ADMIN} admin\n")).unwrap();
    let server = Server::start(&["--tokens-file", file.to_str().unwrap()]);
    let status = |token: &str| {
        let auth = format!("Bearer {token}");
        server
            .request(
                "GET",
                "/v1/policies",
                &[("authorization", auth.as_str())],
                b"",
            )
            .status
    };
    let wait_for = |token: &str, want: u16| {
        for _ in 0..200 {
            if status(token) == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("`{token}` never got {want}: {}", server.log());
    };
    assert_eq!(status(CAROL), 401);
    std::fs::write(&file, format!("{ALICE}\n{ADMIN} admin\n{CAROL} read\n")).unwrap();
    server.signal("HUP");
    wait_for(CAROL, 200);
    // A broken file keeps the tokens serving, and says why.
    std::fs::write(&file, format!("{ADMIN} admin\n{CAROL} raed\n")).unwrap();
    server.signal("HUP");
    let started = Instant::now();
    while !server.log().contains("unknown scope `raed`")
        && started.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = server.log();
    assert!(
        log.contains("reload failed") && log.contains("line 2: unknown scope `raed`"),
        "{log}"
    );
    assert_eq!(
        (status(ALICE), status(CAROL)),
        (200, 200),
        "the old tokens keep serving"
    );
    let admin = format!("Bearer {ADMIN}");
    let r = server.request(
        "POST",
        "/v1/admin/reload",
        &[("authorization", admin.as_str())],
        b"",
    );
    assert_eq!(r.status, 422, "{}", r.text());
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("line 2: unknown scope `raed`")
            && message.contains("previous tokens and policies keep serving"),
        "{message}"
    );
    // Fixed: the admin reload swaps the new set in, and a removed token
    // stops working.
    std::fs::write(&file, format!("{ADMIN} admin\n{CAROL} read\n")).unwrap();
    let r = server.request(
        "POST",
        "/v1/admin/reload",
        &[("authorization", admin.as_str())],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!((status(ALICE), status(CAROL)), (401, 200));
}

#[tokio::test]
async fn new_refusals_conform_to_the_openapi_document() {
    let dir = tempfile::tempdir().unwrap();
    let inside = snapshot_dir(dir.path());
    let s = router(
        dir.path(),
        ServerConfig {
            snapshot_dir: Some(inside),
            replay_rate: Some("1/h".parse().unwrap()),
            ..ServerConfig::default()
        },
        &format!("{ALICE}\n{BOB} evaluate:canary@cart read\n"),
    );
    let doc = send(&s, "GET", "/openapi.json", Some(ALICE), &[], b"")
        .await
        .json();
    let body = request("canary", "initial-canary", "canary-steady.json").to_string();
    let dup = r#"{"policy":"canary","policy":"canary"}"#;
    let hook = json!({"name": "p", "namespace": "n", "phase": "Progressing",
        "metadata": {"stage": "initial-canary", "snapshot_file": "ok.json", "snapshot": "{}"}})
    .to_string();
    // Over what a request without a token may send.
    let big_body = vec![b' '; tollgate::server::UNAUTHENTICATED_BODY_LIMIT + 1];
    let big_len = big_body.len().to_string();
    type Check<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        Vec<(&'a str, &'a str)>,
        Vec<u8>,
    );
    let checks: Vec<Check> = vec![
        (
            "/v1/evaluate",
            "post",
            "/v1/evaluate",
            Some(ALICE),
            vec![("content-type", "text/plain")],
            body.clone().into_bytes(),
        ),
        (
            "/v1/evaluate",
            "post",
            "/v1/evaluate",
            Some(ALICE),
            vec![JSON],
            dup.as_bytes().to_vec(),
        ),
        (
            "/v1/evaluate",
            "post",
            "/v1/evaluate",
            Some(BOB),
            vec![JSON],
            body.clone().into_bytes(),
        ),
        (
            "/v1/compat/flagger/{policy}/{hook}",
            "post",
            "/v1/compat/flagger/canary/rollout",
            Some(ALICE),
            vec![],
            hook.clone().into_bytes(),
        ),
        (
            "/v1/compat/flagger/{policy}/{hook}",
            "post",
            "/v1/compat/flagger/canary/rollout",
            Some(ALICE),
            vec![JSON],
            hook.clone().into_bytes(),
        ),
        (
            "/v1/compat/flagger/{policy}",
            "post",
            "/v1/compat/flagger/canary",
            Some(ALICE),
            vec![("content-type", "application/xml")],
            hook.into_bytes(),
        ),
        (
            "/v1/compat/argo/{policy}",
            "get",
            "/v1/compat/argo/canary?stage=a&stage=b",
            Some(ALICE),
            vec![],
            Vec::new(),
        ),
        (
            "/v1/compat/argo/{policy}",
            "get",
            "/v1/compat/argo/canary?snapshot_file=secret-link.json",
            Some(ALICE),
            vec![],
            Vec::new(),
        ),
        (
            "/v1/compat/argo/{policy}",
            "post",
            "/v1/compat/argo/canary",
            Some(ALICE),
            vec![],
            b"{}".to_vec(),
        ),
        (
            "/v1/compat/argo/{policy}",
            "put",
            "/v1/compat/argo/canary",
            Some(ALICE),
            vec![JSON],
            br#"{"stage":"a","stage":"b"}"#.to_vec(),
        ),
        (
            "/v1/decisions",
            "get",
            "/v1/decisions?limit=1&limit=2",
            Some(ALICE),
            vec![],
            Vec::new(),
        ),
        (
            "/v1/reports/dora",
            "get",
            "/v1/reports/dora?service=a&service=b",
            Some(ALICE),
            vec![],
            Vec::new(),
        ),
        (
            "/v1/approvals",
            "get",
            "/v1/approvals?service=a&version=1&version=2",
            Some(BOB),
            vec![],
            Vec::new(),
        ),
        (
            "/v1/evaluate",
            "post",
            "/v1/evaluate",
            Some(ALICE),
            vec![JSON],
            json!({"policy": "canary", "stage": "initial-canary", "service": "payments",
                   "snapshot": snapshot("canary-steady.json")})
            .to_string()
            .into_bytes(),
        ),
        (
            "/v1/compat/flagger/{policy}/{hook}",
            "post",
            "/v1/compat/flagger/canary/rollout",
            None,
            vec![JSON, ("content-length", big_len.as_str())],
            big_body.clone(),
        ),
    ];
    let mut statuses = Vec::new();
    for (route, method, uri, token, headers, body) in checks {
        let r = send(&s, &method.to_uppercase(), uri, token, &headers, &body).await;
        assert_conforms(&doc, route, method, r.status, &r.body);
        statuses.push(r.status.as_u16());
    }
    assert_eq!(
        statuses,
        [
            415, 400, 403, 415, 422, 415, 400, 422, 415, 400, 400, 400, 400, 422, 413
        ],
        "the refusals this test means to check"
    );
    // 429s: a replay past the replay rate, an evaluation past the evaluate
    // rate.
    let made = evaluate(
        &s,
        ALICE,
        None,
        &request("canary", "initial-canary", "canary-steady.json"),
    )
    .await;
    let id = made.json()["decision_id"].as_str().unwrap().to_string();
    for expected in [200, 429] {
        let r = send(
            &s,
            "POST",
            &format!("/v1/decisions/{id}/replay"),
            Some(ALICE),
            &[],
            b"",
        )
        .await;
        assert_eq!(r.status.as_u16(), expected, "{}", r.text());
        assert_conforms(&doc, "/v1/decisions/{id}/replay", "post", r.status, &r.body);
    }
    let limited = router(
        &dir.path().join("limited"),
        ServerConfig {
            evaluate_rate: Some("1/h".parse().unwrap()),
            approve_rate: Some("1/h".parse().unwrap()),
            ..ServerConfig::default()
        },
        &format!("{ALICE}\n{BOB} approve as:bob\n"),
    );
    let first = send(
        &limited,
        "POST",
        "/v1/evaluate",
        Some(ALICE),
        &[JSON],
        body.as_bytes(),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let argo =
        json!({"stage": "initial-canary", "snapshot": snapshot("canary-steady.json")}).to_string();
    for (route, uri, body) in [
        ("/v1/evaluate", "/v1/evaluate", body.as_bytes()),
        (
            "/v1/compat/argo/{policy}",
            "/v1/compat/argo/canary",
            argo.as_bytes(),
        ),
    ] {
        let r = send(&limited, "POST", uri, Some(ALICE), &[JSON], body).await;
        assert_eq!(
            r.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{uri}: {}",
            r.text()
        );
        assert!(r.headers.contains_key("retry-after"));
        assert_conforms(&doc, route, "post", r.status, &r.body);
    }
    // And an approval past the approve rate.
    let approval = json!({"service": "checkout", "version": "2.1.0"}).to_string();
    for expected in [201, 429] {
        let r = send(
            &limited,
            "POST",
            "/v1/approvals",
            Some(BOB),
            &[JSON],
            approval.as_bytes(),
        )
        .await;
        assert_eq!(r.status.as_u16(), expected, "{}", r.text());
        assert_conforms(&doc, "/v1/approvals", "post", r.status, &r.body);
    }
}

#[test]
fn postgres_keeps_keys_from_before_scoping_and_makes_one_token_secret() {
    let Some(url) = crate::decision_log::postgres() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The idempotency table as schema version 2 left it, with a key.
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let task = tokio::spawn(conn);
        client
            .batch_execute(
                "CREATE TABLE tollgate_schema (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL);
                 INSERT INTO tollgate_schema VALUES (1, 0), (2, 0);
                 CREATE TABLE idempotency (key TEXT PRIMARY KEY, body TEXT NOT NULL, status INTEGER NOT NULL,
                     response BYTEA NOT NULL, decision_id TEXT NOT NULL, recorded_at BIGINT NOT NULL);
                 INSERT INTO idempotency VALUES ('deploy-42', 'sha256:00', 200, '\\x7b7d', 'd1', 1000);",
            )
            .await
            .unwrap();
        use tollgate::store::{IdempotencyKey, Store as _};
        let a = tollgate::store::postgres::PgStore::connect(&url).await.unwrap();
        let b = tollgate::store::postgres::PgStore::connect(&url).await.unwrap();
        assert_eq!(a.token_key(), b.token_key(), "replicas share one secret");
        let scoped = IdempotencyKey {
            token_id: "tok_0123456789abcdef".into(),
            policy: "canary".into(),
            key: "deploy-42".into(),
        };
        assert_eq!(a.answer(&scoped).await.unwrap(), None);
        let row = client
            .query_one(
                "SELECT token_id, policy, decision_id FROM idempotency WHERE key = 'deploy-42'",
                &[],
            )
            .await
            .unwrap();
        let (token, policy, id): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        assert_eq!((token.as_str(), policy.as_str(), id.as_str()), ("", "", "d1"));
        drop(client);
        let _ = task.await;
    });
}
