//! Why the engine could not start, a plugin could not load, or a call gave
//! no usable answer.

use std::time::Duration;

use super::inspect::{ExportCheckError, ImportCheckError};
use super::limits::{MAX_WASM_STACK, WALL_CEILING_FACTOR};
use crate::base::text::human_bytes;

/// The engine could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the wasm engine: {0}")]
pub struct EngineError(pub(super) String);

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
    #[error("plugin `{name}` cannot be linked: {problem}")]
    Exports {
        name: String,
        problem: ExportCheckError,
    },
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
