//! The set of policies a server serves, loaded and compiled as one unit so
//! that a reload either swaps in a complete, valid set or changes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::Runtime;
use crate::policy::{self, LoadedPolicy, PluginCache, PluginDecl};

/// A policy set could not be loaded; the message lists every problem.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot read `{path}`: {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("invalid policies:\n{0}")]
    Invalid(String),
    #[error("reload failed: {0}")]
    Internal(String),
    /// The token file cannot be used (its message names the file and line).
    #[error("{0}")]
    Tokens(String),
}

impl ReloadError {
    /// What keeps serving after a reload failed with this error: nothing
    /// was swapped.
    pub(super) fn kept_on_failure(&self) -> &'static str {
        match self {
            Self::Tokens(_) => "the previous tokens and policies keep serving",
            _ => "the previous policies keep serving",
        }
    }
}

/// Loaded policies by name, with where each came from and the worker
/// budget each may hold.
pub struct PolicySet {
    policies: BTreeMap<String, (Arc<LoadedPolicy>, String)>,
    budgets: BTreeMap<String, Arc<tokio::sync::Semaphore>>,
    /// Every first-party plugin, compiled (most already are for the
    /// policies), for the catalog.
    builtins: Vec<(&'static str, Arc<crate::engine::Plugin>)>,
    /// The plugin directory's plugins, by name, for policies sent in
    /// requests (backtest candidates).
    shared: BTreeMap<String, PluginDecl>,
    /// Every plugin compiled for the set, by digest, so a candidate that
    /// uses them compiles nothing again.
    compiled: PluginCache,
}

impl PolicySet {
    /// Loads every `*.yaml` (not `*.test.yaml`) in `dir`, or the bundled
    /// policies when `dir` is `None`. `plugins` names a directory of `*.wasm`
    /// user plugins, available to every policy under their file stems.
    pub fn load(
        runtime: &Runtime,
        dir: Option<&Path>,
        plugins: Option<&Path>,
        workers_per_policy: usize,
        trust: &policy::Trust,
    ) -> Result<Self, ReloadError> {
        let shared = match plugins {
            None => BTreeMap::new(),
            Some(p) => shared_plugins(p).map_err(|source| ReloadError::Read {
                path: p.display().to_string(),
                cause: source,
            })?,
        };
        let sources: Vec<(String, String, PathBuf)> = match dir {
            // The bundled policies, embedded so `tollgate serve` needs no files.
            None => crate::policy::builtin::BUNDLED_POLICIES
                .iter()
                .map(|(n, t)| (format!("bundled:{n}"), t.to_string(), PathBuf::from(".")))
                .collect(),
            Some(dir) => {
                let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                    .map_err(|source| ReloadError::Read {
                        path: dir.display().to_string(),
                        cause: source,
                    })?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        let name = p.to_string_lossy();
                        (name.ends_with(".yaml") || name.ends_with(".yml"))
                            && !name.ends_with(".test.yaml")
                    })
                    .collect();
                files.sort();
                let mut out = Vec::new();
                for f in files {
                    let text =
                        crate::base::files::read_text(&f).map_err(|e| ReloadError::Read {
                            path: f.display().to_string(),
                            cause: std::io::Error::other(e.to_string()),
                        })?;
                    out.push((f.display().to_string(), text, dir.to_path_buf()));
                }
                out
            }
        };
        let mut cache = PluginCache::new();
        let mut policies = BTreeMap::new();
        let mut problems = Vec::new();
        for (source, text, base) in sources {
            match policy::load_with(runtime, &mut cache, &text, &base, &shared, trust) {
                Ok(loaded) => {
                    let name = loaded.policy.name.to_string();
                    if let Some((_, other)) = policies.get(&name) {
                        problems.push(format!(
                            "{source}: policy `{name}` is also defined in {other}"
                        ));
                        continue;
                    }
                    policies.insert(name, (Arc::new(loaded), source));
                }
                Err(p) => problems.push(p.render(Some(&source))),
            }
        }
        if !problems.is_empty() {
            return Err(ReloadError::Invalid(problems.join("\n")));
        }
        if policies.is_empty() {
            return Err(ReloadError::Invalid("no policies found".into()));
        }
        let budgets = policies
            .keys()
            .map(|name| {
                (
                    name.clone(),
                    Arc::new(tokio::sync::Semaphore::new(workers_per_policy.max(1))),
                )
            })
            .collect();
        let mut builtins = Vec::new();
        for name in crate::policy::builtin::names() {
            let bytes = crate::policy::builtin::plugin(name).unwrap_or_default();
            let digest = crate::base::digest::Digest::of(bytes);
            let plugin = match cache.get(&digest) {
                Some(p) => Arc::clone(p),
                None => {
                    let p = Arc::new(runtime.load(name, bytes).map_err(|e| {
                        ReloadError::Internal(format!("first-party plugin `{name}`: {e}"))
                    })?);
                    cache.insert(digest, Arc::clone(&p));
                    p
                }
            };
            builtins.push((name, plugin));
        }
        Ok(Self {
            policies,
            budgets,
            builtins,
            shared,
            compiled: cache,
        })
    }

    /// Loads a policy a caller sent, over this set's plugins: the
    /// first-party ones and the plugin directory's (see
    /// [`policy::load_offered`]). Compiles, so call it off the async
    /// workers.
    pub(super) fn load_offered(
        &self,
        runtime: &Runtime,
        text: &str,
        trust: &policy::Trust,
    ) -> Result<LoadedPolicy, policy::Problems> {
        let mut cache = self.compiled.clone();
        policy::load_offered(runtime, &mut cache, text, &self.shared, trust)
    }

    /// Every first-party plugin, compiled.
    pub(super) fn builtins(&self) -> &[(&'static str, Arc<crate::engine::Plugin>)] {
        &self.builtins
    }

    /// The policy called `name` with the semaphore that bounds how many
    /// workers its evaluations hold at once.
    pub(super) fn get_with_budget(
        &self,
        name: &str,
    ) -> Option<(Arc<LoadedPolicy>, Arc<tokio::sync::Semaphore>)> {
        Some((
            Arc::clone(&self.policies.get(name)?.0),
            Arc::clone(self.budgets.get(name)?),
        ))
    }

    /// The policy called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<LoadedPolicy>> {
        self.policies.get(name).map(|(p, _)| p)
    }

    /// Every policy with its source, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<LoadedPolicy>, &String)> {
        self.policies.iter().map(|(n, (p, s))| (n, p, s))
    }

    /// The 404 for a policy name not loaded: the closest name, if one is
    /// close, and every name, as an unknown stage lists the stages.
    pub(super) fn unknown(&self, name: &str) -> super::ApiError {
        let names: Vec<&str> = self.policies.keys().map(String::as_str).collect();
        let listing = format!("policies: {}", names.join(", "));
        super::ApiError::not_found(
            "unknown_policy",
            format!(
                "unknown policy `{}`{}",
                crate::base::text::shown(name),
                crate::base::suggest::with_listing(name, names.iter().copied(), &listing)
            ),
        )
        .field("policy")
    }

    /// How many policies are loaded.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Whether the set is empty (never, once loaded).
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

fn shared_plugins(dir: &Path) -> std::io::Result<BTreeMap<String, PluginDecl>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wasm")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            out.insert(
                stem.to_string(),
                PluginDecl {
                    path: path.clone(),
                    digest: None,
                    line: 0,
                },
            );
        }
    }
    Ok(out)
}
