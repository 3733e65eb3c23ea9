//! Answers shared by the evaluate endpoints: a decision, or a stored
//! answer replayed, as JSON bytes with their status.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use crate::evaluate::decision::Decision;

/// The decision with its id, as JSON bytes.
pub(super) fn decision_body(decision: &Decision) -> Vec<u8> {
    serde_json::to_vec(decision).unwrap_or_default()
}

/// `body` (JSON) with `status`; `replayed` marks a stored answer given
/// again for an `Idempotency-Key` (`Idempotent-Replayed: true`).
pub(super) fn json_response(status: u16, body: Arc<[u8]>, replayed: bool) -> Response {
    let mut r = Response::new(Body::from(body.to_vec()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if replayed {
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    r
}
