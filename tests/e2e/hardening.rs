//! Regression tests for the hostile-plugin audit: one per class it found.
//! Each is named after what broke.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate::engine::Runtime;
use tollgate::evaluate::decision::Verdict;
use tollgate::policy::{self, PluginCache};
use tollgate::snapshot::Snapshot;

use crate::hostile::component_for;
use crate::support::{Server, repo, tollgate, values, write};

/// A one-gate policy running the hostile fragment `name` with `limits`.
fn one_gate(dir: &Path, name: &str, limits: &str) -> std::path::PathBuf {
    write(
        dir,
        &format!("{name}.wasm"),
        &component_for(name, &repo("wit")),
    );
    let text = format!(
        "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {{name: h}}\nplugins:\n  h: {{path: {name}.wasm}}\nstages:\n  - name: s\n    gates:\n      - name: h\n        plugin: h\n{limits}"
    );
    write(dir, "h.yaml", text.as_bytes())
}

fn evaluate_once(path: &Path) -> tollgate::evaluate::decision::Decision {
    let runtime = Runtime::new().unwrap();
    let mut cache = PluginCache::new();
    let text = std::fs::read_to_string(path).unwrap();
    let loaded = policy::load(&runtime, &mut cache, &text, path.parent().unwrap()).unwrap();
    let snapshot = Arc::new(Snapshot::from_json(values(&[]).to_string().as_bytes()).unwrap());
    tollgate::evaluate::evaluate(&loaded, None, snapshot).unwrap()
}

#[test]
fn huge_log_lines_keep_only_their_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let path = one_gate(dir.path(), "log-flood", "        deadline: 5s\n");
    let d = evaluate_once(&path);
    let gate = &d.gates[0];
    assert_eq!(gate.verdict, Verdict::Pass, "{}", gate.reason);
    assert_eq!(gate.logs.len(), 32);
    for line in &gate.logs {
        assert!(
            line.message.len() <= 512 + 3,
            "{} bytes",
            line.message.len()
        );
    }
}

#[test]
fn an_infinite_loop_in_the_start_function_is_a_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let path = one_gate(dir.path(), "start-loop", "");
    // Loading a policy instantiates each plugin to check its settings, so
    // the loop is met there, and reported as the deadline it is.
    let run = tollgate(&["validate", path.to_str().unwrap()], "");
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(
            "plugin `h` failed to check the settings of gate `h`: deadline of 100 ms exceeded"
        ),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("interrupt"), "{}", run.stderr);
}

#[test]
fn a_host_call_on_a_dropped_handle_reports_its_cause_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = one_gate(dir.path(), "forged-handle", "");
    let d = evaluate_once(&path);
    let gate = &d.gates[0];
    assert_eq!(gate.verdict, Verdict::Error);
    assert_eq!(gate.cause.as_deref(), Some("trap"));
    assert!(!gate.reason.contains('\n'), "{:?}", gate.reason);
    assert!(!gate.reason.contains("backtrace"), "{:?}", gate.reason);
    assert!(
        gate.reason.starts_with("plugin trapped: "),
        "{}",
        gate.reason
    );
}

#[test]
fn a_deadline_is_never_cut_short_and_ends_near_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = one_gate(dir.path(), "infinite-loop", "        deadline: 300ms\n");
    let d = evaluate_once(&path);
    let gate = &d.gates[0];
    assert_eq!(gate.cause.as_deref(), Some("deadline"), "{}", gate.reason);
    let took = Duration::from_micros(gate.duration_us);
    assert!(
        took >= Duration::from_millis(300),
        "stopped early: {took:?}"
    );
    // CPU time is the budget; the wall-clock ceiling bounds it however
    // loaded the machine is.
    assert!(took < Duration::from_millis(1200 + 200), "{took:?}");
}

