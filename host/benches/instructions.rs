//! The workloads whose instruction counts CI tracks (`scripts/instructions.sh`
//! runs this under callgrind): W1, the CI policy's six gates; W2, the canary
//! policy's stage; and one logged HTTP decision through the router into a
//! SQLite log.
//!
//! `instructions WORKLOAD N` sets the workload up, then runs it N times. The
//! script runs it with N = 0 and with N > 0 and divides the difference, so
//! setup (compiling the plugins, opening the log) never counts, and a count
//! is the same on every run of the same build.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use tollgate::engine::Runtime;
use tollgate::policy::{self, PluginCache};
use tollgate::server::{AppState, ServerConfig, Tokens, app};
use tollgate::snapshot::Snapshot;
use tower::ServiceExt as _;

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("instructions: {e}");
    std::process::exit(2)
}

fn snapshot(file: &str) -> Arc<Snapshot> {
    let bytes = std::fs::read(repo(file)).unwrap_or_else(|e| fail(e));
    Arc::new(Snapshot::from_json(&bytes).unwrap_or_else(|e| fail(e)))
}

/// The runtime, with compiled plugins cached in `TOLLGATE_CACHE_DIR` when
/// set: the script warms the cache first, so setup deserialises instead of
/// compiling, and its count (which the script subtracts) hardly varies.
fn runtime() -> Runtime {
    let runtime = Runtime::new().unwrap_or_else(|e| fail(e));
    match std::env::var_os("TOLLGATE_CACHE_DIR") {
        Some(dir) => runtime.with_cache_dir(dir.into()),
        None => runtime,
    }
}

/// W1 or W2: one in-process evaluation of a bundled policy, N times.
fn evaluate(policy_file: &str, stage: Option<&str>, fixture: &str, n: usize) {
    let runtime = runtime();
    let mut cache = PluginCache::new();
    let text = std::fs::read_to_string(repo(policy_file)).unwrap_or_else(|e| fail(e));
    let loaded =
        policy::load(&runtime, &mut cache, &text, &repo("policies")).unwrap_or_else(|e| fail(e));
    let snapshot = snapshot(fixture);
    for _ in 0..n {
        let decision =
            tollgate::evaluate::evaluate(black_box(&loaded), stage, Arc::clone(&snapshot));
        black_box(decision.unwrap_or_else(|e| fail(e)));
    }
}

/// One logged decision through the router, N times: the request parsed,
/// the CI policy evaluated on a worker, the record committed to SQLite with
/// `synchronous=FULL`, the answer serialised.
fn http(n: usize) {
    let dir = std::env::temp_dir().join(format!("tollgate-instructions-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| fail(e));
    // One async thread, so the count does not depend on which worker
    // polled what; evaluations still run on the blocking pool.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(e));
    let body = {
        let snapshot = std::fs::read_to_string(repo("tests/fixtures/ci-passing.json"))
            .unwrap_or_else(|e| fail(e));
        format!(r#"{{"policy":"ci-quality-gates","snapshot":{snapshot}}}"#)
    };
    rt.block_on(async {
        let spec = format!("sqlite:{}", dir.join("log.db").display());
        let store = tollgate::store::open(&spec)
            .await
            .unwrap_or_else(|e| fail(e));
        let runtime = Arc::new(runtime());
        let state = AppState::new(ServerConfig::default(), runtime, Tokens::disabled(), store)
            .unwrap_or_else(|e| fail(e));
        let router = app(state);
        for _ in 0..n {
            let request = Request::post("/v1/evaluate")
                .header("content-type", "application/json")
                .body(Body::from(body.clone()))
                .unwrap_or_else(|e| fail(e));
            let response = router
                .clone()
                .oneshot(request)
                .await
                .unwrap_or_else(|e| fail(e));
            if !response.status().is_success() {
                fail(format!("evaluate answered {}", response.status()));
            }
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap_or_else(|e| fail(e));
            black_box(bytes);
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` runs every bench target with `--bench`: nothing to do.
    if args.iter().any(|a| a == "--bench") || args.is_empty() {
        return;
    }
    let n: usize = args
        .get(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| fail("usage: instructions w1|w2|http N"));
    match args[0].as_str() {
        "w1" => evaluate(
            "policies/ci-quality-gates.yaml",
            None,
            "tests/fixtures/ci-passing.json",
            n,
        ),
        "w2" => evaluate(
            "policies/canary.yaml",
            Some("initial-canary"),
            "tests/fixtures/canary-steady.json",
            n,
        ),
        "http" => http(n),
        other => fail(format!(
            "unknown workload `{other}`; expected w1, w2 or http"
        )),
    }
}
