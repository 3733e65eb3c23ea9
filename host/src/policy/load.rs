//! Resolving a policy's plugins: read, pin-check, compile, and ask each gate's
//! plugin whether its configuration is acceptable.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::{Policy, Problem, Problems};
use crate::digest::Digest;
use crate::engine::{Plugin, Runtime, World};

/// Compiled plugins shared between policies, by digest, so a plugin used by
/// several policies is compiled once.
pub type PluginCache = HashMap<Digest, Arc<Plugin>>;

/// A policy whose plugins are compiled and whose gate settings were accepted
/// by their plugins: ready to evaluate.
pub struct LoadedPolicy {
    pub policy: Policy,
    /// The SHA-256 of the policy file.
    pub digest: Digest,
    /// The policy file's text, as logged with each decision for replay.
    pub text: Arc<str>,
    /// Every plugin the policy uses, by the name its gates use.
    pub plugins: BTreeMap<String, Arc<Plugin>>,
    /// Who signed each plugin loaded from a file that carries a signature.
    pub signers: BTreeMap<String, crate::signature::Signed>,
}

/// Which plugin signatures a host demands of every policy, beside what a
/// policy demands itself (`require_signature`, `allowed_signers`).
#[derive(Debug, Clone, Default)]
pub struct Trust {
    pub require_signature: bool,
    pub allowed_signers: Option<Arc<crate::signature::AllowedSigners>>,
}

/// Reads, validates and compiles the policy in `text`; `base_dir` anchors
/// relative plugin paths. Returns every problem found.
pub fn load(
    runtime: &Runtime,
    cache: &mut PluginCache,
    text: &str,
    base_dir: &Path,
) -> Result<LoadedPolicy, Problems> {
    load_with(
        runtime,
        cache,
        text,
        base_dir,
        &BTreeMap::new(),
        &Trust::default(),
    )
}

/// Like [`load`], with `shared` user plugins available besides the policy's own.
pub fn load_with(
    runtime: &Runtime,
    cache: &mut PluginCache,
    text: &str,
    base_dir: &Path,
    shared: &BTreeMap<String, super::PluginDecl>,
    trust: &Trust,
) -> Result<LoadedPolicy, Problems> {
    load_inner(runtime, cache, text, base_dir, shared, None, trust)
}

/// Loads a logged policy for replay: its text as logged, and each plugin
/// from the logged bytes (`plugins`, by name) instead of any file or the
/// first-party set, so exactly what ran runs again.
pub fn load_recorded(
    runtime: &Runtime,
    text: &str,
    plugins: &BTreeMap<String, Arc<[u8]>>,
) -> Result<LoadedPolicy, Problems> {
    let shared = plugins
        .keys()
        .map(|name| {
            (
                name.clone(),
                super::PluginDecl {
                    path: std::path::PathBuf::from(format!("<logged plugin {name}>")),
                    digest: None,
                    line: 0,
                },
            )
        })
        .collect();
    load_inner(
        runtime,
        &mut PluginCache::new(),
        text,
        Path::new("."),
        &shared,
        Some(plugins),
        &Trust::default(),
    )
}

