//! tollgate: a gate evaluator for software releases.
//!
//! Quality gates are sandboxed WebAssembly components. The host evaluates a
//! policy's gates over a telemetry snapshot and answers with a decision
//! (promote, hold or rollback) and a reason for every gate.

pub mod approvals;
pub mod audit;
pub mod builtin;
pub mod cli;
pub mod decision;
pub mod digest;
pub mod dora;
pub mod engine;
pub mod evaluate;
pub mod files;
pub mod journal;
pub mod memory;
pub mod policy;
pub mod replay;
pub mod rollout;
mod schema;
pub mod server;
pub mod signature;
pub mod snapshot;
pub mod sources;
pub mod state;
pub mod store;
pub mod suggest;
pub mod text;
