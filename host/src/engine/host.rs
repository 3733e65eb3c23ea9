//! What a plugin can reach: the per-evaluation store data and the host
//! functions behind the WIT imports. Nothing here touches files, sockets or
//! the wall clock.

use std::sync::Arc;

use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{ResourceLimiter, Result};

use super::answer::{LogLine, Read};
use super::bindings::{host, snapshot as wit, types};
use super::handle::SnapshotHandle;
use super::wasi::WasiState;
use crate::snapshot::{Query, Snapshot, Track};

/// Lines a plugin may log per call, and bytes per line; the rest is dropped.
const MAX_LOG_LINES: usize = 32;
const MAX_LOG_LINE: usize = 512;
/// Distinct snapshot selections recorded per call; a plugin that makes
/// more is still served, its later selections just go unrecorded.
pub(crate) const MAX_READS: usize = 16;
/// Label pairs a recorded selection may hold (after repeats are dropped).
pub(crate) const MAX_READ_LABELS: usize = 32;

/// Store data for one plugin's instance in one evaluation (a
/// [`Session`](super::Session)); nothing in it is shared between
/// evaluations or between plugins.
pub(crate) struct HostState {
    pub(crate) table: ResourceTable,
    pub(crate) snapshot: Arc<Snapshot>,
    /// The decision time `host.now` and WASI's clocks show.
    pub(crate) now: i64,
    pub(crate) limiter: Limiter,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) logs_dropped: usize,
    /// The snapshot selections the running call made (see [`Read`]).
    pub(crate) reads: Vec<Read>,
    /// The time budget of the call running now.
    pub(crate) budget: Option<super::limits::Budget>,
    /// Set by the epoch callback when the call's time ran out.
    pub(crate) out_of_time: Option<super::limits::OutOfTime>,
    /// Snapshot handles lent to the running call, released when it ends.
    lent: Vec<u32>,
    /// Bytes of stdout and stderr already moved into a call's log.
    stdio_read: [usize; 2],
    /// The inert WASI context, built on the plugin's first WASI call.
    pub(crate) wasi: Option<WasiState>,
    /// Directories this call may read through WASI.
    pub(crate) grants: Arc<[super::wasi::FileGrant]>,
}

impl HostState {
    pub(crate) fn new(
        input: super::Input,
        memory_limit: usize,
        grants: Arc<[super::wasi::FileGrant]>,
    ) -> Self {
        let mut table = ResourceTable::new();
        table.set_max_capacity(super::wasi::MAX_RESOURCES);
        Self {
            table,
            snapshot: input.snapshot,
            now: input.now,
            limiter: Limiter {
                memory_limit,
                memory_breached: false,
            },
            logs: Vec::new(),
            logs_dropped: 0,
            reads: Vec::new(),
            budget: None,
            out_of_time: None,
            lent: Vec::new(),
            stdio_read: [0; 2],
            wasi: None,
            grants,
        }
    }

    pub(crate) fn snapshot_handle(&mut self) -> Result<Resource<SnapshotHandle>> {
        let handle = self
            .table
            .push(SnapshotHandle(Arc::clone(&self.snapshot)))?;
        self.lent.push(handle.rep());
        Ok(handle)
    }

    /// Frees the handles [`snapshot_handle`](Self::snapshot_handle) lent
    /// to the call that ended: a call borrows them, so none outlives it.
    pub(crate) fn release_snapshot_handles(&mut self) {
        for rep in self.lent.drain(..) {
            // Already gone only if the plugin dropped what it borrowed,
            // which the call's lowering refuses; nothing to undo either way.
            let _ = self.table.delete(Resource::<SnapshotHandle>::new_own(rep));
        }
    }

