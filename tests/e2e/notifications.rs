//! Webhooks on decisions, against a local receiver: a rollback, a hold
//! longer than its limit (once), a promote of the last stage; Slack and
//! signed JSON bodies; retries after a failure; and the answer never waits
//! for delivery.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use crate::support::{Server, repo, write};

const TOKEN: &str = "notify-token-0123456789abcdef";
const SECRET: &str = "webhook-secret-42";

/// One request the receiver got: path, headers (lowercase names), body.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A receiver on loopback: the first request waits for `go`, then gets a
/// 500; every later one a 200.
fn receiver(go: mpsc::Receiver<()>) -> (String, Arc<Mutex<Vec<Got>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&got);
    std::thread::spawn(move || {
        let mut first = true;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split(' ').nth(1).unwrap_or_default().to_string();
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.push((k.trim().to_lowercase(), v.trim().to_string()));
                }
            }
            let length: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            if first {
                // Held until the test has its answer: an answer that
                // waited for this delivery would never come.
                let _ = go.recv_timeout(Duration::from_secs(30));
            }
            seen.lock().unwrap().push(Got {
                path,
                headers,
                body,
            });
            let status = if first {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            first = false;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (addr, got)
}

fn evaluate(server: &Server, stage: &str, fixture: &str, elapsed: &str) -> Value {
    let snapshot: Value = serde_json::from_str(
        &std::fs::read_to_string(repo(&format!("tests/fixtures/{fixture}"))).unwrap(),
    )
    .unwrap();
    let body =
        json!({"policy": "canary", "stage": stage, "elapsed": elapsed, "snapshot": snapshot});
    let auth = format!("Bearer {TOKEN}");
    let r = server.request(
        "POST",
        "/v1/evaluate",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn wait_for(got: &Arc<Mutex<Vec<Got>>>, n: usize) -> Vec<Got> {
    for _ in 0..300 {
        let now = got.lock().unwrap().clone();
        if now.len() >= n {
            return now;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "the receiver got {} request(s), not {n}",
        got.lock().unwrap().len()
    );
}

#[test]
fn decisions_notify_webhooks_signed_retried_and_never_in_the_way() {
    let dir = tempfile::tempdir().unwrap();
    let (go_tx, go_rx) = mpsc::channel();
    let (addr, got) = receiver(go_rx);
    write(dir.path(), "secret", SECRET.as_bytes());
    write(dir.path(), "tokens", format!("{TOKEN}\n").as_bytes());
    let config = write(
        dir.path(),
        "tollgate.yaml",
        format!(
            "tokens_file: tokens\npublic_url: https://tollgate.example/\nnotifications:\n  - url: http://{addr}/json\n    secret_file: secret\n    policies: [canary]\n    on: {{ hold_longer_than: 1s }}\n  - url: http://{addr}/slack\n    format: slack\n    policies: [hotfix]\n"
        )
        .as_bytes(),
    );
    let server = Server::start(&["--config", config.to_str().unwrap()]);

    // A rollback: answered while its notification is still held.
    let rollback = evaluate(&server, "expanded-canary", "canary-error-005.json", "31m");
    assert_eq!(rollback["decision"], "rollback");
    go_tx.send(()).unwrap();
    // The first delivery got a 500; the retry got through with the same body.
    let sent = wait_for(&got, 2);
    assert_eq!(sent[0].body, sent[1].body);
    let id = rollback["decision_id"].as_str().unwrap();
    let body = sent[1].json();
    assert_eq!(sent[1].path, "/json");
    assert_eq!(body["event"], "rollback");
    assert_eq!(body["decision_id"], id);
    assert_eq!(body["summary"], rollback["summary"]);
    assert_eq!(
        body["link"],
        format!("https://tollgate.example/ui/#/decision/{id}")
    );
    // Signed over `timestamp.body`.
    let timestamp = sent[1].header("x-tollgate-timestamp").unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&sent[1].body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        sent[1].header("x-tollgate-signature"),
        Some(expected.as_str())
    );

    // A hold longer than a second notifies once, however long it lasts.
    let held = evaluate(&server, "initial-canary", "canary-steady.json", "5m");
    assert_eq!(held["decision"], "hold");
    std::thread::sleep(Duration::from_millis(2100));
    evaluate(&server, "initial-canary", "canary-steady.json", "6m");
    let sent = wait_for(&got, 3);
    assert_eq!(
        sent[2].json()["event"],
        "hold_longer_than",
        "{:?}",
        sent[2].json()
    );
    assert!(sent[2].json()["held_seconds"].as_i64().unwrap() >= 1);
    std::thread::sleep(Duration::from_millis(1100));
    evaluate(&server, "initial-canary", "canary-steady.json", "7m");

    // The last stage's promote.
    let done = evaluate(&server, "full-rollout", "canary-steady.json", "31m");
    assert_eq!(done["decision"], "promote");
    let sent = wait_for(&got, 4);
    assert_eq!(sent[3].json()["event"], "final_promote");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(got.lock().unwrap().len(), 4, "the long hold notified twice");
    // The Slack hook is for another policy: it got nothing.
    assert!(sent.iter().all(|g| g.path == "/json"));
}

#[test]
fn a_slack_body_escapes_what_it_quotes() {
    let dir = tempfile::tempdir().unwrap();
    let (go_tx, go_rx) = mpsc::channel();
    go_tx.send(()).unwrap();
    let (addr, got) = receiver(go_rx);
    write(dir.path(), "tokens", format!("{TOKEN}\n").as_bytes());
    let config = write(
        dir.path(),
        "tollgate.yaml",
        format!(
            "tokens_file: tokens\nnotifications:\n  - url: http://{addr}/slack\n    format: slack\n"
        )
        .as_bytes(),
    );
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    evaluate(&server, "expanded-canary", "canary-error-005.json", "31m");
    let sent = wait_for(&got, 2);
    let text = sent[1].json()["text"].as_str().unwrap().to_string();
    assert!(
        text.starts_with("*checkout 2.1.0* rolled back by policy `canary`"),
        "{text}"
    );
    assert!(text.contains("&lt; 0.0005"), "{text}");
    assert!(sent[1].header("x-tollgate-signature").is_none());
}

#[test]
fn a_webhook_the_config_cannot_use_is_refused_at_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "tokens", format!("{TOKEN}\n").as_bytes());
    for (entry, says) in [
        (
            "  - format: json\n",
            "`notifications[0].url`: give `url` or `url_file`",
        ),
        ("  - url: ftp://x/\n", "the scheme must be http or https"),
        (
            "  - url: http://x/\n    on: { hold_longer_than: soon }\n",
            "`notifications[0].on.hold_longer_than`: `soon` is not a duration",
        ),
        (
            "  - url: http://x/\n    retries: 3\n",
            "unknown field `retries`",
        ),
    ] {
        let config = write(
            dir.path(),
            "bad.yaml",
            format!("tokens_file: tokens\nnotifications:\n{entry}").as_bytes(),
        );
        let run = crate::support::tollgate(
            &[
                "serve",
                "--config",
                config.to_str().unwrap(),
                "--addr",
                "127.0.0.1:0",
            ],
            "",
        );
        assert_eq!(run.code, 2, "{entry}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{entry}: {}", run.stderr);
    }
}
