//! The HTTP evaluate service: `tollgate serve`.
//!
//! [`app`] builds the router from an [`AppState`], so tests drive it with
//! `tower::ServiceExt::oneshot` and no socket; [`serve`] binds it, handles
//! signals (SIGTERM/SIGINT drain, SIGHUP reload) and runs until shutdown.

mod access;
mod approvals;
mod auth;
mod backtests;
mod catalog;
mod compat;
mod config;
mod decisions;
mod error;
mod events;
mod extract;
mod handlers;
mod limits;
mod listen;
mod metrics;
pub mod notify;
mod policies;
mod respond;
mod service;
pub mod telemetry;
mod tls;
pub mod ui;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};

pub use self::auth::Tokens;
pub use self::config::{ConfigError, ServerConfig};
pub use self::error::ApiError;
pub use self::limits::{
    Rate, RateError, UNAUTHENTICATED_BODY_LIMIT, UNAUTHENTICATED_BYTES, UNAUTHENTICATED_WAIT,
};
pub use self::listen::ConnectionLimits;
pub use self::policies::{PolicySet, ReloadError};
pub use self::tls::{TlsError, TlsFiles};

use self::metrics::Metrics;
use crate::engine::Runtime;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

struct Shared {
    config: ServerConfig,
    runtime: Arc<Runtime>,
    policies: arc_swap::ArcSwap<PolicySet>,
    /// The tokens accepted now; swapped whole on reload.
    tokens: arc_swap::ArcSwap<Tokens>,
    /// Per-token rates, and the budget of bodies not yet authenticated.
    limits: limits::Limits,
    /// The worker share of replays whose policy is no longer loaded.
    unloaded_budget: Arc<tokio::sync::Semaphore>,
    metrics: Metrics,
    /// Decisions, trigger state and idempotency keys.
    store: Arc<dyn crate::store::Store>,
    /// Turns for evaluations that advance one service's trigger state.
    state_locks: service::StateLocks,
    /// Evaluations allowed in flight; beyond it requests get 503, not a queue.
    slots: Arc<tokio::sync::Semaphore>,
    /// Evaluations running plugin code at once: one per core.
    workers: Arc<tokio::sync::Semaphore>,
    /// Serialises reloads so two never compile side by side.
    reloading: tokio::sync::Mutex<()>,
    /// Where requests without a snapshot are answered from: Prometheus
    /// and the source plugins.
    sources: crate::sources::Sources,
    /// Telemetry queries in flight at once for requests without a
    /// snapshot: they run before an evaluation slot is taken, and a source
    /// plugin's calls run on blocking threads, so they are bounded apart.
    gathering: Arc<tokio::sync::Semaphore>,
    /// New decisions, for `GET /v1/events` listeners.
    events: tokio::sync::broadcast::Sender<Arc<str>>,
    /// Event streams that may be open at once.
    listeners: Arc<tokio::sync::Semaphore>,
    /// Event streams open per token id.
    listening: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    /// Explanation searches running at once (one: each is bounded, and
    /// none may crowd out evaluations).
    explaining: Arc<tokio::sync::Semaphore>,
    /// Set at shutdown, which ends every event stream.
    closing: tokio::sync::watch::Sender<bool>,
    /// Webhooks on decisions.
    notifier: notify::Notifier,
    /// Backtest jobs, and their share of the workers.
    backtests: backtests::Jobs,
}

