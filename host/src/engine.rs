//! The sandbox: one wasmtime engine, plugins compiled once, and a fresh store
//! and instance for every call, with CPU, memory, stack and output bounds.

pub mod answer;
mod bindings;
mod cache;
mod host;
mod inspect;
mod output;
mod ticker;
pub mod wasi;

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};

use self::bindings::action::ActionPre;
use self::bindings::action::exports::tollgate::plugin::action_api as wit_action;
use self::bindings::gate::GatePre;
use self::bindings::trigger::TriggerPre;
use self::cache::Cache;
pub use self::cache::CacheSkipped;
use self::host::HostState;
use self::output::{check_finding, check_plan, check_trigger};
use self::ticker::{TICK, Ticker};
use crate::digest::Digest;
use crate::snapshot::Snapshot;

use self::answer::{Action, Fire, StageResult};
pub use self::bindings::types::{ConfigValue, Scalar};
pub use self::host::LogLine;
pub use self::inspect::{ImportCheckError, WIT_VERSION, World};

/// A plugin configuration: flattened keys with typed values, in policy order.
pub type PluginConfig = Vec<(String, ConfigValue)>;

/// The most memory any policy may grant a plugin.
pub const MAX_MEMORY: usize = 256 << 20;
/// The longest deadline any policy may grant a plugin.
pub const MAX_DEADLINE: Duration = Duration::from_secs(10);
/// Wasm stack a plugin may use before it traps.
pub const MAX_WASM_STACK: usize = 512 << 10;
/// Plugin calls that may be in flight at once; a full pool refuses, it does not wait.
pub const POOL_SIZE: u32 = 256;

/// Low memory of each pool slot kept mapped between calls and reset in place.
const KEEP_RESIDENT: usize = 2 << 20;

/// Bounds on what a plugin may return.
pub const MAX_REASON_BYTES: usize = 4096;
pub const MAX_DETAILS: usize = 32;
pub const MAX_DETAIL_BYTES: usize = 1024;
pub const MAX_STATE_BYTES: usize = 64 << 10;
pub const MAX_ACTIONS: usize = 32;
/// The longest pause an action may plan: one year, well inside what a
/// JSON client reading doubles represents exactly.
pub const MAX_PAUSE_SECONDS: u64 = 365 * 24 * 3600;

/// A call may take this many times its CPU deadline in wall time before it
/// is stopped anyway: a plugin blocked or starved of CPU still ends.
pub const WALL_CEILING_FACTOR: u32 = 4;

/// The slowest rate at which one uninterruptible instruction (`memory.fill`,
/// `memory.copy`, `memory.grow`'s zeroing) is assumed to touch memory: 1 GiB
/// a second. The deadline is checked between instructions, so one such
/// instruction over a whole memory can overrun it by up to
/// [`uninterruptible_bound`]; 256 MiB measured 140–180 ms here.
pub const FILL_BYTES_PER_SECOND: u64 = 1 << 30;

/// How long one instruction over a memory of `memory` bytes may run before
/// the deadline can interrupt it: the most a call can overrun its deadline.
pub fn uninterruptible_bound(memory: usize) -> Duration {
    let bytes = u64::try_from(memory).unwrap_or(u64::MAX);
    Duration::from_micros(bytes.saturating_mul(1_000_000) / FILL_BYTES_PER_SECOND)
}

/// What a call reads: the snapshot, and the time the host decides at.
#[derive(Debug, Clone)]
pub struct Input {
    pub snapshot: Arc<Snapshot>,
    /// The decision time, unix seconds: what `host.now` and WASI's clocks
    /// show. It is the server's clock when it decides (`decided_at`), never
    /// the caller's `taken_at`, so a back-dated snapshot cannot move a
    /// freeze; a replay passes the logged one, so it stays exact.
    pub now: i64,
}

/// Per-call resource limits, and what the call may read beyond its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// CPU time a call may spend before it is interrupted, counted on the
    /// thread that runs it, so load on the machine cannot spend it. Wall
    /// time is capped at [`WALL_CEILING_FACTOR`] times this.
    pub deadline: Duration,
    /// Linear memory a call may grow to, in bytes.
    pub memory: usize,
    /// Directories the call may read through WASI; none by default.
    pub files: Arc<[wasi::FileGrant]>,
}

