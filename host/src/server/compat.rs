//! The Flagger and Argo Rollouts endpoints: the same decisions, answered
//! in the status codes and shapes those controllers act on.
//!
//! Flagger counts a webhook answer above 202 as "no", and what "no" means
//! depends on the hook type, so each hook gets its own answer:
//!
//! | hook | promote | hold | rollback |
//! |---|---|---|---|
//! | `confirm-rollout`, `confirm-traffic-increase`, `confirm-promotion` | 200 | 412 (Flagger waits) | 412 (Flagger waits) |
//! | `pre-rollout`, `rollout` | 200 | 200 | 412 (a failed check) |
//! | `rollback` | 412 | 412 | 200 (roll back now) |
//! | `post-rollout`, `event` | 200 | 200 | 200 (logged) |

use std::collections::BTreeMap;
use std::str::FromStr;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::Caller;
use super::extract::{RawBody, compat_input, parse_elapsed, parse_json, source_fields};
use super::handlers::{decision_body, json_response};
use super::service::{AccessFacts, Job, run_evaluation};
use super::{ApiError, AppState};
use crate::decision::{Decision, Outcome};
use crate::evaluate::Schedule;

/// A Flagger webhook type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hook {
    ConfirmRollout,
    ConfirmTrafficIncrease,
    ConfirmPromotion,
    PreRollout,
    Rollout,
    Rollback,
    PostRollout,
    Event,
}

impl FromStr for Hook {
    type Err = ApiError;

    fn from_str(s: &str) -> Result<Self, ApiError> {
        Ok(match s {
            "confirm-rollout" => Self::ConfirmRollout,
            "confirm-traffic-increase" => Self::ConfirmTrafficIncrease,
            "confirm-promotion" => Self::ConfirmPromotion,
            "pre-rollout" => Self::PreRollout,
            "rollout" => Self::Rollout,
            "rollback" => Self::Rollback,
            "post-rollout" => Self::PostRollout,
            "event" => Self::Event,
            other => {
                return Err(ApiError::not_found(
                    "unknown_hook",
                    format!(
                        "unknown Flagger hook `{}`; expected confirm-rollout, confirm-traffic-increase, confirm-promotion, pre-rollout, rollout, rollback, post-rollout or event",
                        crate::text::escape_control(other)
                    ),
                )
                .field("hook"));
            }
        })
    }
}

impl Hook {
    /// Whether Flagger should hear "yes" (a 2xx) for this outcome.
    fn yes(self, outcome: Outcome) -> bool {
        match self {
            Self::ConfirmRollout | Self::ConfirmTrafficIncrease | Self::ConfirmPromotion => {
                outcome == Outcome::Promote
            }
            Self::PreRollout | Self::Rollout => outcome != Outcome::Rollback,
            Self::Rollback => outcome == Outcome::Rollback,
            Self::PostRollout | Self::Event => true,
        }
    }

    /// Hooks Flagger calls on every reconcile or only to inform: they must
    /// not advance trigger state (a circuit breaker), so asking twice gives
    /// the same answer.
    fn read_only(self) -> bool {
        matches!(self, Self::Rollback | Self::PostRollout | Self::Event)
    }

    /// Hooks whose answer Flagger only logs: an evaluation that cannot run
    /// is logged and still answered 200.
    fn informational(self) -> bool {
        matches!(self, Self::PostRollout | Self::Event)
    }
}

/// Flagger's webhook payload (`CanaryWebhookPayload`): `name`, `namespace`,
/// `phase`, `checksum` and string `metadata`; event hooks put `eventMessage`,
/// `eventType` and `timestamp` in the metadata.
#[derive(Deserialize)]
struct FlaggerBody {
    name: String,
    namespace: String,
    #[serde(default)]
    phase: String,
    #[serde(default)]
    checksum: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

/// Request text as a text log may show it: control characters escaped.
fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    crate::text::escape_control(s)
}

