//! Flagger's webhooks as Flagger sends them: the body is Go's
//! `encoding/json` of `CanaryWebhookPayload` (fields in struct order, map
//! keys sorted, `<`, `>` and `&` escaped as `\u003c`…), with no headers but
//! `Content-Type`. Each hook type gets the answer Flagger acts on.

use axum::http::StatusCode;
use serde_json::json;
use tollgate::server::{AppState, ServerConfig, Tokens};

use crate::server_router::{READER, call, json_of, snapshot, state_with};
use crate::support::write;

/// A JSON string as Go's `encoding/json` writes it.
fn go_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `CanaryWebhookPayload` as Flagger marshals it.
fn payload(name: &str, phase: &str, metadata: &[(&str, &str)]) -> Vec<u8> {
    let mut meta: Vec<(&str, &str)> = metadata.to_vec();
    meta.sort();
    let mut body = format!(
        "{{\"name\":{},\"namespace\":\"test\",\"phase\":{},\"checksum\":\"6c5b8ff5d9\"",
        go_string(name),
        go_string(phase)
    );
    if !meta.is_empty() {
        let fields: Vec<String> = meta
            .iter()
            .map(|(k, v)| format!("{}:{}", go_string(k), go_string(v)))
            .collect();
        body.push_str(&format!(",\"metadata\":{{{}}}", fields.join(",")));
    }
    body.push('}');
    body.into_bytes()
}

/// The metadata a Canary's webhook would carry: the stage, time in it, and
/// the snapshot as JSON text.
fn hook_metadata(snap: &str) -> (String, String) {
    // A description with `<`, `>` and `&` makes Go escape them.
    let mut s = snapshot(snap);
    s["attributes"] = json!({"note": "p95 < 500 & errors > 0"});
    (s.to_string(), "20m".into())
}

async fn send(
    state: &AppState,
    hook: &str,
    snap: &str,
    token: Option<&str>,
) -> (StatusCode, Vec<u8>) {
    let (snapshot, elapsed) = hook_metadata(snap);
    let body = payload(
        "podinfo",
        "Progressing",
        &[
            ("stage", "initial-canary"),
            ("elapsed", &elapsed),
            ("snapshot", &snapshot),
        ],
    );
    let uri = format!("/v1/compat/flagger/canary/{hook}");
    let (status, _, body) = call(state, "POST", &uri, token, Some(body)).await;
    (status, body)
}

#[tokio::test]
async fn each_hook_type_answers_as_flagger_reads_it() {
    let table = [
        ("confirm-rollout", [200, 412, 412]),
        ("confirm-traffic-increase", [200, 412, 412]),
        ("confirm-promotion", [200, 412, 412]),
        ("pre-rollout", [200, 200, 412]),
        ("rollout", [200, 200, 412]),
        ("rollback", [412, 412, 200]),
        ("post-rollout", [200, 200, 200]),
        ("event", [200, 200, 200]),
    ];
    let snaps = [
        "canary-steady.json",
        "canary-conversion-drop.json",
        "canary-error-spike.json",
    ];
    for (hook, expected) in table {
        // A fresh replica per hook: a spike opens the circuit breaker.
        let s = state_with(ServerConfig::default());
        for (snap, want) in snaps.iter().zip(expected) {
            let (status, body) = send(&s, hook, snap, Some(READER)).await;
            assert_eq!(
                status.as_u16(),
                want,
                "{hook} over {snap}: {}",
                String::from_utf8_lossy(&body)
            );
            if want == 412 {
                // Flagger shows this body: the decision's one-line summary.
                let text = String::from_utf8(body).unwrap();
                assert!(text.starts_with(&format!("tollgate {hook}: ")), "{text}");
                assert_eq!(text.lines().count(), 1, "{text}");
            } else {
                assert_eq!(json_of(&body)["hook"], hook);
            }
        }
    }
}

#[tokio::test]
async fn the_rollback_hook_is_idempotent() {
    let s = state_with(ServerConfig::default());
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(send(&s, "rollback", "canary-steady.json", Some(READER)).await);
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(answers[0].0, StatusCode::PRECONDITION_FAILED);
}

#[tokio::test]
async fn an_event_hook_is_logged_and_answered_200_even_without_a_snapshot() {
    let s = state_with(ServerConfig::default());
    let body = payload(
        "podinfo",
        "Progressing",
        &[
            ("eventMessage", "Advance podinfo.test canary weight 10"),
            ("eventType", "Normal"),
            ("timestamp", "1764237600123"),
        ],
    );
    let (status, _, resp) = call(
        &s,
        "POST",
        "/v1/compat/flagger/canary/event",
        Some(READER),
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&resp));
    assert_eq!(json_of(&resp)["evaluated"], false);
}

