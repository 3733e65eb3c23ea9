//! `tollgate serve`: the HTTP evaluate service.

use super::Exit;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use crate::server::telemetry::{self, LogFormat};
use crate::server::{AppState, ServerConfig, Tokens};
use crate::sources::prometheus::{Auth, PrometheusConfig};

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Directory of policy files; the bundled policies when absent.
    #[arg(long)]
    policies: Option<PathBuf>,
    /// Directory of user plugins (`*.wasm`), available to every policy by file name.
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// YAML config file; flags override it. Also `TOLLGATE_CONFIG` (a
    /// container's configuration from its environment).
    #[arg(long, env = "TOLLGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Token file; also `TOLLGATE_TOKENS_FILE`. One token (16 characters or
    /// more) per line, then its scopes: `evaluate` (every policy) or
    /// `evaluate:a,b` (those policies), either limited to services after `@`
    /// (`evaluate:canary@checkout,cart`, `evaluate:*@team-a-*`; `*` and `?`
    /// match), `read` (policies, plugins, decisions, metrics, OpenAPI),
    /// `approve` or `approve@SERVICE,…` (record approvals), `admin` (reload,
    /// and everything else); no scope means `evaluate read`. SIGHUP and
    /// `POST /v1/admin/reload` read it again. An approver is named
    /// by `as:NAME` and `group:a,b`. `#` starts a comment. Example:
    /// `alice-token-0123456789ab approve read as:alice group:release-managers`.
    #[arg(long)]
    tokens_file: Option<PathBuf>,
    /// Serve without authentication. For local use only.
    #[arg(long)]
    insecure_no_auth: bool,
    /// Log line format [default: text].
    #[arg(long, value_parser = log_format_parser())]
    log_format: Option<LogFormat>,
    /// Evaluations in flight before 503 [default: 64].
    #[arg(long)]
    max_concurrency: Option<usize>,
    /// Evaluations one token may have in flight before 503, so one token
    /// cannot take every slot [default: half of --max-concurrency].
    #[arg(long)]
    max_concurrency_per_token: Option<usize>,
    /// Per-request timeout, e.g. `10s` [default: 10s].
    #[arg(long, value_parser = humantime::parse_duration)]
    request_timeout: Option<Duration>,
    /// How long shutdown waits for in-flight requests [default: 10s].
    #[arg(long, value_parser = humantime::parse_duration)]
    grace_period: Option<Duration>,
    /// Directory the Flagger and Argo endpoints may read `snapshot_file`s from.
    #[arg(long)]
    snapshot_dir: Option<PathBuf>,
    /// How far a request's `taken_at` may be ahead of this server's clock
    /// before it is refused with 422 [default: 5m].
    #[arg(long, value_parser = humantime::parse_duration)]
    max_clock_skew: Option<Duration>,
    /// Connections open at once; more are closed on accept [default: 4096].
    #[arg(long)]
    max_connections: Option<usize>,
    /// Services given labels of their own in the gate and last-decision
    /// metrics; decisions for more are counted, not labelled [default: 100].
    #[arg(long)]
    metrics_max_services: Option<usize>,
    /// Evaluations running plugin code at once; the rest wait for one
    /// (plugin deadlines count CPU time) [default: four per core].
    #[arg(long)]
    workers: Option<usize>,
    /// Workers backtest jobs may hold at once, all jobs together, so live
    /// evaluations keep the rest [default: half the cores, at least 1].
    #[arg(long)]
    backtest_workers: Option<usize>,
    /// Replays of logged decisions one token may start: `N/s`, `N/m` or
    /// `N/h`; past it 429 with `Retry-After` [default: 10/m].
    #[arg(long)]
    replay_rate: Option<crate::server::Rate>,
    /// Evaluations one token may start, on every evaluate route: `N/s`,
    /// `N/m` or `N/h`; past it 429 with `Retry-After` [default: no limit].
    #[arg(long)]
    evaluate_rate: Option<crate::server::Rate>,
    /// Approvals one token may record: `N/s`, `N/m` or `N/h`; past it 429
    /// with `Retry-After` [default: no limit].
    #[arg(long)]
    approve_rate: Option<crate::server::Rate>,
    /// Prometheus to query for requests that send no snapshot (overrides
    /// `telemetry.prometheus.url`).
    #[arg(long)]
    prometheus: Option<reqwest::Url>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key); SIGHUP
    /// reloads it.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by these PEM CAs (mTLS).
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Where decisions, trigger state and idempotency keys are kept: a
    /// SQLite file, `postgres://…` (shared by replicas), or `memory` (no
    /// decision log) [default: .tollgate/tollgate.db].
    #[arg(long)]
    store: Option<String>,
    /// Prune decisions older than this, e.g. `90d` (hourly, and at start).
    #[arg(long, value_parser = humantime::parse_duration)]
    retain: Option<Duration>,
    /// Refuse plugin files without an SSH signature (`FILE.sig`) by a key
    /// in --allowed-signers.
    #[arg(long, requires = "allowed_signers")]
    require_signature: bool,
    /// The `allowed_signers` file (ssh-keygen format) of keys that may sign
    /// plugins, for policies that name none.
    #[arg(long)]
    allowed_signers: Option<PathBuf>,
}

