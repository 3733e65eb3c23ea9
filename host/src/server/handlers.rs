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
use super::catalog::PolicyView;
use super::extract::{BodyReadTimeout, RawBody, parse_elapsed, parse_json, source_fields};
use super::metrics::RequestLabels;
use super::service::{AccessFacts, Answer, Job, run_evaluation};
use super::{ApiError, AppState};
use crate::decision::Decision;
use crate::digest::Digest;
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
    serde_json::to_vec(decision).unwrap_or_default()
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
    let body: EvaluateBody = parse_json(&bytes)?;
    // The caller's scope first: a key is looked up only within it, (token,
    // policy, key), so another caller's key neither replays, conflicts,
    // nor shows that it exists.
    let grant = super::compat::evaluate_grant(caller, &body.policy)?;
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
    let scope = super::extract::Scope {
        grant: &grant,
        policy: &body.policy,
    };
    let input = source_fields!(body).input(&state, "", scope).await?;
    let elapsed = parse_elapsed(body.elapsed.as_deref())?;
    let schedule = body
        .schedule
        .as_deref()
        .map(|s| {
            s.parse::<crate::evaluate::Schedule>().map_err(|expected| {
                ApiError::unprocessable(
                    "invalid_request",
                    format!(
                        "`schedule` is `{}`; expected {expected}",
                        crate::text::shown(s)
                    ),
                )
                .field("schedule")
            })
        })
        .transpose()?
        .unwrap_or_default();
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
    grant: &super::auth::Grant,
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
    use crate::audit::PluginReport;
    let set = state.policies();
    let mut plugins: BTreeMap<String, PluginReport> = BTreeMap::new();
    for (policy, loaded, _) in set.iter() {
        for (name, p) in &loaded.plugins {
            let source = if crate::builtin::plugin(name).is_some() {
                format!("builtin:{name}")
            } else {
                loaded
                    .policy
                    .plugins
                    .get(name)
                    .map_or_else(|| name.clone(), |d| d.path.display().to_string())
            };
            let entry = plugins
                .entry(p.digest().to_string())
                .or_insert_with(|| PluginReport::accepted(name, &source, p));
            if entry.signature.is_none() {
                entry.signature = loaded.signers.get(name).cloned();
            }
            entry
                .capabilities
                .extend(grants_of(policy, &loaded.policy, name));
            entry
                .used_by
                .get_or_insert_with(Vec::new)
                .push(policy.clone());
        }
    }
    for (name, p) in set.builtins() {
        plugins.entry(p.digest().to_string()).or_insert_with(|| {
            let mut report = PluginReport::accepted(name, &format!("builtin:{name}"), p);
            report.used_by = Some(Vec::new());
            report
        });
    }
    Json(json!({"plugins": plugins.into_values().collect::<Vec<_>>()}))
}

/// The directories `policy` grants to the uses of plugin `name`.
fn grants_of(policy: &str, p: &crate::policy::Policy, name: &str) -> Vec<String> {
    let uses = p
        .stages
        .iter()
        .flat_map(|s| {
            s.gates
                .iter()
                .map(|g| (g.name.as_str(), g.plugin.as_str(), &g.limits))
        })
        .chain(
            p.triggers
                .iter()
                .map(|t| (t.name.as_str(), t.plugin.as_str(), &t.limits)),
        )
        .chain(
            p.actions
                .iter()
                .map(|a| (a.name.as_str(), a.plugin.as_str(), &a.limits)),
        );
    uses.filter(|(_, plugin, _)| *plugin == name)
        .flat_map(|(what, _, limits)| {
            limits.files.iter().map(move |f| {
                format!(
                    "files:{policy}/{what}: {} -> {} (read-only)",
                    f.host.display(),
                    f.guest
                )
            })
        })
        .collect()
}

/// `POST /v1/admin/reload`.
pub(super) async fn reload(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match state.reload().await {
        Ok(set) => Ok(Json(
            json!({"reloaded": true, "policies": set.iter().map(|(n, _, _)| n.clone()).collect::<Vec<_>>()}),
        )),
        Err(e) => {
            let kept = super::kept_on_failure(&e);
            tracing::error!(error = %e, "reload failed; {kept}");
            Err(ApiError::unprocessable(
                "reload_failed",
                format!("{e}; {kept}"),
            ))
        }
    }
}
