//! A request body as bytes: JSON only (by `Content-Type`), bounded in
//! size and in the time it takes to arrive, every refusal in the common
//! error shape.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};

use crate::server::ApiError;
use crate::server::limits::BudgetFull;

/// How long a handler waits for a request body, set per request by
/// [`track_request`] from the server's configuration.
#[derive(Debug, Clone, Copy)]
pub(in crate::server) struct BodyReadTimeout(pub(in crate::server) Duration);

/// A body read as bytes, with an over-limit body answered as 413 and a body
/// that does not arrive in time as 408, in the common error shape.
pub(in crate::server) struct RawBody(pub(in crate::server) Bytes);

/// Whether one `Content-Type` value is JSON: `application/json` or
/// `application/*+json` (RFC 6839), in any case, with parameters; a
/// `charset`, when given, is UTF-8, the only one JSON has (RFC 8259).
fn is_json_media_type(value: &str) -> bool {
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let subtype = subtype.to_ascii_lowercase();
    let json = subtype == "json"
        || subtype
            .strip_suffix("+json")
            .is_some_and(|prefix| token(prefix) && prefix != "*");
    if !kind.eq_ignore_ascii_case("application") || !token(&subtype) || !json {
        return false;
    }
    parts.all(|param| match param.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            let v = value.trim().trim_matches('"');
            v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("utf8")
        }
        Some((name, _)) => token(name.trim()),
        None => param.trim().is_empty(),
    })
}

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // Exactly one JSON content type: none, two, or another type (even
        // one that starts like it, `application/json-evil`) is 415.
        let mut types = req.headers().get_all(header::CONTENT_TYPE).iter();
        let is_json = match (types.next(), types.next()) {
            (Some(v), None) => v.to_str().is_ok_and(is_json_media_type),
            _ => false,
        };
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send `Content-Type: application/json` (or `application/*+json`) with a JSON body",
            )
            .field("Content-Type"));
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
            if caused_by::<BudgetFull>(&e) {
                ApiError::busy(BudgetFull.to_string())
            } else if e.status() == StatusCode::PAYLOAD_TOO_LARGE
                || caused_by::<http_body_util::LengthLimitError>(&e)
            {
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

/// Whether `E` is somewhere in `error`'s chain of causes.
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<E>() {
            return true;
        }
        cause = e.source();
    }
    false
}