/// The config file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    addr: Option<SocketAddr>,
    policies: Option<PathBuf>,
    plugins: Option<PathBuf>,
    tokens_file: Option<PathBuf>,
    insecure_no_auth: Option<bool>,
    log_format: Option<String>,
    max_concurrency: Option<usize>,
    max_concurrency_per_token: Option<usize>,
    request_timeout: Option<String>,
    grace_period: Option<String>,
    body_limit: Option<usize>,
    snapshot_dir: Option<PathBuf>,
    max_clock_skew: Option<String>,
    header_read_timeout: Option<String>,
    body_read_timeout: Option<String>,
    max_connections: Option<usize>,
    metrics_max_services: Option<usize>,
    workers: Option<usize>,
    backtest_workers: Option<usize>,
    replay_rate: Option<String>,
    evaluate_rate: Option<String>,
    approve_rate: Option<String>,
    telemetry: Option<TelemetryFile>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    store: Option<String>,
    retain: Option<String>,
    require_signature: Option<bool>,
    allowed_signers: Option<PathBuf>,
    /// The server's address as users reach it, for links in notifications.
    public_url: Option<String>,
    notifications: Option<Vec<NotificationFile>>,
    /// The file's directory, which relative paths in it start from.
    #[serde(skip)]
    base: PathBuf,
}

/// One entry of `notifications:` in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotificationFile {
    /// The webhook's URL, or `url_file`, a file holding it (a Slack
    /// webhook URL is a secret).
    url: Option<String>,
    url_file: Option<PathBuf>,
    /// `slack` or `json` (the default).
    format: Option<crate::server::notify::Format>,
    /// A file holding the HMAC-SHA256 key that signs JSON bodies.
    secret_file: Option<PathBuf>,
    /// The policies it is for; every policy when absent.
    policies: Option<Vec<String>>,
    /// What notifies: `rollback` and `final_promote` (both on by default),
    /// `hold_longer_than` (a duration; off by default).
    on: Option<NotifyOnFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyOnFile {
    rollback: Option<bool>,
    final_promote: Option<bool>,
    hold_longer_than: Option<String>,
}