fn load_inner(
    runtime: &Runtime,
    cache: &mut PluginCache,
    text: &str,
    base_dir: &Path,
    shared: &BTreeMap<String, super::PluginDecl>,
    logged: Option<&BTreeMap<String, Arc<[u8]>>>,
    trust: &Trust,
) -> Result<LoadedPolicy, Problems> {
    let mut policy = super::parse::parse_with(text, base_dir, shared)?;
    let mut problems = Vec::new();
    if logged.is_none() {
        resolve_grants(&mut policy, base_dir, &mut problems);
    }
    let mut plugins = BTreeMap::new();
    let mut signers = BTreeMap::new();
    // The policy's own allowed signers win over the host's.
    let trust = match &policy.allowed_signers {
        Some(path) => match crate::signature::AllowedSigners::read(path) {
            Ok(a) => Trust {
                require_signature: trust.require_signature || policy.require_signature,
                allowed_signers: Some(Arc::new(a)),
            },
            Err(e) => {
                return Err(Problems(vec![Problem {
                    line: None,
                    message: e.to_string(),
                }]));
            }
        },
        None => Trust {
            require_signature: trust.require_signature || policy.require_signature,
            allowed_signers: trust.allowed_signers.clone(),
        },
    };
    let trust = if logged.is_some() {
        Trust::default()
    } else {
        trust
    };
    // Host gates (approval, checklist) are no plugin: nothing to resolve.
    let used: std::collections::BTreeSet<&str> = policy
        .stages
        .iter()
        .flat_map(|s| s.gates.iter().map(|g| g.plugin.as_str()))
        .chain(policy.triggers.iter().map(|t| t.plugin.as_str()))
        .chain(policy.actions.iter().map(|a| a.plugin.as_str()))
        .filter(|p| !crate::approvals::is_host_gate(p))
        .collect();
    for (name, decl) in &policy.plugins {
        if crate::approvals::is_host_gate(name) {
            problems.push(Problem {
                line: Some(decl.line).filter(|l| *l > 0),
                message: format!(
                    "plugin name `{name}` is reserved for the host's `{name}` gate; name the plugin otherwise"
                ),
            });
        }
    }
    for name in &used {
        let resolved = match logged {
            Some(logged) => resolve_logged(runtime, logged, name),
            None => resolve(runtime, cache, &policy, name, &trust, &mut signers),
        };
        match resolved {
            Ok(p) => {
                plugins.insert((*name).to_string(), p);
            }
            Err(problem) => problems.push(problem),
        }
    }
    // A plugin the policy declares must resolve even when no gate uses it
    // yet: a missing file or a wrong digest is a problem now, not the day a
    // gate starts using it. (Shared plugin-directory entries have no line.)
    for (name, decl) in &policy.plugins {
        if decl.line > 0
            && logged.is_none()
            && !used.contains(name.as_str())
            && let Err(problem) = resolve(runtime, cache, &policy, name, &trust, &mut signers)
        {
            problems.push(problem);
        }
    }
    // Every gate, trigger and action: its plugin's world, then its settings.
    let uses = policy
        .stages
        .iter()
        .flat_map(|s| {
            s.gates.iter().map(|g| {
                (
                    World::Gate,
                    "gate",
                    &g.name,
                    &g.plugin,
                    &g.config,
                    g.limits.clone(),
                    g.line,
                )
            })
        })
        .chain(policy.triggers.iter().map(|t| {
            (
                World::Trigger,
                "trigger",
                &t.name,
                &t.plugin,
                &t.config,
                t.limits.clone(),
                t.line,
            )
        }))
        .chain(policy.actions.iter().map(|a| {
            (
                World::Action,
                "action",
                &a.name,
                &a.plugin,
                &a.config,
                a.limits.clone(),
                a.line,
            )
        }));
    for (world, role, name, plugin_name, config, limits, line) in uses {
        if crate::approvals::is_host_gate(plugin_name) {
            let message = if world == World::Gate {
                match crate::approvals::Rule::parse(plugin_name, config) {
                    Ok(_) => continue,
                    Err(e) => format!(
                        "invalid settings for gate `{name}` (host gate `{plugin_name}`): {e}"
                    ),
                }
            } else {
                format!("`{plugin_name}` is a gate the host evaluates, not a {role}")
            };
            problems.push(Problem {
                line: Some(line),
                message,
            });
            continue;
        }
        let Some(plugin) = plugins.get(plugin_name) else {
            continue;
        };
        if plugin.info().world != world {
            problems.push(Problem {
                line: Some(line),
                message: format!(
                    "plugin `{plugin_name}` of {role} `{name}` is a {} plugin, not a {role}",
                    plugin.info().world.as_str()
                ),
            });
            continue;
        }
        let call = plugin.validate_config(config, limits);
        let message = match call.result {
            Ok(Ok(())) => continue,
            Ok(Err(msg)) => format!(
                "invalid settings for {role} `{name}` (plugin `{plugin_name}`): {}",
                crate::text::escape_control(&msg)
            ),
            Err(e) => format!(
                "plugin `{plugin_name}` failed to check the settings of {role} `{name}`: {e}"
            ),
        };
        problems.push(Problem {
            line: Some(line),
            message,
        });
    }
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    Ok(LoadedPolicy {
        policy,
        digest: Digest::of(text.as_bytes()),
        text: text.into(),
        plugins,
        signers,
    })
}

