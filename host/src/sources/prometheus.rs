//! Prometheus as a telemetry source: `/api/v1/query_range`, bounded.
//!
//! Each query has a timeout and bounded retries with backoff for what may
//! pass (a refused connection, a timeout, a 5xx, a 429). A PromQL error is
//! Prometheus's own message and is not retried. The response body, the
//! series and the points of one query are bounded, so a query that matches
//! half the fleet is refused with a message rather than held in memory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use serde::Deserialize;

/// Largest response body read for one query.
pub const MAX_RESPONSE_BYTES: usize = 32 << 20;
/// Most series one query may return.
pub const MAX_SERIES: usize = 1_000;
/// Most points one query may return, over all its series.
pub const MAX_POINTS: usize = 100_000;

/// How to reach a Prometheus server.
#[derive(Debug, Clone)]
pub struct PrometheusConfig {
    /// Base URL, e.g. `http://prometheus:9090`; a path prefix is kept.
    pub url: reqwest::Url,
    /// Per attempt.
    pub timeout: Duration,
    /// Attempts after the first, for failures that may pass.
    pub retries: u32,
    pub auth: Option<Auth>,
    /// PEM bundle of the CAs to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
}

impl PrometheusConfig {
    /// `url` with a 10 s timeout, two retries, no auth and the system CAs.
    pub fn new(url: reqwest::Url) -> Self {
        Self {
            url,
            timeout: Duration::from_secs(10),
            retries: 2,
            auth: None,
            ca_file: None,
        }
    }
}

/// Credentials sent with every query. Never logged, never echoed.
#[derive(Clone)]
pub enum Auth {
    Bearer(String),
    Basic { user: String, password: String },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Bearer(_) => "Bearer(…)",
            Self::Basic { .. } => "Basic(…)",
        })
    }
}

/// Why a query produced no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// Unreachable, timed out or a 5xx after every retry.
    #[error("{0}")]
    Unavailable(String),
    /// Prometheus refused the query (a PromQL error): its own message.
    #[error("Prometheus refused the query: {0}")]
    Rejected(String),
    /// The answer is over a bound or not what the API documents.
    #[error("{0}")]
    Invalid(String),
}

/// One returned series: its labels (without `__name__`) and finite points.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(i64, f64)>,
}

/// A configured client.
#[derive(Debug, Clone)]
pub struct Prometheus {
    client: reqwest::Client,
    config: PrometheusConfig,
}

