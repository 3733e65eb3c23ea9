//! Reading requests: bodies (bounded in size and time), JSON with the path
//! of the first problem, durations, snapshots and where they come from.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde_json::Value;

use super::service::Input;
use super::{ApiError, AppState};
use crate::snapshot::Snapshot;

/// How long a handler waits for a request body, set per request by
/// [`track_request`] from the server's configuration.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyReadTimeout(pub(super) Duration);

/// A body read as bytes, with an over-limit body answered as 413 and a body
/// that does not arrive in time as 408, in the common error shape.
pub(super) struct RawBody(pub(super) Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send `Content-Type: application/json`",
            ));
        }
        let limit = req
            .extensions()
            .get::<BodyReadTimeout>()
            .map_or(Duration::from_secs(30), |t| t.0);
        let read = tokio::time::timeout(limit, Bytes::from_request(req, state))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!(
                        "the request body did not arrive within {}",
                        humantime::format_duration(limit)
                    ),
                )
            })?;
        read.map(RawBody).map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "request body exceeds the size limit",
                )
            } else {
                ApiError::bad_request("unreadable_body", e.body_text())
            }
        })
    }
}

/// Parses JSON, naming the JSON path of the first problem.
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes = crate::files::without_bom(bytes);
    // Every body here is an object.
    if let Some(kind) = crate::files::json_not_an_object(bytes) {
        return Err(ApiError::unprocessable(
            "invalid_request",
            format!("the body is {kind}; send a JSON object"),
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        // A syntax error before any key has no path; serde_path_to_error
        // shows that as `?`.
        let path = if path == "?" { ".".to_string() } else { path };
        let inner = e.into_inner();
        // A missing field has no path of its own; name it from the message.
        let message = inner.to_string();
        let path = match message
            .strip_prefix("missing field `")
            .and_then(|m| m.split_once('`'))
        {
            Some((field, _)) if path == "." => field.to_string(),
            Some((field, _)) => format!("{path}.{field}"),
            None => path,
        };
        let err = if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request("malformed_json", format!("malformed JSON: {inner}"))
        } else {
            ApiError::unprocessable("invalid_request", inner.to_string())
        };
        if path == "." { err } else { err.field(path) }
    })
}

pub(super) fn parse_elapsed(elapsed: Option<&str>) -> Result<Option<Duration>, ApiError> {
    elapsed
        .map(|e| {
            humantime::parse_duration(e).map_err(|err| {
                ApiError::unprocessable(
                    "invalid_request",
                    format!("`{e}` is not a duration: {err}"),
                )
                .field("elapsed")
            })
        })
        .transpose()
}

pub(super) fn parse_snapshot(bytes: &[u8], prefix: &str) -> Result<Snapshot, ApiError> {
    Snapshot::from_json(bytes).map_err(|e| {
        let field = if e.path.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{}", e.path)
        };
        ApiError::unprocessable("invalid_snapshot", e.message).field(field)
    })
}

/// Where a request's snapshot comes from: sent whole (as JSON, or as JSON
/// text, which is what an Argo argument templated into a body becomes), a
/// file in the snapshot directory, or queried for `service` and `version`.
pub(super) struct SourceFields {
    pub(super) snapshot: Option<Box<serde_json::value::RawValue>>,
    pub(super) snapshot_file: Option<String>,
    pub(super) service: Option<String>,
    pub(super) version: Option<String>,
    /// End of the query window: unix seconds or RFC 3339.
    pub(super) at: Option<serde_json::Value>,
}

/// Moves the snapshot-source fields of a request body into a
/// [`SourceFields`].
macro_rules! source_fields {
    ($body:expr) => {
        $crate::server::extract::SourceFields {
            snapshot: $body.snapshot,
            snapshot_file: $body.snapshot_file,
            service: $body.service,
            version: $body.version,
            at: $body.at,
        }
    };
}

pub(super) fn parse_at(v: &serde_json::Value, field: &str) -> Result<i64, ApiError> {
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

impl SourceFields {
    /// The job input these fields describe; `prefix` is where they sit in
    /// the request, for error fields.
    pub(super) fn input(self, state: &AppState, prefix: &str) -> Result<Input, ApiError> {
        let at_field = join(prefix, "at");
        if let Some(raw) = self.snapshot {
            let field = join(prefix, "snapshot");
            // JSON text inside a string: parse what the string holds.
            let text: Option<String> = serde_json::from_str::<String>(raw.get()).ok();
            let bytes = text.as_deref().unwrap_or(raw.get()).as_bytes();
            return parse_snapshot(bytes, &field).map(Input::Given);
        }
        if let Some(file) = self.snapshot_file {
            return snapshot_file(state, &file, &join(prefix, "snapshot_file")).map(Input::Given);
        }
        let at = self
            .at
            .as_ref()
            .map(|v| parse_at(v, &at_field))
            .transpose()?;
        Ok(Input::Query {
            service: self.service.unwrap_or_default(),
            version: self.version.unwrap_or_default(),
            at,
            field: if prefix.is_empty() {
                "service"
            } else {
                "metadata.service"
            },
        })
    }
}

fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

/// The snapshot a compatibility request names in string fields
/// (`metadata` of a Flagger hook, the query of an Argo GET): inline JSON
/// text under `snapshot`, a file under `snapshot_file`, or none, and then
/// it is queried for `service` (Flagger's canary `name` when absent) and
/// `version`.
pub(super) fn compat_input(
    state: &AppState,
    meta: &BTreeMap<String, String>,
    field: &str,
    default_service: Option<&str>,
) -> Result<Input, ApiError> {
    if let Some(inline) = meta.get("snapshot") {
        return parse_snapshot(inline.as_bytes(), &format!("{field}.snapshot")).map(Input::Given);
    }
    if let Some(file) = meta.get("snapshot_file") {
        return snapshot_file(state, file, &format!("{field}.snapshot_file")).map(Input::Given);
    }
    let at = meta
        .get("at")
        .map(|a| parse_at(&Value::String(a.clone()), &format!("{field}.at")))
        .transpose()?;
    Ok(Input::Query {
        service: meta
            .get("service")
            .map(String::as_str)
            .or(default_service)
            .unwrap_or_default()
            .to_string(),
        version: meta.get("version").cloned().unwrap_or_default(),
        at,
        field: if field == "metadata" {
            "metadata.service"
        } else {
            "query.service"
        },
    })
}

/// Reads `file` from the server's snapshot directory, refusing any path
/// that could leave it.
pub(super) fn snapshot_file(
    state: &AppState,
    file: &str,
    field: &str,
) -> Result<Snapshot, ApiError> {
    let Some(dir) = &state.inner.config.snapshot_dir else {
        return Err(ApiError::unprocessable(
            "snapshot_files_disabled",
            "this server has no snapshot directory; send `snapshot` inline",
        )
        .field(field.to_string()));
    };
    let name = std::path::Path::new(file);
    let plain = name
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !plain || file.is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_snapshot_file",
            "`snapshot_file` must be a relative path inside the snapshot directory",
        )
        .field(field.to_string()));
    }
    let bytes = crate::files::read_limited(&dir.join(name), crate::files::MAX_SNAPSHOT_BYTES)
        .map_err(|_| {
            ApiError::not_found(
                "unknown_snapshot_file",
                format!("no snapshot file `{file}`"),
            )
            .field(field.to_string())
        })?;
    parse_snapshot(&bytes, field)
}

pub(super) use source_fields;
