//! Writing a source: `tollgate plugin new --kind source` in Rust, Python
//! and JavaScript, each built with its language's real tool and run
//! against the small internal metrics API the tutorial describes, served
//! here (two pages per query, so paging is exercised). Then the same
//! plugin behind the server, for a request that sends no snapshot.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::plugin_kit::tollgate_in;
use crate::support::{Server, write};

/// The internal metrics API of `docs/writing-plugins.md`: `GET
/// /api/v1/series?query=…&start=…&end=…&step=…[&page=2]`, two pages of
/// one series each, five points a minute apart ending at `end`. A query
/// naming `checkout` reads 0.002, anything else 0.05. Every request line
/// and its `Authorization` header is recorded.
struct MetricsApi {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

fn metrics_api() -> MetricsApi {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
            let auth = head
                .lines()
                .find_map(|l| l.strip_prefix("authorization: "))
                .unwrap_or("-")
                .to_string();
            log.lock().unwrap().push(format!("{target} {auth}"));
            let query: Vec<(String, String)> =
                form_urlencoded::parse(target.split_once('?').map_or("", |(_, q)| q).as_bytes())
                    .into_owned()
                    .collect();
            let get = |k: &str| {
                query
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let end: i64 = get("end").parse().unwrap_or(0);
            let value = if get("query").contains("checkout") {
                0.002
            } else {
                0.05
            };
            let page = get("page");
            let points: Vec<Value> = (0..5)
                .map(|i| serde_json::json!([end - 60 * i, value]))
                .collect();
            let body = serde_json::json!({
                "series": [{"labels": {"page": if page.is_empty() { "1" } else { "2" }}, "points": points}],
                "next_page": if page.is_empty() { Value::from("2") } else { Value::Null },
            })
            .to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    MetricsApi { url, seen }
}

/// Creates and builds the template source in `lang`, pointed at `url`;
/// `None` (reported skipped) without the language's tool.
fn built(home: &Path, lang: &str, tool: &str, url: &str) -> Option<std::path::PathBuf> {
    if !crate::support::installed(tool) {
        crate::support::skip(&format!("{lang}: no `{tool}`"));
        return None;
    }
    let name = format!("metrics-{lang}");
    let run = tollgate_in(
        home,
        &["plugin", "new", &name, "--kind", "source", "--lang", lang],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("--sources"), "{}", run.stdout);
    let run = tollgate_in(home, &["plugin", "build", &name]);
    assert_eq!(run.code, 0, "{lang}: {}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("\"world\": \"source\""),
        "{}",
        run.stdout
    );
    let project = home.join(&name);
    let sources = project.join("sources.yaml");
    let text = std::fs::read_to_string(&sources).unwrap();
    write(&project, "token.txt", b"internal-token-2718\n");
    std::fs::write(
        &sources,
        text.replace("http://127.0.0.1:9100/", url)
            .replace("# bearer_token_file", "bearer_token_file"),
    )
    .unwrap();
    Some(project)
}

fn eval(project: &Path, service: &str) -> Value {
    let run = tollgate_in(
        project,
        &[
            "eval",
            "--policy",
            "policy.yaml",
            "--sources",
            "sources.yaml",
            "--service",
            service,
            "--format",
            "json",
        ],
    );
    assert!(
        run.code == 0 || run.code == 1,
        "{}{}",
        run.stdout,
        run.stderr
    );
    serde_json::from_str(&run.stdout).unwrap()
}

#[test]
fn a_source_written_in_rust_python_and_javascript_reads_the_internal_api() {
    let api = metrics_api();
    let home = tempfile::tempdir().unwrap();
    for (lang, tool) in [
        ("rust", "cargo"),
        ("python", "componentize-py"),
        ("js", "componentize-js"),
    ] {
        let Some(project) = built(home.path(), lang, tool, &api.url) else {
            continue;
        };
        api.seen.lock().unwrap().clear();
        let healthy = eval(&project, "checkout");
        assert_eq!(healthy["decision"], "promote", "{lang}: {healthy}");
        let query = &healthy["sources"]["queries"][0];
        assert_eq!(query["source"], format!("metrics-{lang}"), "{query}");
        assert_eq!(query["series"], 2, "{lang}: both pages were read: {query}");
        assert_eq!(query["points"], 10, "{query}");
        let requests = query["requests"].as_array().unwrap();
        assert_eq!(requests.len(), 2, "{query}");
        assert!(
            requests[1]["url"].as_str().unwrap().ends_with("&page=2"),
            "{query}"
        );
        // The host sent the operator's token; the plugin never had it.
        let seen = api.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(
            seen.iter()
                .all(|s| s.ends_with("Bearer internal-token-2718")),
            "{seen:?}"
        );
        assert!(!healthy.to_string().contains("internal-token-2718"));
        // `audit --sources` says where the plugin may reach and what the
        // host adds, never the token.
        let audit = tollgate_in(
            &project,
            &["audit", "--sources", "sources.yaml", "--format", "json"],
        );
        assert_eq!(audit.code, 0, "{}{}", audit.stdout, audit.stderr);
        let report: Value = serde_json::from_str(&audit.stdout).unwrap();
        assert_eq!(report[0]["world"], "source", "{report}");
        let capabilities = report[0]["capabilities"].to_string();
        assert!(
            capabilities.contains(&format!("reach: {}", api.url)),
            "{capabilities}"
        );
        assert!(
            capabilities.contains("Authorization: Bearer"),
            "{capabilities}"
        );
        assert!(!audit.stdout.contains("internal-token-2718"));
        let failing = eval(&project, "payments");
        assert_ne!(failing["decision"], "promote", "{lang}: {failing}");
        assert_eq!(failing["gates"][0]["verdict"], "fail", "{failing}");
    }
}

#[test]
fn the_server_answers_a_request_without_a_snapshot_from_a_source_plugin() {
    let api = metrics_api();
    let home = tempfile::tempdir().unwrap();
    let Some(project) = built(home.path(), "rust", "cargo", &api.url) else {
        return;
    };
    let policies = home.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::copy(
        project.join("policy.yaml"),
        policies.join("metrics-rust.yaml"),
    )
    .unwrap();
    let config = write(
        home.path(),
        "tollgate.yaml",
        format!(
            "telemetry:\n  sources:\n    metrics-rust:\n      url: {}\n      plugin: metrics-rust/metrics-rust.wasm\n      bearer_token_file: metrics-rust/token.txt\n",
            api.url
        )
        .as_bytes(),
    );
    let server = Server::start(&[
        "--config",
        config.to_str().unwrap(),
        "--policies",
        policies.to_str().unwrap(),
        "--insecure-no-auth",
    ]);
    let answer = server.request(
        "POST",
        "/v1/evaluate",
        &[("content-type", "application/json")],
        br#"{"policy": "metrics-rust", "service": "checkout", "version": "1.2.0"}"#,
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let decision = answer.json();
    assert_eq!(decision["decision"], "promote", "{decision}");
    assert_eq!(
        decision["sources"]["sources"]["metrics-rust"],
        api.url.as_str(),
        "{decision}"
    );
    assert_eq!(
        decision["sources"]["queries"][0]["requests"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// The mistakes a newcomer makes each get a message that says what to do:
/// a source never configured, a query variable left empty, a setting the
/// plugin does not take (caught by `audit --sources` before any query), a
/// typo in `--source`'s name, and a credential written inline.
#[test]
fn a_newcomers_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "policy.yaml",
        b"apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: mistakes}\nmetrics:\n  error_rate: {source: vm, query: 'errors{version=\"${version}\"}', window: 5m, step: 30s}\nstages:\n  - name: s\n    gates:\n      - {name: g, plugin: threshold, with: {metric: error_rate, op: '<', threshold: 1}}\n",
    );
    let policy = policy.to_str().unwrap();
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "--policy", policy, "--service", "checkout"];
        args.extend_from_slice(extra);
        tollgate_in(dir.path(), &args)
    };
    // No source given: nothing is queried, and stderr says which metric.
    let run = eval(&["--metric", "other=1"]);
    assert!(
        run.stderr.contains(
            "note: metric `error_rate` was not queried: its source `vm` needs --sources FILE or --source vm=URL"
        ),
        "{}",
        run.stderr
    );
    write(
        dir.path(),
        "sources.yaml",
        b"sources:\n  vm:\n    url: http://127.0.0.1:1\n    plugin: prometheus\n",
    );
    // The query uses `${version}` and none was given.
    let run = eval(&["--sources", "sources.yaml"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("the query uses `${version}`, which is empty: give the version"),
        "{}",
        run.stderr
    );
    // A typo in `--source`'s name, beside a file that configures `vm`.
    let run = eval(&[
        "--sources",
        "sources.yaml",
        "--source",
        "vn=http://127.0.0.1:1",
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("did you mean `vm`?"), "{}", run.stderr);
    // A setting the plugin does not take, and a secret written inline:
    // `audit --sources` refuses both before anything is queried.
    write(
        dir.path(),
        "sources.yaml",
        b"sources:\n  vm:\n    url: http://127.0.0.1:1\n    plugin: prometheus\n    with: { databse: x }\n  dd:\n    url: http://127.0.0.1:1\n    plugin: datadog\n    headers: { Authorization: secret }\n",
    );
    let audit = tollgate_in(
        dir.path(),
        &["audit", "--sources", "sources.yaml", "--format", "json"],
    );
    assert_eq!(audit.code, 1, "{}{}", audit.stdout, audit.stderr);
    let reports: Value = serde_json::from_str(&audit.stdout).unwrap();
    let reason = |i: usize| {
        reports[i]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let reasons = format!("{} | {}", reason(0), reason(1));
    assert!(reasons.contains("refuses its settings"), "{reasons}");
    assert!(reasons.contains("carries a secret"), "{reasons}");
}