/// The one-line answer Flagger shows (in its events and logs) for a
/// status above 202.
fn refusal(hook: &str, d: &Decision) -> Response {
    let line = format!(
        "tollgate {hook}: {} ({} / {}): {}",
        d.decision.as_str(),
        d.policy,
        d.stage,
        d.summary
    );
    let mut r = (
        StatusCode::PRECONDITION_FAILED,
        crate::text::escape_control(&line).into_owned(),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The token a Flagger request authenticates with: its `Authorization`
/// header, or (Flagger can send no headers) `metadata.token`, checked in
/// constant time like a header token and never logged.
fn flagger_caller(
    state: &AppState,
    caller: Caller,
    metadata: &BTreeMap<String, String>,
    policy: &str,
) -> Result<String, ApiError> {
    let grant = match caller {
        Caller::Token(g) => g,
        Caller::Unauthenticated => metadata
            .get("token")
            .and_then(|t| state.inner.tokens.lookup(t))
            .ok_or_else(|| ApiError::unauthorized().field("metadata.token"))?,
    };
    grant.check_evaluate(policy)?;
    Ok(grant.id)
}

/// `POST /v1/compat/flagger/{policy}/{hook}`: one Flagger webhook type.
pub(super) async fn flagger_hook(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((policy, hook)): Path<(String, String)>,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    let kind: Hook = hook.parse()?;
    flagger(state, caller, policy, kind, &hook, &bytes).await
}

/// `POST /v1/compat/flagger/{policy}`: the hook type from `metadata.hook`,
/// else `rollout` (a failed check only on rollback).
pub(super) async fn flagger_default(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(policy): Path<String>,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    let body: FlaggerBody = parse_json(&bytes)?;
    let hook = body
        .metadata
        .get("hook")
        .cloned()
        .unwrap_or_else(|| "rollout".into());
    let kind: Hook = hook
        .parse()
        .map_err(|e: ApiError| e.field("metadata.hook"))?;
    flagger(state, caller, policy, kind, &hook, &bytes).await
}

async fn flagger(
    state: AppState,
    caller: Caller,
    policy: String,
    hook: Hook,
    hook_name: &str,
    bytes: &[u8],
) -> Result<Response, ApiError> {
    let body: FlaggerBody = parse_json(bytes)?;
    let token_id = flagger_caller(&state, caller, &body.metadata, &policy)?;
    let outcome = async {
        let input = compat_input(&state, &body.metadata, "metadata", Some(&body.name))?;
        let elapsed = parse_elapsed(body.metadata.get("elapsed").map(String::as_str))?;
        let stage = body.metadata.get("stage").cloned();
        run_evaluation(
            &state,
            Job {
                policy: policy.clone(),
                stage,
                elapsed,
                input,
                advance_state: !hook.read_only(),
                schedule: Schedule::Caller,
                token_id: Some(token_id),
                idempotency: None,
            },
        )
        .await?
        .fresh()
    }
    .await;
    let d = match outcome {
        Ok(d) => d,
        Err(e) if hook.informational() => {
            tracing::warn!(canary = %esc(&body.name), namespace = %esc(&body.namespace), hook = hook_name, error = %esc(&e.message), "flagger hook not evaluated; answered 200 as Flagger only logs it");
            let msg = serde_json::json!({"evaluated": false, "reason": e.message});
            return Ok((StatusCode::OK, axum::Json(msg)).into_response());
        }
        Err(e) => return Err(e),
    };
    tracing::info!(
        canary = %esc(&body.name),
        namespace = %esc(&body.namespace),
        phase = %esc(&body.phase),
        checksum = %esc(&body.checksum),
        hook = hook_name,
        event = %esc(body.metadata.get("eventType").map_or("", String::as_str)),
        decision = d.decision.as_str(),
        "flagger webhook"
    );
    let mut response = if hook.yes(d.decision) {
        let answer = serde_json::json!({
            "decision": d.decision,
            "reason": d.summary,
            "policy": d.policy,
            "stage": d.stage,
            "score": d.score,
            "hook": hook_name,
        });
        (StatusCode::OK, axum::Json(answer)).into_response()
    } else {
        refusal(hook_name, &d)
    };
    AccessFacts::note(&mut response, |f| f.decision_id = d.decision_id.clone());
    Ok(response)
}

/// `GET /v1/compat/argo/{policy}?stage=…&snapshot_file=…` (or `service=…`).
pub(super) async fn argo_get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(policy): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let token_id = evaluate_caller(caller, &policy)?;
    let input = compat_input(&state, &query, "query", None)?;
    let elapsed = parse_elapsed(query.get("elapsed").map(String::as_str))?;
    argo_answer(
        &state,
        policy,
        query.get("stage").cloned(),
        elapsed,
        input,
        token_id,
    )
    .await
}

/// Evaluates for Argo, which keeps the clock itself, and answers the
/// decision JSON.
async fn argo_answer(
    state: &AppState,
    policy: String,
    stage: Option<String>,
    elapsed: Option<std::time::Duration>,
    input: super::service::Input,
    token_id: String,
) -> Result<Response, ApiError> {
    let d = run_evaluation(
        state,
        Job {
            policy,
            stage,
            elapsed,
            input,
            advance_state: true,
            schedule: Schedule::Caller,
            token_id: Some(token_id),
            idempotency: None,
        },
    )
    .await?
    .fresh()?;
    let mut response = json_response(200, decision_body(&d).into(), false);
    AccessFacts::note(&mut response, |f| f.decision_id = d.decision_id.clone());
    Ok(response)
}

/// The body of `POST`/`PUT /v1/compat/argo/{policy}`.
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

/// `POST`/`PUT /v1/compat/argo/{policy}`: the decision as JSON for an
/// AnalysisTemplate's `successCondition`, e.g. `result == "promote"` with
/// `jsonPath: "{$.decision}"`.
pub(super) async fn argo_post(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(policy): Path<String>,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    let token_id = evaluate_caller(caller, &policy)?;
    let body: ArgoBody = parse_json(&bytes)?;
    let input = source_fields!(body).input(&state, "")?;
    let elapsed = parse_elapsed(body.elapsed.as_deref())?;
    argo_answer(&state, policy, body.stage, elapsed, input, token_id).await
}

/// 401/403 unless the caller's token may evaluate `policy`.
/// Checks that the caller may evaluate `policy`; returns its token id.
pub(super) fn evaluate_caller(caller: Caller, policy: &str) -> Result<String, ApiError> {
    match caller {
        Caller::Token(g) => {
            g.check_evaluate(policy)?;
            Ok(g.id)
        }
        Caller::Unauthenticated => Err(ApiError::unauthorized()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hook_answers_with_the_semantics_flagger_gives_it() {
        use Outcome::{Hold, Promote, Rollback};
        let table = [
            ("confirm-rollout", [true, false, false]),
            ("confirm-traffic-increase", [true, false, false]),
            ("confirm-promotion", [true, false, false]),
            ("pre-rollout", [true, true, false]),
            ("rollout", [true, true, false]),
            ("rollback", [false, false, true]),
            ("post-rollout", [true, true, true]),
            ("event", [true, true, true]),
        ];
        for (name, expected) in table {
            let hook: Hook = name.parse().unwrap();
            let got = [Promote, Hold, Rollback].map(|o| hook.yes(o));
            assert_eq!(got, expected, "{name}");
        }
        assert!("deploy".parse::<Hook>().is_err());
    }
}
