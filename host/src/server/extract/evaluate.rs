//! The fields of `POST /v1/evaluate` beside the snapshot's: the body, its
//! `Idempotency-Key` header and the `schedule` it names.

use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::evaluate::Schedule;
use crate::server::ApiError;

/// The request body of `POST /v1/evaluate`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::server) struct EvaluateBody {
    pub(in crate::server) policy: String,
    pub(in crate::server) stage: Option<String>,
    /// Time already spent in the stage, e.g. `20m`.
    pub(in crate::server) elapsed: Option<String>,
    /// `policy` (default) or `caller`: who keeps the stage clock.
    pub(in crate::server) schedule: Option<String>,
    pub(in crate::server) snapshot: Option<Box<RawValue>>,
    pub(in crate::server) snapshot_file: Option<String>,
    pub(in crate::server) service: Option<String>,
    pub(in crate::server) version: Option<String>,
    pub(in crate::server) at: Option<Value>,
}

/// The `Idempotency-Key` header, when one is sent: 400 unless it is 1 to
/// 255 visible characters.
pub(in crate::server) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let k = v
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "`Idempotency-Key` must be 1 to 255 visible characters",
            )
            .field("Idempotency-Key")
        })?;
    Ok(Some(k.to_string()))
}

/// Who keeps the stage clock, from the body's `schedule`: the policy
/// when absent, 422 for a word that is neither.
pub(in crate::server) fn parse_schedule(schedule: Option<&str>) -> Result<Schedule, ApiError> {
    schedule
        .map(|s| {
            s.parse::<Schedule>().map_err(|expected| {
                ApiError::unprocessable(
                    "invalid_request",
                    format!(
                        "`schedule` is `{}`; expected {expected}",
                        crate::base::text::shown(s)
                    ),
                )
                .field("schedule")
            })
        })
        .transpose()
        .map(Option::unwrap_or_default)
}
