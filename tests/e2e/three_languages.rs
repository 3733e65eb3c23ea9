//! One gate in Rust, Python and JavaScript (`plugins/examples/coverage`),
//! each built with `tollgate plugin build` and its language's real tool,
//! must give the same verdicts on the same snapshots.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::support::{repo, write};

/// Builds the example in `lang`; `None` (reason printed) without its tool.
fn build(lang: &str, tool: &str) -> Option<PathBuf> {
    if !crate::support::installed(tool) {
        crate::support::skip(&format!("{lang}: no `{tool}`"));
        return None;
    }
    let dir = repo(&format!("plugins/examples/coverage/{lang}"));
    let run =
        crate::plugin_kit::tollgate_in(&repo("."), &["plugin", "build", dir.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{lang}: {}{}", run.stdout, run.stderr);
    Some(dir.join("coverage-gate.wasm"))
}

fn snapshot(current: Option<f64>, baseline: Option<f64>) -> Value {
    let series = |v: Option<f64>| -> Vec<Value> {
        v.map(|v| json!({"name": "test_coverage_percent", "value": v}))
            .into_iter()
            .collect()
    };
    json!({"service": "s", "version": "1", "taken_at": 1_764_237_600,
           "metrics": series(current), "baseline": series(baseline)})
}

#[test]
fn the_coverage_gate_gives_the_same_verdicts_in_rust_python_and_javascript() {
    let built: Vec<(&str, PathBuf)> = [
        ("rust", "cargo"),
        ("python", "componentize-py"),
        ("js", "componentize-js"),
    ]
    .into_iter()
    .filter_map(|(lang, tool)| build(lang, tool).map(|p| (lang, p)))
    .collect();
    assert!(
        built.iter().any(|(l, _)| *l == "rust"),
        "the Rust example always builds"
    );
    let cases = [
        (snapshot(Some(91.0), Some(90.0)), "pass"),
        (snapshot(Some(79.9), None), "fail"),
        (snapshot(Some(85.0), Some(87.0)), "fail"),
        (snapshot(Some(85.0), Some(85.5)), "pass"),
        (snapshot(None, Some(85.0)), "inconclusive"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (lang, plugin) in &built {
        let policy = write(
            dir.path(),
            &format!("{lang}.yaml"),
            format!(
                "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {{name: coverage-{lang}}}\nplugins:\n  coverage: {{path: {}}}\nstages:\n  - name: ci\n    gates:\n      - name: coverage\n        plugin: coverage\n        memory: 256MiB\n        deadline: 2s\n        with: {{min: 80, max_drop: 1}}\n",
                plugin.display()
            )
            .as_bytes(),
        );
        for (snap, want) in &cases {
            let run = crate::support::eval(&policy, snap, None);
            assert_ne!(run.code, 2, "{lang}: {}", run.stderr);
            let gate = run.gate("coverage");
            assert_eq!(gate["verdict"], *want, "{lang} on {snap}: {gate}");
            let expected_observed = snap["metrics"][0]["value"].clone();
            assert_eq!(
                gate["observed"], expected_observed,
                "{lang} on {snap}: {gate}"
            );
            assert_eq!(gate["threshold"], 80.0, "{lang}: {gate}");
        }
        // Settings are checked the same way at load.
        let text = std::fs::read_to_string(&policy).unwrap();
        std::fs::write(
            &policy,
            text.replace("{min: 80, max_drop: 1}", "{max_drop: 1}"),
        )
        .unwrap();
        let run = crate::support::tollgate(&["validate", policy.to_str().unwrap()], "");
        assert_eq!(run.code, 1, "{lang} accepted a missing `min`");
        assert!(run.stderr.contains("`min`"), "{lang}: {}", run.stderr);
    }
}

/// What the docs say of an interpreted gate's memory holds: the Python and
/// JavaScript gates run under the 16 MiB default (their interpreter's heap
/// takes about 12.3 and 9.1 MiB of it), and half the default is too little.
#[test]
fn interpreted_gates_run_in_the_default_memory_and_not_in_half_of_it() {
    let dir = tempfile::tempdir().unwrap();
    for (lang, tool) in [("python", "componentize-py"), ("js", "componentize-js")] {
        let Some(plugin) = build(lang, tool) else {
            continue;
        };
        let policy = |memory: &str| {
            write(
                dir.path(),
                &format!("{lang}-{}.yaml", memory.len()),
                format!(
                    "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {{name: memory-{lang}}}\nplugins:\n  coverage: {{path: {}}}\nstages:\n  - name: ci\n    gates:\n      - name: coverage\n        plugin: coverage\n        deadline: 2s\n{memory}        with: {{min: 80}}\n",
                    plugin.display()
                )
                .as_bytes(),
            )
        };
        let snap = snapshot(Some(91.0), Some(90.5));
        // No `memory:`: the 16 MiB default.
        let run = crate::support::eval(&policy(""), &snap, None);
        assert_eq!(run.code, 0, "{lang}: {}{}", run.stdout, run.stderr);
        assert_eq!(run.gate("coverage")["verdict"], "pass", "{lang}");
        let run = crate::support::eval(&policy("        memory: 8MiB\n"), &snap, None);
        assert_eq!(run.code, 2, "{lang} ran in 8 MiB: {}", run.stdout);
        assert!(
            run.stderr.contains("memory limit 8 MiB exceeded"),
            "{lang}: {}",
            run.stderr
        );
    }
}
