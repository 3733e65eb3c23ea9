//! Calling a plugin: a fresh store and instance per call, run within its
//! limits, and a trap classified into the reason the call failed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use super::answer::LogLine;
use super::answer::{Action, Finding, StageResult, TriggerFinding};
use super::bindings::action::ActionPre;
use super::bindings::action::exports::tollgate::plugin::action_api as wit_action;
use super::bindings::gate::GatePre;
use super::bindings::trigger::TriggerPre;
use super::bindings::types::ConfigValue;
use super::error::CallError;
use super::host::HostState;
use super::inspect::{PluginInfo, World};
use super::limits::{Budget, Limits, MAX_REASON_BYTES, OutOfTime};
use super::output::{check_finding, check_plan, check_trigger};
use crate::base::digest::Digest;
use crate::snapshot::Snapshot;

/// A plugin configuration: flattened keys with typed values, in policy order.
pub type PluginConfig = Vec<(String, ConfigValue)>;

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

/// A component linked for the world it exports, ready to instantiate.
#[derive(Clone)]
pub(super) enum PluginKind {
    Gate(GatePre<HostState>),
    Trigger(TriggerPre<HostState>),
    Action(ActionPre<HostState>),
}

/// A compiled, linked plugin, ready to be instantiated per call. Only
/// [`Runtime::load`](super::Runtime::load) makes one.
pub struct Plugin {
    pub(super) name: String,
    pub(super) digest: Digest,
    /// The component's bytes, kept so a decision log can store exactly
    /// what ran.
    pub(super) bytes: std::sync::Arc<[u8]>,
    pub(super) size: usize,
    pub(super) info: PluginInfo,
    pub(super) kind: PluginKind,
    pub(super) engine: Engine,
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
                    CallError::Panic(crate::base::text::escape_control(message).into_owned())
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
        crate::base::text::first_line(&e.root_cause().to_string()).into_owned(),
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
    CallError::Trap(crate::base::text::first_line(&e.root_cause().to_string()).into_owned())
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