fn webhooks(files: Vec<NotificationFile>) -> anyhow::Result<Vec<crate::server::notify::Webhook>> {
    if files.len() > crate::server::notify::MAX_WEBHOOKS {
        anyhow::bail!(
            "`notifications`: {} webhooks; at most {} are allowed",
            files.len(),
            crate::server::notify::MAX_WEBHOOKS
        );
    }
    files
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let field = |name: &str| format!("`notifications[{i}].{name}`");
            let url = match (f.url, &f.url_file) {
                (Some(u), None) => u,
                (None, Some(p)) => secret(p, "webhook URL file")?,
                _ => anyhow::bail!("{}: give `url` or `url_file`, one of them", field("url")),
            };
            let url: reqwest::Url = url
                .parse()
                .map_err(|e| anyhow::anyhow!("{}: not a URL: {e}", field("url")))?;
            if !matches!(url.scheme(), "http" | "https") {
                anyhow::bail!("{}: the scheme must be http or https", field("url"));
            }
            let format = f.format.unwrap_or(crate::server::notify::Format::Json);
            let secret = f
                .secret_file
                .as_deref()
                .map(|p| secret(p, "webhook secret file").map(String::into_bytes))
                .transpose()?;
            if secret.is_some() && format == crate::server::notify::Format::Slack {
                anyhow::bail!(
                    "{}: Slack bodies are not signed; a secret goes with `format: json`",
                    field("secret_file")
                );
            }
            let on = f.on.unwrap_or_default();
            Ok(crate::server::notify::Webhook {
                url,
                format,
                secret,
                policies: f.policies.unwrap_or_default(),
                on_rollback: on.rollback.unwrap_or(true),
                on_final_promote: on.final_promote.unwrap_or(true),
                on_hold_longer_than: duration(
                    &format!("notifications[{i}].on.hold_longer_than"),
                    on.hold_longer_than.as_deref(),
                )?,
            })
        })
        .collect()
}

/// `telemetry:` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TelemetryFile {
    prometheus: Option<PrometheusFile>,
    /// Source plugins by name (docs/sources.md).
    #[serde(default)]
    sources: std::collections::BTreeMap<String, crate::sources::settings::SourceSpec>,
}

/// `telemetry.prometheus:` in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrometheusFile {
    url: String,
    timeout: Option<String>,
    retries: Option<u32>,
    /// A file holding the bearer token.
    bearer_token_file: Option<PathBuf>,
    /// A file holding `user:password`.
    basic_auth_file: Option<PathBuf>,
    /// PEM CAs to trust for an `https` URL.
    ca_file: Option<PathBuf>,
}

fn secret(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = crate::base::files::read_text(path)
        .with_context(|| format!("cannot read {what} `{}`", path.display()))?;
    Ok(text.trim().to_string())
}

fn prometheus_config(
    flag: Option<reqwest::Url>,
    file: Option<PrometheusFile>,
) -> anyhow::Result<Option<PrometheusConfig>> {
    let Some(file) = file else {
        return Ok(flag.map(PrometheusConfig::new));
    };
    let url = match flag {
        Some(u) => u,
        None => file
            .url
            .parse()
            .with_context(|| format!("`telemetry.prometheus.url`: `{}` is not a URL", file.url))?,
    };
    let mut config = PrometheusConfig::new(url);
    if let Some(t) = duration("telemetry.prometheus.timeout", file.timeout.as_deref())? {
        config.timeout = t;
    }
    if let Some(r) = file.retries {
        config.retries = r.min(10);
    }
    config.auth = match (&file.bearer_token_file, &file.basic_auth_file) {
        (Some(_), Some(_)) => anyhow::bail!(
            "`telemetry.prometheus`: give `bearer_token_file` or `basic_auth_file`, not both"
        ),
        (Some(p), None) => Some(Auth::Bearer(secret(p, "bearer token file")?)),
        (None, Some(p)) => {
            let pair = secret(p, "basic auth file")?;
            let (user, password) = pair.split_once(':').with_context(|| {
                format!(
                    "basic auth file `{}` must hold `user:password`",
                    p.display()
                )
            })?;
            Some(Auth::Basic {
                user: user.to_string(),
                password: password.to_string(),
            })
        }
        (None, None) => None,
    };
    config.ca_file = file.ca_file;
    Ok(Some(config))
}

