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

    // Issue 22's flat-cost workload: W1's snapshot and 10,000 series no
    // gate reads, from bytes to decision.
    let unread = with_unread_series(&bytes, 10_000);
    c.bench_function("parse snapshot JSON (W1 + 10,000 unread series)", |b| {
        b.iter(|| Snapshot::from_json(black_box(&unread)))
    });
    let parsed = Snapshot::from_json(&unread).unwrap_or_else(|e| panic!("{e}"));
    c.bench_function("input digest (W1 + 10,000 unread series)", |b| {
        b.iter(|| tollgate::evaluate::input_digest(black_box(&parsed)))
    });
    let parsed = Arc::new(parsed);
    c.bench_function(
        "digest + evaluate ci-quality-gates over W1 + 10,000 unread series",
        |b| b.iter(|| tollgate::evaluate::evaluate(black_box(&loaded), None, Arc::clone(&parsed))),
    );
    // `evaluate` makes the input digest itself: parse + digest + evaluate.
    c.bench_function(
        "W1 + 10,000 unread series: parse + digest + evaluate",
        |b| {
            b.iter(|| {
                let snapshot =
                    Snapshot::from_json(black_box(&unread)).unwrap_or_else(|e| panic!("{e}"));
                tollgate::evaluate::evaluate(&loaded, None, Arc::new(snapshot))
            })
        },
    );

    let component = tollgate::policy::builtin::plugin("threshold").unwrap_or_default();
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.bench_function("compile threshold plugin", |b| {
        b.iter(|| runtime.load("threshold", black_box(component)))
    });
    group.finish();
}

/// `snapshot` with `count` more series of five points and two labels,
/// named so that no gate of the CI policy reads them.
fn with_unread_series(snapshot: &[u8], count: usize) -> Vec<u8> {
    let mut doc: serde_json::Value = serde_json::from_slice(snapshot).unwrap_or_default();
    let taken_at = doc["taken_at"].as_i64().unwrap_or_default();
    let regions = ["eu-west-1", "us-east-1", "us-west-2", "ap-south-1"];
    if let Some(metrics) = doc["metrics"].as_array_mut() {
        metrics.extend((0..count).map(|i| {
            let points: Vec<(i64, f64)> = (0..5i64)
                .map(|k| {
                    (
                        taken_at - 60 * (4 - k),
                        ((i * 7919 + k as usize * 104_729) % 100_000) as f64 / 97.0,
                    )
                })
                .collect();
            serde_json::json!({
                "name": format!("unread_{}", i % 500),
                "labels": {"instance": format!("host-{i:05}"), "region": regions[i % 4]},
                "points": points,
            })
        }));
    }
    serde_json::to_vec(&doc).unwrap_or_default()
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