impl Default for Limits {
    /// 100 ms and 16 MiB, the defaults a policy gate gets.
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(100),
            memory: 16 << 20,
            files: Arc::from(Vec::new()),
        }
    }
}

/// The engine could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the wasm engine: {0}")]
pub struct EngineError(String);

/// A plugin that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("plugin `{name}` is not a valid component: {message}")]
    Invalid { name: String, message: String },
    #[error("plugin `{name}`: {problem}")]
    Imports {
        name: String,
        problem: ImportCheckError,
    },
    #[error("plugin `{name}` cannot be linked: {message}")]
    Link { name: String, message: String },
}

/// Why a plugin call produced no usable answer. Each becomes verdict `error`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("deadline of {} ms exceeded", .0.as_millis())]
    Deadline(Duration),
    #[error(
        "wall-clock ceiling of {} ms exceeded (deadline {} ms of CPU time)",
        .0.as_millis() * u128::from(WALL_CEILING_FACTOR),
        .0.as_millis()
    )]
    WallCeiling(Duration),
    #[error("memory limit {} exceeded", human_bytes(*.0))]
    Memory(usize),
    #[error("wasm stack exhausted (limit {} KiB)", MAX_WASM_STACK >> 10)]
    StackOverflow,
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// A Rust plugin built with the SDK panicked; its message, from the log.
    #[error("plugin panicked: {0}")]
    Panic(String),
    #[error("{0}")]
    Output(String),
    #[error("plugin pool exhausted: too many calls in flight")]
    PoolExhausted,
    #[error("cannot instantiate plugin: {0}")]
    Instantiate(String),
}

impl CallError {
    /// A short stable label for metrics and logs.
    pub fn cause(&self) -> &'static str {
        match self {
            Self::Deadline(_) | Self::WallCeiling(_) => "deadline",
            Self::Memory(_) => "memory",
            Self::StackOverflow => "stack",
            Self::Trap(_) | Self::Panic(_) => "trap",
            Self::Output(_) => "output",
            Self::PoolExhausted => "pool",
            Self::Instantiate(_) => "instantiate",
        }
    }
}

/// Formats a byte count the way policies write it (`16 MiB`).
pub fn human_bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// The engine's settings shared by both allocation strategies.
fn base_config() -> Config {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .memory_init_cow(true);
    config
}

/// The pooling allocator sized for `slots` plugin calls in flight. Each
/// slot reserves address space for its memories up front (about 4 GiB each,
/// so that compiled code needs no bounds checks).
fn pooling_config(slots: u32) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots * 4)
        .total_memories(slots * 2)
        .total_tables(slots * 4)
        .max_memory_size(MAX_MEMORY)
        // Reset a slot's low memory with memset (only the pages a call
        // touched, where the kernel can say which) instead of madvise:
        // unmapping costs page faults and cross-core TLB shootdowns on
        // every evaluation.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(64 << 10)
        .pagemap_scan(wasmtime::Enabled::Auto);
    let mut config = base_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// On-demand allocation that reserves only what a plugin may use, for hosts
/// whose address space is limited (`ulimit -v`, valgrind).
fn on_demand_config() -> Config {
    let mut config = base_config();
    config
        .allocation_strategy(InstanceAllocationStrategy::OnDemand)
        .memory_reservation(MAX_MEMORY as u64)
        .memory_reservation_for_growth(0);
    config
}

/// How the engine allocates plugin instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// A pre-reserved pool of this many slots: the fast path.
    Pooled(u32),
    /// Memory reserved per call, within each plugin's cap.
    OnDemand,
}

