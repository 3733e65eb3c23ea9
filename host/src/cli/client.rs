//! Calls to a running `tollgate serve`, for the commands that act through
//! one (`eval --server`, `approve`, `approvals`). The token comes from
//! `TOLLGATE_TOKEN`.

/// A server's non-2xx answer: the URL, the status, the error code of its
/// JSON body, and the message with what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{url} answered {status}: {message}{hint}")]
pub(crate) struct Refused {
    pub(crate) url: String,
    pub(crate) status: reqwest::StatusCode,
    /// `{"error": {"code"}}` of the body, when it has one.
    pub(crate) code: Option<String>,
    pub(crate) message: String,
    pub(crate) hint: String,
}

/// Sends `body` (a GET when `None`) to `path` under `server` and returns
/// the JSON answer; a non-2xx answer is an error carrying the server's
/// message.
pub(crate) fn call(
    server: &reqwest::Url,
    path: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let url = server
        .join(path)
        .map_err(|e| anyhow::anyhow!("`{server}`: {e}"))?;
    let shown = url.as_str().to_string();
    let token = std::env::var("TOLLGATE_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty());
    let sent_token = token.is_some();
    crate::sources::prometheus::install_crypto();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))?;
        let mut request = match body {
            Some(b) => client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string()),
            None => client.get(url),
        };
        if let Some(t) = token {
            request = request.bearer_auth(t.trim());
        }
        let response = request
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach tollgate at {shown}: {}", root_cause(&e)))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| anyhow::anyhow!("reading the answer of {shown}: {}", root_cause(&e)))?;
        if !status.is_success() {
            let body = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
            let code = body
                .as_ref()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_string));
            let message = body
                .as_ref()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(300).collect());
            let hint = match (status.as_u16(), sent_token) {
                (401, false) => {
                    "; no token was sent: set `TOLLGATE_TOKEN` to a token from the server's token file"
                }
                (401, true) => {
                    "; the server does not know the token in `TOLLGATE_TOKEN`"
                }
                (403, _) => {
                    "; the token in `TOLLGATE_TOKEN` lacks the scope this needs (see the server's token file)"
                }
                _ => "",
            };
            return Err(Refused {
                url: shown,
                status,
                code,
                message: crate::base::text::escape_control(&message).into_owned(),
                hint: hint.to_string(),
            }
            .into());
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("{shown} answered something that is not JSON: {e}"))
    })
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
