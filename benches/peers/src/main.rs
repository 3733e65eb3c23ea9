//! Side-by-side timing (issue 22, item 6): tollgate in-process, plain Rust,
//! and regorus's interpreter and RVM, over the same gates and snapshots, in
//! one run, interleaved.
//!
//! W1: `policies/ci-quality-gates.yaml` (six threshold gates) over
//! `tests/fixtures/ci-passing.json`, parsed once.
//! W2: the two gates of the canary policy's `initial-canary` stage over
//! `tests/fixtures/canary-steady.json`, parsed once; tollgate both as the
//! gates alone (`canary-gates.yaml`) and as the whole stage (triggers and
//! the schedule action too).
//! W3: W1's snapshot plus 10,000 unrelated series, end to end from JSON
//! bytes: parse, then evaluate.
//!
//! Before timing, every contender's answers are checked equal on the
//! fixtures and on copies changed so that a gate fails or has no data; any
//! difference exits 1. Then each contender is warmed up and the rounds run
//! round-robin; the table gives the median, min and max over the rounds of
//! the time per evaluation. `PEERS_SECONDS` (default 1) is the time per
//! contender per workload, split over `PEERS_ROUNDS` (default 10) rounds.

mod native;
mod rego;
mod verdicts;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate::engine::Runtime;
use tollgate::evaluate::decision::Decision;
use tollgate::policy::{self, LoadedPolicy, PluginCache};
use tollgate::snapshot::Snapshot;

use crate::verdicts::{Gate, Verdicts};

/// The command that runs this harness, from the repository root.
const COMMAND: &str = "cargo bench --manifest-path benches/peers/Cargo.toml";

/// Unrelated series W3 adds to W1's snapshot.
const W3_SERIES: usize = 10_000;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn here(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("peers: {message}");
    std::process::exit(1)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| fail(format!("reading {}: {e}", path.display())))
}

fn tollgate_verdicts(decision: &Decision) -> Verdicts {
    Verdicts {
        decision: decision.decision.as_str().into(),
        gates: decision
            .gates
            .iter()
            .map(|g| Gate {
                name: g.name.clone(),
                verdict: g.verdict.as_str().into(),
                observed: g.observed,
            })
            .collect(),
    }
}

fn load_policy(runtime: &Runtime, cache: &mut PluginCache, path: &Path) -> LoadedPolicy {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| fail(format!("reading {}: {e}", path.display())));
    policy::load(runtime, cache, &text, &repo("policies"))
        .unwrap_or_else(|e| fail(format!("loading {}: {e}", path.display())))
}

fn tollgate_snapshot(bytes: &[u8], what: &str) -> Arc<Snapshot> {
    Arc::new(Snapshot::from_json(bytes).unwrap_or_else(|e| fail(format!("{what}: {e}"))))
}

/// A snapshot JSON document changed by `edit`, for the checks where a gate
/// should fail or find no data.
fn edited(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Value) -> Option<()>) -> Vec<u8> {
    let mut doc: serde_json::Value =
        serde_json::from_slice(bytes).unwrap_or_else(|e| fail(format!("fixture: {e}")));
    edit(&mut doc).unwrap_or_else(|| fail("fixture does not have the shape the check edits"));
    serde_json::to_vec(&doc).unwrap_or_else(|e| fail(e))
}

/// The series of `metrics` named `name`.
fn series<'a>(doc: &'a mut serde_json::Value, name: &str) -> Option<&'a mut serde_json::Value> {
    doc["metrics"]
        .as_array_mut()?
        .iter_mut()
        .find(|s| s["name"] == name)
}

/// W1's snapshot plus [`W3_SERIES`] unrelated series of five points and two
/// labels each, generated the same on every run.
fn w3_json(w1: &[u8]) -> Vec<u8> {
    edited(w1, |doc| {
        let taken_at = doc["taken_at"].as_i64()?;
        let metrics = doc["metrics"].as_array_mut()?;
        let regions = ["eu-west-1", "us-east-1", "us-west-2", "ap-south-1"];
        // A small linear congruential generator: deterministic values.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for i in 0..W3_SERIES {
            let points: Vec<serde_json::Value> = (0..5)
                .map(|k| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    let value = (state >> 11) as f64 / (1u64 << 53) as f64 * 1000.0;
                    serde_json::json!([taken_at - 60 * (4 - k), value])
                })
                .collect();
            metrics.push(serde_json::json!({
                "name": format!("unrelated_metric_{}", i % 500),
                "labels": {
                    "instance": format!("host-{i:05}"),
                    "region": regions[i % regions.len()],
                },
                "points": points,
            }));
        }
        Some(())
    })
}

