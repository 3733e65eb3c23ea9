//! Per-evaluation cost: a whole CI stage, one gate call, and plugin compile.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use tollgate::engine::{Limits, Runtime};
use tollgate::policy::{self, PluginCache};
use tollgate::snapshot::Snapshot;

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn benches(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let mut cache = PluginCache::new();
    let text = std::fs::read_to_string(repo("policies/ci-quality-gates.yaml")).unwrap_or_default();
    let loaded = policy::load(&runtime, &mut cache, &text, &repo("policies"))
        .unwrap_or_else(|e| panic!("{e}"));
    let bytes = std::fs::read(repo("tests/fixtures/ci-passing.json")).unwrap_or_default();
    let snapshot = Arc::new(Snapshot::from_json(&bytes).unwrap_or_else(|e| panic!("{e}")));

    c.bench_function("evaluate ci-quality-gates (6 gates)", |b| {
        b.iter(|| tollgate::evaluate::evaluate(black_box(&loaded), None, Arc::clone(&snapshot)))
    });

    let canary_text = std::fs::read_to_string(repo("policies/canary.yaml")).unwrap_or_default();
    let canary = policy::load(&runtime, &mut cache, &canary_text, &repo("policies"))
        .unwrap_or_else(|e| panic!("{e}"));
    let steady = std::fs::read(repo("tests/fixtures/canary-steady.json")).unwrap_or_default();
    let steady = Arc::new(Snapshot::from_json(&steady).unwrap_or_else(|e| panic!("{e}")));
    c.bench_function(
        "evaluate canary initial-canary (2 gates, 4 triggers, 1 action)",
        |b| {
            b.iter(|| {
                tollgate::evaluate::evaluate(
                    black_box(&canary),
                    Some("initial-canary"),
                    Arc::clone(&steady),
                )
            })
        },
    );

    let plugin = &loaded.plugins["threshold"];
    let gate = &loaded.policy.stages[0].gates[0];
    c.bench_function("one gate: new store + instantiate + evaluate", |b| {
        b.iter(|| {
            plugin.evaluate(
                black_box(&gate.config),
                tollgate::engine::Input {
                    snapshot: Arc::clone(&snapshot),
                    now: snapshot.taken_at,
                },
                Limits::default(),
            )
        })
    });

    c.bench_function("parse snapshot JSON (ci-passing.json)", |b| {
        b.iter(|| Snapshot::from_json(black_box(&bytes)))
    });

    let component = tollgate::policy::builtin::plugin("threshold").unwrap_or_default();
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.bench_function("compile threshold plugin", |b| {
        b.iter(|| runtime.load("threshold", black_box(component)))
    });
    group.finish();
}

/// What a Prometheus fetch adds to an evaluation: the canary policy's six
/// queries (three metrics, canary and primary) against the server named by
/// `TOLLGATE_BENCH_PROMETHEUS`, loaded with `scripts/prometheus-demo.py`.
/// Skipped when the variable is unset.
fn prometheus(c: &mut Criterion) {
    let Ok(url) = std::env::var("TOLLGATE_BENCH_PROMETHEUS") else {
        eprintln!("skipped: set TOLLGATE_BENCH_PROMETHEUS to a Prometheus with the demo data");
        return;
    };
    let text = std::fs::read_to_string(repo("policies/canary.yaml")).unwrap_or_default();
    let policy = policy::parse(&text, &repo("policies")).unwrap_or_else(|e| panic!("{e}"));
    let prom = tollgate::sources::prometheus::Prometheus::new(
        tollgate::sources::prometheus::PrometheusConfig::new(
            url.parse().unwrap_or_else(|e| panic!("{e}")),
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let stage = tollgate::sources::StageWindow {
        name: "initial-canary",
        duration: None,
    };
    let sources = tollgate::sources::Sources::prometheus(Some(prom));
    c.bench_function("prometheus fetch: canary policy, 6 queries", |b| {
        b.iter(|| {
            rt.block_on(tollgate::sources::query_policy(
                &sources, &policy, stage, "checkout", "2.1.0", end,
            ))
            .unwrap_or_else(|e| panic!("{e}"))
        })
    });
}

criterion_group!(evaluate, benches, prometheus);
criterion_main!(evaluate);
