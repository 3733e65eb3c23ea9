//! The endpoints.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::idempotency::{Lookup, Stored};
use super::metrics::RequestLabels;
use super::service::{Input, Job, run_evaluation};
use super::{ApiError, AppState};
use crate::decision::Decision;
use crate::digest::Digest;
use crate::policy::LoadedPolicy;
use crate::snapshot::Snapshot;

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
    let plugins: usize = set.iter().map(|(_, p, _)| p.plugins.len()).sum();
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
    snapshot: Option<Box<serde_json::value::RawValue>>,
    snapshot_file: Option<String>,
    service: Option<String>,
    version: Option<String>,
    at: Option<serde_json::Value>,
}

/// Where a request's snapshot comes from: sent whole (as JSON, or as JSON
/// text, which is what an Argo argument templated into a body becomes), a
/// file in the snapshot directory, or queried for `service` and `version`.
struct SourceFields {
    snapshot: Option<Box<serde_json::value::RawValue>>,
    snapshot_file: Option<String>,
    service: Option<String>,
    version: Option<String>,
    /// End of the query window: unix seconds or RFC 3339.
    at: Option<serde_json::Value>,
}

macro_rules! source_fields {
    ($body:expr) => {
        SourceFields {
            snapshot: $body.snapshot,
            snapshot_file: $body.snapshot_file,
            service: $body.service,
            version: $body.version,
            at: $body.at,
        }
    };
}

fn parse_at(v: &serde_json::Value, field: &str) -> Result<i64, ApiError> {
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
    fn input(self, state: &AppState, prefix: &str) -> Result<Input, ApiError> {
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

/// How long a handler waits for a request body, set per request by
/// [`track_request`] from the server's configuration.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyReadTimeout(pub(super) Duration);

/// A body read as bytes, with an over-limit body answered as 413 and a body
/// that does not arrive in time as 408, in the common error shape.
pub(super) struct RawBody(Bytes);

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
fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let err = if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request("malformed_json", format!("malformed JSON: {inner}"))
        } else {
            ApiError::unprocessable("invalid_request", inner.to_string())
        };
        if path == "." { err } else { err.field(path) }
    })
}

fn parse_elapsed(elapsed: Option<&str>) -> Result<Option<Duration>, ApiError> {
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

fn parse_snapshot(bytes: &[u8], prefix: &str) -> Result<Snapshot, ApiError> {
    Snapshot::from_json(bytes).map_err(|e| {
        let field = if e.path.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{}", e.path)
        };
        ApiError::unprocessable("invalid_snapshot", e.message).field(field)
    })
}

/// The decision with its id, as JSON bytes.
fn decision_body(decision: &Decision) -> Vec<u8> {
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

fn json_response(status: u16, body: Arc<[u8]>, replayed: bool) -> Response {
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
    let input = source_fields!(body).input(&state, "")?;
    let elapsed = parse_elapsed(body.elapsed.as_deref())?;
    let decision = run_evaluation(
        &state,
        Job {
            policy: body.policy,
            stage: body.stage,
            elapsed,
            input,
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

/// Flagger's webhook payload.
#[derive(Deserialize)]
struct FlaggerBody {
    name: String,
    namespace: String,
    phase: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

/// The snapshot a compatibility request names in string fields
/// (`metadata` of a Flagger hook, the query of an Argo GET): inline JSON
/// text under `snapshot`, a file under `snapshot_file`, or none, and then
/// it is queried for `service` (Flagger's canary `name` when absent) and
/// `version`.
fn compat_input(
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
fn snapshot_file(state: &AppState, file: &str, field: &str) -> Result<Snapshot, ApiError> {
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

/// `POST /v1/compat/flagger/{policy}`: 200 advances the canary; any other
/// status halts it, with the reason in the body.
pub(super) async fn flagger(
    State(state): State<AppState>,
    Path(policy): Path<String>,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    let body: FlaggerBody = parse_json(&bytes)?;
    let input = compat_input(&state, &body.metadata, "metadata", Some(&body.name))?;
    let elapsed = parse_elapsed(body.metadata.get("elapsed").map(String::as_str))?;
    let stage = body.metadata.get("stage").cloned();
    let d = run_evaluation(
        &state,
        Job {
            policy,
            stage,
            elapsed,
            input,
        },
    )
    .await?;
    tracing::info!(canary = %body.name, namespace = %body.namespace, phase = %body.phase, decision = d.decision.as_str(), "flagger webhook");
    let status = if d.decision == crate::decision::Outcome::Promote {
        StatusCode::OK
    } else {
        StatusCode::PRECONDITION_FAILED
    };
    let body = json!({"decision": d.decision, "reason": d.summary, "policy": d.policy, "stage": d.stage, "score": d.score});
    Ok((status, Json(body)).into_response())
}

/// `GET /v1/compat/argo/{policy}?stage=…&snapshot_file=…`.
pub(super) async fn argo_get(
    State(state): State<AppState>,
    Path(policy): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let input = compat_input(&state, &query, "query", None)?;
    let elapsed = parse_elapsed(query.get("elapsed").map(String::as_str))?;
    let d = run_evaluation(
        &state,
        Job {
            policy,
            stage: query.get("stage").cloned(),
            elapsed,
            input,
        },
    )
    .await?;
    Ok(json_response(200, decision_body(&d).into(), false))
}

/// The body of `POST /v1/compat/argo/{policy}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArgoBody {
    stage: Option<String>,
    elapsed: Option<String>,
    snapshot: Option<Box<serde_json::value::RawValue>>,
    snapshot_file: Option<String>,
    service: Option<String>,
    version: Option<String>,
    at: Option<serde_json::Value>,
}

/// `POST /v1/compat/argo/{policy}`: the decision as JSON for an
/// AnalysisTemplate's `successCondition`, e.g. `result.decision == "promote"`.
pub(super) async fn argo_post(
    State(state): State<AppState>,
    Path(policy): Path<String>,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    let body: ArgoBody = parse_json(&bytes)?;
    let input = source_fields!(body).input(&state, "")?;
    let elapsed = parse_elapsed(body.elapsed.as_deref())?;
    let d = run_evaluation(
        &state,
        Job {
            policy,
            stage: body.stage,
            elapsed,
            input,
        },
    )
    .await?;
    Ok(json_response(200, decision_body(&d).into(), false))
}
