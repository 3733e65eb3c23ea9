//! The decision log over HTTP: listing, one record, replay, and the DORA
//! report.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{Value, json};

use super::auth::Caller;
use super::extract::{duration_problem, shown_message, shown_path, unique_query};
use super::{ApiError, AppState};
use crate::decide::replay::ReplayError;
use crate::store::{Cursor, Filter, StoreError};

/// Decisions a page holds at most.
pub(super) const MAX_LIMIT: usize = 1000;

pub(super) fn logging(state: &AppState) -> Result<&Arc<dyn crate::store::Store>, ApiError> {
    let store = &state.inner.store;
    if store.logs_decisions() {
        Ok(store)
    } else {
        Err(ApiError::not_found(
            "no_decision_log",
            "this server keeps no decision log (it runs with `--store memory`)",
        ))
    }
}

fn time_param(query: &BTreeMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    query
        .get(name)
        .map(|t| {
            crate::sources::parse_time(t).map_err(|e| {
                ApiError::unprocessable("invalid_request", shown_message(&e.to_string()))
                    .field(name.to_string())
            })
        })
        .transpose()
}

/// The listing filter from query parameters; unknown parameters are refused.
fn filter(query: &BTreeMap<String, String>) -> Result<Filter, ApiError> {
    const KNOWN: &[&str] = &[
        "service", "policy", "decision", "since", "until", "limit", "cursor",
    ];
    if let Some(k) = query.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::unprocessable(
            "invalid_request",
            format!(
                "unknown parameter `{}`; expected one of {}",
                crate::base::text::shown(k),
                KNOWN.join(", ")
            ),
        )
        .field(shown_path(k)));
    }
    if let Some(d) = query.get("decision")
        && !["promote", "hold", "rollback"].contains(&d.as_str())
    {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "`decision` is promote, hold or rollback",
        )
        .field("decision"));
    }
    let limit = match query.get("limit") {
        None => 50,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "invalid_request",
                    format!("`limit` is a number from 1 to {MAX_LIMIT}"),
                )
                .field("limit")
            })?,
    };
    let cursor = query
        .get("cursor")
        .map(|c| {
            c.parse::<Cursor>().map_err(|e| {
                ApiError::unprocessable("invalid_request", shown_message(&e.to_string()))
                    .field("cursor")
            })
        })
        .transpose()?;
    Ok(Filter {
        service: query.get("service").cloned(),
        policy: query.get("policy").cloned(),
        decision: query.get("decision").cloned(),
        since: time_param(query, "since")?,
        until: time_param(query, "until")?,
        final_stage: None,
        limit,
        cursor,
        oldest_first: false,
    })
}

/// `GET /v1/decisions`: newest first, a page at a time.
pub(super) async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = unique_query(query.as_deref(), "")?;
    let store = logging(&state)?;
    let (page, next) = crate::store::page(store.as_ref(), &filter(&query)?).await?;
    let next = next.map(|c| c.to_string());
    Ok(Json(json!({ "decisions": page, "next_cursor": next })))
}

/// `GET /v1/decisions/{id}`: the whole record.
pub(super) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<crate::store::Record>, ApiError> {
    record(&state, &id).await.map(Json)
}

/// The record `id`, or 404.
async fn record(state: &AppState, id: &str) -> Result<crate::store::Record, ApiError> {
    let store = logging(state)?;
    known_shape(id)?;
    store.decision(id).await?.ok_or_else(|| {
        ApiError::not_found(
            "unknown_decision",
            format!(
                "no decision `{}` in the log",
                crate::base::text::escape_control(id)
            ),
        )
    })
}

/// `GET /v1/decisions/{id}/explanation`: how far each gate was from its
/// threshold, what set the outcome, each gate's share of the score and the
/// fewest gate outcomes that would have changed it, from the record alone.
pub(super) async fn explanation(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<crate::evaluate::explain::Explanation>, ApiError> {
    let record = record(&state, &id).await?;
    // The search is bounded but can take milliseconds on a large stage:
    // one at a time, off the async workers.
    let wait = state.inner.config.request_timeout;
    let turn =
        tokio::time::timeout(wait, Arc::clone(&state.inner.explaining).acquire_owned()).await;
    let Ok(Ok(turn)) = turn else {
        return Err(ApiError::busy(
            "too many explanations asked at once; retry shortly",
        ));
    };
    let explained = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        crate::evaluate::explain::explain(&record.decision)
    })
    .await
    .map_err(|e| ApiError::internal(format!("explaining failed: {e}")))?;
    Ok(Json(explained))
}