impl AppState {
    /// Loads the policies named by `config` and builds the shared state
    /// over `store`, whose secret names the `tokens` (see
    /// [`Tokens::keyed`]). Fails when the initial policy set is invalid: a
    /// server never starts half-configured.
    pub fn new(
        config: ServerConfig,
        runtime: Arc<Runtime>,
        tokens: Tokens,
        store: Arc<dyn crate::store::Store>,
    ) -> Result<Self, ReloadError> {
        let set = PolicySet::load(
            &runtime,
            config.policies.as_deref(),
            config.plugins.as_deref(),
            config.policy_workers,
            &config.trust()?,
        )?;
        let metrics = Metrics::new(config.metrics_max_services);
        let config_backtest_workers = config.backtest_workers;
        let notifier = notify::Notifier::new(
            config.notifications.clone(),
            config.public_url.clone(),
            metrics.notifications.clone(),
        );
        let prometheus = config
            .prometheus
            .clone()
            .map(crate::sources::prometheus::Prometheus::new)
            .transpose()
            .map_err(|e| ReloadError::Internal(format!("telemetry.prometheus: {e}")))?;
        let sources = crate::sources::Sources {
            prometheus,
            plugins: crate::sources::settings::build(
                &runtime,
                &config.sources,
                &config.sources_base,
            )
            .map_err(|e| ReloadError::Internal(format!("telemetry.sources: {e}")))?,
        };
        let gathering = Arc::new(tokio::sync::Semaphore::new(config.max_concurrency.max(1)));
        Ok(Self {
            inner: Arc::new(Shared {
                slots: Arc::new(tokio::sync::Semaphore::new(config.max_concurrency)),
                workers: Arc::new(tokio::sync::Semaphore::new(config.workers.max(1))),
                tokens: arc_swap::ArcSwap::from_pointee(tokens.keyed(store.token_key())),
                limits: limits::Limits::new(&config),
                unloaded_budget: Arc::new(tokio::sync::Semaphore::new(
                    config.policy_workers.max(1),
                )),
                store,
                state_locks: service::StateLocks::default(),
                config,
                runtime,
                policies: arc_swap::ArcSwap::from_pointee(set),
                metrics,
                reloading: tokio::sync::Mutex::new(()),
                sources,
                gathering,
                events: tokio::sync::broadcast::channel(events::BUFFER).0,
                listeners: Arc::new(tokio::sync::Semaphore::new(events::MAX_LISTENERS)),
                listening: std::sync::Mutex::default(),
                explaining: Arc::new(tokio::sync::Semaphore::new(1)),
                closing: tokio::sync::watch::channel(false).0,
                notifier,
                backtests: backtests::Jobs::new(config_backtest_workers),
            }),
        })
    }

    /// Reads the token file again and validates and compiles the policy
    /// directory, off to the side, then swaps both in. On any error neither
    /// changes: the current tokens and policies keep serving.
    pub async fn reload(&self) -> Result<Arc<PolicySet>, ReloadError> {
        let _guard = self.inner.reloading.lock().await;
        let runtime = Arc::clone(&self.inner.runtime);
        let dir = self.inner.config.policies.clone();
        let plugins = self.inner.config.plugins.clone();
        let budget = self.inner.config.policy_workers;
        let trust = self.inner.config.trust()?;
        let current = self.tokens().clone();
        let (tokens, set) = tokio::task::spawn_blocking(move || {
            let tokens = current
                .reread()
                .transpose()
                .map_err(|e| ReloadError::Tokens(e.to_string()))?;
            let set =
                PolicySet::load(&runtime, dir.as_deref(), plugins.as_deref(), budget, &trust)?;
            Ok::<_, ReloadError>((tokens, set))
        })
        .await
        .map_err(|e| ReloadError::Internal(e.to_string()))??;
        let set = Arc::new(set);
        self.inner.policies.store(Arc::clone(&set));
        if let Some(tokens) = tokens {
            tracing::info!(tokens = tokens.len(), "tokens reloaded");
            self.inner.tokens.store(Arc::new(tokens));
        }
        self.inner.metrics.reloads.inc();
        tracing::info!(policies = set.len(), "policies reloaded");
        Ok(set)
    }

    /// The tokens accepted right now.
    pub(crate) fn tokens(&self) -> arc_swap::Guard<Arc<Tokens>> {
        self.inner.tokens.load()
    }

    /// The policy set serving right now.
    pub fn policies(&self) -> Arc<PolicySet> {
        self.inner.policies.load_full()
    }
}

