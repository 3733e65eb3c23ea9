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
