//! WASI 0.2, linked so that components built by standard toolchains
//! (componentize-py, componentize-js, `wasm32-wasip2`) load, and inert:
//! - no preopened directories, unless a gate is granted one (read-only);
//! - sockets and name lookup denied;
//! - empty environment and arguments, stdin closed;
//! - stdout and stderr captured into the call's bounded log;
//! - wall and monotonic clocks pinned to the decision time (`decided_at`), and
//!   waiting on a clock is over at once (time does not pass in a call, so a
//!   plugin cannot park a worker in a host sleep its CPU deadline cannot see);
//! - random numbers from a generator seeded by the snapshot's digest.
//!
//! So a plugin still sees nothing but its input, and a replay reproduces it.

use std::path::PathBuf;
use std::time::Duration;

use rand::SeedableRng as _;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

use super::answer::LogLine;
use crate::base::digest::Digest;
use crate::snapshot::Snapshot;

/// Bytes of stdout and of stderr kept per call; a plugin writing more gets
/// a write error.
pub const MAX_STDIO_BYTES: usize = 16 << 10;
/// Bytes of randomness one `get-random-bytes` call may ask for.
const MAX_RANDOM_BYTES: u64 = 1 << 20;
/// Resources (streams, pollables, directories) a call may hold at once.
pub const MAX_RESOURCES: usize = 10_000;

/// The WASI 0.2 interfaces the host links, and what each gives a plugin.
pub const INTERFACES: &[(&str, &str)] = &[
    (
        "wasi:cli/environment",
        "inert: empty environment and arguments",
    ),
    (
        "wasi:cli/exit",
        "inert: exiting ends the call with an error",
    ),
    ("wasi:cli/stdin", "inert: closed"),
    ("wasi:cli/stdout", "captured into the call's log"),
    ("wasi:cli/stderr", "captured into the call's log"),
    ("wasi:cli/terminal-input", "inert: no terminal"),
    ("wasi:cli/terminal-output", "inert: no terminal"),
    ("wasi:cli/terminal-stdin", "inert: no terminal"),
    ("wasi:cli/terminal-stdout", "inert: no terminal"),
    ("wasi:cli/terminal-stderr", "inert: no terminal"),
    (
        "wasi:clocks/wall-clock",
        "inert: pinned to the decision time (decided_at)",
    ),
    (
        "wasi:clocks/monotonic-clock",
        "inert: pinned; waiting is over at once",
    ),
    (
        "wasi:filesystem/types",
        "inert unless a directory is granted (read-only)",
    ),
    (
        "wasi:filesystem/preopens",
        "inert unless a directory is granted (read-only)",
    ),
    ("wasi:io/error", "inert"),
    ("wasi:io/poll", "inert"),
    ("wasi:io/streams", "inert: only the streams above"),
    (
        "wasi:random/random",
        "inert: seeded by the snapshot's digest",
    ),
    (
        "wasi:random/insecure",
        "inert: seeded by the snapshot's digest",
    ),
    (
        "wasi:random/insecure-seed",
        "inert: seeded by the snapshot's digest",
    ),
    ("wasi:sockets/network", "denied"),
    ("wasi:sockets/instance-network", "denied"),
    ("wasi:sockets/tcp", "denied"),
    ("wasi:sockets/tcp-create-socket", "denied"),
    ("wasi:sockets/udp", "denied"),
    ("wasi:sockets/udp-create-socket", "denied"),
    ("wasi:sockets/ip-name-lookup", "denied"),
];

/// What the host gives a WASI import (`wasi:cli/stdout@0.2.3`), or `None`
/// when it does not link that interface (or not in a 0.2 version).
pub fn access(import: &str) -> Option<&'static str> {
    let (name, version) = import.split_once('@')?;
    if !version.starts_with("0.2.") {
        return None;
    }
    INTERFACES
        .iter()
        .find(|(i, _)| *i == name)
        .map(|(_, access)| *access)
}

/// A directory a gate may read, and where the plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileGrant {
    pub host: PathBuf,
    pub guest: String,
}

/// A clock stopped at the call's decision time.
struct Pinned(Duration);

impl HostWallClock for Pinned {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        self.0
    }
}

impl HostMonotonicClock for Pinned {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        u64::try_from(self.0.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A pollable that is always ready: waiting on a pinned clock.
struct Over;

#[wasmtime_wasi::async_trait]
impl Pollable for Over {
    async fn ready(&mut self) {}
}

/// A call's WASI context and the pipes its stdout and stderr go to.
pub(crate) struct WasiState {
    pub(crate) ctx: WasiCtx,
    pub(crate) stdout: MemoryOutputPipe,
    pub(crate) stderr: MemoryOutputPipe,
}

impl WasiState {
    /// The inert context for a call over `snapshot`, with `grants`; a
    /// granted directory that cannot be opened is left out, with a line in
    /// `logs` saying why.
    pub(crate) fn new(
        snapshot: &Snapshot,
        now: i64,
        grants: &[FileGrant],
        logs: &mut Vec<LogLine>,
    ) -> Self {
        let pinned = Duration::from_secs(u64::try_from(now).unwrap_or(0));
        let seed: [u8; 32] = seed_of(snapshot);
        let stdout = MemoryOutputPipe::new(MAX_STDIO_BYTES);
        let stderr = MemoryOutputPipe::new(MAX_STDIO_BYTES);
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(Pinned(pinned))
            .monotonic_clock(Pinned(pinned))
            .secure_random(rand::rngs::StdRng::from_seed(seed))
            .insecure_random(rand::rngs::StdRng::from_seed(seed))
            .insecure_random_seed(u128::from_le_bytes(
                seed[..16].try_into().unwrap_or_default(),
            ))
            .max_random_size(MAX_RANDOM_BYTES)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(std::future::ready(false)));
        for grant in grants {
            if let Err(e) = builder.preopened_dir(&grant.host, &grant.guest, FsPerms::ReadOnly) {
                logs.push(LogLine {
                    level: "warn".into(),
                    message: format!(
                        "granted directory `{}` cannot be opened: {e}",
                        grant.host.display()
                    ),
                });
            }
        }
        Self {
            ctx: builder.build(),
            stdout,
            stderr,
        }
    }
}

/// The seed of a call's random numbers: the digest of the snapshot's
/// canonical JSON, as the decision's `digests.input` is.
fn seed_of(snapshot: &Snapshot) -> [u8; 32] {
    Digest::of(&serde_json::to_vec(snapshot).unwrap_or_default()).bytes()
}

/// Links WASI 0.2 into `linker`, then replaces the monotonic clock's
/// waits with ones that are over at once.
pub(super) fn link<T: wasmtime_wasi::WasiView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |mut store: wasmtime::StoreContextMut<'_, T>, (_,): (u64,)| {
            over(store.data_mut().ctx().table).map(|p| (p,))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |mut store: wasmtime::StoreContextMut<'_, T>, (_,): (u64,)| {
            over(store.data_mut().ctx().table).map(|p| (p,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The name wasmtime-wasi defines the monotonic clock under.
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

fn over(table: &mut wasmtime::component::ResourceTable) -> wasmtime::Result<Resource<DynPollable>> {
    let ready = table.push(Over)?;
    subscribe(table, ready)
}