    /// Appends a log line within the bounds: at most [`MAX_LOG_LINES`]
    /// lines (the rest are counted), each cut at [`MAX_LOG_LINE`] bytes.
    pub(crate) fn push_log(&mut self, level: &str, message: String) {
        if self.logs.len() >= MAX_LOG_LINES {
            self.logs_dropped += 1;
            return;
        }
        // Copy the kept prefix and drop the rest: truncating in place would
        // keep the plugin's whole buffer (up to its memory cap) per line.
        let message = if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            let mut kept = String::with_capacity(cut + '…'.len_utf8());
            kept.push_str(&message[..cut]);
            kept.push('…');
            kept
        } else {
            message
        };
        self.logs.push(LogLine {
            level: level.into(),
            message,
        });
    }

    /// Moves what the plugin wrote to WASI stdout and stderr since the last
    /// call into its log, a line each. The pipes stay: a plugin's libc keeps
    /// its stream handles from one call to the next, so their capacity
    /// ([`MAX_STDIO_BYTES`](super::wasi::MAX_STDIO_BYTES) each) is per
    /// instance, that is per plugin per evaluation.
    pub(crate) fn drain_stdio(&mut self) {
        let Some(wasi) = &self.wasi else {
            return;
        };
        let mut lines = Vec::new();
        for (i, (level, pipe)) in [("stdout", &wasi.stdout), ("stderr", &wasi.stderr)]
            .into_iter()
            .enumerate()
        {
            let bytes = pipe.contents();
            let new = bytes.get(self.stdio_read[i]..).unwrap_or_default();
            self.stdio_read[i] = bytes.len();
            for line in String::from_utf8_lossy(new).lines() {
                if !line.trim().is_empty() {
                    lines.push((level, line.to_string()));
                }
            }
        }
        for (level, line) in lines {
            self.push_log(level, line);
        }
    }

    fn snapshot_of(&self, handle: &Resource<SnapshotHandle>) -> Result<Arc<Snapshot>> {
        Ok(Arc::clone(&self.table.get(handle)?.0))
    }
}

/// Caps a plugin's linear memory and remembers a breach, so the cause can be
/// reported as "memory limit exceeded" rather than a bare trap.
pub(crate) struct Limiter {
    pub(crate) memory_limit: usize,
    pub(crate) memory_breached: bool,
}

/// Table elements a plugin may grow to; far beyond what a compiled plugin needs.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> Result<bool> {
        if desired > self.memory_limit {
            self.memory_breached = true;
            wasmtime::bail!("memory limit exceeded");
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            wasmtime::bail!("table limit of {MAX_TABLE_ELEMENTS} elements exceeded");
        }
        Ok(true)
    }
}

fn to_point(p: crate::snapshot::Point) -> wit::Point {
    wit::Point {
        timestamp: p.timestamp,
        value: p.value,
    }
}

impl HostState {
    /// Notes a selection that matched, once per distinct selection. Its
    /// texts matched a series, so each is bounded by the snapshot's own; a
    /// selector repeating pairs is kept once per pair, and one with more
    /// pairs than [`MAX_READ_LABELS`] goes unrecorded.
    fn record_read(&mut self, q: wit::Query, points: usize) {
        if self.reads.len() >= MAX_READS {
            return;
        }
        let mut selector = q.selector;
        selector.sort_unstable();
        selector.dedup();
        if selector.len() > MAX_READ_LABELS {
            return;
        }
        let read = Read {
            metric: q.metric,
            selector,
            window_seconds: q.window_seconds,
            track: match q.track {
                wit::Track::Current => Track::Current,
                wit::Track::Baseline => Track::Baseline,
            },
            points,
        };
        if !self.reads.contains(&read) {
            self.reads.push(read);
        }
    }
}

