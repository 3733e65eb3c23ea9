//! The shared runtime: one wasmtime engine and linker, and plugins compiled
//! and linked once, then kept by digest.

use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::bindings;
use super::bindings::action::ActionPre;
use super::bindings::gate::GatePre;
use super::bindings::source::SourcePre;
use super::bindings::trigger::TriggerPre;
use super::cache::Cache;
use super::call::{Plugin, PluginKind};
use super::error::{EngineError, LoadError};
use super::host::HostState;
use super::inspect::{self, PluginInfo, World};
use super::limits::{Allocation, POOL_SIZE, on_demand_config, pooling_config};
use super::precompiled;
use super::ticker::Ticker;
use super::wasi;
use crate::base::digest::Digest;

/// The shared wasm runtime: one engine, one linker with the host imports.
///
/// Deny by default: the linker offers only the tollgate interfaces (snapshot
/// reads, a bounded log, and a clock that returns the call's decision time,
/// [`Input::now`](super::Input::now)).
/// No WASI, no files, no network, no wall clock, no randomness. Calls run with
/// a 100 ms CPU deadline, a 16 MiB memory cap, a 512 KiB wasm stack and capped
/// outputs unless a policy grants otherwise, within [`MAX_DEADLINE`](super::MAX_DEADLINE)
/// and [`MAX_MEMORY`](super::MAX_MEMORY).
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<Cache>,
    /// Plugins compiled and linked in this process, by digest, least
    /// recently used dropped past [`COMPILED_IN_MEMORY`]: a replay or a
    /// reload of bytes already loaded compiles nothing.
    compiled: std::sync::Mutex<lru::LruCache<Digest, Arc<Compiled>>>,
    allocation: Allocation,
    notices: Vec<String>,
    /// Plugins loaded from an artifact compiled at build time.
    precompiled: std::sync::atomic::AtomicUsize,
    /// Why wasmtime first refused an artifact compiled at build time.
    precompiled_refused: std::sync::OnceLock<String>,
    _ticker: Ticker,
}

/// How many first-party plugins this binary carries compiled at build
/// time: all of them in a normal build, none without the `precompiled`
/// feature.
pub fn precompiled_plugins() -> usize {
    precompiled::count()
}

/// Compiled plugins a [`Runtime`] keeps in memory by digest.
pub const COMPILED_IN_MEMORY: usize = 32;

/// What compiling and linking a component yields, shared by every
/// [`Plugin`] loaded from the same bytes.
struct Compiled {
    info: PluginInfo,
    kind: PluginKind,
}

impl Runtime {
    /// Starts the engine with [`POOL_SIZE`] slots; see [`Runtime::with_slots`].
    pub fn new() -> Result<Self, EngineError> {
        Self::with_slots(POOL_SIZE)
    }

