//! What a component imports and exports, checked before it is linked.

use wasmtime::Engine;
use wasmtime::component::Component;

/// The WIT package version this host implements.
pub const WIT_VERSION: &str = "0.1.2";

const PACKAGE: &str = "tollgate:plugin";

/// The kind of plugin, from the world it exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// Exports `gate-api`: judges a snapshot.
    Gate,
    /// Exports `trigger-api`: fires rollbacks.
    Trigger,
    /// Exports `action-api`: plans deployment steps.
    Action,
    /// Exports `source-api`: turns queries into HTTP requests the host
    /// sends, and their answers into series.
    Source,
}

impl World {
    /// The world's name in `wit/`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gate => "gate",
            Self::Trigger => "trigger",
            Self::Action => "action",
            Self::Source => "source",
        }
    }
}

/// What the host learnt about a plugin at load, for audits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginInfo {
    pub world: World,
    /// The WIT package version the plugin was built against.
    pub wit_version: String,
    /// Every interface the component imports.
    pub imports: Vec<String>,
    /// Every interface or function the component exports.
    pub exports: Vec<String>,
    /// The WASI interfaces among the imports, with what each gives the
    /// plugin (all inert, or a read-only directory where a gate is granted one).
    #[serde(rename = "wasi_imports")]
    pub wasi: Vec<WasiImport>,
}

/// One WASI interface a plugin imports, and what the host gives it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WasiImport {
    pub interface: String,
    pub access: String,
}

/// A component whose imports or exports this host refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportCheckError {
    #[error(
        "imports `{0}`, which this host does not provide: plugins may import the `{PACKAGE}` interfaces and WASI 0.2 (cli, clocks, filesystem, io, random, sockets)"
    )]
    NotGranted(String),
    #[error(
        "built against `{PACKAGE}@{found}`, which this host ({PACKAGE}@{WIT_VERSION}) cannot serve: {why}"
    )]
    IncompatibleVersion { found: String, why: &'static str },
    #[error(
        "exports no tollgate world: expected one of `{PACKAGE}/gate-api`, `trigger-api`, `action-api` or `source-api`"
    )]
    NoWorld,
    #[error(
        "exports more than one tollgate world; a plugin is one gate, trigger, action or source"
    )]
    SeveralWorlds,
    #[error("`{0}` carries no version")]
    Unversioned(String),
}

/// A component whose world's exports do not have the types the WIT declares.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportCheckError {
    #[error("exports no `{0}…` interface")]
    NoInterface(String),
    #[error("export `{0}` not found")]
    NotFound(String),
    #[error("`{export}` export `{name}` is not a function")]
    NotAFunction { export: String, name: String },
    #[error("`{export}` does not export `{name}`")]
    Missing { export: String, name: String },
    /// `message` is the first line of wasmtime's type mismatch.
    #[error("`{export}` export `{name}` has the wrong type: {message}")]
    WrongType {
        export: String,
        name: &'static str,
        message: String,
    },
}

/// Splits `tollgate:plugin/gate-api@0.1.0` into the interface and version.
fn parse_name(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    Some(rest.split_once('@').unwrap_or((rest, "")))
}

/// Whether a plugin built against `found` can run on this host: same
/// semver-compatible series (the same minor version while the major is 0),
/// and not newer than the host.
fn check_version(found: &str) -> Result<(), ImportCheckError> {
    let incompatible = |why| ImportCheckError::IncompatibleVersion {
        found: found.to_string(),
        why,
    };
    let host = semver::Version::parse(WIT_VERSION)
        .map_err(|_| incompatible("host version is malformed"))?;
    let plugin = semver::Version::parse(found).map_err(|_| incompatible("not a semver version"))?;
    let compatible = if host.major == 0 {
        plugin.major == 0 && plugin.minor == host.minor
    } else {
        plugin.major == host.major
    };
    if !compatible {
        return Err(incompatible("a different, incompatible series"));
    }
    if plugin > host {
        return Err(incompatible("newer than the host; upgrade tollgate"));
    }
    Ok(())
}