fn read_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text = crate::base::files::read_text(path)
        .with_context(|| format!("cannot read config `{}`", path.display()))?;
    let node = crate::policy::yaml::parse(&text)
        .map_err(|e| anyhow::anyhow!("config `{}`: {e}", path.display()))?;
    let json = node.to_json();
    let json = if json.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        json
    };
    let mut config: FileConfig = serde_path_to_error::deserialize(json)
        .map_err(|e| anyhow::anyhow!("config `{}`: {}: {}", path.display(), e.path(), e.inner()))?;
    // Paths in the file are relative to the file.
    let base = path.parent().unwrap_or(Path::new("."));
    config.base = base.to_path_buf();
    for p in [
        &mut config.policies,
        &mut config.plugins,
        &mut config.tokens_file,
        &mut config.snapshot_dir,
        &mut config.allowed_signers,
    ]
    .into_iter()
    .flatten()
    {
        *p = base.join(&*p);
    }
    for n in config.notifications.iter_mut().flatten() {
        for p in [&mut n.url_file, &mut n.secret_file].into_iter().flatten() {
            *p = base.join(&*p);
        }
    }
    Ok(config)
}

/// `--log-format`'s words, listed in `--help` and completions; the
/// server's type stays free of the CLI's.
fn log_format_parser() -> impl clap::builder::TypedValueParser<Value = LogFormat> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(["text", "json"]).map(|s| match s.as_str() {
        "json" => LogFormat::Json,
        _ => LogFormat::Text,
    })
}

fn rate(field: &str, text: Option<&str>) -> anyhow::Result<Option<crate::server::Rate>> {
    text.map(|t| {
        t.parse()
            .map_err(|e: crate::server::RateError| anyhow::anyhow!("`{field}`: {e}"))
    })
    .transpose()
}

