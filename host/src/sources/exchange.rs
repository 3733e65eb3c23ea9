//! The host's half of a source plugin: it sends the requests a plugin
//! describes, and nothing else. A request goes to the operator's base URL
//! only, carries the operator's credentials (which the plugin never sees),
//! and its answer is bounded before the plugin reads it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::operation::Operation;
use super::prometheus::{http_client, root_cause};
use super::sigv4::SigV4;
use crate::engine::{Method, Request, Response};

/// Largest answer to one request, and to all the requests of one query.
pub const MAX_ANSWER_BYTES: usize = 32 << 20;
/// Rounds one query may take (pages and follow-ups).
pub const MAX_ROUNDS: usize = 16;

/// How the host authenticates to a source.
#[derive(Clone, Default)]
pub struct Credentials {
    /// `Authorization: Bearer …`.
    pub bearer: Option<String>,
    /// `Authorization: Basic …`.
    pub basic: Option<(String, String)>,
    /// Named API-key headers, e.g. `DD-API-KEY`.
    pub api_keys: Vec<(String, String)>,
    /// AWS Signature Version 4 over the whole request.
    pub sigv4: Option<SigV4>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.api_keys.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Credentials")
            .field("bearer", &self.bearer.as_ref().map(|_| "…"))
            .field("basic", &self.basic.as_ref().map(|_| "…"))
            .field("api_keys", &keys)
            .field(
                "sigv4",
                &self.sigv4.as_ref().map(|s| (&s.region, &s.service)),
            )
            .finish()
    }
}

/// Where a source's requests go, and how.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Base URL; a path prefix is kept and a request may not leave it.
    pub url: reqwest::Url,
    pub credentials: Credentials,
    /// Non-secret headers the operator sets on every request (a tenant).
    pub headers: Vec<(String, String)>,
    /// Per attempt.
    pub timeout: Duration,
    /// Attempts after the first, for failures that may pass.
    pub retries: u32,
    /// PEM bundle of the CAs to trust instead of the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// The operations a plugin may ask for; `None` allows any request
    /// under the base URL.
    pub allow: Option<Vec<Operation>>,
}

impl Endpoint {
    /// `url` with a 10 s timeout, two retries and nothing else.
    pub fn new(url: reqwest::Url) -> Self {
        Self {
            url,
            credentials: Credentials::default(),
            headers: Vec::new(),
            timeout: Duration::from_secs(10),
            retries: 2,
            ca_file: None,
            allow: None,
        }
    }
}

/// Why a request was not sent, or its answer not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The plugin asked for something the host does not do for it.
    #[error("the plugin asked for {0}")]
    Refused(String),
    /// Unreachable, timed out or a 5xx/429 after every retry.
    #[error("{0}")]
    Unavailable(String),
    /// An answer over a bound.
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Setup(String),
}

/// A request as it was sent, without credentials, for the decision.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RequestEvidence {
    pub method: String,
    /// The full URL, with its query string and without credentials.
    pub url: String,
    pub status: u16,
    /// Bytes of the answer's body.
    pub bytes: usize,
}

/// Headers only the host sets: credentials, the target, framing, and
/// every AWS header but the operation a JSON-protocol call names.
fn reserved(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        "authorization",
        "proxy-authorization",
        "cookie",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "forwarded",
        "via",
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ]
    .contains(&lower.as_str())
        || lower.starts_with("proxy-")
        || lower.starts_with("x-forwarded-")
        || (lower.starts_with("x-amz-") && lower != "x-amz-target")
}

/// A client for one endpoint.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    endpoint: Endpoint,
}

impl Sender {
    /// Builds the client; fails when the CA file cannot be read.
    pub fn new(endpoint: Endpoint) -> Result<Self, ExchangeError> {
        let client = http_client(endpoint.timeout, endpoint.ca_file.as_deref())
            .map_err(ExchangeError::Setup)?;
        Ok(Self { client, endpoint })
    }

    /// The base URL without credentials, for messages and evidence.
    pub fn shown_url(&self) -> String {
        shown(&self.endpoint.url).trim_end_matches('/').to_string()
    }