/// The shared wasm runtime: one engine, one linker with the host imports.
///
/// Deny by default: the linker offers only the tollgate interfaces (snapshot
/// reads, a bounded log, and a clock that returns the call's decision time,
/// [`Input::now`]).
/// No WASI, no files, no network, no wall clock, no randomness. Calls run with
/// a 100 ms CPU deadline, a 16 MiB memory cap, a 512 KiB wasm stack and capped
/// outputs unless a policy grants otherwise, within [`MAX_DEADLINE`] and
/// [`MAX_MEMORY`].
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
    _ticker: Ticker,
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
                        crate::text::first_line(&pooled.to_string()),
                        crate::text::first_line(&format!("{e:#}"))
                    ))
                })?;
                let notice = format!(
                    "the plugin pool ({slots} slots) could not reserve its address space ({}); allocating per call instead",
                    crate::text::first_line(&pooled.root_cause().to_string())
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

    /// Compiles `bytes`, or loads the artifact this host cached for them.
    fn compile(&self, bytes: &[u8], digest: Digest) -> wasmtime::Result<Component> {
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
            message: crate::text::first_line(&format!("{e:#}")).into_owned(),
        };
        let pre = self.linker.instantiate_pre(&component).map_err(link)?;
        inspect::typecheck(&pre, &info).map_err(|message| LoadError::Link {
            name: name.to_string(),
            message,
        })?;
        let kind = match info.world {
            World::Gate => PluginKind::Gate(GatePre::new(pre).map_err(link)?),
            World::Trigger => PluginKind::Trigger(TriggerPre::new(pre).map_err(link)?),
            World::Action => PluginKind::Action(ActionPre::new(pre).map_err(link)?),
        };
        Ok(Compiled { info, kind })
    }
}

/// One line saying why `bytes` are not a component: wasmparser appends a hex
/// dump of the offending bytes, which helps no one reading a policy error.
fn invalid_component_message(bytes: &[u8], e: &wasmtime::Error) -> String {
    let message = crate::text::first_line(&format!("{e:#}")).into_owned();
    if bytes.starts_with(b"\0asm\x01\0\0\0") {
        format!(
            "{message} (this is a core wasm module, not a component: wrap it with `wasm-tools component new`)"
        )
    } else {
        message
    }
}

#[derive(Clone)]
enum PluginKind {
    Gate(GatePre<HostState>),
    Trigger(TriggerPre<HostState>),
    Action(ActionPre<HostState>),
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

/// A compiled, linked plugin, ready to be instantiated per call.
pub struct Plugin {
    name: String,
    digest: Digest,
    /// The component's bytes, kept so a decision log can store exactly
    /// what ran.
    bytes: std::sync::Arc<[u8]>,
    size: usize,
    info: PluginInfo,
    kind: PluginKind,
    engine: Engine,
}

/// A gate's answer, checked against the output bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub verdict: Verdict,
    pub reason: String,
    pub observed: Option<f64>,
    pub threshold: Option<f64>,
    pub details: Vec<(String, String)>,
}

/// The verdicts a gate plugin can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
    Inconclusive,
}

/// A trigger's answer, checked against the output bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerFinding {
    pub fire: Fire,
    pub reason: String,
    pub observed: Option<f64>,
    pub threshold: Option<f64>,
    pub details: Vec<(String, String)>,
    /// The state for the next check.
    pub state: Vec<u8>,
}

/// A stage of the policy as an action plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageInfo {
    pub name: String,
    pub traffic_percent: Option<u8>,
    pub min_duration_seconds: Option<u64>,
}

/// Where the release stands, for action plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionContext {
    pub stage: String,
    pub stages: Vec<StageInfo>,
    pub elapsed_seconds: Option<u64>,
    pub outcome: StageResult,
    /// The strongest trigger that fired, and its reason.
    pub trigger: Option<(String, String)>,
}

/// The outcome of one call: its result, its logs and how long it took.
#[derive(Debug, Clone)]
pub struct Call<T> {
    pub result: Result<T, CallError>,
    pub logs: Vec<LogLine>,
    pub elapsed: Duration,
}

impl Plugin {
    /// The name the policy knows the plugin by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The SHA-256 of the component bytes.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The component's bytes.
    pub fn bytes(&self) -> &std::sync::Arc<[u8]> {
        &self.bytes
    }

