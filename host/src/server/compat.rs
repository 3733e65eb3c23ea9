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
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::access::AccessFacts;
use super::auth::{Caller, Grant};
use super::extract::{
    RawBody, Scope, compat_input, parse_elapsed, parse_json, source_fields, unique_query,
};
use super::respond::{decision_body, json_response};
use super::service::{Input, Job, run_evaluation};
use super::{ApiError, AppState};
use crate::evaluate::Schedule;
use crate::evaluate::decision::{Decision, Outcome};

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
                        crate::base::text::shown(other)
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
        crate::base::text::escape_control(&line).into_owned(),
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
/// constant time like a header token, never logged, and held to the same
/// evaluate rate. `token_id` is set as soon as the token is known, for the
/// access log.
fn flagger_caller(
    state: &AppState,
    caller: Caller,
    metadata: &BTreeMap<String, String>,
    policy: &str,
    token_id: &mut Option<String>,
) -> Result<Grant, ApiError> {
    let grant = match caller {
        Caller::Token(g) => g,
        Caller::Unauthenticated => {
            let g = metadata
                .get("token")
                .and_then(|t| state.tokens().lookup(t))
                .ok_or_else(|| ApiError::unauthorized().field("metadata.token"))?;
            *token_id = Some(g.id.clone());
            if !g.may_evaluate_any() {
                return Err(ApiError::forbidden("this token may not evaluate"));
            }
            state.inner.limits.evaluate(&g.id)?;
            g
        }
    };
    grant.check_evaluate(policy)?;
    Ok(grant)
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

/// Answers one Flagger hook; the access log names the token, even one
/// from `metadata.token`.
async fn flagger(
    state: AppState,
    caller: Caller,
    policy: String,
    hook: Hook,
    hook_name: &str,
    bytes: &[u8],
) -> Result<Response, ApiError> {
    let mut token_id = None;
    let mut response =
        match answer_flagger(state, caller, policy, hook, hook_name, bytes, &mut token_id).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        };
    if token_id.is_some() {
        AccessFacts::note(&mut response, |f| f.token = token_id);
    }
    Ok(response)
}

async fn answer_flagger(
    state: AppState,
    caller: Caller,
    policy: String,
    hook: Hook,
    hook_name: &str,
    bytes: &[u8],
    token_id: &mut Option<String>,
) -> Result<Response, ApiError> {
    let body: FlaggerBody = parse_json(bytes)?;
    let grant = flagger_caller(&state, caller, &body.metadata, &policy, token_id)?;
    let outcome = async {
        let scope = Scope {
            grant: &grant,
            policy: &policy,
        };
        let mut input =
            compat_input(&state, &body.metadata, "metadata", Some(&body.name), scope).await?;
        // Flagger sends no version: a snapshot's own, else `metadata.version`,
        // else the checksum of the revision Flagger rolls out names it.
        let (Input::Query { version, .. }
        | Input::Given(crate::snapshot::Snapshot { version, .. })) = &mut input;
        if version.is_empty() {
            let named = body.metadata.get("version").filter(|v| !v.is_empty());
            version.clone_from(named.unwrap_or(&body.checksum));
        }
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
                token_id: Some(grant.id.clone()),
                grant: grant.clone(),
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
            tracing::warn!(canary = %body.name, namespace = %body.namespace, hook = hook_name, error = %e.message, "flagger hook not evaluated; answered 200 as Flagger only logs it");
            let msg = serde_json::json!({"evaluated": false, "reason": e.message});
            return Ok((StatusCode::OK, axum::Json(msg)).into_response());
        }
        Err(e) => return Err(e),
    };
    tracing::info!(
        canary = %body.name,
        namespace = %body.namespace,
        phase = %body.phase,
        checksum = %body.checksum,
        hook = hook_name,
        event = %body.metadata.get("eventType").map_or("", String::as_str),
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
/// A parameter given twice is a 400.
pub(super) async fn argo_get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(policy): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let grant = caller.evaluate_grant(&policy)?;
    let query = unique_query(query.as_deref(), "query")?;
    let scope = Scope {
        grant: &grant,
        policy: &policy,
    };
    let input = compat_input(&state, &query, "query", None, scope).await?;
    let elapsed = parse_elapsed(query.get("elapsed").map(String::as_str))?;
    argo_answer(
        &state,
        policy,
        query.get("stage").cloned(),
        elapsed,
        input,
        grant,
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
    input: Input,
    grant: Grant,
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
            token_id: Some(grant.id.clone()),
            grant,
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
    let grant = caller.evaluate_grant(&policy)?;
    let body: ArgoBody = parse_json(&bytes)?;
    let scope = Scope {
        grant: &grant,
        policy: &policy,
    };
    let input = source_fields!(body).input(&state, "", scope).await?;
    let elapsed = parse_elapsed(body.elapsed.as_deref())?;
    argo_answer(&state, policy, body.stage, elapsed, input, grant).await
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
