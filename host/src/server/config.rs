//! Server settings: flags, an optional YAML file, and defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How the server runs. Every field has a default; a config file or flags
/// override them.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    /// Directory of policy files (`*.yaml`, not `*.test.yaml`); `None` serves
    /// the bundled policies.
    pub policies: Option<PathBuf>,
    /// Directory of user plugins (`*.wasm`), each available to every policy
    /// under its file name without the extension.
    pub plugins: Option<PathBuf>,
    /// Largest request body, in bytes (4 MiB).
    pub body_limit: usize,
    /// Longest an evaluation request may take (10 s).
    pub request_timeout: Duration,
    /// Evaluations in flight at once before 503 (defaults to 64).
    pub max_concurrency: usize,
    /// Evaluations running at once; the rest of those in flight wait for a
    /// worker. Defaults to the number of cores.
    pub workers: usize,
    /// How long shutdown waits for in-flight requests (10 s).
    pub grace_period: Duration,
    /// Idempotency keys remembered (10,000, least recently used evicted).
    pub idempotency_entries: usize,
    /// Directory the compatibility endpoints may read snapshot files from.
    pub snapshot_dir: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            policies: None,
            plugins: None,
            body_limit: 4 << 20,
            request_timeout: Duration::from_secs(10),
            max_concurrency: 64,
            workers: std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            grace_period: super::DEFAULT_GRACE,
            idempotency_entries: 10_000,
            snapshot_dir: None,
        }
    }
}