pub(super) fn inspect(
    engine: &Engine,
    component: &Component,
) -> Result<PluginInfo, ImportCheckError> {
    let ty = component.component_type();
    let mut imports = Vec::new();
    let mut wit_version: Option<String> = None;
    let mut wasi = Vec::new();
    for (name, _) in ty.imports(engine) {
        if name.starts_with("wasi:") {
            let access = super::wasi::access(name)
                .ok_or_else(|| ImportCheckError::NotGranted(name.to_string()))?;
            wasi.push(WasiImport {
                interface: name.to_string(),
                access: access.to_string(),
            });
            imports.push(name.to_string());
            continue;
        }
        let Some((_, version)) = parse_name(name) else {
            return Err(ImportCheckError::NotGranted(name.to_string()));
        };
        if version.is_empty() {
            return Err(ImportCheckError::Unversioned(name.to_string()));
        }
        check_version(version)?;
        wit_version.get_or_insert_with(|| version.to_string());
        imports.push(name.to_string());
    }
    let mut exports = Vec::new();
    let mut world = None;
    for (name, _) in ty.exports(engine) {
        if let Some((iface, version)) = parse_name(name) {
            if version.is_empty() {
                return Err(ImportCheckError::Unversioned(name.to_string()));
            }
            check_version(version)?;
            let found = match iface {
                "gate-api" => Some(World::Gate),
                "trigger-api" => Some(World::Trigger),
                "action-api" => Some(World::Action),
                "source-api" => Some(World::Source),
                _ => None,
            };
            if let Some(found) = found {
                if world.is_some() {
                    return Err(ImportCheckError::SeveralWorlds);
                }
                world = Some(found);
                wit_version = Some(version.to_string());
            }
        }
        exports.push(name.to_string());
    }
    let world = world.ok_or(ImportCheckError::NoWorld)?;
    Ok(PluginInfo {
        world,
        wit_version: wit_version.unwrap_or_default(),
        imports,
        exports,
        wasi,
    })
}

/// Checks that the world's exported functions have the types the WIT
/// declares, as the first call would, so that `audit` and load refuse the
/// same components: a `string` where a `finding` is due fails here, not at
/// the first evaluation.
pub(super) fn typecheck<T>(
    pre: &wasmtime::component::InstancePre<T>,
    info: &PluginInfo,
) -> Result<(), ExportCheckError> {
    use wasmtime::component::Resource;
    use wasmtime::component::types::ComponentItem;

    use super::bindings::action::exports::tollgate::plugin::action_api as action;
    use super::bindings::source::exports::tollgate::plugin::source_api as source;
    use super::bindings::trigger::exports::tollgate::plugin::trigger_api as trigger;
    use super::bindings::types::{ConfigValue, Finding};
    use super::handle::SnapshotHandle;

    type Config = Vec<(String, ConfigValue)>;
    type Snap = Resource<SnapshotHandle>;

    let api = format!("{PACKAGE}/{}-api@", info.world.as_str());
    let export = info
        .exports
        .iter()
        .find(|e| e.starts_with(&api))
        .ok_or_else(|| ExportCheckError::NoInterface(api.clone()))?;
    let component = pre.component();
    let cx = pre.instance_type();
    let (_, instance) = component
        .get_export(None, export.as_str())
        .ok_or_else(|| ExportCheckError::NotFound(export.clone()))?;
    let func = |name: &str| match component.get_export(Some(&instance), name) {
        Some((ComponentItem::ComponentFunc(f), _)) => Ok(f),
        Some(_) => Err(ExportCheckError::NotAFunction {
            export: export.clone(),
            name: name.to_string(),
        }),
        None => Err(ExportCheckError::Missing {
            export: export.clone(),
            name: name.to_string(),
        }),
    };
    let wrong = |name: &'static str| {
        move |e: wasmtime::Error| ExportCheckError::WrongType {
            export: export.clone(),
            name,
            message: crate::base::text::first_line(&e.root_cause().to_string()).into_owned(),
        }
    };
    func("validate-config")?
        .typecheck::<(Config,), (Result<(), String>,)>(&cx)
        .map_err(wrong("validate-config"))?;
    match info.world {
        World::Gate => func("evaluate")?
            .typecheck::<(Config, Snap), (Finding,)>(&cx)
            .map_err(wrong("evaluate")),
        World::Trigger => func("check")?
            .typecheck::<(Config, Snap, Vec<u8>), (trigger::TriggerResult,)>(&cx)
            .map_err(wrong("check")),
        World::Action => func("plan")?
            .typecheck::<(Config, Snap, action::Context), (Result<Vec<action::Action>, String>,)>(
                &cx,
            )
            .map_err(wrong("plan")),
        World::Source => {
            func("start")?
                .typecheck::<(Config, source::SourceQuery), (Result<source::Round, String>,)>(&cx)
                .map_err(wrong("start"))?;
            func("next")?
                .typecheck::<(
                    Config,
                    source::SourceQuery,
                    Vec<u8>,
                    Vec<source::Response>,
                ), (Result<source::Step, String>,)>(&cx)
                .map_err(wrong("next"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_semver_compatibility() {
        assert!(check_version("0.1.0").is_ok());
        assert!(check_version("0.1.1").is_ok());
        assert!(check_version("0.1.2").is_ok());
        assert!(check_version("0.1.3").is_err());
        assert!(check_version("0.2.0").is_err());
        assert!(check_version("1.0.0").is_err());
        assert!(check_version("banana").is_err());
    }

    #[test]
    fn names_split_into_interface_and_version() {
        assert_eq!(
            parse_name("tollgate:plugin/host@0.1.0"),
            Some(("host", "0.1.0"))
        );
        assert_eq!(parse_name("wasi:filesystem/types@0.2.0"), None);
    }
}
