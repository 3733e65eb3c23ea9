//! Hostile source plugins, through `tollgate eval --sources`: a plugin that
//! names another host, one that sets `Authorization` to learn or replace
//! the operator's credential, a 1 GiB answer, paging that never ends, and
//! a server that never answers. Each is a one-line error naming the source;
//! nothing is sent anywhere but the configured base URL, and the
//! credential never appears in what the plugin or the caller can read.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::hostile::source_component;
use crate::support::{Run, tollgate, write};

const TOKEN: &str = "sekret-operator-token-3141";

/// A loopback server that records every request line with its headers and
/// answers by path: `/huge` streams 1 GiB, `/hang` never answers, the rest
/// get `{}`.
struct Upstream {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/base/", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                log.lock().unwrap().push(head.clone());
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                if path.ends_with("/hang") {
                    std::thread::sleep(Duration::from_secs(30));
                } else if path.ends_with("/huge") {
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n",
                    );
                    let chunk = vec![b' '; 1 << 20];
                    for _ in 0..1024 {
                        if stream.write_all(&chunk).is_err() {
                            break;
                        }
                    }
                } else {
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                    );
                }
            });
        }
    });
    Upstream { url, seen }
}

/// Evaluates a one-metric policy whose metric comes from the hostile
/// source `name`, configured at `url` with the operator's bearer token.
fn eval_with(dir: &Path, name: &str, url: &str, extra_source: &str) -> Run {
    eval_as(dir, name, url, extra_source, "2.1.0")
}

/// [`eval_with`] for the release `version` a caller names.
fn eval_as(dir: &Path, name: &str, url: &str, extra_source: &str, version: &str) -> Run {
    write(dir, &format!("{name}.wasm"), &source_component(name));
    write(dir, "token.txt", TOKEN.as_bytes());
    let sources = write(
        dir,
        "sources.yaml",
        format!(
            "sources:\n  hostile:\n    url: {url}\n    plugin: {name}.wasm\n    bearer_token_file: token.txt\n    retries: 0\n{extra_source}"
        )
        .as_bytes(),
    );
    let policy = write(
        dir,
        "policy.yaml",
        b"apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: hostile-source}\nmetrics:\n  m: {source: hostile, query: 'errors{version=\"${version}\"}', window: 2m, step: 15s}\nstages:\n  - name: s\n    gates:\n      - {name: g, plugin: threshold, with: {metric: m, op: '<', threshold: 1}}\n",
    );
    tollgate(
        &[
            "eval",
            "--policy",
            policy.to_str().unwrap(),
            "--service",
            "checkout",
            "--version",
            version,
            "--sources",
            sources.to_str().unwrap(),
        ],
        "",
    )
}

fn assert_refused(run: &Run, needle: &str) {
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    let first = run
        .stderr
        .lines()
        .find(|l| l.contains("error"))
        .unwrap_or("");
    assert!(
        run.stderr.contains("cannot query source `hostile`") && run.stderr.contains(needle),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(TOKEN) && !run.stdout.contains(TOKEN),
        "{first}"
    );
}

#[test]
fn a_source_cannot_send_to_another_host() {
    let up = upstream();
    let dir = tempfile::tempdir().unwrap();
    let run = eval_with(dir.path(), "source-other-host", &up.url, "");
    assert_refused(&run, "is not a path starting with a single `/`");
    assert!(up.seen.lock().unwrap().is_empty(), "a request was sent");
}

#[test]
fn a_source_cannot_set_or_learn_the_credential() {
    let up = upstream();
    let dir = tempfile::tempdir().unwrap();
    let run = eval_with(dir.path(), "source-authorization", &up.url, "");
    assert_refused(&run, "header `Authorization`, which only the host sets");
    assert!(up.seen.lock().unwrap().is_empty(), "a request was sent");
}

#[test]
fn a_one_gibibyte_answer_is_refused_at_the_bound() {
    let up = upstream();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let run = eval_with(dir.path(), "source-huge", &up.url, "");
    assert_refused(&run, "exceed 32 MiB");
    assert!(started.elapsed() < Duration::from_secs(20));
    // The one request went to the base URL, with the operator's token.
    let seen = up.seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].starts_with("GET /base/huge HTTP/1.1"),
        "{}",
        seen[0]
    );
    assert!(
        seen[0]
            .to_ascii_lowercase()
            .contains(&format!("authorization: bearer {TOKEN}")),
        "{}",
        seen[0]
    );
}

#[test]
fn paging_that_never_ends_stops_at_the_round_limit() {
    let up = upstream();
    let dir = tempfile::tempdir().unwrap();
    let run = eval_with(dir.path(), "source-endless", &up.url, "");
    assert_refused(&run, "more than 16 rounds");
    assert_eq!(up.seen.lock().unwrap().len(), 16);
}

#[test]
fn a_server_that_never_answers_times_out() {
    let up = upstream();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let run = eval_with(dir.path(), "source-hang", &up.url, "    timeout: 1s\n");
    assert_refused(&run, "timed out after 1s");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_caller_cannot_widen_a_source_query() {
    let up = upstream();
    let dir = tempfile::tempdir().unwrap();
    for version in ["*", "x}+sum:other.metric{*", "1.0,demo.other"] {
        let run = eval_as(dir.path(), "source-huge", &up.url, "", version);
        assert_eq!(run.code, 2, "{version}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("`${version}` is")
                && run.stderr.contains("a source plugin's query cannot take"),
            "{}",
            run.stderr
        );
    }
    assert!(up.seen.lock().unwrap().is_empty(), "a request was sent");
}
