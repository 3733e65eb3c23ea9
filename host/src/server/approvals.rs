//! Approvals over HTTP: `POST /v1/approvals` records one, with the approver
//! and groups taken from the token (a body cannot name them), and `GET
//! /v1/approvals?service=&version=` lists a release's.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::auth::{Approver, shown};
use super::extract::{RawBody, parse_json, shown_message, shown_path, unique_query};
use super::{ApiError, AppState};
use crate::policy::approvals::{APPROVAL, Approval, check_name};

/// Longest service, version, stage.
const MAX_FIELD: usize = 256;
/// Longest comment.
const MAX_COMMENT: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalBody {
    service: String,
    version: String,
    /// The stage approved; absent approves every stage.
    stage: Option<String>,
    /// A checklist item attested; absent is an approval.
    item: Option<String>,
    #[serde(default)]
    comment: String,
}

fn field(value: &str, name: &'static str) -> Result<(), ApiError> {
    if value.trim().is_empty() || value.len() > MAX_FIELD || value.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "invalid_request",
            format!(
                "`{name}` must be 1 to {MAX_FIELD} characters, none of them control characters"
            ),
        )
        .field(name));
    }
    Ok(())
}

/// `POST /v1/approvals`: 201 with the approval as recorded; 429 once the
/// token spent its `approve_rate`, when one is set.
pub(super) async fn record(
    State(state): State<AppState>,
    Extension(Approver(grant)): Extension<Approver>,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    state.inner.limits.approve(&grant.id)?;
    let body: ApprovalBody = parse_json(&bytes)?;
    field(&body.service, "service")?;
    grant.check_approve(&body.service)?;
    field(&body.version, "version")?;
    if let Some(s) = &body.stage {
        field(s, "stage")?;
    }
    let name = match &body.item {
        Some(item) => {
            check_name(item).map_err(|e| {
                ApiError::unprocessable("invalid_request", shown_message(&e.to_string()))
                    .field("item")
            })?;
            item.clone()
        }
        None => APPROVAL.to_string(),
    };
    if body.comment.len() > MAX_COMMENT {
        return Err(ApiError::unprocessable(
            "invalid_request",
            format!("`comment` is longer than {MAX_COMMENT} bytes"),
        )
        .field("comment"));
    }
    // The caps (per release, per approver on it) are checked by the store
    // in the inserting transaction: a count here could be passed by
    // requests racing past it together.
    let approval = Approval {
        id: uuid::Uuid::now_v7().to_string(),
        service: body.service,
        version: body.version,
        stage: body.stage,
        name,
        approver: grant.identity.clone(),
        groups: grant.groups.clone(),
        comment: body.comment,
        at_ms: crate::store::now_ms(),
    };
    state.inner.store.add_approval(approval.clone()).await?;
    tracing::info!(
        approval = %approval.id,
        service = %approval.service,
        version = %approval.version,
        name = %approval.name,
        approver = %approval.approver,
        "approval recorded"
    );
    Ok((StatusCode::CREATED, Json(approval)).into_response())
}

/// `GET /v1/approvals?service=&version=`: a release's approvals, oldest
/// first. A parameter given twice is a 400, as on every route.
pub(super) async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = unique_query(query.as_deref(), "")?;
    if let Some(k) = query
        .keys()
        .find(|k| !["service", "version"].contains(&k.as_str()))
    {
        return Err(ApiError::unprocessable(
            "invalid_request",
            format!(
                "unknown parameter `{}`; expected service and version",
                shown(k)
            ),
        )
        .field(shown_path(k)));
    }
    let get = |name: &'static str| {
        query.get(name).ok_or_else(|| {
            ApiError::unprocessable("invalid_request", format!("`{name}` is required")).field(name)
        })
    };
    let (service, version) = (get("service")?, get("version")?);
    let approvals = state.inner.store.approvals(service, version).await?;
    Ok(Json(json!({ "approvals": approvals })).into_response())
}