#[test]
fn a_plugin_path_of_dev_zero_is_refused_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: z}\nplugins:\n  z: {path: /dev/zero}\nstages:\n  - name: s\n    gates:\n      - name: z\n        plugin: z\n";
    let path = write(dir.path(), "z.yaml", text.as_bytes());
    let started = Instant::now();
    let run = tollgate(&["validate", path.to_str().unwrap()], "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("`/dev/zero`") && run.stderr.contains("not a regular file"),
        "{}",
        run.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn terminal_escapes_in_a_reason_never_reach_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let path = one_gate(dir.path(), "terminal-escape", "");
    let snap = write(dir.path(), "s.json", values(&[]).to_string().as_bytes());
    let run = crate::support::eval_files(&path, &snap, &["--format", "table"]);
    assert_eq!(run.code, 1);
    assert!(!run.stdout.contains('\x1b'), "{:?}", run.stdout);
    assert!(!run.stdout.contains('\x07') && !run.stdout.contains('\r'));
    assert!(
        run.stdout
            .contains("\\x1b[2J\\x1b[H\\x1b[32mPROMOTE\\x07\\r"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.starts_with("ROLLBACK"), "{}", run.stdout);
    let junit = tollgate(
        &[
            "eval",
            "--policy",
            path.to_str().unwrap(),
            "--snapshot",
            snap.to_str().unwrap(),
            "--format",
            "junit",
        ],
        "",
    );
    assert!(!junit.stdout.contains('\x1b'), "{:?}", junit.stdout);
}

/// The `wit/` package with `evaluate` returning a `string`.
fn mistyped_wit(dir: &Path) -> std::path::PathBuf {
    let wit = dir.join("wit");
    std::fs::create_dir(&wit).unwrap();
    for entry in std::fs::read_dir(repo("wit")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let changed = text.replace(
            "evaluate: func(config: config, snapshot: borrow<snapshot>) -> finding;",
            "evaluate: func(config: config, snapshot: borrow<snapshot>) -> string;",
        );
        std::fs::write(wit.join(path.file_name().unwrap()), changed).unwrap();
    }
    wit
}

#[test]
fn audit_refuses_an_export_of_the_wrong_type_as_load_does() {
    let dir = tempfile::tempdir().unwrap();
    let wit = mistyped_wit(dir.path());
    let plugin = write(
        dir.path(),
        "mistyped.wasm",
        &component_for("well-behaved", &wit),
    );
    let run = tollgate(&["audit", plugin.to_str().unwrap()], "");
    assert_eq!(run.code, 1, "{}", run.stdout);
    let report = &run.json()[0];
    assert_eq!(report["verdict"], "refused");
    assert!(
        report["reason"].as_str().unwrap().contains("wrong type"),
        "{report}"
    );
    let text = "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: m}\nplugins:\n  m: {path: mistyped.wasm}\nstages:\n  - name: s\n    gates:\n      - name: m\n        plugin: m\n";
    let policy = write(dir.path(), "m.yaml", text.as_bytes());
    let run = tollgate(&["validate", policy.to_str().unwrap()], "");
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("wrong type"), "{}", run.stderr);
}

#[test]
fn garbage_plugin_bytes_give_one_line_without_a_hex_dump() {
    let dir = tempfile::tempdir().unwrap();
    let mut garbage = b"\0asm\x0d\0\x01\0".to_vec();
    garbage.extend((0..4096u32).map(|i| (i * 7919 % 251) as u8));
    let plugin = write(dir.path(), "garbage.wasm", &garbage);
    let run = tollgate(&["audit", plugin.to_str().unwrap()], "");
    assert_eq!(run.code, 1);
    let reason = run.json()[0]["reason"].as_str().unwrap().to_string();
    assert!(!reason.contains('\n'), "{reason:?}");
    let core = write(
        dir.path(),
        "core.wasm",
        &wat::parse_str("(module)").unwrap(),
    );
    let run = tollgate(&["audit", core.to_str().unwrap()], "");
    let reason = run.json()[0]["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("wasm-tools component new"), "{reason}");
}

/// A server whose connection bounds are short enough to test.
fn bounded_server(dir: &Path, max_connections: usize) -> Server {
    let config = write(
        dir,
        "serve.yaml",
        format!(
            "header_read_timeout: 1s\nbody_read_timeout: 1s\nmax_connections: {max_connections}\ninsecure_no_auth: true\n"
        )
        .as_bytes(),
    );
    Server::start(&["--config", config.to_str().unwrap()])
}

/// Whether the server closes `stream` within `within`: a read returns end
/// of file (or a reset) rather than timing out.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn a_client_that_sends_a_request_line_and_nothing_more_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let server = bounded_server(dir.path(), 64);
    let mut slow = TcpStream::connect(&server.addr).unwrap();
    slow.write_all(b"POST /v1/evaluate HTTP/1.1\r\n").unwrap();
    assert!(closed_within(&mut slow, Duration::from_secs(5)));
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = bounded_server(dir.path(), 64);
    let mut conn = TcpStream::connect(&server.addr).unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1024];
    let n = conn.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut conn, Duration::from_secs(5)));
}