fn with_query<T>(
    snapshot: &Snapshot,
    q: &wit::Query,
    f: impl FnOnce(&Snapshot, &Query<'_>) -> T,
) -> T {
    let query = Query {
        metric: &q.metric,
        selector: &q.selector,
        window_seconds: q.window_seconds,
        track: match q.track {
            wit::Track::Current => Track::Current,
            wit::Track::Baseline => Track::Baseline,
        },
    };
    f(snapshot, &query)
}

impl types::Host for HostState {}

impl wit::Host for HostState {}

impl wit::HostSnapshot for HostState {
    fn service(&mut self, h: Resource<SnapshotHandle>) -> Result<String> {
        Ok(self.snapshot_of(&h)?.service.clone())
    }

    fn version(&mut self, h: Resource<SnapshotHandle>) -> Result<String> {
        Ok(self.snapshot_of(&h)?.version.clone())
    }

    fn taken_at(&mut self, h: Resource<SnapshotHandle>) -> Result<i64> {
        Ok(self.snapshot_of(&h)?.taken_at)
    }

    fn series(&mut self, h: Resource<SnapshotHandle>, q: wit::Query) -> Result<Vec<wit::Series>> {
        let snap = self.snapshot_of(&h)?;
        let selected = with_query(&snap, &q, Snapshot::select);
        if !selected.is_empty() {
            self.record_read(q, selected.iter().map(|s| s.points.len()).sum());
        }
        Ok(selected
            .into_iter()
            .map(|series| wit::Series {
                name: series.name,
                labels: series.labels.into_iter().collect(),
                points: series.points.into_iter().map(to_point).collect(),
            })
            .collect())
    }

    fn points(&mut self, h: Resource<SnapshotHandle>, q: wit::Query) -> Result<Vec<wit::Point>> {
        let snap = self.snapshot_of(&h)?;
        let selected = with_query(&snap, &q, Snapshot::select);
        if selected.is_empty() {
            return Ok(Vec::new());
        }
        let points = Snapshot::pool(selected);
        self.record_read(q, points.len());
        Ok(points.into_iter().map(to_point).collect())
    }

    fn attribute(&mut self, h: Resource<SnapshotHandle>, key: String) -> Result<Option<String>> {
        Ok(self.snapshot_of(&h)?.attributes.get(&key).cloned())
    }

    fn commits(&mut self, h: Resource<SnapshotHandle>) -> Result<Vec<wit::Commit>> {
        Ok(self
            .snapshot_of(&h)?
            .commits
            .iter()
            .map(|c| wit::Commit {
                sha: c.sha.clone(),
                message: c.message.clone(),
                timestamp: c.timestamp,
            })
            .collect())
    }

    fn drop(&mut self, h: Resource<SnapshotHandle>) -> Result<()> {
        self.table.delete(h)?;
        Ok(())
    }
}

impl host::Host for HostState {
    fn log(&mut self, level: host::Level, message: String) -> Result<()> {
        let level = match level {
            host::Level::Debug => "debug",
            host::Level::Info => "info",
            host::Level::Warn => "warn",
            host::Level::Error => "error",
        };
        self.push_log(level, message);
        Ok(())
    }

    fn now(&mut self) -> Result<i64> {
        Ok(self.now)
    }
}

impl wasmtime_wasi::WasiView for HostState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        // Built on first use: a plugin that imports no WASI pays nothing.
        let wasi = self.wasi.get_or_insert_with(|| {
            WasiState::new(&self.snapshot, self.now, &self.grants, &mut self.logs)
        });
        wasmtime_wasi::WasiCtxView {
            ctx: &mut wasi.ctx,
            table: &mut self.table,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use host::Host as _;

    #[test]
    fn a_long_log_line_keeps_only_its_prefix() {
        let mut state = HostState::new(
            super::super::Input {
                snapshot: Arc::new(Snapshot::empty()),
                now: 0,
            },
            16 << 20,
            Arc::from(Vec::new()),
        );
        state.log(host::Level::Info, "x".repeat(15 << 20)).unwrap();
        let line = &state.logs[0].message;
        assert_eq!(line.chars().count(), MAX_LOG_LINE + 1);
        assert!(
            line.capacity() < 4 * MAX_LOG_LINE,
            "kept {} bytes",
            line.capacity()
        );
    }

    #[test]
    fn log_lines_beyond_the_cap_are_counted_not_kept() {
        let mut state = HostState::new(
            super::super::Input {
                snapshot: Arc::new(Snapshot::empty()),
                now: 0,
            },
            16 << 20,
            Arc::from(Vec::new()),
        );
        for _ in 0..MAX_LOG_LINES + 5 {
            state.log(host::Level::Info, "line".into()).unwrap();
        }
        assert_eq!(state.logs.len(), MAX_LOG_LINES);
        assert_eq!(state.logs_dropped, 5);
    }
}