    /// The size of the component in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// World, WIT version, imports and exports.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// Asks the plugin whether `config` is acceptable.
    pub fn validate_config(
        &self,
        config: &PluginConfig,
        limits: Limits,
    ) -> Call<Result<(), String>> {
        // Settings are checked with no snapshot and a clock at zero: a
        // configuration is valid or not whatever the time.
        let input = Input {
            snapshot: Arc::new(Snapshot::empty()),
            now: 0,
        };
        self.call(input, limits, |store, kind| match kind {
            PluginKind::Gate(pre) => {
                let gate = pre.instantiate(&mut *store).map_err(instantiate_error)?;
                gate.tollgate_plugin_gate_api()
                    .call_validate_config(&mut *store, config)
            }
            PluginKind::Trigger(pre) => {
                let trigger = pre.instantiate(&mut *store).map_err(instantiate_error)?;
                trigger
                    .tollgate_plugin_trigger_api()
                    .call_validate_config(&mut *store, config)
            }
            PluginKind::Action(pre) => {
                let action = pre.instantiate(&mut *store).map_err(instantiate_error)?;
                action
                    .tollgate_plugin_action_api()
                    .call_validate_config(&mut *store, config)
            }
        })
        .map(|r| match r {
            Ok(Err(msg)) if msg.len() > MAX_REASON_BYTES => Err(CallError::Output(format!(
                "configuration error of {} bytes exceeds the {MAX_REASON_BYTES}-byte limit",
                msg.len()
            ))),
            other => other,
        })
    }

    /// Runs a gate over `snapshot`. Every call gets a fresh store and instance,
    /// so no data is shared between evaluations.
    pub fn evaluate(&self, config: &PluginConfig, input: Input, limits: Limits) -> Call<Finding> {
        self.call(input, limits, |store, kind| {
            let PluginKind::Gate(pre) = kind else {
                return Err(wrong_world(World::Gate));
            };
            let gate = pre.instantiate(&mut *store).map_err(instantiate_error)?;
            let handle = store.data_mut().snapshot_handle()?;
            gate.tollgate_plugin_gate_api()
                .call_evaluate(&mut *store, config, handle)
        })
        .map(|r| r.and_then(check_finding))
    }

    /// Runs a trigger over `snapshot` with the state its previous check
    /// returned. Like every call, it gets a fresh store and instance.
    pub fn check(
        &self,
        config: &PluginConfig,
        input: Input,
        state: &[u8],
        limits: Limits,
    ) -> Call<TriggerFinding> {
        self.call(input, limits, |store, kind| {
            let PluginKind::Trigger(pre) = kind else {
                return Err(wrong_world(World::Trigger));
            };
            let trigger = pre.instantiate(&mut *store).map_err(instantiate_error)?;
            let handle = store.data_mut().snapshot_handle()?;
            trigger
                .tollgate_plugin_trigger_api()
                .call_check(&mut *store, config, handle, state)
        })
        .map(|r| r.and_then(check_trigger))
    }

    /// Asks an action plugin for its plan.
    pub fn plan(
        &self,
        config: &PluginConfig,
        input: Input,
        context: &ActionContext,
        limits: Limits,
    ) -> Call<Result<Vec<Action>, String>> {
        let ctx = wit_action::Context {
            stage: context.stage.clone(),
            stages: context
                .stages
                .iter()
                .map(|s| wit_action::StageInfo {
                    name: s.name.clone(),
                    traffic_percent: s.traffic_percent,
                    min_duration_seconds: s.min_duration_seconds,
                })
                .collect(),
            elapsed_seconds: context.elapsed_seconds,
            outcome: match context.outcome {
                StageResult::Pass => wit_action::Outcome::Pass,
                StageResult::Warning => wit_action::Outcome::Warning,
                StageResult::Fail => wit_action::Outcome::Fail,
                StageResult::Inconclusive => wit_action::Outcome::Inconclusive,
            },
            trigger: context.trigger.clone(),
        };
        self.call(input, limits, |store, kind| {
            let PluginKind::Action(pre) = kind else {
                return Err(wrong_world(World::Action));
            };
            let action = pre.instantiate(&mut *store).map_err(instantiate_error)?;
            let handle = store.data_mut().snapshot_handle()?;
            action
                .tollgate_plugin_action_api()
                .call_plan(&mut *store, config, handle, &ctx)
        })
        .map(|r| r.and_then(check_plan))
    }

