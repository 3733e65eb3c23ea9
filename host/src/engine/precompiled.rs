//! The first-party plugins compiled at build time, so a cold start loads
//! native code instead of running Cranelift on every embedded plugin.
//!
//! `build.rs` compiles each embedded component under [`super::config`] for
//! the build machine's CPU (a cross-compiled build: for the target's
//! baseline) and lists the artifacts by the SHA-256 of the
//! component each came from. The runtime uses an artifact only when its
//! component's bytes hash to that digest and wasmtime finds it compatible
//! with the running engine (its version, settings and the CPU's features);
//! otherwise the plugin compiles as before. Built without the `precompiled`
//! feature (the fuzz targets), the list is empty.

use crate::base::digest::Digest;

include!(concat!(env!("OUT_DIR"), "/precompiled.rs"));

/// The artifact compiled at build time from the component whose bytes hash
/// to `digest`, if there is one.
pub(super) fn artifact(digest: Digest) -> Option<&'static [u8]> {
    let digest = digest.bytes();
    PRECOMPILED
        .iter()
        .find(|(d, _)| *d == digest)
        .map(|(_, artifact)| *artifact)
}

/// How many first-party plugins were compiled at build time.
pub(super) fn count() -> usize {
    PRECOMPILED.len()
}
