//! The `prometheus` source: PromQL range queries over the Prometheus HTTP
//! API, `POST /api/v1/query_range`.
//!
//! The same API is served by Prometheus, VictoriaMetrics, Grafana Mimir
//! and Thanos, so one plugin reads them all; a tenant header
//! (`X-Scope-OrgID` for Mimir) is the operator's `headers:`, added by the
//! host, never by the plugin. It takes no settings:
//!
//! ```yaml
//! sources:
//!   victoriametrics:
//!     url: http://victoria-metrics:8428
//!     plugin: prometheus
//! ```
//!
//! The request is the one tollgate's native Prometheus client sends (form
//! fields `query`, `start`, `end` in unix seconds and `step` as `30s`), so
//! the plugin and the native path give the same snapshot. The answer's
//! `matrix` becomes one series per labelled result without `__name__`;
//! points that are not finite (`NaN` from `0/0`, `±Inf`) are skipped. An
//! answer with `"status": "error"` fails the query with the server's own
//! `error` text (a PromQL syntax error reads `1:17: parse error: …`).

use tollgate_sdk::config::Settings;
use tollgate_sdk::source::{
    self, Config, Guest, Request, Response, Round, Series, SourceQuery, Step, serde_json::Value,
};

/// The plugin.
pub struct Prometheus;

/// Where every Prometheus-compatible API answers range queries.
const QUERY_RANGE: &str = "/api/v1/query_range";

/// Checks the settings: there are none, so any key is refused.
fn check_settings(config: &Config) -> Result<(), String> {
    Settings::new(config).finish()
}

/// The range query for `query`: its text over `[start, end]` every step
/// (at least a second), form-encoded as Prometheus documents, which keeps
/// long queries out of URLs and access logs.
pub fn request(query: &SourceQuery) -> Request {
    let start = query.start.to_string();
    let end = query.end.to_string();
    let step = format!("{}s", query.step_seconds.max(1));
    source::post_form(
        QUERY_RANGE,
        &[
            ("query", query.text.as_str()),
            ("start", start.as_str()),
            ("end", end.as_str()),
            ("step", step.as_str()),
        ],
    )
}

/// The series of one `query_range` answer, or why there are none: the
/// server's `error` for a refused query, the status and body for an
/// answer that is not the API's JSON.
pub fn parse(answer: &Response) -> Result<Vec<Series>, String> {
    // An error answer (400 for bad syntax, 422 for a failed evaluation)
    // is still the API's JSON: read its `error` before judging the status.
    if let Ok(json) = source::serde_json::from_slice::<Value>(&answer.body)
        && json["status"] == "error"
    {
        let kind = json["errorType"].as_str().unwrap_or("error");
        let message = json["error"].as_str().unwrap_or("(no message)");
        return Err(format!(
            "the server refused the query (HTTP {}, {kind}): {}",
            answer.status,
            one_line(message)
        ));
    }
    let json = source::json(answer)?;
    if json["status"] != "success" {
        return Err(format!(
            "the answer is not the Prometheus API's (no `\"status\": \"success\"`): {}",
            source::quote(&answer.body)
        ));
    }
    let data = &json["data"];
    match data["resultType"].as_str() {
        Some("matrix") => source::matrix(&data["result"]),
        Some(other) => Err(format!(
            "expected a range query's `matrix`, got a `{other}`: is the URL a Prometheus-compatible API?"
        )),
        None => Err(format!(
            "the answer has no `data.resultType`: {}",
            source::quote(&answer.body)
        )),
    }
}

/// `text` on one line, for an error message.
fn one_line(text: &str) -> String {
    source::quote(text.as_bytes())
}

impl Guest for Prometheus {
    fn validate_config(config: Config) -> Result<(), String> {
        check_settings(&config)
    }

    fn start(config: Config, query: SourceQuery) -> Result<Round, String> {
        check_settings(&config)?;
        Ok(Round::one(request(&query)))
    }

    fn next(
        _config: Config,
        _query: SourceQuery,
        _state: Vec<u8>,
        answers: Vec<Response>,
    ) -> Result<Step, String> {
        let answer = answers.first().ok_or("no answer to read")?;
        parse(answer).map(Step::Done)
    }
}

// The component export exists in the Wasm build only: a native build (the
// unit tests) cannot link symbols named like `tollgate:plugin/…#start`.
#[cfg(target_arch = "wasm32")]
tollgate_sdk::source::export_source!(Prometheus);

#[cfg(test)]
mod tests;
