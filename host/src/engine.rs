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

use self::bindings::action::ActionPre;
use self::bindings::action::exports::tollgate::plugin::action_api as wit_action;
use self::bindings::gate::GatePre;
use self::bindings::trigger::TriggerPre;
use self::bindings::trigger::exports::tollgate::plugin::trigger_api as wit_trigger;
use self::bindings::types as wit;
use self::host::HostState;
use self::ticker::{TICK, Ticker};
use crate::digest::Digest;
use crate::snapshot::Snapshot;

pub use self::bindings::types::{ConfigValue, Scalar};
pub use self::host::LogLine;
pub use self::inspect::{ImportCheckError, WIT_VERSION, World};
use crate::decision::{Action, Fire, FlagRollout};

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

/// The wasmtime release compiled in, so caches of other releases are kept apart.
fn wasmtime_version() -> &'static str {
    // Artifacts also carry wasmtime's own compatibility check; this only keeps
    // the directories tidy across upgrades.
    "48"
}

/// Creates `dir` (owner-only) if needed; true when it exists and neither
/// group nor others may write to it.
fn private_dir(dir: &std::path::Path) -> bool {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .is_err()
    {
        return false;
    }
    std::fs::metadata(dir).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o022 == 0)
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
    cache: Option<std::path::PathBuf>,
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
        bindings::gate::Gate::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| EngineError(format!("{e:#}")))?;
        let ticker = Ticker::start(engine.clone()).map_err(|e| EngineError(e.to_string()))?;
        Ok(Self {
            engine,
            linker,
            cache: None,
            _ticker: ticker,
        })
    }

    /// Caches compiled plugins in `dir`, keyed by the digest of their
    /// component bytes, so each plugin is compiled once per machine rather
    /// than once per process. The directory is created private to its owner;
    /// a directory others may write to is not used.
    #[must_use]
    pub fn with_cache_dir(mut self, dir: std::path::PathBuf) -> Self {
        let versioned = dir.join(format!("wasmtime-{}", wasmtime_version()));
        self.cache = private_dir(&versioned).then_some(versioned);
        self
    }

    /// Compiles `bytes`, or loads the artifact this host cached for them.
    fn compile(&self, bytes: &[u8], digest: Digest) -> wasmtime::Result<Component> {
        let Some(dir) = &self.cache else {
            return Component::new(&self.engine, bytes);
        };
        let path = dir.join(format!("{}.cwasm", digest.hex()));
        if path.is_file() {
            // SAFETY: the cache holds only artifacts this host serialized, named by
            // the digest of their source, in a directory only its owner may write.
            // wasmtime checks the artifact matches this engine's configuration and
            // errors otherwise, in which case it is compiled afresh.
            if let Ok(c) = unsafe { Component::deserialize_file(&self.engine, &path) } {
                return Ok(c);
            }
        }
        let component = Component::new(&self.engine, bytes)?;
        if let Ok(artifact) = component.serialize() {
            // Best effort: a cache that cannot be written only costs speed.
            let _ = tempfile::NamedTempFile::new_in(dir).and_then(|mut tmp| {
                std::io::Write::write_all(&mut tmp, &artifact)?;
                tmp.persist(&path).map(|_| ()).map_err(|e| e.error)
            });
        }
        Ok(component)
    }

    /// Compiles and links a plugin. Refuses a component that imports anything
    /// but the tollgate interfaces, naming the import.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<Plugin, LoadError> {
        let digest = Digest::of(bytes);
        let component = self
            .compile(bytes, digest)
            .map_err(|e| LoadError::Invalid {
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
            World::Trigger => PluginKind::Trigger(TriggerPre::new(pre).map_err(link)?),
            World::Action => PluginKind::Action(ActionPre::new(pre).map_err(link)?),
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
    pub outcome: crate::decision::StageResult,
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
    pub fn evaluate(
        &self,
        config: &PluginConfig,
        snapshot: Arc<Snapshot>,
        limits: Limits,
    ) -> Call<Finding> {
        self.call(snapshot, limits, |store, kind| {
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
        snapshot: Arc<Snapshot>,
        state: &[u8],
        limits: Limits,
    ) -> Call<TriggerFinding> {
        self.call(snapshot, limits, |store, kind| {
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
        snapshot: Arc<Snapshot>,
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
                crate::decision::StageResult::Pass => wit_action::Outcome::Pass,
                crate::decision::StageResult::Warning => wit_action::Outcome::Warning,
                crate::decision::StageResult::Fail => wit_action::Outcome::Fail,
                crate::decision::StageResult::Inconclusive => wit_action::Outcome::Inconclusive,
            },
            trigger: context.trigger.clone(),
        };
        self.call(snapshot, limits, |store, kind| {
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

/// Calling a plugin through a world it does not export is a host bug.
fn wrong_world(expected: World) -> wasmtime::Error {
    wasmtime::Error::msg(format!(
        "plugin does not export the {} world",
        expected.as_str()
    ))
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

/// Checks the parts every answer shares: reason, numbers and details.
fn check_common(
    reason: &str,
    observed: Option<f64>,
    threshold: Option<f64>,
    details: &[wit::Detail],
) -> Result<(), CallError> {
    check_text("reason", reason)?;
    if details.len() > MAX_DETAILS {
        return Err(CallError::Output(format!(
            "{} details exceed the limit of {MAX_DETAILS}",
            details.len()
        )));
    }
    if let Some(d) = details
        .iter()
        .find(|d| d.key.len() + d.value.len() > MAX_DETAIL_BYTES)
    {
        return Err(CallError::Output(format!(
            "detail `{}` exceeds the {MAX_DETAIL_BYTES}-byte limit",
            d.key.chars().take(64).collect::<String>()
        )));
    }
    for (what, v) in [("observed", observed), ("threshold", threshold)] {
        if v.is_some_and(|v| !v.is_finite()) {
            return Err(CallError::Output(format!(
                "{what} value is not a finite number"
            )));
        }
    }
    Ok(())
}

fn check_text(what: &str, text: &str) -> Result<(), CallError> {
    if text.len() > MAX_REASON_BYTES {
        return Err(CallError::Output(format!(
            "{what} of {} bytes exceeds the {MAX_REASON_BYTES}-byte limit",
            text.len()
        )));
    }
    Ok(())
}

fn check_trigger(t: wit_trigger::TriggerResult) -> Result<TriggerFinding, CallError> {
    check_common(&t.reason, t.observed, t.threshold, &t.details)?;
    if t.state.len() > MAX_STATE_BYTES {
        return Err(CallError::Output(format!(
            "state of {} bytes exceeds the {MAX_STATE_BYTES}-byte limit",
            t.state.len()
        )));
    }
    Ok(TriggerFinding {
        fire: match t.fire {
            wit_trigger::Fire::None => Fire::None,
            wit_trigger::Fire::Alert => Fire::Alert,
            wit_trigger::Fire::PrepareRollback => Fire::PrepareRollback,
            wit_trigger::Fire::ImmediateRollback => Fire::ImmediateRollback,
        },
        reason: t.reason,
        observed: t.observed,
        threshold: t.threshold,
        details: t.details.into_iter().map(|d| (d.key, d.value)).collect(),
        state: t.state,
    })
}

fn percent(p: u8) -> Result<u8, CallError> {
    if p > 100 {
        Err(CallError::Output(format!(
            "a percentage of {p} is above 100"
        )))
    } else {
        Ok(p)
    }
}

fn check_action(a: wit_action::Action) -> Result<Action, CallError> {
    Ok(match a {
        wit_action::Action::SetWeight(p) => Action::SetWeight {
            percent: percent(p)?,
        },
        wit_action::Action::Promote => Action::Promote,
        wit_action::Action::Pause(seconds) => Action::Pause { seconds },
        wit_action::Action::Hold(reason) => {
            check_text("hold reason", &reason)?;
            Action::Hold { reason }
        }
        wit_action::Action::Rollback(reason) => {
            check_text("rollback reason", &reason)?;
            Action::Rollback { reason }
        }
        wit_action::Action::BumpVersion(version) => {
            check_text("version", &version)?;
            Action::BumpVersion { version }
        }
        wit_action::Action::FlagRollout(f) => {
            check_text("flag", &f.flag)?;
            if f.segments.len() > MAX_DETAILS
                || f.segments.iter().any(|s| s.len() > MAX_DETAIL_BYTES)
            {
                return Err(CallError::Output("flag segments exceed the limit".into()));
            }
            Action::FlagRollout(FlagRollout {
                flag: f.flag,
                percent: percent(f.percent)?,
                segments: f.segments,
            })
        }
    })
}

fn check_plan(
    plan: Result<Vec<wit_action::Action>, String>,
) -> Result<Result<Vec<Action>, String>, CallError> {
    let actions = match plan {
        Ok(actions) => actions,
        Err(e) => {
            check_text("plan error", &e)?;
            return Ok(Err(e));
        }
    };
    if actions.len() > MAX_ACTIONS {
        return Err(CallError::Output(format!(
            "{} actions exceed the limit of {MAX_ACTIONS}",
            actions.len()
        )));
    }
    actions
        .into_iter()
        .map(check_action)
        .collect::<Result<Vec<_>, _>>()
        .map(Ok)
}

fn check_finding(f: wit::Finding) -> Result<Finding, CallError> {
    check_common(&f.reason, f.observed, f.threshold, &f.details)?;
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