/// One contender of one workload: what it runs and its timings.
struct Contender<'a> {
    name: &'static str,
    run: Box<dyn FnMut() -> Result<(), String> + 'a>,
    /// Microseconds per evaluation, one per round.
    rounds: Vec<f64>,
    iterations: u64,
}

impl<'a> Contender<'a> {
    fn new(name: &'static str, run: impl FnMut() -> Result<(), String> + 'a) -> Self {
        Self {
            name,
            run: Box::new(run),
            rounds: Vec::new(),
            iterations: 1,
        }
    }

    fn time(&mut self, iterations: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..iterations {
            if let Err(e) = (self.run)() {
                fail(format!("{}: {e}", self.name));
            }
        }
        start.elapsed()
    }
}

struct Settings {
    per_contender: Duration,
    rounds: u32,
}

impl Settings {
    fn from_env() -> Self {
        let number = |name: &str, default: f64| match std::env::var(name) {
            Ok(v) => v
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n > 0.0)
                .unwrap_or_else(|| fail(format!("{name}={v}: expected a positive number"))),
            Err(_) => default,
        };
        Self {
            per_contender: Duration::from_secs_f64(number("PEERS_SECONDS", 1.0)),
            rounds: number("PEERS_ROUNDS", 10.0).round().max(1.0) as u32,
        }
    }
}

