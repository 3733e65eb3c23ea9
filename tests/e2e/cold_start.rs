//! Cold start: the first-party plugins come compiled with the binary, so a
//! process with no compile cache runs them without Cranelift, while any
//! other component is compiled from its own bytes, whatever it is named.

use tollgate::base::digest::Digest;
use tollgate::engine::{Runtime, precompiled_plugins};
use tollgate::policy::builtin;

use crate::hostile::component_for;
use crate::support::repo;

#[test]
fn every_first_party_plugin_loads_from_native_code_compiled_at_build_time() {
    let runtime = Runtime::new().unwrap();
    let names: Vec<&str> = builtin::names().collect();
    assert!(names.len() >= 18, "{names:?}");
    assert_eq!(precompiled_plugins(), names.len());
    for name in &names {
        let plugin = runtime.load(name, builtin::plugin(name).unwrap()).unwrap();
        assert_eq!(plugin.name(), *name);
    }
    assert_eq!(runtime.precompiled_loads(), names.len());
    assert_eq!(runtime.precompiled_refusal(), None);
}

#[test]
fn a_component_named_like_a_first_party_plugin_compiles_from_its_own_bytes() {
    let runtime = Runtime::new().unwrap();
    let bytes = component_for("well-behaved", &repo("wit"));
    let plugin = runtime.load("threshold", &bytes).unwrap();
    assert_eq!(runtime.precompiled_loads(), 0, "no build-time code for it");
    assert_eq!(plugin.digest(), Digest::of(&bytes));
    // The real `threshold` still loads from its own build-time code.
    runtime
        .load("threshold", builtin::plugin("threshold").unwrap())
        .unwrap();
    assert_eq!(runtime.precompiled_loads(), 1);
}

/// Builds whose unit graph must hold wasmtime once: what the README's two
/// commands, the tests, the lints and the instruction counts build.
const BUILDS: &[&[&str]] = &[
    &["build", "--release"],
    &["build"],
    &["test", "--workspace", "--no-run"],
    &["clippy", "--workspace", "--all-targets"],
    &["bench", "--no-run", "--bench", "instructions"],
];

/// The build script compiles the plugins with wasmtime. When its wasmtime
/// differs from the host's in any feature below it, cargo builds wasmtime
/// and Cranelift twice, minutes more on every clean build; the aligning
/// entries in `host/Cargo.toml` prevent that, and this test says when a
/// dependency change undid them. cargo's unit graph is an unstable
/// option, which `RUSTC_BOOTSTRAP=1` opens on the pinned toolchain for
/// this read-only query (nothing is built).
#[test]
fn the_build_script_and_the_host_share_one_wasmtime_build() {
    for args in BUILDS {
        let out = std::process::Command::new(env!("CARGO"))
            .args(*args)
            .args(["--locked", "-Z", "unstable-options", "--unit-graph"])
            .current_dir(repo(""))
            .env("RUSTC_BOOTSTRAP", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let graph: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let built: Vec<&serde_json::Value> = graph["units"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| {
                u["pkg_id"].as_str().unwrap().contains("#wasmtime@")
                    && u["target"]["kind"][0] == "lib"
                    && u["mode"] == "build"
            })
            .collect();
        assert_eq!(
            built.len(),
            1,
            "cargo {args:?} builds wasmtime {} times: align the build script's features \
             in host/Cargo.toml (features per build: {:?})",
            built.len(),
            built.iter().map(|u| &u["features"]).collect::<Vec<_>>()
        );
    }
}