    fn call<T>(
        &self,
        input: Input,
        limits: Limits,
        f: impl FnOnce(&mut Store<HostState>, &PluginKind) -> wasmtime::Result<T>,
    ) -> Call<T> {
        let started = Instant::now();
        let mut store = Store::new(
            &self.engine,
            HostState::new(input, limits.memory, Arc::clone(&limits.files)),
        );
        store.limiter(|s| &mut s.limiter);
        let budget = Budget::start(limits.deadline);
        store.set_epoch_deadline(budget.first_ticks());
        store.epoch_deadline_callback(move |mut cx| match budget.check() {
            Some(ticks) => Ok(UpdateDeadline::Continue(ticks)),
            None => {
                cx.data_mut().out_of_time = Some(budget.exhausted());
                Ok(UpdateDeadline::Interrupt)
            }
        });
        let outcome = f(&mut store, &self.kind);
        let elapsed = started.elapsed();
        store.data_mut().drain_stdio();
        let state = store.data();
        let result =
            outcome.map_err(|e| with_panic_message(classify(e, state, limits), &state.logs));
        let mut logs = state.logs.clone();
        if state.logs_dropped > 0 {
            logs.push(LogLine {
                level: "warn".into(),
                message: format!("{} more log lines dropped", state.logs_dropped),
            });
        }
        Call {
            result,
            logs,
            elapsed,
        }
    }
}

/// Which limit of a call's time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutOfTime {
    Cpu,
    Wall,
}

/// A call's time budget: CPU time on the calling thread, with a wall-clock
/// ceiling. The epoch ticker only says "look now"; the real clocks decide,
/// so a ticker that drifts under load can delay the check by a tick but
/// never stretch or shorten the deadline.
#[derive(Debug, Clone, Copy)]
struct Budget {
    cpu: Duration,
    wall: Duration,
    cpu_start: Duration,
    wall_start: Instant,
}

/// CPU time this thread has run.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

fn ticks(d: Duration) -> u64 {
    u64::try_from(d.as_micros().div_ceil(TICK.as_micros()))
        .unwrap_or(u64::MAX)
        .max(1)
}

impl Budget {
    fn start(cpu: Duration) -> Self {
        Self {
            cpu,
            wall: cpu.saturating_mul(WALL_CEILING_FACTOR),
            cpu_start: thread_cpu(),
            wall_start: Instant::now(),
        }
    }

    /// Ticks until the first look: half the budget, since a tick is at
    /// least [`TICK`] of wall time and CPU time never runs ahead of it.
    fn first_ticks(&self) -> u64 {
        ticks(self.cpu / 2)
    }

    /// `None` when the budget is spent; otherwise the ticks until the next
    /// look, halving the remainder so the stop lands within about a tick.
    fn check(&self) -> Option<u64> {
        let cpu_left = self
            .cpu
            .checked_sub(thread_cpu().saturating_sub(self.cpu_start))?;
        let wall_left = self.wall.checked_sub(self.wall_start.elapsed())?;
        if cpu_left.is_zero() || wall_left.is_zero() {
            return None;
        }
        Some(ticks(cpu_left.min(wall_left) / 2))
    }

    fn exhausted(&self) -> OutOfTime {
        if self.wall_start.elapsed() >= self.wall {
            OutOfTime::Wall
        } else {
            OutOfTime::Cpu
        }
    }
}

impl<T> Call<T> {
    fn map<U>(self, f: impl FnOnce(Result<T, CallError>) -> Result<U, CallError>) -> Call<U> {
        Call {
            result: f(self.result),
            logs: self.logs,
            elapsed: self.elapsed,
        }
    }
}

/// Calling a plugin through a world it does not export is a host bug.
fn wrong_world(expected: World) -> wasmtime::Error {
    wasmtime::Error::msg(format!(
        "plugin does not export the {} world",
        expected.as_str()
    ))
}

