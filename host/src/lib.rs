//! tollgate: a gate evaluator for software releases.
//!
//! Quality gates are sandboxed WebAssembly components. The host evaluates a
//! policy's gates over a telemetry snapshot and answers with a decision
//! (promote, hold or rollback) and a reason for every gate.
//!
//! The crate root holds one module per layer, bottom first; each names only
//! the layers before it (`tests/e2e/layers.rs` checks it):
//!
//! 1. [`base`]: text made safe to show, digests, bounded file reads.
//! 2. [`snapshot`]: the telemetry a decision is computed over.
//! 3. [`engine`]: the sandbox that runs plugins, and what each may do.
//! 4. [`policy`]: the policy format, loaded with its plugins.
//! 5. [`sources`]: telemetry gathered into a snapshot.
//! 6. [`evaluate`]: a policy evaluated over a snapshot into a decision.
//! 7. [`store`]: the decision log, trigger state and idempotency keys.
//! 8. [`decide`]: the one evaluation path: evaluate, commit, answer, replay.
//! 9. [`server`]: the HTTP service.
//! 10. [`cli`]: the command line.

pub mod base;
pub mod cli;
mod decide;
pub mod engine;
pub mod evaluate;
pub mod policy;
pub mod server;
pub mod snapshot;
pub mod sources;
pub mod store;
