//! The router driven in-process with `oneshot`: auth, errors, idempotency,
//! listing, metrics, OpenAPI conformance, saturation, reload, and spans.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tollgate::engine::Runtime;
use tollgate::server::{AppState, ServerConfig, Tokens, app};
use tower::ServiceExt;

use crate::support::{cache_dir, repo, write};

pub const READER: &str = "reader-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

pub fn runtime() -> Arc<Runtime> {
    static RT: OnceLock<Arc<Runtime>> = OnceLock::new();
    Arc::clone(RT.get_or_init(|| Arc::new(Runtime::new().unwrap().with_cache_dir(cache_dir()))))
}

/// Trigger state and idempotency keys in memory: these tests are about the
/// router, not the log (`decision_log.rs` tests the stores).
pub fn memory_store() -> Arc<dyn tollgate::store::Store> {
    Arc::new(tollgate::store::memory::MemoryStore::default())
}

pub fn state_with(config: ServerConfig) -> AppState {
    let tokens = Tokens::from_plain(&[(READER.into(), false), (ADMIN.into(), true)]);
    AppState::new(config, runtime(), tokens, memory_store()).unwrap()
}

fn state() -> AppState {
    state_with(ServerConfig::default())
}

pub async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(body.map(Body::from).unwrap_or_else(Body::empty))
        .unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap()
        .to_vec();
    (parts.status, parts.headers, bytes)
}

pub fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

pub fn snapshot(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo(&format!("tests/fixtures/{name}"))).unwrap())
        .unwrap()
}

fn request(policy: &str, stage: &str, snap: &str) -> Vec<u8> {
    json!({"policy": policy, "stage": stage, "snapshot": snapshot(snap)})
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn health_is_open_but_everything_else_needs_a_token() {
    let s = state();
    assert_eq!(
        call(&s, "GET", "/healthz", None, None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&s, "GET", "/readyz", None, None).await.0,
        StatusCode::OK
    );
    for (token, expected) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("wrong-token-0123456789"), StatusCode::UNAUTHORIZED),
        (Some(READER), StatusCode::OK),
    ] {
        let (status, _, body) = call(&s, "GET", "/v1/policies", token, None).await;
        assert_eq!(status, expected);
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(
                json_of(&body),
                json!({"error": {"code": "unauthorized", "message": "missing or invalid bearer token", "field": null}})
            );
        }
    }
    // A reader may not reload: a valid token without the scope is a 403.
    let (status, _, body) = call(&s, "POST", "/v1/admin/reload", Some(READER), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(json_of(&body)["error"]["message"], "not an admin token");
}

