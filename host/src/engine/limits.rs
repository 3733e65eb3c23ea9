//! How much a plugin call may use: the bounds every policy is held within,
//! the pool the engine allocates calls from, and a call's time budget.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use super::config::MAX_WASM_STACK;
use super::config::base_config;
use super::ticker::TICK;
use super::wasi;

/// The most memory any policy may grant a plugin.
pub const MAX_MEMORY: usize = 256 << 20;
/// The longest deadline any policy may grant a plugin.
pub const MAX_DEADLINE: Duration = Duration::from_secs(10);
/// Plugin calls that may be in flight at once; a full pool refuses, it does not wait.
pub const POOL_SIZE: u32 = 256;

/// Low memory of each pool slot kept mapped between calls and reset in place.
const KEEP_RESIDENT: usize = 2 << 20;

/// Bounds on what a plugin may return.
pub const MAX_REASON_BYTES: usize = 4096;
pub const MAX_DETAILS: usize = 32;
pub const MAX_DETAIL_BYTES: usize = 1024;
pub const MAX_STATE_BYTES: usize = 64 << 10;
pub const MAX_ACTIONS: usize = 32;
/// The longest pause an action may plan: one year, well inside what a
/// JSON client reading doubles represents exactly.
pub const MAX_PAUSE_SECONDS: u64 = 365 * 24 * 3600;

/// A call may take this many times its CPU deadline in wall time before it
/// is stopped anyway: a plugin blocked or starved of CPU still ends.
pub const WALL_CEILING_FACTOR: u32 = 4;

/// The slowest rate at which one uninterruptible instruction (`memory.fill`,
/// `memory.copy`, `memory.grow`'s zeroing) is assumed to touch memory: 1 GiB
/// a second. The deadline is checked between instructions, so one such
/// instruction over a whole memory can overrun it by up to
/// [`uninterruptible_bound`]; 256 MiB measured 140–180 ms here.
pub const FILL_BYTES_PER_SECOND: u64 = 1 << 30;

/// How long one instruction over a memory of `memory` bytes may run before
/// the deadline can interrupt it: the most a call can overrun its deadline.
pub fn uninterruptible_bound(memory: usize) -> Duration {
    let bytes = u64::try_from(memory).unwrap_or(u64::MAX);
    Duration::from_micros(bytes.saturating_mul(1_000_000) / FILL_BYTES_PER_SECOND)
}

/// Per-call resource limits, and what the call may read beyond its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// CPU time a call may spend before it is interrupted, counted on the
    /// thread that runs it, so load on the machine cannot spend it. Wall
    /// time is capped at [`WALL_CEILING_FACTOR`] times this.
    pub deadline: Duration,
    /// Linear memory a call may grow to, in bytes.
    pub memory: usize,
    /// Directories the call may read through WASI; none by default.
    pub files: Arc<[wasi::FileGrant]>,
}

impl Default for Limits {
    /// 100 ms and 16 MiB, the defaults a policy gate gets.
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(100),
            memory: 16 << 20,
            files: Arc::from(Vec::new()),
        }
    }
}

/// The pooling allocator sized for `slots` plugin calls in flight. Each
/// slot reserves address space for its memories up front (about 4 GiB each,
/// so that compiled code needs no bounds checks).
pub(super) fn pooling_config(slots: u32) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots * 4)
        .total_memories(slots * 2)
        .total_tables(slots * 4)
        .max_memory_size(MAX_MEMORY)
        // Reset a slot's low memory with memset (only the pages a call
        // touched, where the kernel can say which) instead of madvise:
        // unmapping costs page faults and cross-core TLB shootdowns on
        // every evaluation.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(64 << 10)
        .pagemap_scan(wasmtime::Enabled::Auto);
    let mut config = base_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// On-demand allocation that reserves only what a plugin may use, for hosts
