//! First-party plugins, compiled from `plugins/` at build time and embedded,
//! and the bundled policies of `policies/`, so neither needs other files.

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));
include!(concat!(env!("OUT_DIR"), "/bundled_policies.rs"));

/// The component bytes of the first-party plugin called `name`.
pub fn plugin(name: &str) -> Option<&'static [u8]> {
    BUILTIN_PLUGINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// The names of every first-party plugin.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTIN_PLUGINS.iter().map(|(n, _)| *n)
}

/// Whether the first-party plugin `name` is a telemetry source, which a
/// policy names under `metrics:`, never as a gate, trigger or action.
pub fn is_source(name: &str) -> bool {
    BUILTIN_SOURCES.contains(&name)
}

/// The first-party gates, triggers and actions: what a stage may name.
pub fn rule_names() -> impl Iterator<Item = &'static str> {
    names().filter(|n| !is_source(n))
}

/// The text of the bundled policy called `name` (its file is `NAME.yaml`,
/// and its `metadata.name` is `NAME`).
pub fn policy(name: &str) -> Option<&'static str> {
    BUNDLED_POLICIES
        .iter()
        .find(|(file, _)| file.strip_suffix(".yaml") == Some(name))
        .map(|(_, text)| *text)
}

/// The names of the bundled policies, sorted.
pub fn policy_names() -> impl Iterator<Item = &'static str> {
    BUNDLED_POLICIES
        .iter()
        .filter_map(|(file, _)| file.strip_suffix(".yaml"))
}
