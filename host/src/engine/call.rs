//! A loaded plugin and what calling it means: its input, its outcome, and
//! a failed call classified into the reason it failed. The calls themselves
//! run in a [`Session`](super::Session).

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Engine, Trap};

use super::answer::LogLine;
use super::answer::StageResult;
use super::bindings::action::ActionPre;
use super::bindings::gate::GatePre;
use super::bindings::source::SourcePre;
use super::bindings::trigger::TriggerPre;
use super::bindings::types::ConfigValue;
use super::error::CallError;
use super::host::HostState;
use super::inspect::{PluginInfo, World};
use super::limits::{Limits, OutOfTime};
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
    Source(SourcePre<HostState>),
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
    /// The snapshot selections the call made, in the order first made.
    pub reads: Vec<super::answer::Read>,
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
}

impl<T> Call<T> {
    pub(super) fn map<U>(
        self,
        f: impl FnOnce(Result<T, CallError>) -> Result<U, CallError>,
    ) -> Call<U> {
        Call {
            result: f(self.result),
            logs: self.logs,
            reads: self.reads,
            elapsed: self.elapsed,
        }
    }
}

/// Calling a plugin through a world it does not export is a host bug.
pub(super) fn wrong_world(expected: World) -> wasmtime::Error {
    wasmtime::Error::msg(format!(
        "plugin does not export the {} world",
        expected.as_str()
    ))
}

/// The SDK's panic hook logs `panicked: <message>` just before the plugin
/// aborts with `unreachable`: report the message as the cause.
pub(super) fn with_panic_message(e: CallError, logs: &[LogLine]) -> CallError {
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
pub(super) fn instantiate_error(e: wasmtime::Error) -> wasmtime::Error {
    if e.downcast_ref::<Trap>().is_some() || e.is::<wasmtime::PoolConcurrencyLimitError>() {
        return e;
    }
    wasmtime::Error::new(InstantiateFailure(
        crate::base::text::first_line(&e.root_cause().to_string()).into_owned(),
    ))
}

pub(super) fn classify(e: wasmtime::Error, state: &HostState, limits: &Limits) -> CallError {
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
