//! The sandbox: one wasmtime engine, plugins compiled once, and a fresh store
//! and instance for every call, with CPU, memory, stack and output bounds.

mod bindings;
mod host;
mod inspect;
mod ticker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

use self::bindings::GatePre;
use self::bindings::tollgate::plugin::types as wit;
use self::host::HostState;
use self::ticker::{TICK, Ticker};
use crate::digest::Digest;
use crate::snapshot::Snapshot;

pub use self::bindings::tollgate::plugin::types::{ConfigValue, Scalar};
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

/// Per-call resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CPU time a call may take before it is interrupted.
    pub deadline: Duration,
    /// Linear memory a call may grow to, in bytes.
    pub memory: usize,
}

impl Default for Limits {
    /// 100 ms and 16 MiB, the defaults a policy gate gets.
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(100),
            memory: 16 << 20,
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
    #[error("plugin `{name}`: {source}")]
    Imports {
        name: String,
        #[source]
        source: ImportCheckError,
    },
    #[error("plugin `{name}` cannot be linked: {message}")]
    Link { name: String, message: String },
}

/// Why a plugin call produced no usable answer. Each becomes verdict `error`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("deadline of {} ms exceeded", .0.as_millis())]
    Deadline(Duration),
    #[error("memory limit {} exceeded", human_bytes(*.0))]
    Memory(usize),
    #[error("wasm stack exhausted (limit {} KiB)", MAX_WASM_STACK >> 10)]
    StackOverflow,
    #[error("plugin trapped: {0}")]
    Trap(String),
    #[error("{0}")]
    Output(String),
    #[error("plugin pool exhausted: more than {POOL_SIZE} calls in flight")]
    PoolExhausted,
    #[error("cannot instantiate plugin: {0}")]
    Instantiate(String),
}

impl CallError {
    /// A short stable label for metrics and logs.
    pub fn cause(&self) -> &'static str {
        match self {
            Self::Deadline(_) => "deadline",
            Self::Memory(_) => "memory",
            Self::StackOverflow => "stack",
            Self::Trap(_) => "trap",
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

/// The shared wasm runtime: one engine, one linker with the host imports.
///
/// Deny by default: the linker offers only the tollgate interfaces (snapshot
/// reads, a bounded log, and a clock that returns the snapshot's `taken_at`).
/// No WASI, no files, no network, no wall clock, no randomness. Calls run with
/// a 100 ms deadline, a 16 MiB memory cap, a 512 KiB wasm stack and capped
/// outputs unless a policy grants otherwise, within [`MAX_DEADLINE`] and
/// [`MAX_MEMORY`].
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    _ticker: Ticker,
}

impl Runtime {
    /// Starts the engine and its epoch ticker.
    pub fn new() -> Result<Self, EngineError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_SIZE)
            .total_core_instances(POOL_SIZE * 4)
            .total_memories(POOL_SIZE * 2)
            .total_tables(POOL_SIZE * 4)
            .max_memory_size(MAX_MEMORY)
            // Reset a slot's low memory with memset (only the pages a call
            // touched, where the kernel can say which) instead of madvise:
            // unmapping costs page faults and cross-core TLB shootdowns on
            // every evaluation.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(64 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .max_wasm_stack(MAX_WASM_STACK)
            .memory_init_cow(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| EngineError(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        bindings::Gate::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| EngineError(format!("{e:#}")))?;
        let ticker = Ticker::start(engine.clone()).map_err(|e| EngineError(e.to_string()))?;
        Ok(Self {
            engine,
            linker,
            _ticker: ticker,
        })
    }

    /// Compiles and links a plugin. Refuses a component that imports anything
    /// but the tollgate interfaces, naming the import.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<Plugin, LoadError> {
        let digest = Digest::of(bytes);
        let component = Component::new(&self.engine, bytes).map_err(|e| LoadError::Invalid {
            name: name.to_string(),
            message: format!("{e:#}"),
        })?;
        let info =
            inspect::inspect(&self.engine, &component).map_err(|source| LoadError::Imports {
                name: name.to_string(),
                source,
            })?;
        let link = |e: wasmtime::Error| LoadError::Link {
            name: name.to_string(),
            message: format!("{e:#}"),
        };
        let pre = self.linker.instantiate_pre(&component).map_err(link)?;
        let kind = match info.world {
            World::Gate => PluginKind::Gate(GatePre::new(pre).map_err(link)?),
        };
        Ok(Plugin {
            name: name.to_string(),
            digest,
            size: bytes.len(),
            info,
            kind,
            engine: self.engine.clone(),
        })
    }
}