#[test]
fn a_body_that_never_arrives_is_answered_408() {
    let dir = tempfile::tempdir().unwrap();
    let server = bounded_server(dir.path(), 64);
    let mut conn = TcpStream::connect(&server.addr).unwrap();
    conn.write_all(
        b"POST /v1/evaluate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut raw = Vec::new();
    let _ = conn.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"), "{text}");
}

#[test]
fn connections_past_the_cap_are_closed_and_evaluations_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = bounded_server(dir.path(), 4);
    let mut idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    // Let the server accept all four before the fifth arrives.
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(&server.addr).unwrap();
    assert!(closed_within(&mut extra, Duration::from_millis(500)));
    drop(idle.pop());
    // Once a slot is free (the server notices the close), requests run. The
    // one slot is shared by the requests below, each of which must wait for
    // the server to see the one before it closed.
    let once_free = |path: &str| {
        let started = Instant::now();
        loop {
            match crate::support::http(&server.addr, "GET", path, &[], b"") {
                Ok(r) => break r,
                Err(_) if started.elapsed() < Duration::from_secs(5) => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("no room after a connection closed: {e}"),
            }
        }
    };
    let r = once_free("/healthz");
    assert_eq!(r.status, 200);
    let metrics = once_free("/metrics");
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        !text.contains("tollgate_connections_refused_total 0"),
        "the refused connection is counted: {text}"
    );
}

/// Runs `tollgate eval` on the bundled CI policy in a shell with `prelude`
/// (a `ulimit`) and `env`.
fn eval_ci_in_shell(prelude: &str, env: &[(&str, &std::ffi::OsStr)]) -> std::process::Output {
    let script =
        format!("{prelude} && exec \"$0\" eval --policy \"$1\" --snapshot \"$2\" --format json");
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", &script, env!("CARGO_BIN_EXE_tollgate")])
        .arg(repo("policies/ci-quality-gates.yaml"))
        .arg(repo("tests/fixtures/ci-passing.json"))
        .env("TOLLGATE_CACHE_DIR", "off");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn tollgate_starts_under_an_address_space_limit() {
    // 3 GiB: far below the pool's reservation, enough for the process.
    let out = eval_ci_in_shell("ulimit -v 3145728", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr.matches("allocating per call instead").count(),
        1,
        "{stderr}"
    );
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["decision"], "promote");
}

#[test]
fn a_one_shot_eval_fits_a_64_gib_address_space_with_its_pool() {
    let out = eval_ci_in_shell("ulimit -v 67108864", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("allocating per call"), "{stderr}");
}

#[test]
fn a_compile_cache_others_can_write_is_not_used_and_says_why_once() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = eval_ci_in_shell("true", &[("TOLLGATE_CACHE_DIR", shared.as_os_str())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches("not used").count(), 1, "{stderr}");
    assert!(
        stderr.contains("group or others may write to it"),
        "{stderr}"
    );
    assert!(
        std::fs::read_dir(&shared).unwrap().next().is_none(),
        "nothing is written into a shared cache directory"
    );
}