/// Installs ring as rustls's process-wide crypto provider (once), which
/// every HTTP client the process builds needs.
pub fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The HTTP client every source uses: `timeout` per attempt, no
/// redirects followed, and the CAs of `ca_file` instead of the system's
/// when given. Fails, saying why, when the CA file cannot be read.
pub(crate) fn http_client(
    timeout: Duration,
    ca_file: Option<&std::path::Path>,
) -> Result<reqwest::Client, String> {
    install_crypto();
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = ca_file {
        let pem = crate::base::files::read_limited(ca, 1 << 20)
            .map_err(|e| format!("cannot read CA file `{}`: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("CA file `{}`: {e}", ca.display()))?;
        builder = builder.tls_certs_only(certs);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

impl Prometheus {
    /// Builds the client; fails when the CA file cannot be read.
    pub fn new(config: PrometheusConfig) -> Result<Self, QueryError> {
        let client =
            http_client(config.timeout, config.ca_file.as_deref()).map_err(QueryError::Invalid)?;
        Ok(Self { client, config })
    }

    /// The base URL without credentials, for messages and evidence.
    pub fn shown_url(&self) -> String {
        let mut url = self.config.url.clone();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.as_str().trim_end_matches('/').to_string()
    }

    fn endpoint(&self) -> reqwest::Url {
        let mut url = self.config.url.clone();
        let path = format!("{}/api/v1/query_range", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url
    }

    /// Runs `query` over `[start, end]` every `step`.
    pub async fn query_range(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: Duration,
    ) -> Result<Vec<RangeSeries>, QueryError> {
        let form = [
            ("query", query.to_string()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", format!("{}s", step.as_secs().max(1))),
        ];
        let mut attempt = 0;
        loop {
            let outcome = self.attempt(&form).await;
            match outcome {
                Err(Retry::Again(why)) if attempt < self.config.retries => {
                    attempt += 1;
                    tracing::debug!(attempt, why = %why, "retrying a Prometheus query");
                    tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt - 1)).await;
                }
                Err(Retry::Again(why)) => {
                    let tries = attempt + 1;
                    return Err(QueryError::Unavailable(format!(
                        "{why} (after {tries} attempt{})",
                        if tries == 1 { "" } else { "s" }
                    )));
                }
                Err(Retry::Never(e)) => return Err(e),
                Ok(series) => return Ok(series),
            }
        }
    }

    async fn attempt(&self, form: &[(&str, String)]) -> Result<Vec<RangeSeries>, Retry> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        let mut request = self
            .client
            .post(self.endpoint())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        match &self.config.auth {
            Some(Auth::Bearer(token)) => request = request.bearer_auth(token),
            Some(Auth::Basic { user, password }) => {
                request = request.basic_auth(user, Some(password));
            }
            None => {}
        }
        let mut response = request.send().await.map_err(|e| {
            Retry::Again(if e.is_timeout() {
                format!(
                    "timed out after {}",
                    humantime::format_duration(self.config.timeout)
                )
            } else {
                format!("unreachable: {}", root_cause(&e))
            })
        })?;
        let status = response.status();
        if let Some(len) = response.content_length()
            && len > MAX_RESPONSE_BYTES as u64
        {
            return Err(Retry::Never(too_large()));
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                        return Err(Retry::Never(too_large()));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => {
                    return Err(Retry::Again(format!(
                        "timed out after {}",
                        humantime::format_duration(self.config.timeout)
                    )));
                }
                Err(e) => {
                    return Err(Retry::Again(format!(
                        "reading the answer: {}",
                        root_cause(&e)
                    )));
                }
            }
        }
        let envelope: Result<Envelope, _> = serde_json::from_slice(&body);
        if status.is_server_error() || status.as_u16() == 429 {
            let detail = envelope
                .ok()
                .and_then(|e| e.error)
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            return Err(Retry::Again(format!("HTTP {status}{detail}")));
        }
        let envelope = envelope.map_err(|e| {
            Retry::Never(QueryError::Invalid(format!(
                "HTTP {status} with an answer that is not the Prometheus API's JSON: {e}"
            )))
        })?;
        if envelope.status != "success" {
            let message = envelope.error.unwrap_or_else(|| format!("HTTP {status}"));
            return Err(Retry::Never(QueryError::Rejected(message)));
        }
        let data = envelope.data.ok_or_else(|| {
            Retry::Never(QueryError::Invalid(
                "a success answer without `data`".into(),
            ))
        })?;
        if data.result_type != "matrix" {
            return Err(Retry::Never(QueryError::Invalid(format!(
                "expected a matrix, got `{}`",
                data.result_type
            ))));
        }
        let raw: Vec<RawSeries> = serde_json::from_value(data.result)
            .map_err(|e| Retry::Never(QueryError::Invalid(format!("malformed matrix: {e}"))))?;
        if raw.len() > MAX_SERIES {
            return Err(Retry::Never(QueryError::Invalid(format!(
                "{} series exceed the limit of {MAX_SERIES} per query; narrow the query",
                raw.len()
            ))));
        }
        let points: usize = raw.iter().map(|s| s.values.len()).sum();
        if points > MAX_POINTS {
            return Err(Retry::Never(QueryError::Invalid(format!(
                "{points} points exceed the limit of {MAX_POINTS} per query; raise `step` or shorten `window`"
            ))));
        }
        raw.into_iter()
            .map(RawSeries::finish)
            .collect::<Result<_, _>>()
            .map_err(Retry::Never)
    }
}

fn too_large() -> QueryError {
    QueryError::Invalid(format!(
        "the answer exceeds {} MiB; narrow the query",
        MAX_RESPONSE_BYTES >> 20
    ))
}

/// The innermost cause of a client error, which says what happened
/// ("Connection refused") rather than which layer noticed.
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

enum Retry {
    Again(String),
    Never(QueryError),
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct RawSeries {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

impl RawSeries {
    /// Drops `__name__` and the points that are not finite numbers (Prometheus
    /// writes `NaN` for 0/0, common in a ratio with no traffic).
    fn finish(mut self) -> Result<RangeSeries, QueryError> {
        self.metric.remove("__name__");
        let mut points = Vec::with_capacity(self.values.len());
        for (ts, v) in self.values {
            let value: f64 = v
                .parse()
                .map_err(|_| QueryError::Invalid(format!("sample value `{v}` is not a number")))?;
            if value.is_finite() && ts.is_finite() {
                points.push((ts.round() as i64, value));
            }
        }
        Ok(RangeSeries {
            labels: self.metric,
            points,
        })
    }
}
