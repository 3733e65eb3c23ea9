//! The sandbox: one wasmtime engine, plugins compiled once, and a store and
//! instance per plugin per evaluation, with CPU, memory, stack and output
//! bounds on every call.
//!
//! It is the bottom layer: it knows nothing of policies, decisions or HTTP.

pub(crate) mod answer;
mod bindings;
mod cache;
mod call;
mod config;
mod error;
mod handle;
mod host;
mod inspect;
mod limits;
mod output;
mod precompiled;
pub mod report;
mod runtime;
mod session;
pub mod signature;
mod source;
mod ticker;
pub(crate) mod wasi;

pub use self::answer::{Finding, LogLine, PluginVerdict, Read, TriggerFinding};
pub use self::bindings::types::{ConfigValue, Scalar};
pub use self::cache::{CacheError, CacheSkipped};
pub use self::call::{ActionContext, Call, Input, Plugin, PluginConfig, StageInfo};
pub use self::error::{CallError, EngineError, LoadError};
pub use self::inspect::{
    ExportCheckError, ImportCheckError, PluginInfo, WIT_VERSION, WasiImport, World,
};
pub use self::limits::{
    Allocation, FILL_BYTES_PER_SECOND, Limits, MAX_ACTIONS, MAX_DEADLINE, MAX_DETAIL_BYTES,
    MAX_DETAILS, MAX_MEMORY, MAX_PAUSE_SECONDS, MAX_REASON_BYTES, MAX_STATE_BYTES, MAX_WASM_STACK,
    POOL_SIZE, WALL_CEILING_FACTOR, uninterruptible_bound,
};
pub use self::runtime::{COMPILED_IN_MEMORY, Runtime, precompiled_plugins};
pub use self::session::{SESSION_INSTANCES, Session};
pub use self::source::{
    MAX_HEADER_BYTES, MAX_LABEL_BYTES, MAX_LABELS, MAX_PATH_BYTES, MAX_REQUEST_BODY,
    MAX_REQUEST_HEADERS, MAX_ROUND_REQUESTS, MAX_ROUND_STATE, MAX_SOURCE_POINTS, MAX_SOURCE_SERIES,
    Method, Request, Response, Round, Sample, SourceQuery, SourceSeries, Step, source_limits,
};
// Byte counts are worded by the text layer; `engine::human_bytes` stays a path.
pub use crate::base::text::human_bytes;
