//! The files `tollgate plugin new` writes: per language and kind, the
//! rule's source, its policy and tests, and the SDK module beside it.

/// The Rust templates, one source, policy and test file per kind.
pub(super) mod rust {
    pub const CARGO: &str = include_str!("../../../plugins/templates/rust/Cargo.toml.tmpl");
    pub const GATE: [&str; 3] = [
        include_str!("../../../plugins/templates/rust/gate.rs"),
        include_str!("../../../plugins/templates/rust/gate.policy.yaml"),
        include_str!("../../../plugins/templates/rust/gate.test.yaml"),
    ];
    pub const TRIGGER: [&str; 3] = [
        include_str!("../../../plugins/templates/rust/trigger.rs"),
        include_str!("../../../plugins/templates/rust/trigger.policy.yaml"),
        include_str!("../../../plugins/templates/rust/trigger.test.yaml"),
    ];
    pub const ACTION: [&str; 3] = [
        include_str!("../../../plugins/templates/rust/action.rs"),
        include_str!("../../../plugins/templates/rust/action.policy.yaml"),
        include_str!("../../../plugins/templates/rust/action.test.yaml"),
    ];
    pub const SOURCE: &str = include_str!("../../../plugins/templates/rust/source.rs");
    /// A source's policy and sources file, for every language.
    pub const SOURCE_POLICY: &str =
        include_str!("../../../plugins/templates/rust/source.policy.yaml");
    pub const SOURCE_SOURCES: &str =
        include_str!("../../../plugins/templates/rust/source.sources.yaml");
}

/// The Python templates, one per kind, over the SDK module and the WIT.
pub(super) mod python {
    pub const GATE: &str = include_str!("../../../plugins/templates/python/gate.py");
    pub const TRIGGER: &str = include_str!("../../../plugins/templates/python/trigger.py");
    pub const ACTION: &str = include_str!("../../../plugins/templates/python/action.py");
    pub const SOURCE: &str = include_str!("../../../plugins/templates/python/source.py");
    pub const SDK: &str = include_str!("../../../plugins/sdk-python/tollgate_sdk.py");
    pub const PYPROJECT: &str = "# A tollgate plugin; `tollgate plugin build` reads `name` and\n# `world` and runs componentize-py over app.py.\n[project]\nname = \"{{name}}\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\n\n[tool.tollgate]\nworld = \"{{world}}\"\n";
}

/// The JavaScript templates, one per kind, over the SDK module.
pub(super) mod js {
    pub const GATE: &str = include_str!("../../../plugins/templates/js/gate.js");
    pub const TRIGGER: &str = include_str!("../../../plugins/templates/js/trigger.js");
    pub const ACTION: &str = include_str!("../../../plugins/templates/js/action.js");
    pub const SOURCE: &str = include_str!("../../../plugins/templates/js/source.js");
    pub const SDK: &str = include_str!("../../../plugins/sdk-js/tollgate_sdk.js");
    pub const PACKAGE: &str = "{\n  \"name\": \"{{name}}\",\n  \"version\": \"0.1.0\",\n  \"private\": true,\n  \"type\": \"module\",\n  \"tollgate\": { \"world\": \"{{world}}\", \"source\": \"index.js\" }\n}\n";
}

/// What Python and JavaScript projects share.
pub(super) mod interpreted {
    /// The gate's policy, with the memory an interpreter needs.
    pub const GATE_POLICY: &str =
        include_str!("../../../plugins/templates/python/gate.policy.yaml");
}