    /// Which credentials the host adds, by kind and header name, never
    /// their values: what an error about a refused request should name.
    pub fn credentials_shown(&self) -> String {
        let c = &self.endpoint.credentials;
        let mut kinds = Vec::new();
        if c.bearer.is_some() {
            kinds.push("Authorization: Bearer".to_string());
        }
        if c.basic.is_some() {
            kinds.push("Authorization: Basic".to_string());
        }
        kinds.extend(c.api_keys.iter().map(|(n, _)| n.clone()));
        if c.sigv4.is_some() {
            kinds.push("AWS SigV4".to_string());
        }
        if kinds.is_empty() {
            "no credentials".into()
        } else {
            kinds.join(", ")
        }
    }

    /// The base URL joined with a plugin's `path`, refused when the path
    /// is not a plain relative reference or the result leaves the base
    /// (another scheme, host or port, or above its path prefix).
    pub fn target(&self, path: &str) -> Result<reqwest::Url, ExchangeError> {
        let refused = |why: &str| {
            ExchangeError::Refused(format!(
                "path `{}`, which {why}",
                crate::base::text::escape_control(&path.chars().take(200).collect::<String>())
            ))
        };
        if !path.starts_with('/') || path.starts_with("//") {
            return Err(refused("is not a path starting with a single `/`"));
        }
        if path
            .bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b == b'\\' || b == b'#' || b >= 0x80)
        {
            return Err(refused(
                "holds a space, a control character, `\\`, `#` or a non-ASCII byte: encode it",
            ));
        }
        // A gateway in front of the source may decode these and climb out
        // of the base URL's path after this check passed.
        let bare = path
            .split('?')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if bare.contains(';')
            || ["%2f", "%5c", "%2e", "%00"]
                .iter()
                .any(|e| bare.contains(e))
        {
            return Err(refused(
                "encodes `/`, `\\` or `.` in its path, or holds `;`, which a gateway may read as another path",
            ));
        }
        let base = &self.endpoint.url;
        let prefix = base.path().trim_end_matches('/');
        let joined = format!(
            "{}://{}{prefix}{path}",
            base.scheme(),
            authority(base).unwrap_or_default()
        );
        let url: reqwest::Url = joined
            .parse()
            .map_err(|_| refused("does not make a valid URL"))?;
        let inside = url.scheme() == base.scheme()
            && url.host_str() == base.host_str()
            && url.port_or_known_default() == base.port_or_known_default()
            && (url.path() == prefix || url.path().starts_with(&format!("{prefix}/")))
            && url.username() == base.username();
        if !inside {
            return Err(refused(&format!(
                "leaves the configured base URL {}",
                self.shown_url()
            )));
        }
        Ok(url)
    }

    /// Checks the request against the operations the source allows, when
    /// it lists them: its method and path, and the `X-Amz-Target` an AWS
    /// JSON-protocol call names (one is refused unless listed).
    fn check_allowed(&self, request: &Request, url: &reqwest::Url) -> Result<(), ExchangeError> {
        let target = request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("x-amz-target"))
            .map(|(_, v)| v.as_str());
        let Some(allow) = &self.endpoint.allow else {
            if target.is_some() {
                return Err(ExchangeError::Refused(
                    "`X-Amz-Target`, which the source's `allow:` does not list".into(),
                ));
            }
            return Ok(());
        };
        let prefix = self.endpoint.url.path().trim_end_matches('/');
        let path = url.path().strip_prefix(prefix).unwrap_or(url.path());
        let path = if path.is_empty() { "/" } else { path };
        let listed = allow.iter().any(|op| {
            op.method == request.method && op.path == path && op.target.as_deref() == target
        });
        if listed {
            return Ok(());
        }
        let asked = Operation {
            method: request.method,
            path: path.to_string(),
            target: target.map(str::to_string),
        };
        Err(ExchangeError::Refused(format!(
            "`{}`, which the source does not allow (allowed: {})",
            crate::base::text::escape_control(
                &asked.to_string().chars().take(200).collect::<String>()
            ),
            allow
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    /// Checks a plugin's headers: well formed, and none of the host's.
    fn check_headers(&self, request: &Request) -> Result<(), ExchangeError> {
        for (name, value) in &request.headers {
            let shown =
                crate::base::text::escape_control(&name.chars().take(64).collect::<String>())
                    .into_owned();
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(value).is_err()
            {
                return Err(ExchangeError::Refused(format!(
                    "header `{shown}`, which is not a valid HTTP header"
                )));
            }
            let operators = self
                .endpoint
                .headers
                .iter()
                .chain(&self.endpoint.credentials.api_keys)
                .any(|(n, _)| n.eq_ignore_ascii_case(name));
            if reserved(name) || operators {
                return Err(ExchangeError::Refused(format!(
                    "header `{shown}`, which only the host sets"
                )));
            }
        }
        Ok(())
    }

    /// Sends one request and reads its answer, retrying what may pass
    /// (a refused connection, a timeout, a 5xx, a 429) with backoff. An
    /// answer of any other status is the plugin's to read. An answer of
    /// more than `limit` bytes is refused.
    pub async fn send(
        &self,
        request: &Request,
        budget: &AtomicUsize,
    ) -> Result<(Response, RequestEvidence), ExchangeError> {
        let url = self.target(&request.path)?;
        self.check_headers(request)?;
        self.check_allowed(request, &url)?;
        if request.method == Method::Get && !request.body.is_empty() {
            return Err(ExchangeError::Refused("a GET with a body".into()));
        }
        let mut attempt = 0;
        loop {
            match self.attempt(request, &url, budget).await {
                Err(Retry::Again(why)) if attempt < self.endpoint.retries => {
                    attempt += 1;
                    tracing::debug!(attempt, why = %why, "retrying a source request");
                    tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt - 1)).await;
                }
                Err(Retry::Again(why)) => {
                    let tries = attempt + 1;
                    return Err(ExchangeError::Unavailable(format!(
                        "{why} (after {tries} attempt{})",
                        if tries == 1 { "" } else { "s" }
                    )));
                }
                Err(Retry::Never(e)) => return Err(e),
                Ok(response) => {
                    let evidence = RequestEvidence {
                        method: request.method.as_str().to_string(),
                        url: shown(&url),
                        status: response.status,
                        bytes: response.body.len(),
                    };
                    return Ok((response, evidence));
                }
            }
        }
    }

    async fn attempt(
        &self,
        request: &Request,
        url: &reqwest::Url,
        budget: &AtomicUsize,
    ) -> Result<Response, Retry> {
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
        };
        let mut headers: Vec<(String, String)> = request.headers.clone();
        headers.extend(self.endpoint.headers.iter().cloned());
        let credentials = &self.endpoint.credentials;
        headers.extend(credentials.api_keys.iter().cloned());
        let signed_url;
        let url = match &credentials.sigv4 {
            Some(_) => {
                signed_url = SigV4::canonical_url(url);
                &signed_url
            }
            None => url,
        };
        let mut builder = self.client.request(method, url.clone());
        if let Some(token) = &credentials.bearer {
            builder = builder.bearer_auth(token);
        }
        if let Some((user, password)) = &credentials.basic {
            builder = builder.basic_auth(user, Some(password));
        }
        if let Some(signer) = &credentials.sigv4 {
            let signed = signer.sign(
                request.method.as_str(),
                url,
                &headers,
                &request.body,
                super::now(),
            );
            headers.extend(signed.headers);
        }
        for (name, value) in &headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if request.method == Method::Post || !request.body.is_empty() {
            builder = builder.body(request.body.clone());
        }
        let timeout = humantime::format_duration(self.endpoint.timeout);
        let mut response = builder.send().await.map_err(|e| {
            Retry::Again(if e.is_timeout() {
                format!("timed out after {timeout}")
            } else {
                format!("unreachable: {}", root_cause(&e))
            })
        })?;
        let status = response.status();
        let too_large = || {
            Retry::Never(ExchangeError::TooLarge(format!(
                "the answers exceed {} MiB for one query; narrow the query",
                MAX_ANSWER_BYTES >> 20
            )))
        };
        if response
            .content_length()
            .is_some_and(|n| n > budget.load(Ordering::Relaxed) as u64)
        {
            return Err(too_large());
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect());
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    // Every request of a query draws on one budget, so
                    // requests sent at once cannot each take all of it.
                    let charged =
                        budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                            left.checked_sub(chunk.len())
                        });
                    if charged.is_err() {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => {
                    return Err(Retry::Again(format!("timed out after {timeout}")));
                }
                Err(e) => {
                    return Err(Retry::Again(format!(
                        "reading the answer: {}",
                        root_cause(&e)
                    )));
                }
            }
        }
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(Retry::Again(format!(
                "HTTP {status}: {}",
                quote_body(&body)
            )));
        }
        Ok(Response {
            status: status.as_u16(),
            content_type,
            body,
        })
    }
}

