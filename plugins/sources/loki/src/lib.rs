//! The `loki` source: LogQL metric queries over Loki's
//! `GET /loki/api/v1/query_range`.
//!
//! ```yaml
//! sources:
//!   loki:
//!     url: http://loki:3100
//!     headers: { X-Scope-OrgID: team-a }   # the tenant, when Loki runs with auth_enabled
//! ```
//!
//! Only metric queries (`sum(rate({app="x"}[1m]))`, `count_over_time`,
//! `quantile_over_time(… | unwrap …)`) give numbers over time; a log
//! query (`{app="x"} |= "error"`) answers log lines (`streams`), which
//! fail the query with a message saying so.
//!
//! Loki reads `start` and `end` as nanoseconds when they are integers of
//! more than ten digits, as seconds when ten digits or fewer, and as float
//! seconds when they hold a `.` (`parseTimestamp` in Loki's
//! `pkg/loghttp/params.go`, the same from 2.x to 3.x). The plugin sends
//! nanoseconds, more than ten digits for any time after the first ten
//! seconds of 1970, which no version reads as anything else; `step` is sent as a duration (`30s`), which
//! `parseSecondsOrDuration` accepts. Loki evaluates the query at `start`,
//! `start + step`, … up to `end`, as Prometheus does.
//!
//! The answer's `matrix` is Prometheus's shape (`[[unix seconds, "value"],
//! …]`). A refused query comes back as plain text (`parse error at line
//! 1, col 11: syntax error: …`, HTTP 400), quoted on one line.

use tollgate_sdk::config::Settings;
use tollgate_sdk::source::{
    self, Config, Guest, Request, Response, Round, Series, SourceQuery, Step, serde_json::Value,
};

/// The plugin.
pub struct Loki;

/// Loki's range query endpoint.
const QUERY_RANGE: &str = "/loki/api/v1/query_range";

/// Nanoseconds in a second.
const NANOS: i64 = 1_000_000_000;

/// Checks the settings: there are none, so any key is refused (a tenant
/// is the operator's `headers:`, which the host adds).
fn check_settings(config: &Config) -> Result<(), String> {
    Settings::new(config).finish()
}

/// `seconds` as Loki's unambiguous nanosecond timestamp.
fn nanos(seconds: i64) -> Result<String, String> {
    seconds
        .checked_mul(NANOS)
        .map(|n| n.to_string())
        .ok_or_else(|| format!("time {seconds} is out of range"))
}

/// The range query for `query`.
pub fn request(query: &SourceQuery) -> Result<Request, String> {
    let start = nanos(query.start)?;
    let end = nanos(query.end)?;
    let step = format!("{}s", query.step_seconds.max(1));
    Ok(source::get(
        QUERY_RANGE,
        &[
            ("query", query.text.as_str()),
            ("start", start.as_str()),
            ("end", end.as_str()),
            ("step", step.as_str()),
        ],
    ))
}

/// The series of one `query_range` answer, or why there are none.
pub fn parse(answer: &Response) -> Result<Vec<Series>, String> {
    let parsed = source::serde_json::from_slice::<Value>(&answer.body);
    if !(200..300).contains(&answer.status) {
        // Loki writes errors as plain text; a proxy in front of it, or a
        // later version, may write the Prometheus API's JSON error.
        let message = match &parsed {
            Ok(json) if json["error"].is_string() => {
                source::quote(json["error"].as_str().unwrap_or_default().as_bytes())
            }
            _ => source::quote(&answer.body),
        };
        return Err(format!(
            "Loki refused the query (HTTP {}): {message}",
            answer.status
        ));
    }
    let json = source::json(answer)?;
    if json["status"] != "success" {
        let message = json["error"].as_str().map_or_else(
            || source::quote(&answer.body),
            |e| source::quote(e.as_bytes()),
        );
        return Err(format!("Loki did not answer with success: {message}"));
    }
    let data = &json["data"];
    match data["resultType"].as_str() {
        Some("matrix") => source::matrix(&data["result"]),
        Some("streams") => Err(
            "the query is a log query: Loki answered log lines (`streams`), not numbers; use a metric query such as `sum(rate({app=\"x\"}[1m]))` or `sum(count_over_time({app=\"x\"} |= \"error\" [5m]))`"
                .into(),
        ),
        Some(other) => Err(format!(
            "expected a metric query's `matrix`, got a `{other}`"
        )),
        None => Err(format!(
            "the answer has no `data.resultType`: is the URL Loki's? {}",
            source::quote(&answer.body)
        )),
    }
}

impl Guest for Loki {
    fn validate_config(config: Config) -> Result<(), String> {
        check_settings(&config)
    }

    fn start(config: Config, query: SourceQuery) -> Result<Round, String> {
        check_settings(&config)?;
        Ok(Round::one(request(&query)?))
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
tollgate_sdk::source::export_source!(Loki);

#[cfg(test)]
mod tests;