#[tokio::test]
async fn a_rollback_is_a_200_with_a_decision_id() {
    let s = state();
    let (status, _, body) = call(
        &s,
        "POST",
        "/v1/evaluate",
        Some(READER),
        Some(request(
            "canary",
            "initial-canary",
            "canary-error-spike.json",
        )),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let d = json_of(&body);
    assert_eq!(d["decision"], "rollback");
    assert_eq!(d["decision_id"].as_str().unwrap().len(), 36);
    assert!(d["summary"].as_str().unwrap().contains("error-rate-spike"));
}

#[tokio::test]
async fn bad_input_gets_4xx_naming_the_field() {
    let s = state();
    let cases: Vec<(Vec<u8>, StatusCode, &str, Option<&str>)> = vec![
        (b"{not json".to_vec(), StatusCode::BAD_REQUEST, "malformed_json", None),
        (b"{".to_vec(), StatusCode::BAD_REQUEST, "malformed_json", None),
        (b" [\"canary\"]".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", None),
        (b"42".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", None),
        (json!({"snapshot": snapshot("canary-steady.json")}).to_string().into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", Some("policy")),
        (json!({"policy": "canary", "snapshot": "{"}).to_string().into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_snapshot", Some("snapshot")),
        (json!({"policy": "nope", "snapshot": snapshot("canary-steady.json")}).to_string().into_bytes(), StatusCode::NOT_FOUND, "unknown_policy", Some("policy")),
        (json!({"policy": "canary", "stage": "half", "snapshot": snapshot("canary-steady.json")}).to_string().into_bytes(), StatusCode::NOT_FOUND, "unknown_stage", Some("stage")),
        (json!({"policy": "canary", "snapshot": {"service": "s", "version": "1", "taken_at": 1, "metrics": [{"name": "e", "points": [[1, "x"]]}]}}).to_string().into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY, "invalid_snapshot", Some("snapshot.metrics[0].points[0]")),
        (json!({"policy": "canary", "snapshot": {}, "extra": 1}).to_string().into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", Some("extra")),
        (json!({"policy": "canary", "elapsed": "soon", "snapshot": snapshot("canary-steady.json")}).to_string().into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", Some("elapsed")),
    ];
    for (body, status, code, field) in cases {
        let (got, _, resp) = call(&s, "POST", "/v1/evaluate", Some(READER), Some(body)).await;
        let err = json_of(&resp);
        assert_eq!(got, status, "{err}");
        assert_eq!(err["error"]["code"], code, "{err}");
        assert_eq!(err["error"]["field"], json!(field), "{err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(!message.is_empty());
        assert!(
            !message.contains("struct"),
            "names an internal type: {message}"
        );
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let s = state();
    let big = vec![b' '; 5 << 20];
    let (status, _, body) = call(&s, "POST", "/v1/evaluate", Some(READER), Some(big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json_of(&body)["error"]["code"], "body_too_large");
}

#[tokio::test]
async fn idempotent_retries_return_the_same_decision_and_conflicts_are_422() {
    let s = state();
    let body = request("canary", "initial-canary", "canary-steady.json");
    let send = |b: Vec<u8>| {
        let s = s.clone();
        async move {
            let req = Request::post("/v1/evaluate")
                .header("authorization", format!("Bearer {READER}"))
                .header("content-type", "application/json")
                .header("idempotency-key", "deploy-42")
                .body(Body::from(b))
                .unwrap();
            let resp = app(s).oneshot(req).await.unwrap();
            let status = resp.status();
            let replayed = resp.headers().contains_key("idempotent-replayed");
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, replayed, json_of(&bytes))
        }
    };
    let (s1, r1, first) = send(body.clone()).await;
    let (s2, r2, second) = send(body.clone()).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert!(!r1 && r2);
    assert_eq!(first["decision_id"], second["decision_id"]);
    assert_eq!(first, second);
    let other = request("canary", "initial-canary", "canary-error-spike.json");
    let (s3, _, err) = send(other).await;
    assert_eq!(s3, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["code"], "idempotency_conflict");
}

#[tokio::test]
async fn policies_and_plugins_are_listed_with_digests() {
    let s = state();
    let (_, _, body) = call(&s, "GET", "/v1/policies", Some(READER), None).await;
    let list = json_of(&body);
    let names: Vec<&str> = list["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "canary",
            "ci-pipeline",
            "ci-quality-gates",
            "ci-reports",
            "environment-promotion",
            "feature-release",
            "hotfix",
            "release-version",
            "scheduled-release",
        ]
    );
    let (status, _, body) = call(&s, "GET", "/v1/policies/canary", Some(READER), None).await;
    assert_eq!(status, StatusCode::OK);
    let canary = json_of(&body);
    assert_eq!(canary["stages"][0]["traffic_percent"], 5);
    assert!(canary["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(
        call(&s, "GET", "/v1/policies/nope", Some(READER), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (_, _, body) = call(&s, "GET", "/v1/plugins", Some(READER), None).await;
    let plugins = json_of(&body);
    let breaker = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["plugin"] == "circuit-breaker")
        .unwrap();
    assert_eq!(breaker["world"], "trigger");
    assert_eq!(breaker["wit_version"], "0.1.2");
    assert!(
        breaker["imports"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i.as_str().unwrap().starts_with("tollgate:plugin/"))
    );
    assert_eq!(breaker["limits"]["default_memory_bytes"], 16 << 20);
}

#[tokio::test]
async fn metrics_count_evaluations_verdicts_and_latency() {
    let s = state();
    call(
        &s,
        "POST",
        "/v1/evaluate",
        Some(READER),
        Some(request(
            "canary",
            "initial-canary",
            "canary-error-spike.json",
        )),
    )
    .await;
    let (status, headers, body) = call(&s, "GET", "/metrics", Some(READER), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .contains("openmetrics-text")
    );
    let text = String::from_utf8(body).unwrap();
    for needle in [
        "tollgate_evaluations_total{policy=\"canary\",decision=\"rollback\"} 1",
        "tollgate_gate_verdicts_total{plugin=\"threshold\",verdict=\"fail\"} 1",
        "tollgate_evaluation_duration_seconds_count 1",
        "tollgate_requests_in_flight",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
}

/// Checks `value` against an OpenAPI 3.1 schema: `$ref`, `type`, `enum`,
/// `const`, `required`, `properties`, `additionalProperties` and `items`.
pub(crate) fn assert_conforms(
    doc: &Value,
    route: &str,
    method: &str,
    status: StatusCode,
    body: &[u8],
) {
    let response = &doc["paths"][route][method]["responses"][status.as_str()];
    assert!(
        !response.is_null(),
        "{method} {route} documents no {status}"
    );
    if !response["content"]["text/plain"].is_null() {
        assert!(
            std::str::from_utf8(body).is_ok(),
            "{method} {route} {status}: not text"
        );
        return;
    }
    let schema = &response["content"]["application/json"]["schema"];
    let errors = crate::support::schema_errors(doc, schema, &json_of(body));
    assert!(errors.is_empty(), "{method} {route} {status}: {errors:#?}");
}

#[tokio::test]
async fn responses_conform_to_the_openapi_document() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn tollgate::store::Store> =
        Arc::new(tollgate::store::sqlite::SqliteStore::open(&dir.path().join("log.db")).unwrap());
    let tokens = Tokens::from_plain(&[(READER.into(), false), (ADMIN.into(), true)]);
    let s = AppState::new(ServerConfig::default(), runtime(), tokens, store).unwrap();
    let (status, _, body) = call(&s, "GET", "/openapi.json", Some(READER), None).await;
    assert_eq!(status, StatusCode::OK);
    let doc = json_of(&body);
    assert_eq!(doc["openapi"], "3.1.0");
    type Check<'a> = (&'a str, &'a str, &'a str, Option<Vec<u8>>, Option<&'a str>);
    let checks: Vec<Check> = vec![
        ("/v1/evaluate", "post", "/v1/evaluate", Some(request("canary", "initial-canary", "canary-error-spike.json")), Some(READER)),
        ("/v1/evaluate", "post", "/v1/evaluate", Some(request("release-version", "release", "canary-steady.json")), Some(READER)),
        ("/v1/evaluate", "post", "/v1/evaluate", Some(b"{".to_vec()), Some(READER)),
        ("/v1/evaluate", "post", "/v1/evaluate", None, None),
        ("/v1/policies", "get", "/v1/policies", None, Some(READER)),
        ("/v1/policies/{name}", "get", "/v1/policies/hotfix", None, Some(READER)),
        ("/v1/policies/{name}", "get", "/v1/policies/none", None, Some(READER)),
        ("/v1/plugins", "get", "/v1/plugins", None, Some(READER)),
        ("/healthz", "get", "/healthz", None, None),
        ("/readyz", "get", "/readyz", None, None),
        ("/v1/admin/reload", "post", "/v1/admin/reload", None, Some(ADMIN)),
        ("/v1/compat/argo/{policy}", "post", "/v1/compat/argo/canary", Some(json!({"stage": "initial-canary", "snapshot": snapshot("canary-steady.json")}).to_string().into_bytes()), Some(READER)),
        ("/v1/compat/flagger/{policy}", "post", "/v1/compat/flagger/canary",
            Some(json!({"name": "podinfo", "namespace": "test", "phase": "Progressing", "metadata": {"stage": "initial-canary", "snapshot": snapshot("canary-error-spike.json").to_string()}}).to_string().into_bytes()), Some(READER)),
        ("/v1/compat/flagger/{policy}/{hook}", "post", "/v1/compat/flagger/canary/confirm-promotion",
            Some(json!({"name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": "x", "metadata": {"stage": "initial-canary", "elapsed": "20m", "snapshot": snapshot("canary-steady.json").to_string()}}).to_string().into_bytes()), Some(READER)),
        ("/v1/compat/flagger/{policy}/{hook}", "post", "/v1/compat/flagger/canary/rollback",
            Some(json!({"name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": "x", "metadata": {"stage": "initial-canary", "elapsed": "20m", "snapshot": snapshot("canary-steady.json").to_string()}}).to_string().into_bytes()), Some(READER)),
        ("/v1/compat/argo/{policy}", "put", "/v1/compat/argo/canary", Some(json!({"stage": "initial-canary", "snapshot": snapshot("canary-steady.json").to_string()}).to_string().into_bytes()), Some(READER)),
        ("/v1/admin/reload", "post", "/v1/admin/reload", None, Some(READER)),
    ];
    for (route, method, uri, body, token) in checks {
        let (status, _, resp) = call(&s, &method.to_uppercase(), uri, token, body).await;
        assert_conforms(&doc, route, method, status, &resp);
    }
    // The decision log's endpoints, over the decisions just made.
    let (_, _, resp) = call(&s, "GET", "/v1/decisions?limit=1", Some(READER), None).await;
    let id = json_of(&resp)["decisions"][0]["decision_id"]
        .as_str()
        .unwrap()
        .to_string();
    let log_checks: Vec<(&str, &str, String)> = vec![
        ("/v1/decisions", "get", "/v1/decisions?limit=2".into()),
        ("/v1/decisions", "get", "/v1/decisions?limit=0".into()),
        ("/v1/decisions/{id}", "get", format!("/v1/decisions/{id}")),
        ("/v1/decisions/{id}", "get", "/v1/decisions/nope".into()),
        (
            "/v1/decisions/{id}/replay",
            "post",
            format!("/v1/decisions/{id}/replay"),
        ),
        (
            "/v1/reports/dora",
            "get",
            "/v1/reports/dora?service=checkout&window=3650d".into(),
        ),
        ("/v1/reports/dora", "get", "/v1/reports/dora".into()),
    ];
    for (route, method, uri) in log_checks {
        let (status, _, resp) = call(&s, &method.to_uppercase(), &uri, Some(READER), None).await;
        assert_conforms(&doc, route, method, status, &resp);
    }
}

#[tokio::test]
async fn flagger_halts_with_412_and_advances_with_200() {
    let s = state();
    let hook = |snap: &str| {
        json!({"name": "podinfo", "namespace": "test", "phase": "Progressing",
        "metadata": {"stage": "initial-canary", "elapsed": "20m", "snapshot": snapshot(snap).to_string()}}).to_string().into_bytes()
    };
    // Healthy first: the spike below opens this replica's circuit breaker,
    // whose state then carries over to later requests for the service.
    let (status, _, body) = call(
        &s,
        "POST",
        "/v1/compat/flagger/canary",
        Some(READER),
        Some(hook("canary-steady.json")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json_of(&body)["decision"], "promote");
    let (status, _, body) = call(
        &s,
        "POST",
        "/v1/compat/flagger/canary",
        Some(READER),
        Some(hook("canary-error-spike.json")),
    )
    .await;
    // The default hook is `rollout`: a rollback is a failed check (412),
    // and Flagger shows the one-line reason it is given.
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.starts_with(
            "tollgate rollout: rollback (canary / initial-canary): trigger `error-rate-spike`"
        ),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1);
    let (status, _, body) = call(
        &s,
        "POST",
        "/v1/compat/flagger/canary",
        Some(READER),
        Some(
            json!({"name": "p", "namespace": "n", "phase": "x", "metadata": {}})
                .to_string()
                .into_bytes(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json_of(&body)["error"]["code"], "missing_snapshot");
    assert_eq!(json_of(&body)["error"]["field"], "metadata.snapshot");
}

#[tokio::test]
async fn argo_reads_snapshot_files_only_inside_the_snapshot_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo("tests/fixtures/canary-steady.json"),
        dir.path().join("steady.json"),
    )
    .unwrap();
    let s = state_with(ServerConfig {
        snapshot_dir: Some(dir.path().to_path_buf()),
        ..ServerConfig::default()
    });
    let (status, _, body) = call(
        &s,
        "GET",
        "/v1/compat/argo/canary?stage=expanded-canary&snapshot_file=steady.json&elapsed=40m",
        Some(READER),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_of(&body)["decision"], "promote");
    let (status, _, body) = call(
        &s,
        "GET",
        "/v1/compat/argo/canary?snapshot_file=../../etc/passwd",
        Some(READER),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json_of(&body)["error"]["field"], "query.snapshot_file");
}

/// A policy directory whose one policy runs a gate that spins for `deadline`.
pub fn slow_policy_dir(dir: &Path, deadline: &str) {
    write(
        dir,
        "spin.wasm",
        &crate::hostile::component_for("infinite-loop", &repo("wit")),
    );
    let text = format!(
        "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {{name: slow}}\nplugins:\n  spin: {{path: spin.wasm}}\nstages:\n  - name: s\n    gates:\n      - name: spin\n        plugin: spin\n        on_error: ignore\n        deadline: {deadline}\n      - name: ok\n        plugin: threshold\n        on_no_data: pass\n        with: {{metric: x, op: '<', threshold: 1}}\n"
    );
    write(dir, "slow.yaml", text.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_server_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    slow_policy_dir(dir.path(), "1s");
    let s = state_with(ServerConfig {
        policies: Some(dir.path().to_path_buf()),
        max_concurrency: 1,
        ..ServerConfig::default()
    });
    let body = json!({"policy": "slow", "snapshot": snapshot("canary-steady.json")})
        .to_string()
        .into_bytes();
    let slow = tokio::spawn({
        let s = s.clone();
        let body = body.clone();
        async move { call(&s, "POST", "/v1/evaluate", Some(READER), Some(body)).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, headers, err) = call(&s, "POST", "/v1/evaluate", Some(READER), Some(body)).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        String::from_utf8_lossy(&err)
    );
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(json_of(&err)["error"]["code"], "overloaded");
    let (status, _, done) = slow.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_of(&done)["gates"][0]["verdict"], "error");
}

#[tokio::test]
async fn reload_swaps_a_valid_set_and_keeps_the_old_one_on_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo("policies/hotfix.yaml"), dir.path().join("hotfix.yaml")).unwrap();
    let s = state_with(ServerConfig {
        policies: Some(dir.path().to_path_buf()),
        ..ServerConfig::default()
    });
    assert_eq!(s.policies().len(), 1);
    std::fs::copy(repo("policies/canary.yaml"), dir.path().join("canary.yaml")).unwrap();
    let (status, _, body) = call(&s, "POST", "/v1/admin/reload", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_of(&body)["policies"], json!(["canary", "hotfix"]));
    write(
        dir.path(),
        "broken.yaml",
        b"apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: broken}\nstages: []\n",
    );
    let (status, _, body) = call(&s, "POST", "/v1/admin/reload", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let msg = json_of(&body)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("broken.yaml") && msg.contains("previous policies keep serving"),
        "{msg}"
    );
    assert_eq!(s.policies().len(), 2, "the old set keeps serving");
    let (status, _, _) = call(
        &s,
        "POST",
        "/v1/evaluate",
        Some(READER),
        Some(request("canary", "initial-canary", "canary-steady.json")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_using_its_whole_deadline_is_a_verdict_not_a_5xx() {
    let dir = tempfile::tempdir().unwrap();
    slow_policy_dir(dir.path(), "1s");
    let s = state_with(ServerConfig {
        policies: Some(dir.path().to_path_buf()),
        request_timeout: std::time::Duration::from_millis(300),
        ..ServerConfig::default()
    });
    let body = json!({"policy": "slow", "snapshot": snapshot("canary-steady.json")})
        .to_string()
        .into_bytes();
    let (status, _, resp) = call(&s, "POST", "/v1/evaluate", Some(READER), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&resp));
    let d = json_of(&resp);
    assert_eq!(d["gates"][0]["verdict"], "error");
    assert_eq!(d["gates"][0]["cause"], "deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_policy_does_not_starve_another() {
    let dir = tempfile::tempdir().unwrap();
    slow_policy_dir(dir.path(), "1s");
    std::fs::copy(repo("policies/canary.yaml"), dir.path().join("canary.yaml")).unwrap();
    let s = state_with(ServerConfig {
        policies: Some(dir.path().to_path_buf()),
        workers: 2,
        policy_workers: 1,
        ..ServerConfig::default()
    });
    let slow_body = json!({"policy": "slow", "snapshot": snapshot("canary-steady.json")})
        .to_string()
        .into_bytes();
    let slow: Vec<_> = (0..3)
        .map(|_| {
            let s = s.clone();
            let body = slow_body.clone();
            tokio::spawn(
                async move { call(&s, "POST", "/v1/evaluate", Some(READER), Some(body)).await },
            )
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let (status, _, _) = call(
        &s,
        "POST",
        "/v1/evaluate",
        Some(READER),
        Some(request("canary", "initial-canary", "canary-steady.json")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // The slow policy holds one worker at a time (three run one after
    // another, about 3 s); the canary request takes the other at once.
    assert!(
        started.elapsed() < std::time::Duration::from_millis(900),
        "waited {:?} behind the slow policy",
        started.elapsed()
    );
    assert!(!slow.iter().all(tokio::task::JoinHandle::is_finished));
    for h in slow {
        assert_eq!(h.await.unwrap().0, StatusCode::OK);
    }
}

#[tokio::test]
async fn plugins_in_the_plugin_directory_serve_every_policy_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    write(
        &plugins,
        "always-pass.wasm",
        &crate::hostile::component_for("well-behaved", &repo("wit")),
    );
    write(
        dir.path(),
        "p.yaml",
        b"apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: custom}\nstages:\n  - name: s\n    gates:\n      - name: g\n        plugin: always-pass\n",
    );
    let s = state_with(ServerConfig {
        policies: Some(dir.path().to_path_buf()),
        plugins: Some(plugins),
        ..ServerConfig::default()
    });
    let body = json!({"policy": "custom", "snapshot": snapshot("canary-steady.json")})
        .to_string()
        .into_bytes();
    let (status, _, resp) = call(&s, "POST", "/v1/evaluate", Some(READER), Some(body)).await;
    assert_eq!(status, StatusCode::OK);
    let d = json_of(&resp);
    assert_eq!(d["decision"], "promote");
    assert_eq!(d["gates"][0]["plugin"], "always-pass");
    let (_, _, listed) = call(&s, "GET", "/v1/plugins", Some(READER), None).await;
    assert!(
        json_of(&listed)["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["plugin"] == "always-pass" && p["used_by"] == json!(["custom"]))
    );
}

#[tokio::test]
async fn an_unknown_policy_names_the_closest_and_lists_the_policies() {
    let s = state();
    let body = json!({"policy": "canry", "snapshot": snapshot("canary-steady.json")});
    let (status, _, bytes) = call(
        &s,
        "POST",
        "/v1/evaluate",
        Some(READER),
        Some(body.to_string().into_bytes()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let message = json_of(&bytes)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.starts_with(
            "unknown policy `canry`; did you mean `canary`? policies: canary, ci-pipeline"
        ),
        "{message}"
    );
    let (status, _, bytes) = call(&s, "GET", "/v1/policies/hotfx", Some(READER), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&bytes).contains("did you mean `hotfix`?"));
}
