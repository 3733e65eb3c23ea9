//! Guest-side helpers for writing tollgate plugins in Rust.
//!
//! The crate re-exports the bindings of each world, so a plugin implements the
//! world's `Guest` trait and calls the world's export macro, and nothing else:
//!
//! ```ignore
//! use tollgate_sdk::gate::{Config, Finding, Guest, Snapshot};
//!
//! struct MyGate;
//!
//! impl Guest for MyGate {
//!     fn validate_config(config: Config) -> Result<(), String> { Ok(()) }
//!     fn evaluate(config: Config, snapshot: &Snapshot) -> Finding { todo!() }
//! }
//!
//! tollgate_sdk::gate::export_gate!(MyGate);
//! ```
//!
//! Beside the bindings it offers typed access to configuration
//! ([`config::Settings`]), window aggregation ([`stats::Aggregate`]) and
//! threshold comparison ([`stats::Op`]), so that every first-party plugin reads
//! a policy the same way.

pub mod config;
pub mod stats;

/// Bindings for the `gate` world: a quality gate that judges a snapshot.
pub mod gate {
    wit_bindgen::generate!({
        world: "gate",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_gate",
        default_bindings_module: "tollgate_sdk::gate",
    });

    pub use self::exports::tollgate::plugin::gate_api::Guest;
    pub use self::tollgate::plugin::host::{Level, log, now};
    pub use self::tollgate::plugin::snapshot::{Commit, Point, Query, Series, Snapshot, Track};
    pub use self::tollgate::plugin::types::{
        Config, ConfigValue, Detail, Finding, Scalar, Verdict,
    };
}