/// Anchors each granted directory at the policy's directory, and checks
/// that it is one.
fn resolve_grants(policy: &mut Policy, base_dir: &Path, problems: &mut Vec<Problem>) {
    let limits = policy
        .stages
        .iter_mut()
        .flat_map(|s| {
            s.gates
                .iter_mut()
                .map(|g| (format!("gate `{}`", g.name), &mut g.limits))
        })
        .chain(
            policy
                .triggers
                .iter_mut()
                .map(|t| (format!("trigger `{}`", t.name), &mut t.limits)),
        )
        .chain(
            policy
                .actions
                .iter_mut()
                .map(|a| (format!("action `{}`", a.name), &mut a.limits)),
        );
    for (what, limits) in limits {
        if limits.files.is_empty() {
            continue;
        }
        let files: Vec<crate::engine::wasi::FileGrant> = limits
            .files
            .iter()
            .map(|g| crate::engine::wasi::FileGrant {
                host: base_dir.join(&g.host),
                guest: g.guest.clone(),
            })
            .collect();
        for g in &files {
            if !g.host.is_dir() {
                problems.push(Problem {
                    line: None,
                    message: format!(
                        "the directory `{}` granted to {what} does not exist or is not a directory",
                        g.host.display()
                    ),
                });
            }
        }
        limits.files = files.into();
    }
}

/// A plugin from a decision record's bytes.
fn resolve_logged(
    runtime: &Runtime,
    logged: &BTreeMap<String, Arc<[u8]>>,
    name: &str,
) -> Result<Arc<Plugin>, Problem> {
    let bytes = logged.get(name).ok_or_else(|| Problem {
        line: None,
        message: format!("the record holds no bytes for plugin `{name}`"),
    })?;
    runtime
        .load(name, bytes)
        .map(Arc::new)
        .map_err(|e| Problem {
            line: None,
            message: e.to_string(),
        })
}

fn resolve(
    runtime: &Runtime,
    cache: &mut PluginCache,
    policy: &Policy,
    name: &str,
    trust: &Trust,
    signers: &mut BTreeMap<String, crate::signature::Signed>,
) -> Result<Arc<Plugin>, Problem> {
    let (bytes, line): (std::borrow::Cow<'static, [u8]>, Option<usize>) =
        match crate::builtin::plugin(name) {
            Some(b) => (b.into(), None),
            None => {
                let Some(decl) = policy.plugins.get(name) else {
                    return Err(Problem {
                        line: None,
                        message: format!("unknown plugin `{name}`"),
                    });
                };
                let bytes = crate::files::read_limited(&decl.path, crate::files::MAX_PLUGIN_BYTES)
                    .map_err(|e| Problem {
                        line: Some(decl.line),
                        message: format!(
                            "cannot read plugin `{name}` from `{}`: {e}",
                            decl.path.display()
                        ),
                    })?;
                let digest = Digest::of(&bytes);
                if let Some(pin) = decl.digest
                    && pin != digest
                {
                    return Err(Problem {
                        line: Some(decl.line),
                        message: format!(
                            "digest mismatch for plugin `{name}`: the policy pins `{pin}` but `{}` is `{digest}`",
                            decl.path.display()
                        ),
                    });
                }
                let signed = crate::signature::check(
                    name,
                    &decl.path,
                    &bytes,
                    trust.allowed_signers.as_deref(),
                    trust.require_signature,
                )
                .map_err(|e| Problem {
                    line: Some(decl.line).filter(|l| *l > 0),
                    message: e.to_string(),
                })?;
                if let Some(s) = signed {
                    signers.insert(name.to_string(), s);
                }
                (bytes.into(), Some(decl.line))
            }
        };
    let digest = Digest::of(&bytes);
    if let Some(p) = cache.get(&digest) {
        return Ok(Arc::clone(p));
    }
    let plugin = runtime.load(name, &bytes).map_err(|e| Problem {
        line,
        message: e.to_string(),
    })?;
    let plugin = Arc::new(plugin);
    cache.insert(digest, Arc::clone(&plugin));
    Ok(plugin)
}