#[tokio::test]
async fn flagger_authenticates_with_a_token_in_its_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "tokens",
        b"flagger-token-0123456789 evaluate:canary\nother-token-0123456789 evaluate:hotfix\n",
    );
    let s = AppState::new(
        ServerConfig::default(),
        crate::server_router::runtime(),
        Tokens::from_file(&file).unwrap(),
        crate::server_router::memory_store(),
    )
    .unwrap();
    let (snapshot, elapsed) = hook_metadata("canary-steady.json");
    let with = |token: &str| {
        payload(
            "podinfo",
            "Progressing",
            &[
                ("stage", "initial-canary"),
                ("elapsed", &elapsed),
                ("snapshot", &snapshot),
                ("token", token),
            ],
        )
    };
    let uri = "/v1/compat/flagger/canary/rollout";
    let (status, _, body) = call(
        &s,
        "POST",
        uri,
        None,
        Some(with("flagger-token-0123456789")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(!String::from_utf8_lossy(&body).contains("flagger-token"));
    let (status, _, body) = call(&s, "POST", uri, None, Some(with("wrong-token-0123456789"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!String::from_utf8_lossy(&body).contains("wrong-token"));
    let (status, _, _) = call(&s, "POST", uri, None, Some(with("other-token-0123456789"))).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a token scoped to another policy"
    );
    let (status, _, _) = call(
        &s,
        "POST",
        uri,
        None,
        Some(payload(
            "podinfo",
            "Progressing",
            &[("stage", "initial-canary")],
        )),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no token at all");
    // Everything but Flagger's route still needs the header.
    let (status, _, _) = call(&s, "GET", "/v1/policies", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn insecure_mode_opens_evaluate_and_read_but_not_admin() {
    let s = AppState::new(
        ServerConfig::default(),
        crate::server_router::runtime(),
        Tokens::disabled(),
        crate::server_router::memory_store(),
    )
    .unwrap();
    assert_eq!(
        call(&s, "GET", "/v1/policies", None, None).await.0,
        StatusCode::OK
    );
    let (status, body) = send(&s, "rollout", "canary-steady.json", None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = call(&s, "POST", "/v1/admin/reload", None, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&body).contains("admin endpoints are off"));
}

#[tokio::test]
async fn an_unknown_hook_type_is_a_404_naming_the_known_ones() {
    let s = state_with(ServerConfig::default());
    let (status, body) = send(&s, "deploy", "canary-steady.json", Some(READER)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        json_of(&body)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("confirm-rollout")
    );
}

#[tokio::test]
async fn argo_accepts_put_json_text_snapshots_and_snapshot_files_in_bodies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        crate::support::repo("tests/fixtures/canary-error-spike.json"),
        dir.path().join("spike.json"),
    )
    .unwrap();
    let s = state_with(ServerConfig {
        snapshot_dir: Some(dir.path().to_path_buf()),
        ..ServerConfig::default()
    });
    // An Argo argument templated into `jsonBody` arrives as a JSON string.
    let text =
        json!({"stage": "initial-canary", "snapshot": snapshot("canary-steady.json").to_string()});
    let (status, _, body) = call(
        &s,
        "PUT",
        "/v1/compat/argo/canary",
        Some(READER),
        Some(text.to_string().into_bytes()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json_of(&body)["decision"], "promote");
    let file = json!({"stage": "initial-canary", "snapshot_file": "spike.json"});
    let (status, _, body) = call(
        &s,
        "POST",
        "/v1/compat/argo/canary",
        Some(READER),
        Some(file.to_string().into_bytes()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json_of(&body)["decision"], "rollback");
}

/// Flagger sends no version of its own: the decision names the one the
/// Canary's webhook metadata gives, else the checksum of the revision
/// Flagger rolls out, so the log never holds `"version": ""`.
#[test]
fn a_flagger_decision_is_logged_with_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write(dir.path(), "tokens", format!("{READER}\n").as_bytes());
    let server = crate::support::Server::start(&["--tokens-file", tokens.to_str().unwrap()]);
    let mut snap = snapshot("canary-steady.json");
    snap["version"] = json!("");
    let snap = snap.to_string();
    for version in [None, Some("2.2.0")] {
        // As Flagger sends it: no header but Content-Type, the token in
        // the metadata.
        let mut metadata = vec![
            ("stage", "initial-canary"),
            ("snapshot", snap.as_str()),
            ("token", READER),
        ];
        metadata.extend(version.map(|v| ("version", v)));
        let r = server.request(
            "POST",
            "/v1/compat/flagger/canary/rollout",
            &[("Content-Type", "application/json")],
            &payload("podinfo", "Progressing", &metadata),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let auth = format!("Bearer {READER}");
    let page = server
        .request(
            "GET",
            "/v1/decisions",
            &[("Authorization", auth.as_str())],
            b"",
        )
        .json();
    let mut versions: Vec<&str> = page["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["version"].as_str().unwrap())
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, ["2.2.0", "6c5b8ff5d9"], "{page}");
}
