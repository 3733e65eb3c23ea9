//! A source served by a Wasm plugin: the plugin plans requests and reads
//! answers in the sandbox, the host sends them in between. Each plugin call
//! runs on a blocking thread with a fresh instance (the plugin keeps
//! nothing between rounds but the state it hands back), so a slow parse
//! never stalls the runtime that serves requests.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use super::exchange::{ExchangeError, MAX_ANSWER_BYTES, MAX_ROUNDS, RequestEvidence, Sender};
use crate::engine::{
    Call, CallError, Input, Plugin, PluginConfig, Session, SourceQuery, SourceSeries, Step,
    source_limits,
};
use crate::snapshot::Snapshot;

/// Why a plugin source gave no series.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginQueryError {
    /// Unreachable, timed out or a 5xx after every retry.
    #[error("{0}")]
    Unavailable(String),
    /// The plugin's own error (a refused query, an answer it cannot read).
    #[error("{0}")]
    Plugin(String),
    /// The plugin failed (a trap, a deadline, an answer over a bound) or
    /// asked for what the host does not do.
    #[error("{0}")]
    Failed(String),
}

/// How long one query may take in all, rounds and retries included,
/// unless the source says otherwise.
pub const DEFAULT_QUERY_DEADLINE: Duration = Duration::from_secs(60);

/// A configured source plugin and where its requests go.
#[derive(Clone)]
pub struct PluginSource {
    plugin: Arc<Plugin>,
    config: Arc<PluginConfig>,
    sender: Sender,
    deadline: Duration,
}

impl std::fmt::Debug for PluginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSource")
            .field("plugin", &self.plugin.name())
            .field("url", &self.sender.shown_url())
            .finish()
    }
}