/// whose address space is limited (`ulimit -v`, valgrind).
pub(super) fn on_demand_config() -> Config {
    let mut config = base_config();
    config
        .allocation_strategy(InstanceAllocationStrategy::OnDemand)
        .memory_reservation(MAX_MEMORY as u64)
        .memory_reservation_for_growth(0);
    config
}

/// How the engine allocates plugin instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// A pre-reserved pool of this many slots: the fast path.
    Pooled(u32),
    /// Memory reserved per call, within each plugin's cap.
    OnDemand,
}

/// Which limit of a call's time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutOfTime {
    Cpu,
    Wall,
}

/// A call's time budget: CPU time on the calling thread, with a wall-clock
/// ceiling. The epoch ticker only says "look now"; the real clocks decide,
/// so a ticker that drifts under load can delay the check by a tick but
/// never stretch or shorten the deadline.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    cpu: Duration,
    wall: Duration,
    cpu_start: Duration,
    wall_start: Instant,
}

/// CPU time this thread has run. Read through the C library rather than
/// rustix, whose own vDSO parsing cannot run under valgrind
/// (bytecodealliance/rustix#1559), so the instruction counts CI tracks
/// (`scripts/instructions.sh`) can be taken; both are the same vDSO call.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    #[expect(
        unsafe_code,
        reason = "the thread CPU clock has no safe API in std or libc"
    )]
    // SAFETY: `t` is a valid, writable timespec for the call's duration, and
    // CLOCK_THREAD_CPUTIME_ID is always supported on Linux; on an error `t`
    // stays zero, which only makes the budget look unspent.
    let _ = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut t) };
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

fn ticks(d: Duration) -> u64 {
    u64::try_from(d.as_micros().div_ceil(TICK.as_micros()))
        .unwrap_or(u64::MAX)
        .max(1)
}

impl Budget {
    pub(super) fn start(cpu: Duration) -> Self {
        Self {
            cpu,
            wall: cpu.saturating_mul(WALL_CEILING_FACTOR),
            cpu_start: thread_cpu(),
            wall_start: Instant::now(),
        }
    }

    /// Ticks until the first look: half the budget, since a tick is at
    /// least [`TICK`] of wall time and CPU time never runs ahead of it.
    pub(super) fn first_ticks(&self) -> u64 {
        ticks(self.cpu / 2)
    }

    /// `None` when the budget is spent; otherwise the ticks until the next
    /// look, halving the remainder so the stop lands within about a tick.
    pub(super) fn check(&self) -> Option<u64> {
        let cpu_left = self
            .cpu
            .checked_sub(thread_cpu().saturating_sub(self.cpu_start))?;
        let wall_left = self.wall.checked_sub(self.wall_start.elapsed())?;
        if cpu_left.is_zero() || wall_left.is_zero() {
            return None;
        }
        Some(ticks(cpu_left.min(wall_left) / 2))
    }

    pub(super) fn exhausted(&self) -> OutOfTime {
        if self.wall_start.elapsed() >= self.wall {
            OutOfTime::Wall
        } else {
            OutOfTime::Cpu
        }
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{Hash as _, Hasher as _};

    use super::*;

    /// What wasmtime hashes as everything that shapes compiled code: every
    /// Cranelift flag (including those its load-time check lets differ,
    /// such as NaN canonicalisation), the tunables and the Wasm features.
    fn compile_environment(config: &Config) -> u64 {
        let engine = wasmtime::Engine::new(config).unwrap();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        hasher.finish()
    }

    /// The build script compiles the first-party plugins under
    /// `base_config()` alone; the pooled engine that loads them must compile
    /// exactly as that does, or a setting added here would hold for
    /// plugins compiled at start and silently not for those compiled at
    /// build time.
    #[test]
    fn the_pooled_engine_compiles_as_the_build_script_does() {
        assert_eq!(
            compile_environment(&pooling_config(1)),
            compile_environment(&base_config())
        );
    }
}
