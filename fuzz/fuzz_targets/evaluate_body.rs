//! `POST /v1/evaluate` bodies through the real router and the bundled
//! policies: every body gets a response, 2xx with a decision or 4xx with the
//! error shape, never a panic or a 5xx.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt as _;

fn app() -> &'static (tokio::runtime::Runtime, axum::Router) {
    static APP: OnceLock<(tokio::runtime::Runtime, axum::Router)> = OnceLock::new();
    APP.get_or_init(|| {
        let runtime = Arc::new(
            tollgate::engine::Runtime::with_slots(8)
                .expect("engine")
                .with_cache_dir(std::env::temp_dir().join("tollgate-fuzz-cache")),
        );
        let state = tollgate::server::AppState::new(
            tollgate::server::ServerConfig::default(),
            runtime,
            tollgate::server::Tokens::disabled(),
            Arc::new(tollgate::store::memory::MemoryStore::default()),
        )
        .expect("bundled policies load");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio");
        (rt, tollgate::server::app(state))
    })
}

fuzz_target!(|data: &[u8]| {
    let (rt, router) = app();
    let request = Request::post("/v1/evaluate")
        .header("content-type", "application/json")
        .body(Body::from(data.to_vec()))
        .expect("request");
    let response = rt
        .block_on(router.clone().oneshot(request))
        .expect("infallible");
    let status = response.status();
    assert!(
        status.is_success() || status.is_client_error(),
        "status {status} for body {:?}",
        String::from_utf8_lossy(data)
    );
});