/// Warms every contender up, sizes its rounds from the warm-up, then runs
/// the rounds round-robin.
fn measure(contenders: &mut [Contender<'_>], settings: &Settings) {
    let per_round = settings.per_contender / settings.rounds;
    for c in contenders.iter_mut() {
        // At least 200 ms or 10 evaluations, whichever is longer.
        let warm_up = (per_round * 2).max(Duration::from_millis(200));
        let mut done = 0u64;
        let start = Instant::now();
        while done < 10 || start.elapsed() < warm_up {
            c.time(1);
            done += 1;
        }
        let each = start.elapsed().as_secs_f64() / done as f64;
        c.iterations = ((per_round.as_secs_f64() / each) as u64).max(1);
    }
    for _ in 0..settings.rounds {
        for c in contenders.iter_mut() {
            let elapsed = c.time(c.iterations);
            c.rounds
                .push(elapsed.as_secs_f64() * 1e6 / c.iterations as f64);
        }
    }
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn micros(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Table rows for one workload; the first contender is the native one.
fn rows(workload: &str, contenders: &[Contender<'_>]) -> Vec<String> {
    let medians: Vec<f64> = contenders
        .iter()
        .map(|c| {
            let mut r = c.rounds.clone();
            r.sort_by(f64::total_cmp);
            median(&r)
        })
        .collect();
    let native = medians.first().copied().unwrap_or(f64::NAN);
    contenders
        .iter()
        .zip(&medians)
        .map(|(c, &m)| {
            let min = c.rounds.iter().copied().fold(f64::INFINITY, f64::min);
            let max = c.rounds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!(
                "| {workload} | {} | {} | {} – {} | {:.1}× | {} |",
                c.name,
                micros(m),
                micros(min),
                micros(max),
                m / native,
                c.iterations,
            )
        })
        .collect()
}

/// Checks that every contender gave `expected`'s answer; exits 1 if not.
fn check(what: &str, answers: &[(&str, Verdicts)]) -> String {
    let Some((first, expected)) = answers.first() else {
        fail(format!("{what}: no answers"))
    };
    for (name, got) in &answers[1..] {
        if let Some(diff) = expected.differs(got) {
            eprintln!("peers: {what}: {first} and {name} disagree: {diff}");
            for (name, v) in answers {
                eprintln!("  {name}: {v}");
            }
            std::process::exit(1);
        }
    }
    format!("- {what}: all {} agree: {expected}", answers.len())
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(repo(""))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    format!("{cores} × {model}, load average {load} at the start")
}

fn main() {
    let settings = Settings::from_env();
    let machine = machine();

    let runtime = Runtime::new().unwrap_or_else(|e| fail(format!("wasmtime runtime: {e}")));
    let mut cache = PluginCache::new();
    let ci = load_policy(
        &runtime,
        &mut cache,
        &repo("policies/ci-quality-gates.yaml"),
    );
    let canary = load_policy(&runtime, &mut cache, &repo("policies/canary.yaml"));
    let canary_gates = load_policy(&runtime, &mut cache, &here("canary-gates.yaml"));
    let w1_rego = rego::Policy::load(&here("rego"), "w1").unwrap_or_else(|e| fail(e));
    let w2_rego = rego::Policy::load(&here("rego"), "w2").unwrap_or_else(|e| fail(e));
    let stage = Some("initial-canary");

    let w1_bytes = read(&repo("tests/fixtures/ci-passing.json"));
    let w2_bytes = read(&repo("tests/fixtures/canary-steady.json"));
    let w3_bytes = w3_json(&w1_bytes);

    // --- the answers, checked before anything is timed -------------------
    let eval = |loaded: &LoadedPolicy, stage: Option<&str>, bytes: &[u8], what: &str| {
        let snapshot = tollgate_snapshot(bytes, what);
        tollgate::evaluate::evaluate(loaded, stage, snapshot)
            .map(|d| tollgate_verdicts(&d))
            .unwrap_or_else(|e| fail(format!("tollgate, {what}: {e}")))
    };
    let native_eval = |bytes: &[u8], gates: &[native::Gate], what: &str| {
        let tollgate_parsed = tollgate_snapshot(bytes, what);
        let serde_parsed = native::parse(bytes).unwrap_or_else(|e| fail(format!("{what}: {e}")));
        (
            native::evaluate(tollgate_parsed.as_ref(), gates).verdicts(),
            native::evaluate(&serde_parsed, gates).verdicts(),
        )
    };
    let rego_eval = |policy: &rego::Policy, bytes: &[u8], what: &str| {
        let input = rego::parse(bytes).unwrap_or_else(|e| fail(format!("{what}: {e}")));
        let answer = |who: &str, v: Result<regorus::Value, String>| {
            v.and_then(|v| rego::verdicts(&v))
                .unwrap_or_else(|e| fail(format!("{what}, {who}: {e}")))
        };
        (
            answer("interpreter", policy.interpreter().eval(input.clone())),
            answer("RVM", policy.vm().eval(input)),
        )
    };
    let mut checks = Vec::new();
    let mut check_w1 = |what: &str, bytes: &[u8]| {
        let (native_t, native_s) = native_eval(bytes, &native::W1, what);
        let (interp, vm) = rego_eval(&w1_rego, bytes, what);
        let answers = [
            ("native (tollgate's Snapshot)", native_t),
            ("native (serde_json)", native_s),
            ("tollgate", eval(&ci, None, bytes, what)),
            ("regorus interpreter", interp),
            ("regorus RVM", vm),
        ];
        checks.push(check(what, &answers));
        answers
    };
    let passing = check_w1("W1 ci-passing.json", &w1_bytes);
    if passing[0].1.decision != "promote" {
        fail("W1: ci-passing.json should promote");
    }
    let lint = edited(&w1_bytes, |doc| {
        series(doc, "lint_errors")?["value"] = 3.into();
        Some(())
    });
    let failing = check_w1("W1 with lint_errors = 3", &lint);
    if failing[0].1.decision != "rollback" {
        fail("W1 with lint_errors = 3 should roll back");
    }
    let no_coverage = edited(&w1_bytes, |doc| {
        doc["metrics"]
            .as_array_mut()?
            .retain(|s| s["name"] != "test_coverage_percent");
        Some(())
    });
    let held = check_w1("W1 without test_coverage_percent", &no_coverage);
    if held[0].1.decision != "hold" {
        fail("W1 without test_coverage_percent should hold");
    }
    let w3_name = format!(
        "W3 (W1 + {W3_SERIES} series, {} KiB of JSON)",
        w3_bytes.len() / 1024
    );
    let w3 = check_w1(&w3_name, &w3_bytes);
    if w3[0].1.decision != "promote" {
        fail("W3 should promote");
    }
    let w3_failing = edited(&w3_bytes, |doc| {
        series(doc, "compliance_score_percent")?["value"] = 90.into();
        Some(())
    });
    let failing = check_w1("W3 with compliance_score_percent = 90", &w3_failing);
    if failing[0].1.decision != "rollback" {
        fail("W3 with compliance_score_percent = 90 should roll back");
    }

    let mut check_w2 = |what: &str, bytes: &[u8], expected: &str| {
        let (native_t, native_s) = native_eval(bytes, &native::W2, what);
        let (interp, vm) = rego_eval(&w2_rego, bytes, what);
        let answers = [
            ("native (tollgate's Snapshot)", native_t),
            ("native (serde_json)", native_s),
            (
                "tollgate, gates only",
                eval(&canary_gates, stage, bytes, what),
            ),
            ("tollgate, whole stage", eval(&canary, stage, bytes, what)),
            ("regorus interpreter", interp),
            ("regorus RVM", vm),
        ];
        checks.push(check(what, &answers));
        if answers[0].1.decision != expected {
            fail(format!("{what} should {expected}"));
        }
    };
    check_w2("W2 canary-steady.json", &w2_bytes, "promote");
    let slow = edited(&w2_bytes, |doc| {
        let points = series(doc, "response_time_p95_ms")?["points"].as_array_mut()?;
        points.last_mut()?[1] = 650.0.into();
        Some(())
    });
    check_w2("W2 with the last canary p95 at 650 ms", &slow, "rollback");

    // --- timing --------------------------------------------------------------
    let w1_snapshot = tollgate_snapshot(&w1_bytes, "W1");
    let w2_snapshot = tollgate_snapshot(&w2_bytes, "W2");
    let w1_input = rego::parse(&w1_bytes).unwrap_or_else(|e| fail(e));
    let w2_input = rego::parse(&w2_bytes).unwrap_or_else(|e| fail(e));

    let tollgate_run = |loaded: &LoadedPolicy, stage: Option<&str>, snapshot: &Arc<Snapshot>| {
        tollgate::evaluate::evaluate(black_box(loaded), stage, Arc::clone(snapshot))
            .map(|d| drop(black_box(d)))
            .map_err(|e| e.to_string())
    };

    let mut table = Vec::new();
    {
        let (mut interp, mut vm) = (w1_rego.interpreter(), w1_rego.vm());
        let mut contenders = [
            Contender::new("native Rust", || {
                black_box(native::evaluate(
                    black_box(w1_snapshot.as_ref()),
                    &native::W1,
                ));
                Ok(())
            }),
            Contender::new("tollgate", || tollgate_run(&ci, None, &w1_snapshot)),
            Contender::new("regorus interpreter", || {
                interp.eval(black_box(w1_input.clone())).map(drop)
            }),
            Contender::new("regorus RVM", || {
                vm.eval(black_box(w1_input.clone())).map(drop)
            }),
        ];
        measure(&mut contenders, &settings);
        table.extend(rows("W1", &contenders));
    }
    {
        let (mut interp, mut vm) = (w2_rego.interpreter(), w2_rego.vm());
        let mut contenders = [
            Contender::new("native Rust", || {
                black_box(native::evaluate(
                    black_box(w2_snapshot.as_ref()),
                    &native::W2,
                ));
                Ok(())
            }),
            Contender::new("tollgate, gates only", || {
                tollgate_run(&canary_gates, stage, &w2_snapshot)
            }),
            Contender::new("tollgate, whole stage", || {
                tollgate_run(&canary, stage, &w2_snapshot)
            }),
            Contender::new("regorus interpreter", || {
                interp.eval(black_box(w2_input.clone())).map(drop)
            }),
            Contender::new("regorus RVM", || {
                vm.eval(black_box(w2_input.clone())).map(drop)
            }),
        ];
        measure(&mut contenders, &settings);
        table.extend(rows("W2", &contenders));
    }
    {
        let bytes = w3_bytes.as_slice();
        let (mut interp, mut vm) = (w1_rego.interpreter(), w1_rego.vm());
        let mut contenders = [
            Contender::new("native Rust (serde_json)", || {
                let snapshot = native::parse(black_box(bytes)).map_err(|e| e.to_string())?;
                black_box(native::evaluate(&snapshot, &native::W1));
                Ok(())
            }),
            Contender::new("tollgate", || {
                let snapshot = Snapshot::from_json(black_box(bytes)).map_err(|e| e.to_string())?;
                tollgate_run(&ci, None, &Arc::new(snapshot))
            }),
            Contender::new("regorus interpreter", || {
                interp.eval(rego::parse(black_box(bytes))?).map(drop)
            }),
            Contender::new("regorus RVM", || {
                vm.eval(rego::parse(black_box(bytes))?).map(drop)
            }),
        ];
        measure(&mut contenders, &settings);
        table.extend(rows("W3", &contenders));
    }

    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    println!(
        "Commit {commit}{}; machine: {}; command: `{COMMAND}` \
         ({} s per contender per workload over {} rounds, interleaved).",
        if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        },
        machine,
        settings.per_contender.as_secs_f64(),
        settings.rounds,
    );
    println!();
    println!("Answers checked equal before timing:");
    println!();
    for line in &checks {
        println!("{line}");
    }
    println!();
    println!(
        "| workload | contender | median µs/eval | min – max over rounds | × native | evals/round |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for row in &table {
        println!("{row}");
    }
}
