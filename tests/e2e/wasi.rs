//! WASI, linked and inert: a Python gate built with the real componentize-py
//! probes its sandbox, and every escape fails inside the plugin.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::support::{repo, write};

/// The probe gate (`tests/fixtures/wasi-probe/app.py`) as a component, built
/// once per test run; `None` without componentize-py, reported as a skip of
/// the calling test.
fn probe() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    let built = BUILT
        .get_or_init(|| {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wasi-probe");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(repo("tests/fixtures/wasi-probe/app.py"), dir.join("app.py")).unwrap();
            let out = Command::new("componentize-py")
                .arg("-d")
                .arg(repo("wit"))
                .args(["-w", "gate", "componentize", "app", "-o", "probe.wasm"])
                .current_dir(&dir)
                .output();
            match out {
                Ok(o) if o.status.success() => Some(dir.join("probe.wasm")),
                Ok(o) => panic!(
                    "componentize-py failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(_) => None,
            }
        })
        .as_deref();
    if built.is_none() {
        crate::support::skip("no `componentize-py`");
    }
    built
}

const TAKEN_AT: i64 = 1_764_237_600;

/// Evaluates one gate per probe over a snapshot at `taken_at`, decided as
/// at that time, with the `reports` directory granted as `/reports` to
/// every gate.
fn run_probes(dir: &Path, probes: &[&str], taken_at: i64) -> Value {
    let plugin = probe().unwrap();
    let gates: String = probes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "      - name: p{i}\n        plugin: probe\n        memory: 256MiB\n        deadline: 5s\n        with: {{probe: {}}}\n        grants: {{files: [{{host: reports, guest: /reports}}]}}\n",
                serde_json::to_string(p).unwrap()
            )
        })
        .collect();
    let policy = write(
        dir,
        "probe.yaml",
        format!(
            "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {{name: probe}}\nplugins:\n  probe: {{path: {}}}\nstages:\n  - name: s\n    gates:\n{gates}",
            plugin.display()
        )
        .as_bytes(),
    );
    let snapshot = json!({"service": "s", "version": "1", "taken_at": taken_at, "metrics": []});
    let snapshot = write(dir, "snapshot.json", snapshot.to_string().as_bytes());
    // Decided as at `taken_at` (a what-if), so the pinned clocks read a
    // known time: WASI's clocks show the decision time.
    let at = taken_at.to_string();
    let run = crate::support::eval_files(&policy, &snapshot, &["--format", "json", "--at", &at]);
    assert_ne!(run.code, 2, "{}", run.stderr);
    run.json()
}

fn gate(d: &Value, i: usize) -> (String, String) {
    let g = &d["gates"][i];
    let text = |k: &str| {
        g[k].as_str()
            .unwrap_or_else(|| panic!("gate {i} has no `{k}`: {d}"))
            .to_string()
    };
    (text("verdict"), text("reason"))
}

/// A directory to grant: a report, and a symlink pointing outside it.
fn reports(dir: &Path) -> PathBuf {
    let reports = dir.join("reports");
    std::fs::create_dir_all(&reports).unwrap();
    std::fs::write(reports.join("junit.xml"), "<testsuite tests=\"1\"/>").unwrap();
    std::fs::write(dir.join("secret.txt"), "outside the grant").unwrap();
    let _ = std::os::unix::fs::symlink(dir.join("secret.txt"), reports.join("escape"));
    reports
}

