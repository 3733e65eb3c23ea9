//! The endpoints.

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use super::access::AccessFacts;
use super::auth::{Caller, Grant};
use super::catalog::{PolicyView, plugin_reports};
use super::extract::{
    BodyReadTimeout, EvaluateBody, RawBody, Scope, idempotency_key, parse_elapsed, parse_json,
    parse_schedule, source_fields,
};
use super::metrics::RequestLabels;
use super::respond::{decision_body, json_response};
use super::service::{Answer, Job, run_evaluation};
use super::{ApiError, AppState};
use crate::base::digest::Digest;
use crate::store::{IdempotencyKey, StoredAnswer};

/// The OpenAPI 3 document describing every endpoint.
pub(super) const OPENAPI: &str = include_str!("openapi.json");

/// Counts requests by route and status, and tracks requests in flight.
pub(super) async fn track_request(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    req.extensions_mut()
        .insert(BodyReadTimeout(state.inner.config.body_read_timeout));
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().clone();
    let span = tracing::info_span!("request", method = %method, route = %route, status = tracing::field::Empty);
    let metrics = &state.inner.metrics;
    metrics.in_flight.inc();
    let started = std::time::Instant::now();
    let response = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    metrics.in_flight.dec();
    span.record("status", response.status().as_u16());
    let facts = response
        .extensions()
        .get::<AccessFacts>()
        .cloned()
        .unwrap_or_default();
    // One access-log line per request, as a web server writes.
    tracing::info!(
        method = %method,
        route = %route,
        status = response.status().as_u16(),
        duration_ms = started.elapsed().as_micros() as f64 / 1000.0,
        token = facts.token.as_deref().unwrap_or("-"),
        decision_id = facts.decision_id.as_deref().unwrap_or("-"),
        "request"
    );
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

pub(super) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let set = state.policies();
    if set.is_empty() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "no policies loaded",
        )
        .into_response();
    }
    let plugins = set
        .iter()
        .flat_map(|(_, p, _)| p.plugins.values().map(|pl| pl.digest()))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    Json(json!({"status": "ready", "policies": set.len(), "plugins": plugins})).into_response()
}

pub(super) async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such endpoint")
}

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.inner.metrics.encode(),
    )
        .into_response()
}

pub(super) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// `POST /v1/evaluate`.
pub(super) async fn evaluate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let body_digest = Digest::of(&bytes);
    let body: EvaluateBody = parse_json(&bytes)?;
    // The caller's scope first: a key is looked up only within it, (token,
    // policy, key), so another caller's key neither replays, conflicts,
    // nor shows that it exists.
    let grant = caller.evaluate_grant(&body.policy)?;
    let key = key.map(|key| IdempotencyKey {
        token_id: grant.id.clone(),
        policy: body.policy.clone(),
        key,
    });
    if let Some(k) = &key
        && let Some(stored) = state.inner.store.answer(k).await?
    {
        return replay_or_conflict(&grant, stored, body_digest);
    }
    let scope = Scope {
        grant: &grant,
        policy: &body.policy,
    };
    let input = source_fields!(body).input(&state, "", scope).await?;
    let elapsed = parse_elapsed(body.elapsed.as_deref())?;
    let schedule = parse_schedule(body.schedule.as_deref())?;
    let answer = run_evaluation(
        &state,
        Job {
            policy: body.policy,
            stage: body.stage,
            elapsed,
            input,
            advance_state: true,
            schedule,
            token_id: Some(grant.id.clone()),
            grant: grant.clone(),
            idempotency: key.map(|k| (k, body_digest)),
        },
    )
    .await?;
    let decision = match answer {
        Answer::Fresh(d) => *d,
        Answer::Replayed(stored) => return replay_or_conflict(&grant, stored, body_digest),
    };
    let id = decision.decision_id.clone();
    let mut answer = json_response(200, decision_body(&decision).into(), false);
    AccessFacts::note(&mut answer, |f| f.decision_id = id);
    Ok(answer)
}

/// The stored answer for a key the same caller used again: the same answer
/// for the same body, a 422 for another body. A token since limited to
/// other services is not shown the answer.
fn replay_or_conflict(
    grant: &Grant,
    stored: StoredAnswer,
    body: Digest,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    struct Answered {
        #[serde(default)]
        service: String,
    }
    let answered: Answered = serde_json::from_slice(&stored.response).unwrap_or(Answered {
        service: String::new(),
    });
    grant.check_service(&stored.key.policy, &answered.service, "snapshot.service")?;
    if stored.body != body {
        return Err(ApiError::unprocessable(
            "idempotency_conflict",
            "this `Idempotency-Key` was used with a different body",
        )
        .field("Idempotency-Key"));
    }
    let mut answer = json_response(stored.status, stored.response, true);
    AccessFacts::note(&mut answer, |f| f.decision_id = Some(stored.decision_id));
    Ok(answer)
}

/// `GET /v1/policies`.
pub(super) async fn list_policies(State(state): State<AppState>) -> Json<Value> {
    let set = state.policies();
    let views: Vec<PolicyView<'_>> = set
        .iter()
        .map(|(n, p, s)| PolicyView::new(n, p, s))
        .collect();
    Json(json!({ "policies": views }))
}

/// `GET /v1/policies/{name}`.
pub(super) async fn get_policy(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let set = state.policies();
    set.iter()
        .find(|(n, _, _)| **n == name)
        .map(|(n, p, s)| Json(json!(PolicyView::new(n, p, s))))
        .ok_or_else(|| set.unknown(&name))
}

/// `GET /v1/plugins`: the same report as `tollgate audit`, for every
/// plugin the policies use and every first-party one, with the policies
/// that use each.
pub(super) async fn list_plugins(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"plugins": plugin_reports(&state.policies())}))
}

/// `POST /v1/admin/reload`.
pub(super) async fn reload(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match state.reload().await {
        Ok(set) => Ok(Json(
            json!({"reloaded": true, "policies": set.iter().map(|(n, _, _)| n.clone()).collect::<Vec<_>>()}),
        )),
        Err(e) => {
            let kept = e.kept_on_failure();
            tracing::error!(error = %e, "reload failed; {kept}");
            Err(ApiError::unprocessable(
                "reload_failed",
                format!("{e}; {kept}"),
            ))
        }
    }
}
