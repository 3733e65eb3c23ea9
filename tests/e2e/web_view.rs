//! The web view at `/ui/`: in a real browser (Debian's Chromium driven by
//! playwright-core, `tests/node/ui-check.mjs`) against a real `serve` with a
//! real SQLite log, and over plain HTTP for what each token may do with it.
//! The browser test's screenshots are the ones in the docs
//! (`UPDATE_SCREENSHOTS=1` writes them to `docs/images`).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Server, repo, write};

const EVAL: &str = "ui-eval-token-0123456789";
const READ: &str = "ui-read-token-0123456789";
const APPROVE: &str = "ui-approve-token-0123456789";
const APPROVE_ONLY: &str = "ui-approve-only-0123456789";

fn tokens(dir: &Path) -> String {
    write(
        dir,
        "tokens",
        format!(
            "{EVAL}\n{READ} read\n{APPROVE} approve read as:alice group:release-managers\n{APPROVE_ONLY} approve as:bob\n"
        )
        .as_bytes(),
    )
    .display()
    .to_string()
}

fn fixture(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo(&format!("tests/fixtures/{name}"))).unwrap())
        .unwrap()
}

fn send(
    server: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: &Value,
) -> crate::support::HttpResponse {
    let auth = format!("Bearer {token}");
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    server.request(
        method,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
}

/// A canary release through its stages, ending in a rollback; returns the
/// rollback's id.
fn release(server: &Server) -> String {
    let mut last = String::new();
    for (stage, snapshot, elapsed) in [
        ("initial-canary", "canary-steady.json", "20m"),
        ("expanded-canary", "canary-steady.json", "31m"),
        ("expanded-canary", "canary-error-005.json", "31m"),
    ] {
        let body = json!({"policy": "canary", "stage": stage, "elapsed": elapsed, "snapshot": fixture(snapshot)});
        let r = send(server, EVAL, "POST", "/v1/evaluate", &body);
        assert_eq!(r.status, 200, "{}", r.text());
        last = r.json()["decision_id"].as_str().unwrap().to_string();
    }
    last
}

#[test]
fn the_web_view_works_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["--tokens-file", &tokens(dir.path())]);
    let id = release(&server);
    // `need` and `skip` report a missing tool by name (and fail under the
    // test command), so these returns are never silent.
    if !crate::support::need("node") || !crate::support::need("chromium") {
        return;
    }
    if !repo("tests/node/node_modules/playwright-core").is_dir() {
        crate::support::skip("no tests/node/node_modules: run `npm ci --prefix tests/node`");
        return;
    }
    let shots = if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        repo("docs/images")
    } else {
        repo("target/ui-screenshots")
    };
    std::fs::create_dir_all(&shots).unwrap();
    let mut live = fixture("canary-steady.json");
    live["version"] = json!("2.2.0");
    let live_body =
        json!({"policy": "canary", "stage": "initial-canary", "elapsed": "20m", "snapshot": live});
    let out = Command::new("node")
        .arg(repo("tests/node/ui-check.mjs"))
        .env("TOLLGATE_URL", format!("http://{}", server.addr))
        .env("READ_TOKEN", READ)
        .env("APPROVE_TOKEN", APPROVE)
        .env("EVAL_TOKEN", EVAL)
        .env("DECISION_ID", &id)
        .env("SERVICE", "checkout")
        .env("VERSION", "2.1.0")
        .env("LIVE_BODY", live_body.to_string())
        .env("SCREENSHOTS", &shots)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok the CSP refuses an inline script"),
        "{stdout}"
    );
    // The token never reached the server's log either.
    let log = server.log();
    for t in [READ, APPROVE, EVAL] {
        assert!(!log.contains(t), "a token is in the log");
    }
}

#[test]
fn the_view_is_served_offline_with_a_strict_policy_and_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["--tokens-file", &tokens(dir.path())]);
    let index = server.request("GET", "/ui/", &[], b"");
    assert_eq!(index.status, 200);
    let csp = index.header("content-security-policy").unwrap().to_string();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(index.header("x-frame-options"), Some("DENY"));
    let html = index.text();
    // No inline script or style, nothing from another origin.
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "{html}"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    for asset in ["app.js", "app.css", "icon.svg"] {
        let r = server.request("GET", &format!("/ui/{asset}"), &[], b"");
        assert_eq!(r.status, 200, "{asset}");
        assert!(
            !r.text().contains("https://"),
            "{asset} loads from elsewhere"
        );
    }
    assert_eq!(
        server.request("GET", "/ui/..%2Fapp.js", &[], b"").status,
        404
    );
    assert_eq!(
        server.request("GET", "/ui/secret.txt", &[], b"").status,
        404
    );
    assert_eq!(server.request("GET", "/ui", &[], b"").status, 308);
}