    /// Starts the engine and its epoch ticker with a pool of `slots`
    /// concurrent plugin calls. When the pool's address space cannot be
    /// reserved (an address-space limit), it falls back to on-demand
    /// allocation and says so once in [`Runtime::notices`].
    pub fn with_slots(slots: u32) -> Result<Self, EngineError> {
        let slots = slots.clamp(1, POOL_SIZE);
        let (engine, allocation, notices) = match Engine::new(&pooling_config(slots)) {
            Ok(engine) => (engine, Allocation::Pooled(slots), Vec::new()),
            Err(pooled) => {
                let engine = Engine::new(&on_demand_config()).map_err(|e| {
                    EngineError(format!(
                        "{}; on-demand allocation failed too: {}",
                        crate::base::text::first_line(&pooled.to_string()),
                        crate::base::text::first_line(&format!("{e:#}"))
                    ))
                })?;
                let notice = format!(
                    "the plugin pool ({slots} slots) could not reserve its address space ({}); allocating per call instead",
                    crate::base::text::first_line(&pooled.root_cause().to_string())
                );
                (engine, Allocation::OnDemand, vec![notice])
            }
        };
        let mut linker = Linker::new(&engine);
        bindings::gate::Gate::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| EngineError(format!("{e:#}")))?;
        wasi::link(&mut linker).map_err(|e| EngineError(format!("linking WASI: {e:#}")))?;
        let ticker = Ticker::start(engine.clone()).map_err(|e| EngineError(e.to_string()))?;
        Ok(Self {
            engine,
            linker,
            cache: None,
            compiled: std::sync::Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(COMPILED_IN_MEMORY)
                    .unwrap_or(std::num::NonZeroUsize::MIN),
            )),
            allocation,
            notices,
            precompiled: std::sync::atomic::AtomicUsize::new(0),
            precompiled_refused: std::sync::OnceLock::new(),
            _ticker: ticker,
        })
    }

    /// How plugin instances are allocated.
    pub fn allocation(&self) -> Allocation {
        self.allocation
    }

    /// Things the operator should hear once: a pool that fell back to
    /// on-demand allocation, a compile cache that is not used, and why.
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// Caches compiled plugins under `dir`, keyed by the digest of their
    /// component bytes, so each plugin is compiled once per machine rather
    /// than once per process. The directory is created private to its owner;
    /// one that is not owned by this user, or that others may write to, is
    /// not used, and [`Runtime::notices`] says why.
    #[must_use]
    pub fn with_cache_dir(mut self, dir: std::path::PathBuf) -> Self {
        match Cache::open(&dir) {
            Ok(cache) => self.cache = Some(cache),
            Err(skipped) => {
                self.cache = None;
                self.notices.push(skipped.to_string());
            }
        }
        self
    }

    /// Compiles `bytes`, or loads the artifact the build compiled or this
    /// host cached for them.
    fn compile(&self, bytes: &[u8], digest: Digest) -> wasmtime::Result<Component> {
        // Every artifact was compiled under the same settings, so once
        // wasmtime refuses one it would refuse them all: stop offering.
        if self.precompiled_refused.get().is_none()
            && let Some(artifact) = precompiled::artifact(digest)
        {
            #[expect(
                unsafe_code,
                reason = "loading the native code compiled at build time is the point of precompiling"
            )]
            // SAFETY: the artifact is part of this binary, compiled by its
            // build script from the component whose bytes hash to `digest`;
            // it is as trusted as the binary itself. wasmtime checks its
            // version, target, CPU features, tunables and Wasm features
            // against this engine and errors otherwise, in which case it is
            // compiled afresh. The Cranelift settings it does not check
            // come from the same `config.rs` as the build script's
            // (`limits::tests::the_pooled_engine_compiles_as_the_build_script_does`).
            match unsafe { Component::deserialize(&self.engine, artifact) } {
                Ok(c) => {
                    self.precompiled
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok(c);
                }
                Err(e) => {
                    let _ = self
                        .precompiled_refused
                        .set(crate::base::text::first_line(&format!("{e:#}")).into_owned());
                }
            }
        }
        let Some(cache) = &self.cache else {
            return Component::new(&self.engine, bytes);
        };
        if let Some(artifact) = cache.load(digest) {
            #[expect(
                unsafe_code,
                reason = "deserializing native code is how a compile cache works"
            )]
            // SAFETY: the artifact's HMAC tag verified under a key only this
            // user can read, so this host serialized it, for this digest, in a
            // directory only its owner may write. wasmtime also checks that it
            // matches this engine's configuration and errors otherwise, in
            // which case it is compiled afresh.
            if let Ok(c) = unsafe { Component::deserialize(&self.engine, &artifact) } {
                return Ok(c);
            }
        }
        let component = Component::new(&self.engine, bytes)?;
        if let Ok(artifact) = component.serialize() {
            cache.store(digest, &artifact);
        }
        Ok(component)
    }

    /// Compiles and links a plugin. Refuses a component that imports anything
    /// but the tollgate interfaces, naming the import, and one whose exports
    /// do not have the types the WIT declares.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<Plugin, LoadError> {
        let digest = Digest::of(bytes);
        let cached = self
            .compiled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&digest)
            .cloned();
        let compiled = match cached {
            Some(c) => c,
            None => {
                let c = Arc::new(self.compile_and_link(name, bytes, digest)?);
                self.compiled
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .put(digest, Arc::clone(&c));
                c
            }
        };
        Ok(Plugin {
            name: name.to_string(),
            digest,
            bytes: bytes.into(),
            size: bytes.len(),
            info: compiled.info.clone(),
            kind: compiled.kind.clone(),
            engine: self.engine.clone(),
        })
    }

    /// How many plugins this runtime loaded from the native code compiled
    /// at build time rather than compiling them; see [`precompiled_plugins`].
    pub fn precompiled_loads(&self) -> usize {
        self.precompiled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Why wasmtime refused the first build-time artifact it was offered
    /// (another CPU, or engine settings of another allocation mode), if it
    /// refused one: those plugins were compiled at start instead.
    pub fn precompiled_refusal(&self) -> Option<&str> {
        self.precompiled_refused.get().map(String::as_str)
    }

    /// How many compiled plugins are held in memory, for tests.
    pub fn compiled_in_memory(&self) -> usize {
        self.compiled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    fn compile_and_link(
        &self,
        name: &str,
        bytes: &[u8],
        digest: Digest,
    ) -> Result<Compiled, LoadError> {
        let component = self
            .compile(bytes, digest)
            .map_err(|e| LoadError::Invalid {
                name: name.to_string(),
                message: invalid_component_message(bytes, &e),
            })?;
        let info =
            inspect::inspect(&self.engine, &component).map_err(|problem| LoadError::Imports {
                name: name.to_string(),
                problem,
            })?;
        let link = |e: wasmtime::Error| LoadError::Link {
            name: name.to_string(),
            message: crate::base::text::first_line(&format!("{e:#}")).into_owned(),
        };
        let pre = self.linker.instantiate_pre(&component).map_err(link)?;
        inspect::typecheck(&pre, &info).map_err(|problem| LoadError::Exports {
            name: name.to_string(),
            problem,
        })?;
        let kind = match info.world {
            World::Gate => PluginKind::Gate(GatePre::new(pre).map_err(link)?),
            World::Trigger => PluginKind::Trigger(TriggerPre::new(pre).map_err(link)?),
            World::Action => PluginKind::Action(ActionPre::new(pre).map_err(link)?),
            World::Source => PluginKind::Source(SourcePre::new(pre).map_err(link)?),
        };
        Ok(Compiled { info, kind })
    }
}

/// One line saying why `bytes` are not a component: wasmparser appends a hex
/// dump of the offending bytes, which helps no one reading a policy error.
fn invalid_component_message(bytes: &[u8], e: &wasmtime::Error) -> String {
    let message = crate::base::text::first_line(&format!("{e:#}")).into_owned();
    if bytes.starts_with(b"\0asm\x01\0\0\0") {
        format!(
            "{message} (this is a core wasm module, not a component: wrap it with `wasm-tools component new`)"
        )
    } else {
        message
    }
}
