//! Durations and instants a request gives: `elapsed` (`20m`) and `at`
//! (unix seconds or RFC 3339).

use std::time::Duration;

use serde_json::Value;

use super::shown::shown_message;
use crate::server::ApiError;

/// The `elapsed` a request gives (`20m`): time already spent in the stage.
pub(in crate::server) fn parse_elapsed(
    elapsed: Option<&str>,
) -> Result<Option<Duration>, ApiError> {
    elapsed
        .map(|e| {
            humantime::parse_duration(e).map_err(|err| {
                ApiError::unprocessable(
                    "invalid_request",
                    format!(
                        "`{}` is not a duration: {}",
                        crate::base::text::shown(e),
                        duration_problem(&err)
                    ),
                )
                .field("elapsed")
            })
        })
        .transpose()
}

/// Why humantime refused a duration, quoting at most a bounded piece of
/// it (its own message quotes an unknown unit whole).
pub(in crate::server) fn duration_problem(err: &humantime::DurationError) -> String {
    match err {
        humantime::DurationError::UnknownUnit { unit, .. } => format!(
            "unknown unit `{}`; use ms, s, m, h or d, e.g. `20m`",
            crate::base::text::shown(unit)
        ),
        other => shown_message(&other.to_string()),
    }
}

/// The `at` a request gives at `field`: unix seconds or RFC 3339.
pub(super) fn parse_at(v: &Value, field: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::unprocessable("invalid_request", "`at` must be unix seconds or RFC 3339")
            .field(field.to_string())
    };
    match v {
        Value::Number(n) => n.as_i64().ok_or_else(bad),
        Value::String(s) => s.parse::<i64>().or_else(|_| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(|t| t.unix_timestamp())
                .map_err(|_| bad())
        }),
        _ => Err(bad()),
    }
}
