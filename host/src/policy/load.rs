//! Resolving a policy's plugins: read, pin-check, compile, and ask each gate's
//! plugin whether its configuration is acceptable.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::{Policy, Problem, Problems, Use};
use crate::base::digest::Digest;
use crate::engine::{Plugin, Runtime};

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
    pub signers: BTreeMap<String, crate::engine::signature::Signed>,
}

/// Which plugin signatures a host demands of every policy, beside what a
/// policy demands itself (`require_signature`, `allowed_signers`).
#[derive(Debug, Clone, Default)]
pub struct Trust {
    pub require_signature: bool,
    pub allowed_signers: Option<Arc<crate::engine::signature::AllowedSigners>>,
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
    load_inner(
        runtime,
        text,
        base_dir,
        shared,
        Source::Files {
            cache,
            trust,
            offered: false,
        },
    )
}

/// Gates, triggers and actions a policy sent in a request may have: each
/// costs a plugin call per evaluation and a line in every report row.
pub const MAX_OFFERED_USES: usize = 256;

/// Loads a policy a caller sent (a backtest's candidate over HTTP). It may
/// use the first-party plugins and the server's plugin directory
/// (`shared`), and reach none of the server's files: it declares no
/// plugins of its own, names no `allowed_signers` file and grants no
/// directories.
pub fn load_offered(
    runtime: &Runtime,
    cache: &mut PluginCache,
    text: &str,
    shared: &BTreeMap<String, super::PluginDecl>,
    trust: &Trust,
) -> Result<LoadedPolicy, Problems> {
    // Nothing is resolved against this directory: every use of it is
    // refused (`offered_problems`) before the load reads a file.
    load_inner(
        runtime,
        text,
        Path::new("/nonexistent/offered-policy"),
        shared,
        Source::Files {
            cache,
            trust,
            offered: true,
        },
    )
}

/// What a policy sent in a request may not do: declare plugin files, name
/// an `allowed_signers` file, grant directories, or have more than
/// [`MAX_OFFERED_USES`] gates, triggers and actions.
fn offered_problems(policy: &Policy) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (name, decl) in &policy.plugins {
        if decl.line > 0 {
            problems.push(Problem {
                line: Some(decl.line),
                message: format!(
                    "plugin `{name}`: a policy sent in a request may not declare plugin files; use a first-party plugin or one in the server's plugin directory"
                ),
            });
        }
    }
    if policy.allowed_signers.is_some() {
        problems.push(Problem {
            line: None,
            message:
                "`allowed_signers`: a policy sent in a request may not name files on the server"
                    .into(),
        });
    }
    // Every gate (host gates too), trigger and action: a grant is resolved
    // against the server's file system when the policy loads.
    let limits = policy
        .stages
        .iter()
        .flat_map(|s| s.gates.iter().map(|g| (&g.name, &g.limits, g.line)))
        .chain(policy.triggers.iter().map(|t| (&t.name, &t.limits, t.line)))
        .chain(policy.actions.iter().map(|a| (&a.name, &a.limits, a.line)));
    let mut uses = 0;
    for (name, limits, line) in limits {
        uses += 1;
        if !limits.files.is_empty() {
            problems.push(Problem {
                line: Some(line).filter(|l| *l > 0),
                message: format!(
                    "`{name}`: a policy sent in a request may not grant directories (`files:`)"
                ),
            });
        }
    }
    if uses > MAX_OFFERED_USES {
        problems.push(Problem {
            line: None,
            message: format!(
                "a policy sent in a request has at most {MAX_OFFERED_USES} gates, triggers and actions; this one has {uses}"
            ),
        });
    }
    problems
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
        text,
        Path::new("."),
        &shared,
        Source::Logged(plugins),
    )
}

/// Where a policy's plugins come from: files and the first-party set, or
/// a decision record's bytes.
enum Source<'a> {
    Files {
        cache: &'a mut PluginCache,
        trust: &'a Trust,
        /// Sent in a request: refused whatever reaches the server's files
        /// ([`offered_problems`]), before anything is resolved.
        offered: bool,
    },
    Logged(&'a BTreeMap<String, Arc<[u8]>>),
}

