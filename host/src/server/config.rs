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
    /// Longest an evaluation may wait for a worker before it is answered
    /// 503 with `Retry-After` (10 s). Once running, an evaluation is bounded
    /// by its plugins' deadlines, never cut off: a gate that uses its whole
    /// deadline is a verdict, not a 5xx.
    pub request_timeout: Duration,
    /// Evaluations in flight at once before 503 (defaults to 64).
    pub max_concurrency: usize,
    /// Evaluations one token may have in flight at once before 503, so
    /// that one token cannot take every slot; `None` is half of
    /// `max_concurrency` (at least 1). A server without auth has no tokens
    /// to tell apart, and no such cap.
    pub max_concurrency_per_token: Option<usize>,
    /// Evaluations running plugin code at once; the rest of those in flight
    /// wait for a worker. Plugin deadlines count CPU time, so workers may
    /// outnumber cores without load spending a plugin's budget; defaults to
    /// four per core.
    pub workers: usize,
    /// Workers one policy may hold at once, so that a slow or hostile policy
    /// slows only itself (half the workers).
    pub policy_workers: usize,
    /// Workers backtest jobs may hold at once, all jobs together (half the
    /// cores, at least 1), so live evaluations are never starved.
    pub backtest_workers: usize,
    /// Longest wait for a request's headers or, on an idle keep-alive
    /// connection, for the next request (10 s).
    pub header_read_timeout: Duration,
    /// Longest wait for a request's body once its headers arrived (30 s).
    pub body_read_timeout: Duration,
    /// Connections open at once; more are closed on accept (4,096, and never
    /// more than the file-descriptor limit leaves room for).
    pub max_connections: usize,
    /// Refuse any plugin file without an SSH signature by a key in
    /// `allowed_signers`, in every policy and in the plugin directory.
    pub require_signature: bool,
    /// The `allowed_signers` file (ssh-keygen format) for every policy that
    /// names none itself.
    pub allowed_signers: Option<PathBuf>,
    /// How long decisions are kept; older ones are pruned hourly (and at
    /// start). `None` keeps them forever.
    pub retain: Option<Duration>,
    /// The Prometheus that requests without a snapshot are answered from.
    pub prometheus: Option<crate::sources::prometheus::PrometheusConfig>,
    /// Source plugins requests without a snapshot are answered from, for
    /// the `metrics:` that name them.
    pub sources: std::collections::BTreeMap<String, crate::sources::settings::SourceSpec>,
    /// The directory the sources' relative file names start from.
    pub sources_base: PathBuf,
    /// Serve HTTPS with these files (reloaded on SIGHUP).
    pub tls: Option<super::TlsFiles>,
    /// How long shutdown waits for in-flight requests (10 s).
    pub grace_period: Duration,
    /// Directory the compatibility endpoints may read snapshot files from.
    pub snapshot_dir: Option<PathBuf>,
    /// Replays one token may start (10 a minute); past it 429 with
    /// `Retry-After`. `None` leaves replays unlimited but for the workers.
    pub replay_rate: Option<super::Rate>,
    /// Evaluations one token may start, on every evaluate route; `None`
    /// (the default) sets no limit beyond `max_concurrency`.
    pub evaluate_rate: Option<super::Rate>,
    /// Approvals one token may record; `None` (the default) sets no limit
    /// beyond the caps per release and approver.
    pub approve_rate: Option<super::Rate>,
    /// How far a request's `taken_at` (or `at`, or a point's time) may be
    /// ahead of this server's clock before the evaluation is refused (5 min):
    /// the caller's clock positions telemetry, and must not reach into the
    /// future, where it would pin trigger state out of reach.
    pub max_clock_skew: Duration,
    /// Services given their own labels in the gate and last-decision
    /// metrics (100); decisions for services past it are counted in
    /// `tollgate_metrics_services_over_cap_total` instead, so callers
    /// cannot grow the exposition without bound.
    pub metrics_max_services: usize,
    /// Webhooks on decisions (rollback, a long hold, a last-stage promote).
    pub notifications: Vec<super::notify::Webhook>,
    /// The server's address as users reach it, for links to decision pages
    /// in notifications (`https://tollgate.example.com/`).
    pub public_url: Option<reqwest::Url>,
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
            max_concurrency_per_token: None,
            workers: 4 * cores(),
            policy_workers: (2 * cores()).max(1),
            backtest_workers: (cores() / 2).max(1),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 4096,
            retain: None,
            require_signature: false,
            allowed_signers: None,
            prometheus: None,
            sources: std::collections::BTreeMap::new(),
            sources_base: PathBuf::new(),
            tls: None,
            grace_period: super::DEFAULT_GRACE,
            snapshot_dir: None,
            replay_rate: Some(super::limits::DEFAULT_REPLAY_RATE),
            evaluate_rate: None,
            approve_rate: None,
            max_clock_skew: crate::evaluate::DEFAULT_MAX_CLOCK_SKEW,
            metrics_max_services: super::metrics::DEFAULT_MAX_SERVICES,
            notifications: Vec::new(),
            public_url: None,
        }
    }
}