enum Retry {
    Again(String),
    Never(ExchangeError),
}

/// The start of an answer on one line, escaped.
fn quote_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let line = crate::base::text::escape_control(text.trim()).into_owned();
    if line.is_empty() {
        "(empty body)".into()
    } else {
        line
    }
}

/// `host[:port]` of a URL (`host_str` keeps an IPv6 address's brackets).
fn authority(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    })
}

fn shown(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(base: &str) -> Sender {
        let mut endpoint = Endpoint::new(base.parse().unwrap());
        endpoint.headers = vec![("X-Scope-OrgID".into(), "team-a".into())];
        endpoint.credentials.api_keys = vec![("DD-API-KEY".into(), "secret".into())];
        Sender::new(endpoint).unwrap()
    }

    #[test]
    fn paths_stay_under_the_base_url() {
        let s = sender("http://metrics.internal:8428/prefix/");
        assert_eq!(
            s.target("/api/v1/query_range?query=up").unwrap().as_str(),
            "http://metrics.internal:8428/prefix/api/v1/query_range?query=up"
        );
        for hostile in [
            "//evil.example/x",
            "http://evil.example/",
            "@evil.example/x",
            "/../../etc/passwd",
            "/%2e%2e/%2e%2e/x",
            "/a b",
            "/x#frag",
            "/\\evil",
            "api/v1",
            "/..%2F..%2Fother-tenant/x",
            "/a%5c..%5cb",
            "/..;/admin",
            "/%2e%2e/x",
        ] {
            assert!(s.target(hostile).is_err(), "{hostile} was let through");
        }
    }

    #[test]
    fn only_the_allowed_operations_are_sent() {
        let mut endpoint = Endpoint::new("https://monitoring.example/".parse().unwrap());
        endpoint.allow = Some(vec![
            "POST / GraniteServiceVersion20100801.GetMetricData"
                .parse()
                .unwrap(),
            "GET /query".parse().unwrap(),
        ]);
        let s = Sender::new(endpoint).unwrap();
        let request = |method, path: &str, target: Option<&str>| Request {
            method,
            path: path.into(),
            headers: target
                .map(|t| ("X-Amz-Target".to_string(), t.to_string()))
                .into_iter()
                .collect(),
            body: Vec::new(),
        };
        let check = |r: &Request| s.check_allowed(r, &s.target(&r.path).unwrap());
        assert!(check(&request(Method::Get, "/query?q=SELECT+1", None)).is_ok());
        assert!(
            check(&request(
                Method::Post,
                "/",
                Some("GraniteServiceVersion20100801.GetMetricData")
            ))
            .is_ok()
        );
        for denied in [
            request(Method::Post, "/query?q=DROP+DATABASE+x", None),
            request(
                Method::Post,
                "/",
                Some("GraniteServiceVersion20100801.DeleteAlarms"),
            ),
            request(Method::Post, "/", None),
            request(Method::Get, "/api/v2/current_user/application_keys", None),
        ] {
            let e = check(&denied).unwrap_err().to_string();
            assert!(e.contains("which the source does not allow"), "{e}");
        }
        assert!("PUT /x".parse::<Operation>().is_err());
        assert!("GET x".parse::<Operation>().is_err());
        // Without `allow:` any path goes, but no AWS operation is named.
        let open = sender("http://metrics.internal/");
        let r = request(Method::Post, "/", Some("Any.Operation"));
        assert!(open.check_allowed(&r, &open.target("/").unwrap()).is_err());
    }

    #[test]
    fn a_plugin_cannot_set_the_hosts_headers() {
        let s = sender("http://metrics.internal:8428/");
        for name in [
            "Authorization",
            "cookie",
            "Host",
            "X-Amz-Date",
            "X-Scope-OrgID",
            "dd-api-key",
            "Proxy-Authorization",
        ] {
            let request = Request {
                method: Method::Get,
                path: "/x".into(),
                headers: vec![(name.into(), "v".into())],
                body: Vec::new(),
            };
            let e = s.check_headers(&request).unwrap_err().to_string();
            assert!(e.contains("only the host sets"), "{name}: {e}");
        }
        let ok = Request {
            method: Method::Post,
            path: "/x".into(),
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                (
                    "X-Amz-Target".into(),
                    "GraniteServiceVersion20100801.GetMetricData".into(),
                ),
            ],
            body: Vec::new(),
        };
        assert!(s.check_headers(&ok).is_ok());
    }
}