fn load_inner(
    runtime: &Runtime,
    text: &str,
    base_dir: &Path,
    shared: &BTreeMap<String, super::PluginDecl>,
    source: Source<'_>,
) -> Result<LoadedPolicy, Problems> {
    let super::parse::Parsed {
        mut policy,
        refused,
    } = super::parse::parse_with(text, base_dir, shared)?;
    let mut problems = Vec::new();
    let mut signers = BTreeMap::new();
    let plugins = match source {
        Source::Files {
            cache,
            trust,
            offered,
        } => {
            if offered {
                let refused = offered_problems(&policy);
                if !refused.is_empty() {
                    return Err(Problems(refused));
                }
            }
            resolve_grants(&mut policy, base_dir, &mut problems);
            let trust = policy_trust(&policy, trust).map_err(|problem| Problems(vec![problem]))?;
            reserved_names(&policy, &mut problems);
            let mut resolve_one =
                |name: &str| resolve(runtime, cache, &policy, name, &trust, &mut signers);
            let used = used_plugins(&policy);
            let plugins = resolve_used(&used, &mut resolve_one, &mut problems);
            // A plugin the policy declares must resolve even when no gate
            // uses it yet: a missing file or a wrong digest is a problem
            // now, not the day a gate starts using it. (Shared
            // plugin-directory entries have no line.)
            for (name, decl) in &policy.plugins {
                if decl.line > 0
                    && !used.contains(name.as_str())
                    && let Err(problem) = resolve_one(name)
                {
                    problems.push(problem);
                }
            }
            plugins
        }
        Source::Logged(logged) => {
            // The policy is read as any other, its allowed-signers file
            // included; its plugins are the record's bytes, which ran, so
            // no signature is asked of them.
            policy_trust(&policy, &Trust::default()).map_err(|problem| Problems(vec![problem]))?;
            reserved_names(&policy, &mut problems);
            let used = used_plugins(&policy);
            resolve_used(
                &used,
                &mut |name| resolve_logged(runtime, logged, name),
                &mut problems,
            )
        }
    };
    // Every use, its plugin's world then its settings; the parser's
    // refusals where those uses were written.
    let mut refused = refused.into_iter().peekable();
    for (i, u) in policy.plugin_uses().enumerate() {
        while let Some(r) = refused.next_if(|r| r.before <= i) {
            problems.push(r.problem);
        }
        problems.extend(check_settings(&u, &plugins));
    }
    problems.extend(refused.map(|r| r.problem));
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

/// The signatures a policy's plugins need: the host's demands and the
/// policy's own, whose allowed signers win over the host's.
fn policy_trust(policy: &Policy, host: &Trust) -> Result<Trust, Problem> {
    let require_signature = host.require_signature || policy.require_signature;
    let allowed_signers = match &policy.allowed_signers {
        Some(path) => Some(Arc::new(
            crate::engine::signature::AllowedSigners::read(path).map_err(|e| Problem {
                line: None,
                message: e.to_string(),
            })?,
        )),
        None => host.allowed_signers.clone(),
    };
    Ok(Trust {
        require_signature,
        allowed_signers,
    })
}

/// Declared plugins may not take a host gate's name.
fn reserved_names(policy: &Policy, problems: &mut Vec<Problem>) {
    for (name, decl) in &policy.plugins {
        if crate::policy::approvals::HostGate::named(name).is_some() {
            problems.push(Problem {
                line: Some(decl.line).filter(|l| *l > 0),
                message: format!(
                    "plugin name `{name}` is reserved for the host's `{name}` gate; name the plugin otherwise"
                ),
            });
        }
    }
}

/// The plugins the policy's uses name. (Host gates are no plugin.)
fn used_plugins(policy: &Policy) -> BTreeSet<&str> {
    policy.plugin_uses().map(|u| u.plugin).collect()
}

/// Each used plugin, resolved; a plugin that does not resolve is a problem.
fn resolve_used(
    used: &BTreeSet<&str>,
    resolve: &mut dyn FnMut(&str) -> Result<Arc<Plugin>, Problem>,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Arc<Plugin>> {
    let mut plugins = BTreeMap::new();
    for name in used {
        match resolve(name) {
            Ok(p) => {
                plugins.insert((*name).to_string(), p);
            }
            Err(problem) => problems.push(problem),
        }
    }
    plugins
}

/// A use's problem, if any: a plugin of another world, or settings the
/// plugin refuses (or could not check).
fn check_settings(u: &Use<'_>, plugins: &BTreeMap<String, Arc<Plugin>>) -> Option<Problem> {
    let Use {
        world,
        name,
        plugin: plugin_name,
        config,
        limits,
        line,
    } = *u;
    let role = world.as_str();
    let plugin = plugins.get(plugin_name)?;
    let message = if plugin.info().world == world {
        let call = plugin.validate_config(config, limits.clone());
        match call.result {
            Ok(Ok(())) => return None,
            Ok(Err(msg)) => format!(
                "invalid settings for {role} `{name}` (plugin `{plugin_name}`): {}",
                crate::base::text::escape_control(&msg)
            ),
            Err(e) => format!(
                "plugin `{plugin_name}` failed to check the settings of {role} `{name}`: {e}"
            ),
        }
    } else {
        format!(
            "plugin `{plugin_name}` of {role} `{name}` is a {} plugin, not a {role}",
            plugin.info().world.as_str()
        )
    };
    Some(Problem {
        line: Some(line),
        message,
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
    signers: &mut BTreeMap<String, crate::engine::signature::Signed>,
) -> Result<Arc<Plugin>, Problem> {
    let (bytes, line): (std::borrow::Cow<'static, [u8]>, Option<usize>) =
        match crate::policy::builtin::plugin(name) {
            Some(b) => (b.into(), None),
            None => {
                let Some(decl) = policy.plugins.get(name) else {
                    return Err(Problem {
                        line: None,
                        message: format!("unknown plugin `{name}`"),
                    });
                };
                let bytes = crate::base::files::read_limited(
                    &decl.path,
                    crate::base::files::MAX_PLUGIN_BYTES,
                )
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
                let signed = crate::engine::signature::check(
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