/// The router: every endpoint, auth, body limit and error shape.
pub fn app(state: AppState) -> Router {
    let body_limit = state.inner.config.body_limit;
    let evaluate = Router::new()
        .route("/v1/evaluate", post(handlers::evaluate))
        .route("/v1/compat/flagger/{policy}", post(compat::flagger_default))
        .route(
            "/v1/compat/flagger/{policy}/{hook}",
            post(compat::flagger_hook),
        )
        .route(
            "/v1/compat/argo/{policy}",
            get(compat::argo_get)
                .post(compat::argo_post)
                .put(compat::argo_post),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_evaluate,
        ));
    let read = Router::new()
        .route("/v1/policies", get(handlers::list_policies))
        .route("/v1/policies/{name}", get(handlers::get_policy))
        .route("/v1/plugins", get(handlers::list_plugins))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(handlers::openapi))
        .route("/v1/decisions", get(decisions::list))
        .route("/v1/decisions/{id}", get(decisions::get))
        .route(
            "/v1/decisions/{id}/explanation",
            get(decisions::explanation),
        )
        .route("/v1/decisions/{id}/charts", get(decisions::charts))
        .route("/v1/decisions/{id}/policy", get(decisions::policy_text))
        .route("/v1/events", get(events::stream))
        .route("/v1/decisions/{id}/replay", post(decisions::replay))
        .route("/v1/reports/dora", get(decisions::dora))
        .route("/v1/approvals", get(approvals::list))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_read,
        ));
    let approve = Router::new()
        .route("/v1/approvals", post(approvals::record))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_approve,
        ));
    let backtest = Router::new()
        .route("/v1/backtests", post(backtests::start).get(backtests::list))
        .route(
            "/v1/backtests/{id}",
            get(backtests::get).delete(backtests::cancel),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_backtest,
        ));
    let admin = Router::new()
        .route("/v1/admin/reload", post(handlers::reload))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ));
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/ui", get(ui::root))
        .route("/ui/", get(ui::index))
        .route("/ui/{asset}", get(ui::asset))
        .route("/readyz", get(handlers::readyz))
        .merge(evaluate)
        .merge(read)
        .merge(approve)
        .merge(backtest)
        .merge(admin)
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            handlers::track_request,
        ))
        .with_state(state)
}

/// Prunes decisions older than `retain`, at start and every hour.
async fn prune_every_hour(store: Arc<dyn crate::store::Store>, retain: std::time::Duration) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let cutoff = crate::store::now_ms()
            .saturating_sub(i64::try_from(retain.as_millis()).unwrap_or(i64::MAX));
        match store.prune(cutoff).await {
            Ok(p) => tracing::info!(
                decisions = p.decisions,
                blobs = p.blobs,
                idempotency_keys = p.idempotency_keys,
                retain = %humantime::format_duration(retain),
                "decision log pruned"
            ),
            Err(e) => tracing::error!(error = %e, "decision log prune failed; retrying in an hour"),
        }
    }
}

/// Serves on `listener` until SIGTERM or SIGINT, then drains in-flight
/// requests for up to `config.grace_period`. SIGHUP reloads.
pub async fn serve(state: AppState, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let config = &state.inner.config;
    let local = listener.local_addr()?;
    let tls = config
        .tls
        .as_ref()
        .map(|files| tls::acceptor(files).map(|a| Arc::new(arc_swap::ArcSwap::from_pointee(a))))
        .transpose()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some(retain) = config.retain {
        tokio::spawn(prune_every_hour(Arc::clone(&state.inner.store), retain));
    }
    let limits = listen::ConnectionLimits {
        header_read_timeout: config.header_read_timeout,
        max_connections: config.max_connections.min(listen::fd_room()),
    };
    tracing::info!(
        addr = %local,
        policies = state.policies().len(),
        // Loaded from the native code built into the binary rather than
        // compiled at start: what makes a cold start fast, or did not.
        plugins_precompiled = state.inner.runtime.precompiled_loads(),
        max_connections = limits.max_connections,
        "listening"
    );
    if let Some(why) = state.inner.runtime.precompiled_refusal() {
        tracing::warn!(
            reason = why,
            "plugins compiled at build time do not fit this host; compiled at start instead"
        );
    }
    eprintln!("tollgate listening on {scheme}://{local}");

    let reload_state = state.clone();
    let reload_tls = tls.clone();
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            if let Err(e) = reload_state.reload().await {
                let kept = e.kept_on_failure();
                tracing::error!(error = %e, "reload failed; {kept}");
            }
            if let (Some(swap), Some(files)) = (&reload_tls, &reload_state.inner.config.tls) {
                match tls::acceptor(files) {
                    Ok(a) => {
                        swap.store(Arc::new(a));
                        tracing::info!("TLS certificates reloaded");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "TLS reload failed; the previous certificates keep serving")
                    }
                }
            }
        }
    });

    // Freed plugin answers go back to the OS rather than staying in the
    // heap; see `crate::base::heap`.
    crate::base::heap::bound_retention();
    tokio::spawn(async {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            let _ = tokio::task::spawn_blocking(crate::base::heap::trim).await;
        }
    });

    let refused = state.clone();
    let closing = state.clone();
    listen::run(
        listener,
        app(state.clone()),
        limits,
        tls,
        async move {
            shutdown_signal().await;
            // Event streams never end on their own: end them, so the drain
            // waits only for requests.
            closing.inner.closing.send_replace(true);
        },
        config.grace_period,
        move || {
            refused.inner.metrics.connections_refused.inc();
        },
    )
    .await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
}

/// Default for how long shutdown waits for in-flight requests.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