/// `GET /v1/decisions/{id}/charts`: the points each gate read, redrawn from
/// the logged snapshot (checked against the decision's input digest);
/// `?format=svg` adds each chart drawn as SVG (`svg`).
pub(super) async fn charts(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = unique_query(query.as_deref(), "")?;
    let svg = match query.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("svg") => true,
        Some(_) => {
            return Err(
                ApiError::unprocessable("invalid_request", "`format` is json or svg")
                    .field("format"),
            );
        }
    };
    if let Some(k) = query.keys().find(|k| k.as_str() != "format") {
        return Err(ApiError::unprocessable(
            "invalid_request",
            format!(
                "unknown parameter `{}`; expected format",
                crate::base::text::shown(k)
            ),
        )
        .field(shown_path(k)));
    }
    let record = record(&state, &id).await?;
    let store = logging(&state)?;
    let snapshot = crate::decide::replay::logged_snapshot(store.as_ref(), &record).await?;
    // Drawing reads every point in each window: off the async workers.
    let shown = tokio::task::spawn_blocking(move || {
        let charts = crate::evaluate::charts::charts(&record.decision, &snapshot);
        let mut shown = serde_json::to_value(&charts)?;
        if svg {
            for (value, chart) in shown.as_array_mut().into_iter().flatten().zip(&charts) {
                value["svg"] = Value::from(super::ui::svg::chart(chart));
            }
        }
        Ok::<_, serde_json::Error>(shown)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(Json(json!({ "charts": shown })))
}

/// `GET /v1/decisions/{id}/policy`: the policy text the decision was made
/// with, from the log (checked against its digest when read).
pub(super) async fn policy_text(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    let record = record(&state, &id).await?;
    let store = logging(&state)?;
    let text = store.blob(&record.policy_text).await?.ok_or_else(|| {
        ApiError::from(ReplayError::Missing {
            id: id.clone(),
            what: "policy text".into(),
            digest: record.policy_text,
        })
    })?;
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            ),
            (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        text,
    )
        .into_response())
}

/// Refuses what cannot be a decision id before the store is asked, so an
/// error never echoes kilobytes of path back.
fn known_shape(id: &str) -> Result<(), ApiError> {
    if uuid::Uuid::try_parse(id).is_ok() {
        return Ok(());
    }
    let shown: String = id.chars().take(40).collect();
    let cut = if shown.len() < id.len() { "…" } else { "" };
    Err(ApiError::not_found(
        "unknown_decision",
        format!(
            "`{}{cut}` is not a decision id: ids are UUIDs, as `decision_id` gives them",
            crate::base::text::escape_control(&shown)
        ),
    ))
}

impl From<ReplayError> for ApiError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::NotFound(_) => ApiError::not_found("unknown_decision", e.to_string()),
            ReplayError::Store(StoreError::Corrupt { .. })
            | ReplayError::Missing { .. }
            | ReplayError::Invalid { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "replay_refused",
                e.to_string(),
            ),
            ReplayError::Store(s) => s.into(),
        }
    }
}

/// `POST /v1/decisions/{id}/replay`: the logged decision evaluated again,
/// compared finding by finding. A replay runs plugins, so it costs what an
/// evaluation of its policy costs: a slot, a worker within the policy's
/// share, and a turn of the token's replay rate (429 past it).
pub(super) async fn replay(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<crate::decide::replay::ReplayReport>, ApiError> {
    let store = logging(&state)?;
    known_shape(&id)?;
    if let Caller::Token(g) = &caller {
        state.inner.limits.replay(&g.id)?;
    }
    let Ok(_slot) = Arc::clone(&state.inner.slots).try_acquire_owned() else {
        return Err(ApiError::busy(
            "too many evaluations in flight; retry shortly",
        ));
    };
    let policy = store
        .decision(&id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found("unknown_decision", format!("no decision `{id}` in the log"))
        })?
        .decision
        .policy;
    // The logged policy's share of the workers, or, when no policy of that
    // name is loaded now, the share of all such replays.
    let budget = state
        .policies()
        .get_with_budget(&policy)
        .map_or_else(|| Arc::clone(&state.inner.unloaded_budget), |(_, b)| b);
    let waited = async {
        let own = budget.acquire_owned().await.ok()?;
        let core = Arc::clone(&state.inner.workers)
            .acquire_owned()
            .await
            .ok()?;
        Some((own, core))
    };
    let Ok(Some(_permits)) = tokio::time::timeout(state.inner.config.request_timeout, waited).await
    else {
        return Err(ApiError::busy(format!(
            "no worker free for policy `{}` within the request timeout; retry shortly",
            crate::base::text::escape_control(&policy)
        )));
    };
    let report =
        crate::decide::replay::replay(store.as_ref(), Arc::clone(&state.inner.runtime), &id)
            .await?;
    Ok(Json(report))
}

/// `GET /v1/reports/dora?service=S&window=30d[&until=T]`.
pub(super) async fn dora(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<crate::store::dora::DoraReport>, ApiError> {
    let query = unique_query(query.as_deref(), "")?;
    let store = logging(&state)?;
    let service = query.get("service").ok_or_else(|| {
        ApiError::unprocessable("invalid_request", "give `service`").field("service")
    })?;
    let window = match query.get("window") {
        None => std::time::Duration::from_secs(30 * 86_400),
        Some(w) => humantime::parse_duration(w).map_err(|e| {
            ApiError::unprocessable(
                "invalid_request",
                format!(
                    "`window` `{}` is not a duration: {}",
                    crate::base::text::shown(w),
                    duration_problem(&e)
                ),
            )
            .field("window")
        })?,
    };
    let until = time_param(&query, "until")?.unwrap_or_else(|| crate::store::now_ms() / 1000);
    let since = until.saturating_sub(i64::try_from(window.as_secs()).unwrap_or(i64::MAX));
    let report = crate::store::dora::from_store(store.as_ref(), service, since, until).await?;
    Ok(Json(report))
}