impl PluginSource {
    /// Checks `config` with the plugin (its `validate-config`) and keeps
    /// both; the message is the plugin's, or why its call failed.
    pub fn new(plugin: Plugin, config: PluginConfig, sender: Sender) -> Result<Self, String> {
        if plugin.info().world != crate::engine::World::Source {
            return Err(format!(
                "plugin `{}` is a {}, not a source",
                plugin.name(),
                plugin.info().world.as_str()
            ));
        }
        match plugin.validate_config(&config, source_limits()).result {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                return Err(format!(
                    "plugin `{}` refuses its settings: {}",
                    plugin.name(),
                    crate::base::text::escape_control(&message)
                ));
            }
            Err(e) => return Err(format!("plugin `{}`: {e}", plugin.name())),
        }
        Ok(Self {
            plugin: Arc::new(plugin),
            config: Arc::new(config),
            sender,
            deadline: DEFAULT_QUERY_DEADLINE,
        })
    }

    /// The same source with another deadline for a whole query.
    #[must_use]
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The plugin's name, as configured.
    pub fn plugin_name(&self) -> &str {
        self.plugin.name()
    }

    /// The base URL without credentials.
    pub fn shown_url(&self) -> String {
        self.sender.shown_url()
    }

    /// Runs `query` to its end: the plugin's rounds, each round's requests
    /// sent at once, at most [`MAX_ROUNDS`] rounds and [`MAX_ANSWER_BYTES`]
    /// of answers in all. `now` is the decision time the plugin's clock shows.
    /// The whole query, every round and retry, ends within the source's
    /// deadline.
    pub async fn query(
        &self,
        query: SourceQuery,
        now: i64,
    ) -> Result<(Vec<SourceSeries>, Vec<RequestEvidence>), PluginQueryError> {
        tokio::time::timeout(self.deadline, self.rounds(query, now))
            .await
            .unwrap_or_else(|_| {
                Err(PluginQueryError::Unavailable(format!(
                    "the query did not finish within its deadline of {}",
                    humantime::format_duration(self.deadline)
                )))
            })
    }

    async fn rounds(
        &self,
        query: SourceQuery,
        now: i64,
    ) -> Result<(Vec<SourceSeries>, Vec<RequestEvidence>), PluginQueryError> {
        let query = Arc::new(query);
        let budget = AtomicUsize::new(MAX_ANSWER_BYTES);
        let mut evidence = Vec::new();
        let first = {
            let q = Arc::clone(&query);
            self.call(now, move |session, plugin, config| {
                session.source_start(plugin, config, &q, &source_limits())
            })
            .await?
        };
        let mut round = first;
        for done in 1..=MAX_ROUNDS {
            let mut answers = Vec::with_capacity(round.requests.len());
            let sent = futures_util::future::join_all(
                round.requests.iter().map(|r| self.sender.send(r, &budget)),
            )
            .await;
            for outcome in sent {
                let (response, ev) = outcome.map_err(|e| match e {
                    ExchangeError::Unavailable(m) => PluginQueryError::Unavailable(m),
                    other => PluginQueryError::Failed(other.to_string()),
                })?;
                evidence.push(ev);
                answers.push(response);
            }
            let q = Arc::clone(&query);
            let state = std::mem::take(&mut round.state);
            let asked = evidence.len() - answers.len();
            let step = self
                .call(now, move |session, plugin, config| {
                    session.source_next(plugin, config, &q, &state, &answers, &source_limits())
                })
                .await
                .map_err(|e| self.with_requests(e, &evidence[asked..]))?;
            match step {
                Step::Done(series) => return Ok((series, evidence)),
                Step::Fetch(next) if done < MAX_ROUNDS => round = next,
                Step::Fetch(_) => break,
            }
        }
        Err(PluginQueryError::Failed(format!(
            "the plugin asked for more than {MAX_ROUNDS} rounds of requests"
        )))
    }

    /// A plugin's error about the answers it read, with the requests and
    /// statuses behind them, and for a 401 or 403 which credentials the
    /// host sent: the plugin cannot see either.
    fn with_requests(&self, e: PluginQueryError, asked: &[RequestEvidence]) -> PluginQueryError {
        let PluginQueryError::Plugin(message) = e else {
            return e;
        };
        let shown: Vec<String> = asked
            .iter()
            .take(3)
            .map(|e| {
                // A request's URL carries its whole query: keep the message short.
                let shown: String = e.url.chars().take(200).collect();
                let cut = if shown.len() < e.url.len() { "…" } else { "" };
                format!("{} {shown}{cut} → {}", e.method, e.status)
            })
            .collect();
        let denied = asked.iter().any(|e| e.status == 401 || e.status == 403);
        let credentials = if denied {
            format!("; the host sent {}", self.sender.credentials_shown())
        } else {
            String::new()
        };
        PluginQueryError::Plugin(format!(
            "{message} (after {}{credentials})",
            shown.join(", ")
        ))
    }

    /// One plugin call on a blocking thread, its log lines forwarded to
    /// the host's log at debug level.
    async fn call<T: Send + 'static>(
        &self,
        now: i64,
        f: impl FnOnce(&mut Session, &Plugin, &PluginConfig) -> Call<Result<T, String>> + Send + 'static,
    ) -> Result<T, PluginQueryError> {
        let plugin = Arc::clone(&self.plugin);
        let config = Arc::clone(&self.config);
        let call = tokio::task::spawn_blocking(move || {
            let mut session = Session::new(Input {
                snapshot: Arc::new(Snapshot::empty()),
                now,
            });
            f(&mut session, &plugin, &config)
        })
        .await
        .map_err(|e| PluginQueryError::Failed(format!("the plugin call was lost: {e}")))?;
        for line in &call.logs {
            tracing::debug!(
                plugin = self.plugin.name(),
                level = %line.level,
                message = %crate::base::text::escape_control(&line.message),
                "source plugin log"
            );
        }
        match call.result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) => Err(PluginQueryError::Plugin(
                crate::base::text::escape_control(&message).into_owned(),
            )),
            Err(e) => Err(PluginQueryError::Failed(failed(&e))),
        }
    }
}

fn failed(e: &CallError) -> String {
    format!("the plugin failed: {e}")
}
