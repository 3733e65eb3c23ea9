//! OpenTelemetry spans, checked with the in-memory exporter. A binary of its
//! own: `tracing` caches callsite interest process-wide, so spans recorded
//! under a scoped subscriber must not share a process with tests that run
//! without one.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use tollgate::engine::Runtime;
use tollgate::server::{AppState, ServerConfig, Tokens, app};
use tower::ServiceExt;

const READER: &str = "reader-token-0123456789";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

async fn call(state: &AppState, body: Vec<u8>) -> StatusCode {
    let req = Request::post("/v1/evaluate")
        .header("authorization", format!("Bearer {READER}"))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    app(state.clone()).oneshot(req).await.unwrap().status()
}

#[test]
fn spans_cover_the_request_evaluation_and_each_gate() {
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing_subscriber::layer::SubscriberExt;
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber =
        tracing_subscriber::registry().with(tollgate::server::telemetry::otel_layer(&provider));
    let runtime = Runtime::new()
        .unwrap()
        .with_cache_dir(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache"));
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn tollgate::store::Store> =
        Arc::new(tollgate::store::sqlite::SqliteStore::open(&dir.path().join("log.db")).unwrap());
    let s = AppState::new(
        ServerConfig::default(),
        Arc::new(runtime),
        Tokens::from_plain(&[(READER.into(), false)]),
        Arc::clone(&store),
    )
    .unwrap();
    let snapshot: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("tests/fixtures/canary-error-spike.json")).unwrap(),
    )
    .unwrap();
    let body = json!({"policy": "canary", "stage": "initial-canary", "snapshot": snapshot})
        .to_string()
        .into_bytes();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        rt.block_on(async {
            let status = call(&s, body).await;
            assert_eq!(status, StatusCode::OK);
        });
    });
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let attr = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert!(names.contains(&"request"), "{names:?}");
    let eval = spans.iter().find(|s| s.name == "evaluate").unwrap();
    assert_eq!(attr(eval, "decision").as_deref(), Some("rollback"));
    let gates: Vec<_> = spans.iter().filter(|s| s.name == "gate").collect();
    assert_eq!(gates.len(), 2);
    assert!(
        gates
            .iter()
            .all(|g| attr(g, "plugin").as_deref() == Some("threshold"))
    );
    assert!(
        gates
            .iter()
            .any(|g| attr(g, "verdict").as_deref() == Some("fail"))
    );
    assert!(gates.iter().all(|g| attr(g, "duration_us").is_some()));
    assert!(
        gates
            .iter()
            .all(|g| g.parent_span_id == eval.span_context.span_id())
    );
    assert_eq!(spans.iter().filter(|s| s.name == "trigger").count(), 5);
    // The logged decision leads to its trace.
    let record = rt.block_on(async {
        let page = store
            .list(&tollgate::store::Filter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(page.len(), 1);
        store.decision(&page[0].decision_id).await.unwrap().unwrap()
    });
    assert_eq!(
        record.trace_id.as_deref(),
        Some(eval.span_context.trace_id().to_string().as_str())
    );
    assert_eq!(
        record.token_id.as_deref().map(|t| t.starts_with("tok_")),
        Some(true)
    );
}