#[test]
fn a_read_token_sees_everything_the_view_shows_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["--tokens-file", &tokens(dir.path())]);
    let id = release(&server);
    for path in [
        "/v1/decisions?limit=1000".to_string(),
        format!("/v1/decisions/{id}"),
        format!("/v1/decisions/{id}/explanation"),
        format!("/v1/decisions/{id}/charts?format=svg"),
        format!("/v1/decisions/{id}/policy"),
        "/v1/policies".into(),
        "/v1/policies/canary".into(),
        "/v1/approvals?service=checkout&version=2.1.0".into(),
        "/v1/reports/dora?service=checkout&window=7d".into(),
    ] {
        let r = send(&server, READ, "GET", &path, &Value::Null);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    let svg = send(
        &server,
        READ,
        "GET",
        &format!("/v1/decisions/{id}/charts?format=svg"),
        &Value::Null,
    )
    .json();
    assert!(
        svg["charts"][0]["svg"]
            .as_str()
            .unwrap()
            .starts_with("<svg ")
    );
    // Replay re-runs and compares; it writes nothing.
    let r = send(
        &server,
        READ,
        "POST",
        &format!("/v1/decisions/{id}/replay"),
        &Value::Null,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let before = send(
        &server,
        READ,
        "GET",
        "/v1/decisions?limit=1000",
        &Value::Null,
    )
    .json();
    for (method, path, body) in [
        (
            "POST",
            "/v1/evaluate",
            json!({"policy": "canary", "snapshot": fixture("canary-steady.json")}),
        ),
        (
            "POST",
            "/v1/approvals",
            json!({"service": "checkout", "version": "2.1.0"}),
        ),
        ("POST", "/v1/admin/reload", Value::Null),
    ] {
        let r = send(&server, READ, method, path, &body);
        assert_eq!(r.status, 403, "{path}: {}", r.text());
    }
    let after = send(
        &server,
        READ,
        "GET",
        "/v1/decisions?limit=1000",
        &Value::Null,
    )
    .json();
    assert_eq!(before, after);
    let approvals = send(
        &server,
        READ,
        "GET",
        "/v1/approvals?service=checkout&version=2.1.0",
        &Value::Null,
    )
    .json();
    assert_eq!(approvals["approvals"], json!([]));
}

#[test]
fn an_approve_token_approves_and_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["--tokens-file", &tokens(dir.path())]);
    let id = release(&server);
    let r = send(
        &server,
        APPROVE_ONLY,
        "POST",
        "/v1/approvals",
        &json!({"service": "checkout", "version": "2.1.0", "comment": "ok"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["approver"], "bob");
    for (method, path) in [
        ("GET", "/v1/decisions".to_string()),
        ("GET", format!("/v1/decisions/{id}/explanation")),
        ("GET", format!("/v1/decisions/{id}/charts")),
        ("GET", "/v1/events".into()),
        ("POST", format!("/v1/decisions/{id}/replay")),
        ("POST", "/v1/evaluate".into()),
        ("POST", "/v1/admin/reload".into()),
    ] {
        let body = if path == "/v1/evaluate" {
            json!({"policy": "canary", "snapshot": fixture("canary-steady.json")})
        } else {
            Value::Null
        };
        let r = send(&server, APPROVE_ONLY, method, &path, &body);
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
    }
}

/// Opens `GET /v1/events` and returns the status line and the open stream.
fn listen(addr: &str, token: &str) -> (String, BufReader<std::net::TcpStream>) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET /v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    (status, reader)
}

#[test]
fn new_decisions_stream_to_a_bounded_number_of_listeners() {
    let dir = tempfile::tempdir().unwrap();
    // Seventeen readers besides the usual tokens.
    let readers: Vec<String> = (0..17)
        .map(|i| format!("ui-reader-{i:02}-0123456789"))
        .collect();
    let mut file = std::fs::read_to_string(tokens(dir.path())).unwrap();
    for r in &readers {
        file.push_str(&format!("{r} read\n"));
    }
    let tokens = write(dir.path(), "tokens", file.as_bytes());
    let server = Server::start(&["--tokens-file", tokens.to_str().unwrap()]);
    let (status, mut first) = listen(&server.addr, READ);
    assert!(status.contains(" 200 "), "{status}");
    // One token holds at most four streams.
    let mut open = vec![];
    for _ in 1..4 {
        let (status, reader) = listen(&server.addr, READ);
        assert!(status.contains(" 200 "), "{status}");
        open.push(reader);
    }
    let (status, _) = listen(&server.addr, READ);
    assert!(
        status.contains(" 503 "),
        "a fifth stream for one token: {status}"
    );
    // The server holds at most 64 in all.
    for reader in readers.iter().take(15) {
        for _ in 0..4 {
            let (status, stream) = listen(&server.addr, reader);
            assert!(status.contains(" 200 "), "{status}");
            open.push(stream);
        }
    }
    let (status, _) = listen(&server.addr, &readers[16]);
    assert!(status.contains(" 503 "), "the 65th listener: {status}");
    drop(open);
    let id = release(&server);
    // The first listener sees the three decisions, the last being `id`.
    let mut seen = Vec::new();
    let mut line = String::new();
    while seen.len() < 3 {
        line.clear();
        assert!(first.read_line(&mut line).unwrap() > 0, "the stream ended");
        if let Some(data) = line.trim_end().strip_prefix("data: ")
            && let Ok(v) = serde_json::from_str::<Value>(data)
        {
            seen.push(v);
        }
    }
    assert_eq!(seen[2]["decision_id"], id.as_str());
    assert_eq!(seen[2]["decision"], "rollback");
    assert_eq!(seen[2]["service"], "checkout");
    // A freed stream is a token's to open again.
    let (status, _) = listen(&server.addr, &readers[16]);
    assert!(status.contains(" 200 "), "{status}");
}