enum PluginKind {
    Gate(GatePre<HostState>),
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
}

/// A compiled, linked plugin, ready to be instantiated per call.
pub struct Plugin {
    name: String,
    digest: Digest,
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
        let snapshot = Arc::new(Snapshot::empty());
        self.call(snapshot, limits, |store, kind| match kind {
            PluginKind::Gate(pre) => {
                let gate = pre.instantiate(&mut *store).map_err(instantiate_error)?;
                Ok(gate
                    .tollgate_plugin_gate_api()
                    .call_validate_config(&mut *store, config)?)
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
    pub fn evaluate(
        &self,
        config: &PluginConfig,
        snapshot: Arc<Snapshot>,
        limits: Limits,
    ) -> Call<Finding> {
        self.call(snapshot, limits, |store, kind| match kind {
            PluginKind::Gate(pre) => {
                let gate = pre.instantiate(&mut *store).map_err(instantiate_error)?;
                let handle = store.data_mut().snapshot_handle()?;
                Ok(gate
                    .tollgate_plugin_gate_api()
                    .call_evaluate(&mut *store, config, handle)?)
            }
        })
        .map(|r| r.and_then(check_finding))
    }

    fn call<T>(
        &self,
        snapshot: Arc<Snapshot>,
        limits: Limits,
        f: impl FnOnce(&mut Store<HostState>, &PluginKind) -> wasmtime::Result<T>,
    ) -> Call<T> {
        let started = Instant::now();
        let mut store = Store::new(&self.engine, HostState::new(snapshot, limits.memory));
        store.limiter(|s| &mut s.limiter);
        let ticks = limits
            .deadline
            .as_micros()
            .div_ceil(TICK.as_micros())
            .max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        let outcome = f(&mut store, &self.kind);
        let elapsed = started.elapsed();
        let state = store.data();
        let result = outcome.map_err(|e| classify(e, state, limits));
        let mut logs = state.logs.clone();
        if state.logs_dropped > 0 {
            logs.push(LogLine {
                level: "warn",
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

impl<T> Call<T> {
    fn map<U>(self, f: impl FnOnce(Result<T, CallError>) -> Result<U, CallError>) -> Call<U> {
        Call {
            result: f(self.result),
            logs: self.logs,
            elapsed: self.elapsed,
        }
    }
}

/// Marks an instantiation failure so that it is not reported as a trap.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct InstantiateFailure(String);

fn instantiate_error(e: wasmtime::Error) -> wasmtime::Error {
    wasmtime::Error::new(InstantiateFailure(format!("{e:#}")))
}

fn classify(e: wasmtime::Error, state: &HostState, limits: Limits) -> CallError {
    if state.limiter.memory_breached {
        return CallError::Memory(limits.memory);
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => return CallError::Deadline(limits.deadline),
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
        if msg.contains("concurrent") || msg.contains("limit reached") {
            return CallError::PoolExhausted;
        }
        return CallError::Instantiate(msg.clone());
    }
    CallError::Trap(format!("{e:#}"))
}

fn check_finding(f: wit::Finding) -> Result<Finding, CallError> {
    if f.reason.len() > MAX_REASON_BYTES {
        return Err(CallError::Output(format!(
            "reason of {} bytes exceeds the {MAX_REASON_BYTES}-byte limit",
            f.reason.len()
        )));
    }
    if f.details.len() > MAX_DETAILS {
        return Err(CallError::Output(format!(
            "{} details exceed the limit of {MAX_DETAILS}",
            f.details.len()
        )));
    }
    if let Some(d) = f
        .details
        .iter()
        .find(|d| d.key.len() + d.value.len() > MAX_DETAIL_BYTES)
    {
        return Err(CallError::Output(format!(
            "detail `{}` exceeds the {MAX_DETAIL_BYTES}-byte limit",
            d.key.chars().take(64).collect::<String>()
        )));
    }
    for (what, v) in [("observed", f.observed), ("threshold", f.threshold)] {
        if v.is_some_and(|v| !v.is_finite()) {
            return Err(CallError::Output(format!(
                "{what} value is not a finite number"
            )));
        }
    }
    Ok(Finding {
        verdict: match f.verdict {
            wit::Verdict::Pass => Verdict::Pass,
            wit::Verdict::Warn => Verdict::Warn,
            wit::Verdict::Fail => Verdict::Fail,
            wit::Verdict::Inconclusive => Verdict::Inconclusive,
        },
        reason: f.reason,
        observed: f.observed,
        threshold: f.threshold,
        details: f.details.into_iter().map(|d| (d.key, d.value)).collect(),
    })
}