#[test]
fn a_python_gate_loads_and_audit_lists_its_wasi_imports() {
    let Some(plugin) = probe() else {
        return; // `probe` reported the skip
    };
    let run = crate::support::tollgate(&["audit", plugin.to_str().unwrap()], "");
    assert_eq!(run.code, 0, "{}", run.stdout);
    let report = &run.json()[0];
    assert_eq!(report["wasi"], true);
    let access = |iface: &str| {
        report["wasi_imports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["interface"].as_str().unwrap().starts_with(iface))
            .map(|w| w["access"].as_str().unwrap().to_string())
    };
    assert_eq!(access("wasi:sockets/tcp@").as_deref(), Some("denied"));
    assert!(access("wasi:cli/stdout@").unwrap().contains("captured"));
    assert!(
        access("wasi:clocks/wall-clock@")
            .unwrap()
            .contains("pinned")
    );
    // A first-party plugin still imports nothing but tollgate:plugin.
    let run = crate::support::tollgate(&["audit", "threshold"], "");
    assert_eq!(run.json()[0]["wasi"], false);
    assert_eq!(run.json()[0]["wasi_imports"], json!([]));
}

#[test]
fn wasi_is_inert_clocks_are_pinned_and_random_is_replayable() {
    if probe().is_none() {
        return; // `probe` reported the skip
    }
    let dir = tempfile::tempdir().unwrap();
    reports(dir.path());
    let probes = [
        "time", "random", "sleep", "env", "stdin", "print", "net", "dns", "uncaught",
    ];
    let d = run_probes(dir.path(), &probes, TAKEN_AT);
    assert_eq!(
        gate(&d, 0),
        (
            "pass".into(),
            format!("{TAKEN_AT} {}", TAKEN_AT * 1_000_000_000)
        )
    );
    let (verdict, random) = gate(&d, 1);
    assert_eq!(verdict, "pass");
    // Same snapshot, same numbers; another snapshot, others.
    let again = run_probes(dir.path(), &probes[1..2], TAKEN_AT);
    assert_eq!(gate(&again, 0).1, random);
    let other = run_probes(dir.path(), &probes[1..2], TAKEN_AT + 60);
    assert_ne!(gate(&other, 0).1, random);
    // An hour's sleep is over at once: time does not pass in a call.
    assert_eq!(gate(&d, 2), ("pass".into(), "slept".into()));
    assert!(d["gates"][2]["duration_us"].as_u64().unwrap() < 2_000_000);
    assert_eq!(gate(&d, 3), ("pass".into(), "env={}".into()));
    assert_eq!(gate(&d, 4), ("pass".into(), "stdin=''".into()));
    assert_eq!(gate(&d, 5), ("pass".into(), "printed".into()));
    let logs = &d["gates"][5]["logs"];
    assert!(
        logs.as_array()
            .unwrap()
            .iter()
            .any(|l| l["level"] == "stdout" && l["message"] == "hello from python"),
        "{logs}"
    );
    assert!(
        logs.as_array()
            .unwrap()
            .iter()
            .any(|l| l["level"] == "stderr" && l["message"] == "oops"),
        "{logs}"
    );
    assert_eq!(
        gate(&d, 6).0,
        "fail",
        "a socket connects: {:?}",
        gate(&d, 6)
    );
    assert_eq!(gate(&d, 7).0, "fail", "a name resolves: {:?}", gate(&d, 7));
    // An uncaught exception is an error whose cause is the exception.
    let (verdict, reason) = gate(&d, 8);
    assert_eq!(verdict, "error");
    assert!(
        reason.contains("ValueError: no coverage data in this format"),
        "{reason}"
    );
}

#[test]
fn a_granted_directory_is_readable_and_nothing_else_is() {
    if probe().is_none() {
        return; // `probe` reported the skip
    }
    let dir = tempfile::tempdir().unwrap();
    let reports = reports(dir.path());
    let secret = dir.path().join("secret.txt");
    let probes = [
        "read:/reports/junit.xml".to_string(),
        "list:/reports".to_string(),
        "read:/reports/../secret.txt".to_string(),
        format!("read:{}", secret.display()),
        "read:/reports/escape".to_string(),
        "write:/reports/new.txt".to_string(),
        "write:/reports/junit.xml".to_string(),
        "read:/etc/passwd".to_string(),
    ];
    let probes: Vec<&str> = probes.iter().map(String::as_str).collect();
    let d = run_probes(dir.path(), &probes, TAKEN_AT);
    assert_eq!(
        gate(&d, 0),
        ("pass".into(), "read:<testsuite tests=\"1\"/>".into())
    );
    assert_eq!(gate(&d, 1), ("pass".into(), "list:escape,junit.xml".into()));
    for (i, what) in [
        (2, "`..` out of the grant"),
        (3, "an absolute host path"),
        (4, "a symlink pointing outside"),
        (5, "creating a file"),
        (6, "writing a file"),
        (7, "a path outside every grant"),
    ] {
        let (verdict, reason) = gate(&d, i);
        assert_eq!(verdict, "fail", "{what} succeeded: {reason}");
        assert!(
            !reason.contains("outside the grant"),
            "{what} leaked: {reason}"
        );
    }
    assert!(!reports.join("new.txt").exists(), "a file was created");
    assert_eq!(
        std::fs::read_to_string(reports.join("junit.xml")).unwrap(),
        "<testsuite tests=\"1\"/>",
        "a file was written"
    );
}

#[test]
fn an_interface_the_host_does_not_provide_is_refused_by_name() {
    let wat = r#"(component
        (import "wasi:http/outgoing-handler@0.2.0" (instance))
    )"#;
    let dir = tempfile::tempdir().unwrap();
    let bytes = wat::parse_str(wat).unwrap();
    let path = write(dir.path(), "http.wasm", &bytes);
    let run = crate::support::tollgate(&["audit", path.to_str().unwrap()], "");
    assert_eq!(run.code, 1);
    assert!(
        run.json()[0]["reason"].as_str().unwrap().contains(
            "imports `wasi:http/outgoing-handler@0.2.0`, which this host does not provide"
        ),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn the_plugins_endpoint_shows_each_directory_a_policy_grants() {
    let dir = tempfile::tempdir().unwrap();
    reports(dir.path());
    write(
        dir.path(),
        "ci.yaml",
        b"apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: ci}\nstages:\n  - name: s\n    gates:\n      - name: coverage\n        plugin: threshold\n        grants: {files: [{host: reports, guest: /reports}]}\n        with: {metric: cov, op: '>=', threshold: 80}\n",
    );
    let s = crate::server_router::state_with(tollgate::server::ServerConfig {
        policies: Some(dir.path().to_path_buf()),
        ..Default::default()
    });
    let (status, _, body) = crate::server_router::call(
        &s,
        "GET",
        "/v1/plugins",
        Some(crate::server_router::READER),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_slice(&body).unwrap();
    let threshold = body["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["plugin"] == "threshold")
        .unwrap()
        .clone();
    let granted = format!(
        "files:ci/coverage: {} -> /reports (read-only)",
        dir.path().join("reports").display()
    );
    assert_eq!(threshold["capabilities"], json!([granted]), "{threshold}");
    // A directory that does not exist is refused at load, naming it.
    write(
        dir.path(),
        "ci.yaml",
        b"apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: ci}\nstages:\n  - name: s\n    gates:\n      - name: coverage\n        plugin: threshold\n        grants: {files: [{host: nowhere, guest: /reports}]}\n        with: {metric: cov, op: '>=', threshold: 80}\n",
    );
    let run = crate::support::tollgate(
        &["validate", dir.path().join("ci.yaml").to_str().unwrap()],
        "",
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("granted to gate `coverage` does not exist or is not a directory"),
        "{}",
        run.stderr
    );
}
