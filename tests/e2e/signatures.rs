//! Signed plugins, signed and checked with the real `ssh-keygen`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Server, tollgate, values, write};

/// A key pair in `dir` named `name`, or `None` (reason printed) without
/// `ssh-keygen`.
fn keygen(dir: &Path, name: &str) -> Option<PathBuf> {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(key),
        _ => {
            crate::support::skip("no `ssh-keygen`");
            None
        }
    }
}

/// Signs `file` with `key` for `namespace`, as a team would.
fn sign(key: &Path, namespace: &str, file: &Path) {
    let _ = std::fs::remove_file(tollgate::engine::signature::sig_path(file));
    let out = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", namespace, "-f"])
        .arg(key)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An `allowed_signers` line for `key`'s public half.
fn allowed(principal: &str, key: &Path) -> String {
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let mut words = public.split_whitespace();
    format!(
        "{principal} namespaces=\"tollgate-plugin\" {} {}\n",
        words.next().unwrap(),
        words.next().unwrap()
    )
}

/// A policy that requires signed plugins and uses `my-gate.wasm` (the
/// threshold component's bytes).
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let plugin = write(
        dir,
        "my-gate.wasm",
        tollgate::policy::builtin::plugin("threshold").unwrap(),
    );
    let policy = write(
        dir,
        "signed.yaml",
        b"apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: signed}\nrequire_signature: true\nallowed_signers: allowed_signers\nplugins:\n  my-gate: {path: my-gate.wasm}\nstages:\n  - name: s\n    gates:\n      - name: cov\n        plugin: my-gate\n        with: {metric: cov, op: '>=', threshold: 80}\n",
    );
    (plugin, policy)
}

fn eval(policy: &Path) -> crate::support::Run {
    crate::support::eval(policy, &values(&[("cov", 91.0)]), None)
}

#[test]
fn a_plugin_signed_by_an_allowed_key_loads_and_audit_names_the_signer() {
    let dir = tempfile::tempdir().unwrap();
    let Some(key) = keygen(dir.path(), "alice") else {
        return;
    };
    let (plugin, policy) = setup(dir.path());
    write(
        dir.path(),
        "allowed_signers",
        allowed("alice@example.com", &key).as_bytes(),
    );
    sign(&key, "tollgate-plugin", &plugin);
    let run = eval(&policy);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let audit = tollgate(
        &[
            "audit",
            plugin.to_str().unwrap(),
            "--allowed-signers",
            dir.path().join("allowed_signers").to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(audit.code, 0, "{}", audit.stdout);
    let report = &audit.json()[0];
    assert_eq!(report["signature"]["principals"][0], "alice@example.com");
    assert_eq!(report["signature"]["trusted"], true);
    assert!(
        report["signature"]["key"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    // ssh-keygen itself accepts the same signature and signers file.
    let verify = Command::new("ssh-keygen")
        .args([
            "-Y",
            "verify",
            "-n",
            "tollgate-plugin",
            "-I",
            "alice@example.com",
            "-f",
        ])
        .arg(dir.path().join("allowed_signers"))
        .arg("-s")
        .arg(tollgate::engine::signature::sig_path(&plugin))
        .stdin(std::fs::File::open(&plugin).unwrap())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[test]
fn unsigned_unknown_key_other_namespace_and_altered_bytes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let Some(alice) = keygen(dir.path(), "alice") else {
        return;
    };
    let Some(mallory) = keygen(dir.path(), "mallory") else {
        return;
    };
    let (plugin, policy) = setup(dir.path());
    write(
        dir.path(),
        "allowed_signers",
        allowed("alice@example.com", &alice).as_bytes(),
    );
    let refused = |expect: &str| {
        let run = eval(&policy);
        assert_eq!(run.code, 2, "{}", run.stdout);
        assert!(
            run.stderr.contains(expect),
            "expected `{expect}` in: {}",
            run.stderr
        );
    };
    refused("plugin `my-gate` is not signed: no `");
    sign(&mallory, "tollgate-plugin", &plugin);
    let mallory_key = {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(mallory.with_extension("pub"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    refused(&format!(
        "plugin `my-gate` is signed by key {mallory_key}, which `"
    ));
    sign(&alice, "git", &plugin);
    refused("signed for namespace `git`, not `tollgate-plugin`");
    sign(&alice, "tollgate-plugin", &plugin);
    let mut bytes = std::fs::read(&plugin).unwrap();
    bytes.push(0);
    std::fs::write(&plugin, &bytes).unwrap();
    refused("does not match the plugin's bytes");
}

#[test]
fn a_server_can_require_signed_plugins_in_its_plugin_directory() {
    let dir = tempfile::tempdir().unwrap();
    let Some(key) = keygen(dir.path(), "ops") else {
        return;
    };
    let signers = write(
        dir.path(),
        "allowed_signers",
        allowed("ops@example.com", &key).as_bytes(),
    );
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let plugin = write(
        &plugins,
        "my-gate.wasm",
        tollgate::policy::builtin::plugin("threshold").unwrap(),
    );
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    write(
        &policies,
        "p.yaml",
        b"apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: p}\nstages:\n  - name: s\n    gates:\n      - name: cov\n        plugin: my-gate\n        with: {metric: cov, op: '>=', threshold: 80}\n",
    );
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--store",
            "memory",
            "--insecure-no-auth",
            "--policies",
            policies.to_str().unwrap(),
            "--plugins",
            plugins.to_str().unwrap(),
            "--require-signature",
            "--allowed-signers",
            signers.to_str().unwrap(),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        a.extend(extra.iter().map(ToString::to_string));
        a
    };
    // Unsigned: the server refuses to start, naming the plugin.
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args(&[]))
        .env("TOLLGATE_CACHE_DIR", crate::support::cache_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("plugin `my-gate` is not signed"),
        "{stderr}"
    );
    // Signed: it serves, and the catalog names the signer.
    sign(&key, "tollgate-plugin", &plugin);
    let a = args(&[]);
    let server = Server::start(&a[3..].iter().map(String::as_str).collect::<Vec<_>>());
    let r = server.request("GET", "/v1/plugins", &[], b"");
    let body = r.json();
    let mine = body["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["plugin"] == "my-gate")
        .unwrap()
        .clone();
    assert_eq!(
        mine["signature"]["principals"][0], "ops@example.com",
        "{mine}"
    );
}
