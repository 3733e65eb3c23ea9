//! The engine settings that shape compiled code.
//!
//! wasmtime refuses to load an artifact compiled under other settings, so
//! the build script compiles the first-party plugins with this very file
//! (`build.rs` includes it) and the runtime builds its engine from it: the
//! two cannot drift apart. Only what changes compiled code belongs here;
//! how instances are allocated does not.

use wasmtime::{Config, WasmBacktraceDetails};

/// Wasm stack a plugin may use before it traps.
pub const MAX_WASM_STACK: usize = 512 << 10;

/// The settings every engine of this host starts from.
pub fn base_config() -> Config {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .memory_init_cow(true)
        // Left to its default, `WASMTIME_BACKTRACE_DETAILS` in the
        // environment of the build or of a run would change how code is
        // compiled, and every build-time artifact would be refused.
        .wasm_backtrace_details(WasmBacktraceDetails::Disable);
    config
}
