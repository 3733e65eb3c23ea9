//! Writing a plugin outside this repository: the SDK as a self-contained
//! crate, `tollgate plugin new` and `tollgate plugin build`.

use std::path::Path;
use std::process::Command;

use crate::support::{Run, repo};

/// `tollgate` in `dir`, with one cargo target directory shared by every
/// project these tests build, so the SDK compiles once.
pub(crate) fn tollgate_in(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("TOLLGATE_CACHE_DIR", crate::support::cache_dir())
        .env("CARGO_TARGET_DIR", crate::support::plugin_projects_target())
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn the_sdk_is_self_contained_with_its_own_version_and_the_wit_inside() {
    let manifest = std::fs::read_to_string(repo("plugins/sdk/Cargo.toml")).unwrap();
    // Lints may come from the workspace (`cargo package` writes them out);
    // the version and the dependencies may not.
    let package = manifest.split("[lints]").next().unwrap();
    assert!(!package.contains(".workspace"), "{package}");
    let out = Command::new(env!("CARGO"))
        .args([
            "package",
            "-p",
            "tollgate-sdk",
            "--list",
            "--allow-dirty",
            "--offline",
        ])
        .current_dir(repo("."))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = String::from_utf8_lossy(&out.stdout);
    assert!(files.lines().any(|f| f == "wit/tollgate.wit"), "{files}");
    assert_eq!(
        std::fs::read(repo("plugins/sdk/wit/tollgate.wit")).unwrap(),
        std::fs::read(repo("wit/tollgate.wit")).unwrap(),
        "the SDK's WIT is the contract's"
    );
}

#[test]
fn plugin_new_build_and_test_outside_the_repository_for_each_kind() {
    let home = tempfile::tempdir().unwrap();
    for kind in ["gate", "trigger", "action"] {
        let name = format!("my-{kind}");
        let run = tollgate_in(home.path(), &["plugin", "new", &name, "--kind", kind]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let project = home.path().join(&name);
        let run = tollgate_in(home.path(), &["plugin", "build", &name]);
        assert_eq!(run.code, 0, "{kind}: {}{}", run.stdout, run.stderr);
        assert!(run.stdout.contains("digest: sha256:"), "{}", run.stdout);
        assert!(
            run.stdout.contains("\"verdict\": \"accepted\""),
            "{}",
            run.stdout
        );
        assert!(project.join(format!("{name}.wasm")).is_file());
        let run = tollgate_in(home.path(), &["test", &name]);
        assert_eq!(run.code, 0, "{kind}: {}{}", run.stdout, run.stderr);
        assert!(run.stdout.contains(" 0 failed"), "{}", run.stdout);
    }
    // The rule's own unit test runs natively, without Wasm.
    let out = Command::new(env!("CARGO"))
        .args(["test", "--quiet", "--manifest-path"])
        .arg(home.path().join("my-gate/Cargo.toml"))
        .env("CARGO_TARGET_DIR", crate::support::plugin_projects_target())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Edit one threshold: the bundled test case at the old minimum now fails.
    let policy = home.path().join("my-gate/policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, text.replace("min: 80", "min: 85")).unwrap();
    let run = tollgate_in(home.path(), &["test", "my-gate"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.contains("1 failed"), "{}", run.stdout);
}

#[test]
fn plugin_new_refuses_a_bad_name_and_a_non_empty_directory() {
    let home = tempfile::tempdir().unwrap();
    let run = tollgate_in(home.path(), &["plugin", "new", "My_Gate"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("plugin name `My_Gate` must start"),
        "{}",
        run.stderr
    );
    std::fs::create_dir(home.path().join("taken")).unwrap();
    std::fs::write(home.path().join("taken/file"), "x").unwrap();
    let run = tollgate_in(home.path(), &["plugin", "new", "taken"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("`taken` exists and is not empty"),
        "{}",
        run.stderr
    );
    let run = tollgate_in(home.path(), &["plugin", "build", "nowhere"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("has no Cargo.toml"), "{}", run.stderr);
}

#[test]
fn the_readme_plugin_example_is_the_template_plugin_new_writes() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let block = readme
        .split("```rust\n")
        .nth(1)
        .and_then(|rest| rest.split_once("\n```"))
        .map(|(block, _)| format!("{block}\n"))
        .unwrap();
    let template = std::fs::read_to_string(repo("plugins/templates/rust/gate.rs"))
        .unwrap()
        .replace("{{name}}", "my-gate");
    assert_eq!(block, template);
}

#[test]
fn plugin_new_build_and_test_a_python_gate() {
    if !crate::support::need("componentize-py") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let run = tollgate_in(
        home.path(),
        &["plugin", "new", "py-cov", "--lang", "python"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    for file in [
        "app.py",
        "tollgate_sdk.py",
        "wit/tollgate.wit",
        "pyproject.toml",
        "policy.yaml",
        "policy.test.yaml",
    ] {
        assert!(home.path().join("py-cov").join(file).is_file(), "{file}");
    }
    assert_eq!(
        std::fs::read(home.path().join("py-cov/wit/tollgate.wit")).unwrap(),
        std::fs::read(repo("wit/tollgate.wit")).unwrap(),
        "the project's WIT is the host's"
    );
    let run = tollgate_in(home.path(), &["plugin", "build", "py-cov"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("\"verdict\": \"accepted\""),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("\"wasi\": true"), "{}", run.stdout);
    let run = tollgate_in(home.path(), &["test", "py-cov"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("3 passed, 0 failed"), "{}", run.stdout);
    // The SDK's settings refuse a mistyped key, naming it, at load.
    let policy = home.path().join("py-cov/policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, text.replace("{ min: 80 }", "{ min: 80, mni: 3 }")).unwrap();
    let run = tollgate_in(home.path(), &["validate", policy.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("unknown setting(s): `mni` (did you mean `min`?); settings: "),
        "{}",
        run.stderr
    );
    // Misspelt instead of given: the typo is named beside the setting it
    // left missing, not only "`min` is required".
    std::fs::write(&policy, text.replace("{ min: 80 }", "{ mn: 80 }")).unwrap();
    let run = tollgate_in(home.path(), &["validate", policy.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("`min` is required; `mn` is not a setting: did you mean `min`?"),
        "{}",
        run.stderr
    );
    // A syntax error is shown first, with its file and line, in a few
    // lines; componentize-py's traceback and backtrace only on request.
    let app = home.path().join("py-cov/app.py");
    let source = std::fs::read_to_string(&app).unwrap();
    let (line, broken) = source
        .lines()
        .enumerate()
        .find(|(_, l)| l.starts_with("def ") && l.ends_with(':'))
        .map(|(i, l)| (i + 1, l.trim_end_matches(':').to_string()))
        .unwrap();
    std::fs::write(&app, source.replacen(&format!("{broken}:"), &broken, 1)).unwrap();
    let run = tollgate_in(home.path(), &["plugin", "build", "py-cov"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    let first = run.stderr.lines().next().unwrap();
    assert_eq!(
        first,
        format!("error: py-cov/app.py:{line}: SyntaxError: expected ':'"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.lines().count() <= 6, "{}", run.stderr);
    assert!(!run.stderr.contains("Stack backtrace"), "{}", run.stderr);
    assert!(run.stderr.contains("--verbose"), "{}", run.stderr);
    let verbose = tollgate_in(home.path(), &["plugin", "build", "py-cov", "--verbose"]);
    assert_eq!(verbose.code, 2);
    assert!(verbose.stderr.contains("Caused by:"), "{}", verbose.stderr);
    assert!(
        verbose.stderr.lines().count() > run.stderr.lines().count(),
        "{}",
        verbose.stderr
    );
}

/// A Rust project depends on the SDK of the tollgate checkout it is made
/// in, not on the tree the binary happened to be built from; `--sdk` and
/// `TOLLGATE_SDK` take a checkout or the crate.
#[test]
fn plugin_new_depends_on_the_sdk_of_the_checkout_it_runs_in() {
    let checkout = tempfile::tempdir().unwrap();
    let sdk = checkout.path().join("plugins/sdk");
    std::fs::create_dir_all(&sdk).unwrap();
    std::fs::write(
        sdk.join("Cargo.toml"),
        "[package]\nname = \"tollgate-sdk\"\nversion = \"0.1.0\"\n",
    )
    .unwrap();
    let work = checkout.path().join("gates");
    std::fs::create_dir(&work).unwrap();
    let sdk = std::fs::canonicalize(&sdk).unwrap();
    let dependency = |project: &Path| {
        std::fs::read_to_string(project.join("Cargo.toml"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("tollgate-sdk"))
            .unwrap()
            .to_string()
    };
    let run = tollgate_in(&work, &["plugin", "new", "here-gate"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        dependency(&work.join("here-gate")),
        format!("tollgate-sdk = {{ path = \"{}\" }}", sdk.display())
    );
    assert!(
        run.stdout
            .contains(&format!("tollgate-sdk: {}", sdk.display())),
        "{}",
        run.stdout
    );
    // Elsewhere, `--sdk` names the checkout.
    let elsewhere = tempfile::tempdir().unwrap();
    let run = tollgate_in(
        elsewhere.path(),
        &[
            "plugin",
            "new",
            "there-gate",
            "--sdk",
            checkout.path().to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(dependency(&elsewhere.path().join("there-gate")).contains(&sdk.display().to_string()));
    let run = tollgate_in(
        elsewhere.path(),
        &[
            "plugin",
            "new",
            "no-gate",
            "--sdk",
            elsewhere.path().to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("is neither the tollgate-sdk crate nor a tollgate checkout"),
        "{}",
        run.stderr
    );
}

/// `plugin new` for a trigger or an action in Python or JavaScript writes a
/// project that builds with the language's tool and passes its own policy
/// tests: a trigger that keeps state between checks, an action that plans.
#[test]
fn plugin_new_build_and_test_python_and_js_triggers_and_actions() {
    let tools = [("python", "componentize-py"), ("js", "componentize-js")];
    let home = tempfile::tempdir().unwrap();
    for (lang, tool) in tools {
        if !crate::support::installed(tool) {
            crate::support::skip(&format!("{lang}: no `{tool}`"));
            continue;
        }
        for kind in ["trigger", "action"] {
            let name = format!("{lang}-{kind}");
            let run = tollgate_in(
                home.path(),
                &["plugin", "new", &name, "--lang", lang, "--kind", kind],
            );
            assert_eq!(run.code, 0, "{}", run.stderr);
            let policy =
                std::fs::read_to_string(home.path().join(&name).join("policy.yaml")).unwrap();
            assert!(policy.contains("memory: 256MiB"), "{policy}");
            let run = tollgate_in(home.path(), &["plugin", "build", &name]);
            assert_eq!(run.code, 0, "{name}: {}{}", run.stdout, run.stderr);
            assert!(
                run.stdout.contains(&format!("\"world\": \"{kind}\"")),
                "{name}: {}",
                run.stdout
            );
            let run = tollgate_in(home.path(), &["test", &name]);
            assert_eq!(run.code, 0, "{name}: {}{}", run.stdout, run.stderr);
            assert!(
                run.stdout.contains("2 passed, 0 failed"),
                "{name}: {}",
                run.stdout
            );
        }
        // The trigger's state carries from check to check: two breaches in
        // a row are needed once `breaches: 2` is set, so one check holds.
        let name = format!("{lang}-trigger");
        let policy = home.path().join(&name).join("policy.yaml");
        let text = std::fs::read_to_string(&policy).unwrap();
        std::fs::write(
            &policy,
            text.replace("{ max: 0.05 }", "{ max: 0.05, breaches: 2 }"),
        )
        .unwrap();
        let snapshot = home.path().join("bad.json");
        std::fs::write(
            &snapshot,
            r#"{"service":"demo","version":"1.0.0","taken_at":1764237600,"metrics":[{"name":"error_rate","value":0.2}]}"#,
        )
        .unwrap();
        let state = home.path().join(format!("{lang}.state.json"));
        let eval = || crate::rollout::eval_with_state(&policy, &snapshot, &state);
        let first = eval();
        assert!(
            first.stdout.contains("1 of 2 breaches in a row"),
            "{lang}: {}{}",
            first.stdout,
            first.stderr
        );
        let second = eval();
        assert!(
            second.stdout.contains("(2 in a row)"),
            "{lang}: {}",
            second.stdout
        );
    }
}
