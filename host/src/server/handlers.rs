//! The endpoints.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::extract::{BodyReadTimeout, RawBody, parse_elapsed, parse_json, source_fields};
use super::idempotency::{Lookup, Stored};
use super::metrics::RequestLabels;
use super::service::{Job, run_evaluation};
use super::{ApiError, AppState};
use crate::decision::Decision;
use crate::digest::Digest;
use crate::policy::LoadedPolicy;

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
    let span = tracing::info_span!("request", method = %req.method(), route = %route, status = tracing::field::Empty);
    let metrics = &state.inner.metrics;
    metrics.in_flight.inc();
    let response = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    metrics.in_flight.dec();
    span.record("status", response.status().as_u16());
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

/// The request body of `POST /v1/evaluate`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvaluateBody {
    policy: String,
    stage: Option<String>,
    /// Time already spent in the stage, e.g. `20m`.
    elapsed: Option<String>,
    /// `policy` (default) or `caller`: who keeps the stage clock.
    schedule: Option<String>,
    snapshot: Option<Box<serde_json::value::RawValue>>,
    snapshot_file: Option<String>,
    service: Option<String>,
    version: Option<String>,
    at: Option<serde_json::Value>,
}

/// The decision with its id, as JSON bytes.
pub(super) fn decision_body(decision: &Decision) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct WithId<'a> {
        decision_id: String,
        #[serde(flatten)]
        decision: &'a Decision,
    }
    serde_json::to_vec(&WithId {
        decision_id: uuid::Uuid::now_v7().to_string(),
        decision,
    })
    .unwrap_or_default()
}

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

/// `POST /v1/evaluate`.
pub(super) async fn evaluate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
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
            Some(k.to_string())
        }
    };
    let body_digest = Digest::of(&bytes);
    if let Some(k) = &key {
        match state.inner.idempotency.lookup(k, body_digest) {
            Lookup::Replay(stored) => {
                return Ok(json_response(stored.status, stored.response, true));
            }
            Lookup::Conflict => {
                return Err(ApiError::unprocessable(
                    "idempotency_conflict",
                    "this `Idempotency-Key` was used with a different body",
                )
                .field("Idempotency-Key"));
            }
            Lookup::New => {}
        }
    }
    let body: EvaluateBody = parse_json(&bytes)?;
    super::compat::evaluate_caller(caller, &body.policy)?;
    let input = source_fields!(body).input(&state, "")?;
    let elapsed = parse_elapsed(body.elapsed.as_deref())?;
    let decision = run_evaluation(
        &state,
        Job {
            policy: body.policy,
            stage: body.stage,
            elapsed,
            input,
            advance_state: true,
            schedule: match body.schedule.as_deref() {
                None | Some("policy") => crate::evaluate::Schedule::Policy,
                Some("caller") => crate::evaluate::Schedule::Caller,
                Some(other) => {
                    return Err(ApiError::unprocessable(
                        "invalid_request",
                        format!(
                            "`schedule` is `{}`; expected policy or caller",
                            crate::text::escape_control(other)
                        ),
                    )
                    .field("schedule"));
                }
            },
        },
    )
    .await?;
    let response: Arc<[u8]> = decision_body(&decision).into();
    Ok(match key {
        None => json_response(200, response, false),
        Some(k) => {
            let stored = state.inner.idempotency.remember(
                k,
                Stored {
                    body: body_digest,
                    status: 200,
                    response,
                },
            );
            json_response(stored.status, stored.response, false)
        }
    })
}

fn policy_json(name: &str, loaded: &LoadedPolicy, source: &str) -> Value {
    let p = &loaded.policy;
    json!({
        "name": name,
        "description": p.description,
        "digest": loaded.digest.to_string(),
        "source": source,
        "stages": p.stages.iter().map(|s| json!({
            "name": s.name.as_str(),
            "description": s.description,
            "traffic_percent": s.traffic,
            "duration_seconds": s.duration.map(|d| d.as_secs()),
            "scoring": s.scoring,
            "gates": s.gates.iter().map(|g| json!({
                "name": g.name.as_str(),
                "plugin": g.plugin,
                "weight": g.weight,
                "key": g.key,
                "dry_run": g.dry_run,
                "on_no_data": g.on_no_data,
                "on_error": g.on_error,
                "deadline_ms": g.limits.deadline.as_millis() as u64,
                "memory_bytes": g.limits.memory,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "triggers": p.triggers.iter().map(|t| json!({"name": t.name.as_str(), "plugin": t.plugin, "hold": t.hold})).collect::<Vec<_>>(),
        "actions": p.actions.iter().map(|a| json!({"name": a.name.as_str(), "plugin": a.plugin})).collect::<Vec<_>>(),
        "plugins": loaded.plugins.iter().map(|(n, pl)| (n.clone(), Value::String(pl.digest().to_string()))).collect::<serde_json::Map<_, _>>(),
    })
}

/// `GET /v1/policies`.
pub(super) async fn list_policies(State(state): State<AppState>) -> Json<Value> {
    let set = state.policies();
    Json(json!({"policies": set.iter().map(|(n, p, s)| policy_json(n, p, s)).collect::<Vec<_>>()}))
}

/// `GET /v1/policies/{name}`.
pub(super) async fn get_policy(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let set = state.policies();
    set.iter()
        .find(|(n, _, _)| **n == name)
        .map(|(n, p, s)| Json(policy_json(n, p, s)))
        .ok_or_else(|| ApiError::not_found("unknown_policy", format!("unknown policy `{name}`")))
}

/// `GET /v1/plugins`: what each plugin is and may do.
pub(super) async fn list_plugins(State(state): State<AppState>) -> Json<Value> {
    let set = state.policies();
    let mut plugins: BTreeMap<String, Value> = BTreeMap::new();
    for (policy, loaded, _) in set.iter() {
        for (name, p) in &loaded.plugins {
            let entry = plugins.entry(p.digest().to_string()).or_insert_with(|| {
                let info = p.info();
                json!({
                    "name": name,
                    "digest": p.digest().to_string(),
                    "size_bytes": p.size(),
                    "world": info.world,
                    "wit_version": info.wit_version,
                    "imports": info.imports,
                    "exports": info.exports,
                    "capabilities": [],
                    "limits": {
                        "default_deadline_ms": crate::engine::Limits::default().deadline.as_millis() as u64,
                        "default_memory_bytes": crate::engine::Limits::default().memory,
                        "max_deadline_ms": crate::engine::MAX_DEADLINE.as_millis() as u64,
                        "max_memory_bytes": crate::engine::MAX_MEMORY,
                        "wasm_stack_bytes": crate::engine::MAX_WASM_STACK,
                        "max_reason_bytes": crate::engine::MAX_REASON_BYTES,
                    },
                    "used_by": [],
                })
            });
            if let Some(used) = entry["used_by"].as_array_mut() {
                used.push(Value::String(policy.clone()));
            }
        }
    }
    Json(json!({"plugins": plugins.into_values().collect::<Vec<_>>()}))
}

/// `POST /v1/admin/reload`.
pub(super) async fn reload(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match state.reload().await {
        Ok(set) => Ok(Json(
            json!({"reloaded": true, "policies": set.iter().map(|(n, _, _)| n.clone()).collect::<Vec<_>>()}),
        )),
        Err(e) => {
            tracing::error!(error = %e, "reload failed; the previous policies keep serving");
            Err(ApiError::unprocessable(
                "reload_failed",
                format!("{e}; the previous policies keep serving"),
            ))
        }
    }
}
