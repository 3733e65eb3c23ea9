//! User plugins loaded by path, pinned by digest.

use crate::support::{eval, values, write};

fn policy_with_plugin(dir: &std::path::Path, digest: &str) -> std::path::PathBuf {
    let bytes = tollgate::policy::builtin::plugin("threshold").unwrap();
    write(dir, "my-gate.wasm", bytes);
    let text = format!(
        "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {{name: custom}}\nplugins:\n  my-gate: {{path: my-gate.wasm, digest: \"{digest}\"}}\nstages:\n  - name: s\n    gates:\n      - name: cov\n        plugin: my-gate\n        with: {{metric: cov, op: '>=', threshold: 80}}\n"
    );
    write(dir, "custom.yaml", text.as_bytes())
}

#[test]
fn a_pinned_plugin_with_the_right_digest_loads() {
    let dir = tempfile::tempdir().unwrap();
    let digest =
        tollgate::base::digest::Digest::of(tollgate::policy::builtin::plugin("threshold").unwrap());
    let policy = policy_with_plugin(dir.path(), &digest.to_string());
    let run = eval(&policy, &values(&[("cov", 91.0)]), None);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.json()["digests"]["plugins"]["my-gate"],
        digest.to_string()
    );
}

#[test]
fn a_digest_mismatch_refuses_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = format!("sha256:{}", "0".repeat(64));
    let policy = policy_with_plugin(dir.path(), &wrong);
    let run = eval(&policy, &values(&[("cov", 91.0)]), None);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("custom.yaml:5: digest mismatch for plugin `my-gate`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(&wrong), "{}", run.stderr);
}

#[test]
fn a_missing_plugin_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_with_plugin(dir.path(), &format!("sha256:{}", "0".repeat(64)));
    std::fs::remove_file(dir.path().join("my-gate.wasm")).unwrap();
    let run = eval(&policy, &values(&[("cov", 91.0)]), None);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("cannot read plugin `my-gate`"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_file_that_is_not_a_component_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_with_plugin(dir.path(), &format!("sha256:{}", "0".repeat(64)));
    let text = std::fs::read_to_string(&policy).unwrap();
    let garbage = b"definitely not wasm";
    write(dir.path(), "my-gate.wasm", garbage);
    let digest = tollgate::base::digest::Digest::of(garbage);
    let text = text.replace(&format!("sha256:{}", "0".repeat(64)), &digest.to_string());
    std::fs::write(&policy, text).unwrap();
    let run = eval(&policy, &values(&[("cov", 91.0)]), None);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("plugin `my-gate` is not a valid component"),
        "{}",
        run.stderr
    );
}

#[test]
fn audit_reports_what_a_plugin_imports_and_refuses_what_the_host_does_not_link() {
    let run = crate::support::tollgate(&["audit", "circuit-breaker"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let p = &report[0];
    assert_eq!(p["world"], "trigger");
    assert_eq!(p["verdict"], "accepted");
    assert_eq!(p["wasi"], false);
    assert!(
        p["imports"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i.as_str().unwrap().starts_with("tollgate:plugin/"))
    );
    assert_eq!(
        p["digest"],
        tollgate::base::digest::Digest::of(
            tollgate::policy::builtin::plugin("circuit-breaker").unwrap()
        )
        .to_string()
    );

    let dir = tempfile::tempdir().unwrap();
    let wasi = write(
        dir.path(),
        "reader.wasm",
        &wat::parse_str(
            std::fs::read_to_string(crate::support::repo("tests/hostile/wasi-filesystem.wat"))
                .unwrap(),
        )
        .unwrap(),
    );
    let run = crate::support::tollgate(&["audit", wasi.to_str().unwrap()], "");
    assert_eq!(run.code, 1);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report[0]["verdict"], "refused");
    assert!(
        report[0]["reason"]
            .as_str()
            .unwrap()
            .contains("imports `wasi:filesystem/types@0.3.0`, which this host does not provide"),
        "{report}"
    );
}