/// The SDK's panic hook logs `panicked: <message>` just before the plugin
/// aborts with `unreachable`: report the message as the cause.
fn with_panic_message(e: CallError, logs: &[LogLine]) -> CallError {
    match e {
        CallError::Trap(t) if t.contains("unreachable") => {
            // A Rust SDK panic hook's line; else what the plugin wrote to
            // stderr before it trapped: an uncaught exception's last line
            // (`ValueError: …`, after a Python traceback), or the last line.
            let panic = logs
                .iter()
                .rev()
                .find_map(|l| l.message.strip_prefix("panicked: "));
            let stderr = || {
                let lines = || logs.iter().rev().filter(|l| l.level == "stderr");
                lines()
                    .find(|l| is_exception_line(&l.message))
                    .or_else(|| lines().next())
                    .map(|l| l.message.as_str())
            };
            match panic.or_else(stderr) {
                Some(message) => {
                    CallError::Panic(crate::text::escape_control(message).into_owned())
                }
                None => CallError::Trap(t),
            }
        }
        other => other,
    }
}

/// `ValueError: …`, `json.decoder.JSONDecodeError: …`: an exception
/// class (dotted, starting with a capital in its last part) then `: `.
fn is_exception_line(line: &str) -> bool {
    let Some((name, _)) = line.split_once(": ") else {
        return false;
    };
    let last = name.rsplit('.').next().unwrap_or_default();
    last.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Marks an instantiation failure so that it is not reported as a trap.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct InstantiateFailure(String);

/// Keeps traps (a start function that loops or runs out of memory) as they
/// are, so they are reported like any other call's; marks the rest.
fn instantiate_error(e: wasmtime::Error) -> wasmtime::Error {
    if e.downcast_ref::<Trap>().is_some() || e.is::<wasmtime::PoolConcurrencyLimitError>() {
        return e;
    }
    wasmtime::Error::new(InstantiateFailure(
        crate::text::first_line(&e.root_cause().to_string()).into_owned(),
    ))
}

fn classify(e: wasmtime::Error, state: &HostState, limits: Limits) -> CallError {
    if state.limiter.memory_breached {
        return CallError::Memory(limits.memory);
    }
    if e.is::<wasmtime::PoolConcurrencyLimitError>() {
        return CallError::PoolExhausted;
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => {
            return match state.out_of_time {
                Some(OutOfTime::Wall) => CallError::WallCeiling(limits.deadline),
                _ => CallError::Deadline(limits.deadline),
            };
        }
        Some(Trap::StackOverflow) => return CallError::StackOverflow,
        Some(trap) => {
            return CallError::Trap(
                trap.to_string()
                    .trim_start_matches("wasm trap: ")
                    .to_string(),
            );
        }
        None => {}
    }
    if let Some(InstantiateFailure(msg)) = e.downcast_ref::<InstantiateFailure>() {
        return CallError::Instantiate(msg.clone());
    }
    // An error raised inside a host call (a forged or dropped handle, a bad
    // `cabi_realloc`): the cause on one line, the wasm backtrace for debug.
    tracing::debug!(
        error = format!("{e:?}"),
        "plugin call failed in a host call"
    );
    CallError::Trap(crate::text::first_line(&e.root_cause().to_string()).into_owned())
}

#[cfg(test)]
mod panic_tests {
    use super::*;

    #[test]
    fn a_plugin_panic_is_reported_with_its_message() {
        let logs = vec![LogLine {
            level: "error".into(),
            message: "panicked: threshold must be finite at src/lib.rs:42".into(),
        }];
        let e = with_panic_message(
            CallError::Trap("wasm `unreachable` instruction executed".into()),
            &logs,
        );
        assert_eq!(
            e.to_string(),
            "plugin panicked: threshold must be finite at src/lib.rs:42"
        );
        // Without the SDK's line the trap stays as it was.
        let e = with_panic_message(
            CallError::Trap("wasm `unreachable` instruction executed".into()),
            &[],
        );
        assert_eq!(
            e.to_string(),
            "plugin trapped: wasm `unreachable` instruction executed"
        );
    }
}