fn duration(field: &str, text: Option<&str>) -> anyhow::Result<Option<Duration>> {
    text.map(|t| {
        humantime::parse_duration(t).with_context(|| format!("`{field}`: `{t}` is not a duration"))
    })
    .transpose()
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<Exit> {
    let mut file = match &args.config {
        Some(p) => read_config(p)?,
        None => FileConfig::default(),
    };
    let telemetry = file.telemetry.take().unwrap_or_default();
    let log_format = match (args.log_format, file.log_format.as_deref()) {
        (Some(f), _) => f,
        (None, None | Some("text")) => LogFormat::Text,
        (None, Some("json")) => LogFormat::Json,
        (None, Some(other)) => anyhow::bail!("`log_format` is `{other}`; expected text or json"),
    };
    let defaults = ServerConfig::default();
    let config = ServerConfig {
        addr: args.addr.or(file.addr).unwrap_or(defaults.addr),
        policies: args.policies.or(file.policies),
        plugins: args.plugins.or(file.plugins),
        body_limit: file.body_limit.unwrap_or(defaults.body_limit),
        request_timeout: args
            .request_timeout
            .or(duration(
                "request_timeout",
                file.request_timeout.as_deref(),
            )?)
            .unwrap_or(defaults.request_timeout),
        max_concurrency: args
            .max_concurrency
            .or(file.max_concurrency)
            .unwrap_or(defaults.max_concurrency),
        max_concurrency_per_token: args
            .max_concurrency_per_token
            .or(file.max_concurrency_per_token),
        grace_period: args
            .grace_period
            .or(duration("grace_period", file.grace_period.as_deref())?)
            .unwrap_or(defaults.grace_period),
        header_read_timeout: duration("header_read_timeout", file.header_read_timeout.as_deref())?
            .unwrap_or(defaults.header_read_timeout),
        body_read_timeout: duration("body_read_timeout", file.body_read_timeout.as_deref())?
            .unwrap_or(defaults.body_read_timeout),
        max_connections: args
            .max_connections
            .or(file.max_connections)
            .unwrap_or(defaults.max_connections),
        snapshot_dir: args.snapshot_dir.or(file.snapshot_dir),
        notifications: webhooks(file.notifications.unwrap_or_default())?,
        public_url: file
            .public_url
            .as_deref()
            .map(|u| {
                u.parse::<reqwest::Url>()
                    .map_err(|e| anyhow::anyhow!("`public_url`: not a URL: {e}"))
            })
            .transpose()?,
        metrics_max_services: args
            .metrics_max_services
            .or(file.metrics_max_services)
            .unwrap_or(defaults.metrics_max_services),
        workers: args.workers.or(file.workers).unwrap_or(defaults.workers),
        backtest_workers: args
            .backtest_workers
            .or(file.backtest_workers)
            .unwrap_or(defaults.backtest_workers),
        replay_rate: args
            .replay_rate
            .or(rate("replay_rate", file.replay_rate.as_deref())?)
            .or(defaults.replay_rate),
        evaluate_rate: args
            .evaluate_rate
            .or(rate("evaluate_rate", file.evaluate_rate.as_deref())?),
        approve_rate: args
            .approve_rate
            .or(rate("approve_rate", file.approve_rate.as_deref())?),
        max_clock_skew: args
            .max_clock_skew
            .or(duration("max_clock_skew", file.max_clock_skew.as_deref())?)
            .unwrap_or(defaults.max_clock_skew),
        tls: match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some(crate::server::TlsFiles {
                cert,
                key,
                client_ca: args.tls_client_ca.or(file.tls_client_ca),
            }),
            (None, None) => None,
            _ => anyhow::bail!("TLS needs both a certificate and a key (`tls_cert`, `tls_key`)"),
        },
        prometheus: prometheus_config(args.prometheus, telemetry.prometheus)?,
        sources: telemetry.sources,
        sources_base: file.base.clone(),
        retain: args.retain.or(duration("retain", file.retain.as_deref())?),
        require_signature: args.require_signature || file.require_signature.unwrap_or(false),
        allowed_signers: args.allowed_signers.or(file.allowed_signers),
        ..defaults
    };
    config.check().map_err(|e| anyhow::anyhow!("{e}"))?;
    let store_spec = args
        .store
        .or(file.store)
        .or_else(|| std::env::var("TOLLGATE_STORE").ok())
        .unwrap_or_else(|| crate::store::DEFAULT_PATH.to_string());
    let insecure = args.insecure_no_auth || file.insecure_no_auth.unwrap_or(false);
    let tokens_file = args
        .tokens_file
        .or(file.tokens_file)
        .or_else(|| std::env::var_os("TOLLGATE_TOKENS_FILE").map(PathBuf::from));

    // Bind first, so a busy port is reported (naming the address) before
    // anything else is printed.
    let listener = std::net::TcpListener::bind(config.addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.addr))?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let _guard = telemetry::init(log_format)?;
        let tokens = if insecure {
            tracing::warn!("authentication is OFF for evaluate and read (--insecure-no-auth): anyone who can reach this port can evaluate");
            eprintln!("warning: authentication is off for evaluate and read (--insecure-no-auth); use only on a trusted machine; admin endpoints still need an admin token");
            match tokens_file {
                Some(path) => Tokens::from_file(&path)?.opened(),
                None => Tokens::disabled(),
            }
        } else if let Some(path) = tokens_file {
            Tokens::from_file(&path)?
        } else {
            let token = format!("tg_{}", uuid::Uuid::new_v4().simple());
            eprintln!("no token file configured: this run accepts the admin token\n  {token}\n(set --tokens-file or TOLLGATE_TOKENS_FILE to choose tokens)");
            Tokens::from_plain(&[(token, true)])
        };
        // Each running evaluation holds up to one session's instances.
        let slots = u32::try_from(config.workers.saturating_mul(crate::engine::SESSION_INSTANCES).saturating_add(4))
            .unwrap_or(crate::engine::POOL_SIZE);
        let engine = Arc::new(super::runtime_with(slots, |n| tracing::warn!("{n}"))?);
        let store = crate::store::open(&store_spec).await?;
        if store.logs_decisions() {
            tracing::info!(store = %store.describe(), "decision log");
        } else {
            tracing::warn!("--store memory: decisions are not logged, and trigger state and idempotency keys are lost on restart");
        }
        let state = tokio::task::spawn_blocking(move || AppState::new(config, engine, tokens, store))
            .await
            .context("loading policies")??;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        crate::server::serve(state, listener).await
    })?;
    Ok(Exit::Success)
}