/// The smallest body limit accepted: room for a request naming a policy
/// and a small snapshot.
const MIN_BODY_LIMIT: usize = 1024;

/// Settings under which the server could start but never answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("`{name}` is 0; it must be at least 1")]
    Zero { name: &'static str },
    #[error("`{name}` is 0s; it must be longer")]
    NoTime { name: &'static str },
    #[error("`body_limit` is {limit} bytes; it must be at least {MIN_BODY_LIMIT}")]
    BodyLimit { limit: usize },
    /// A retention that deletes decisions almost as soon as they are made.
    #[error(transparent)]
    Retain(#[from] crate::store::RetainTooShort),
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

impl ServerConfig {
    /// Refuses settings under which the server could start but never
    /// answer: no slot, no connection, a timeout of zero, a body limit too
    /// small for any request, or a retention that deletes every decision.
    pub fn check(&self) -> Result<(), ConfigError> {
        let at_least_one = [
            ("max_concurrency", self.max_concurrency),
            (
                "max_concurrency_per_token",
                self.max_concurrency_per_token.unwrap_or(1),
            ),
            ("max_connections", self.max_connections),
            ("workers", self.workers),
            ("backtest_workers", self.backtest_workers),
        ];
        if let Some(&(name, _)) = at_least_one.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Zero { name });
        }
        let timeouts = [
            ("request_timeout", self.request_timeout),
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
        ];
        if let Some(&(name, _)) = timeouts.iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::NoTime { name });
        }
        if self.body_limit < MIN_BODY_LIMIT {
            return Err(ConfigError::BodyLimit {
                limit: self.body_limit,
            });
        }
        if let Some(retain) = self.retain {
            crate::store::check_retain(retain)?;
        }
        Ok(())
    }

    /// Evaluations one token may have in flight: `max_concurrency_per_token`,
    /// else half of `max_concurrency`, and at least 1.
    pub fn per_token_concurrency(&self) -> usize {
        self.max_concurrency_per_token
            .unwrap_or(self.max_concurrency / 2)
            .max(1)
    }

    /// The signatures every policy's plugins must carry, with the allowed
    /// signers read (again on every reload, so key changes take effect).
    pub fn trust(&self) -> Result<crate::policy::Trust, super::ReloadError> {
        let allowed_signers = self
            .allowed_signers
            .as_deref()
            .map(crate::engine::signature::AllowedSigners::read)
            .transpose()
            .map_err(|e| super::ReloadError::Invalid(e.to_string()))?
            .map(std::sync::Arc::new);
        if self.require_signature && allowed_signers.is_none() {
            return Err(super::ReloadError::Invalid(
                "`require_signature` needs `allowed_signers`: the file of keys allowed to sign plugins".into(),
            ));
        }
        Ok(crate::policy::Trust {
            require_signature: self.require_signature,
            allowed_signers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_that_could_never_answer_is_refused() {
        let problem = |c: ServerConfig| c.check().unwrap_err().to_string();
        assert_eq!(
            problem(ServerConfig {
                max_connections: 0,
                ..ServerConfig::default()
            }),
            "`max_connections` is 0; it must be at least 1"
        );
        assert_eq!(
            problem(ServerConfig {
                body_read_timeout: Duration::ZERO,
                ..ServerConfig::default()
            }),
            "`body_read_timeout` is 0s; it must be longer"
        );
        assert_eq!(
            problem(ServerConfig {
                body_limit: 10,
                ..ServerConfig::default()
            }),
            "`body_limit` is 10 bytes; it must be at least 1024"
        );
        assert!(
            problem(ServerConfig {
                retain: Some(Duration::from_secs(60)),
                ..ServerConfig::default()
            })
            .starts_with("`retain` is 1m; it must be at least 1h")
        );
        assert!(ServerConfig::default().check().is_ok());
    }
}
