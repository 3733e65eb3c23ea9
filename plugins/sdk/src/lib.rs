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

#[cfg(all(target_arch = "wasm32", feature = "bump-alloc"))]
pub mod alloc;
pub mod config;
pub mod rule;
pub mod source;
pub mod stats;

use std::time::Duration;

/// The prefix the host looks for in a plugin's error log to report a panic
/// with its message instead of a bare `unreachable` trap.
pub const PANIC_PREFIX: &str = "panicked: ";

/// Sends a panic's message to the host log before the plugin aborts, so
/// the host reports "plugin panicked: …" rather than "wasm `unreachable`
/// instruction executed". Installed by [`config::Settings::new`], which
/// every plugin calls first; call it yourself if yours does not.
pub fn install_panic_hook() {
    // Natively (rule unit tests) there is no host to log to, and the test
    // harness reports panics itself.
    if cfg!(not(target_arch = "wasm32")) {
        return;
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            let place = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            gate::log(
                gate::Level::Error,
                &format!("{PANIC_PREFIX}{message}{place}"),
            );
        }));
    });
}

/// A duration as a reason says it: days spelled out (`1 day`, `2 days
/// 16h`), the rest as `humantime` writes it (`15m`, `1h 30m`); never the
/// `1day` humantime writes. The host words durations the same way.
pub fn human_duration(d: Duration) -> String {
    const DAY: u64 = 86_400;
    let days = d.as_secs() / DAY;
    let rest = d - Duration::from_secs(days * DAY);
    let mut out = match days {
        0 => String::new(),
        1 => "1 day".to_string(),
        n => format!("{n} days"),
    };
    if !rest.is_zero() || days == 0 {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&humantime::format_duration(rest).to_string());
    }
    out
}

/// The `(timestamp, value)` pairs of `metric` matching `selector` within
/// `window` (all points when `None`), oldest first: what every aggregation
/// and comparison in the SDK takes.
pub fn window_pairs(
    snapshot: &dyn rule::View,
    metric: &str,
    selector: &[(String, String)],
    window: Option<Duration>,
    track: gate::Track,
) -> Vec<(i64, f64)> {
    snapshot
        .points(&gate::Query {
            metric: metric.to_string(),
            selector: selector.to_vec(),
            window_seconds: window.map(|w| w.as_secs()),
            track,
        })
        .iter()
        .map(|p| (p.timestamp, p.value))
        .collect()
}

/// Bindings for the `gate` world: a quality gate that judges a snapshot.
pub mod gate {
    wit_bindgen::generate!({
        world: "gate",
        path: "wit",
        pub_export_macro: true,
        additional_derives: [PartialEq],
        export_macro_name: "export_gate",
        default_bindings_module: "tollgate_sdk::gate",
    });

    pub use self::exports::tollgate::plugin::gate_api::Guest;
    pub use self::tollgate::plugin::host::{Level, log, now};
    pub use self::tollgate::plugin::snapshot::{Commit, Point, Query, Series, Snapshot, Track};
    pub use self::tollgate::plugin::types::{
        Config, ConfigValue, Detail, Finding, Scalar, Verdict,
    };

    /// The finding for settings that fail to parse at evaluation time (the
    /// host checks them at load, so this only guards the invariant): fail.
    pub fn invalid_config(error: String) -> Finding {
        Finding {
            verdict: Verdict::Fail,
            reason: format!("invalid configuration: {error}"),
            observed: None,
            threshold: None,
            details: Vec::new(),
        }
    }
}

/// Bindings for the `trigger` world: a rollback trigger with host-held state.
pub mod trigger {
    wit_bindgen::generate!({
        world: "trigger",
        path: "wit",
        with: {
            "tollgate:plugin/types@0.1.2": crate::gate::tollgate::plugin::types,
            "tollgate:plugin/snapshot@0.1.2": crate::gate::tollgate::plugin::snapshot,
            "tollgate:plugin/host@0.1.2": crate::gate::tollgate::plugin::host,
        },
        pub_export_macro: true,
        additional_derives: [PartialEq],
        export_macro_name: "export_trigger",
        default_bindings_module: "tollgate_sdk::trigger",
    });

    pub use self::exports::tollgate::plugin::trigger_api::{Fire, Guest, TriggerResult};
    pub use crate::gate::{
        Config, ConfigValue, Detail, Level, Point, Query, Snapshot, Track, log, now,
    };

    /// The answer for settings that fail to parse at check time: an alert
    /// that keeps the previous state, so nothing is lost.
    pub fn invalid_config(error: String, state: Vec<u8>) -> TriggerResult {
        TriggerResult {
            fire: Fire::Alert,
            reason: format!("invalid configuration: {error}"),
            observed: None,
            threshold: None,
            details: Vec::new(),
            state,
        }
    }

    /// Parses a severity as policies write it: `alert`, `prepare-rollback`
    /// or `immediate-rollback`.
    pub fn parse_fire(text: &str) -> Result<Fire, String> {
        match text {
            "alert" => Ok(Fire::Alert),
            "prepare-rollback" => Ok(Fire::PrepareRollback),
            "immediate-rollback" => Ok(Fire::ImmediateRollback),
            other => Err(format!(
                "unknown severity `{other}`: expected alert, prepare-rollback or immediate-rollback"
            )),
        }
    }
}

/// Bindings for the `action` world: plans the next deployment steps.
pub mod action {
    wit_bindgen::generate!({
        world: "action",
        path: "wit",
        with: {
            "tollgate:plugin/types@0.1.2": crate::gate::tollgate::plugin::types,
            "tollgate:plugin/snapshot@0.1.2": crate::gate::tollgate::plugin::snapshot,
            "tollgate:plugin/host@0.1.2": crate::gate::tollgate::plugin::host,
        },
        pub_export_macro: true,
        additional_derives: [PartialEq],
        export_macro_name: "export_action",
        default_bindings_module: "tollgate_sdk::action",
    });

    pub use self::exports::tollgate::plugin::action_api::{
        Action, Context, FlagRollout, Guest, Outcome, StageInfo,
    };
    pub use crate::gate::{Commit, Config, ConfigValue, Level, Query, Snapshot, Track, log, now};
}
