//! Hostile plugins: each gets verdict `error` with its cause, within its
//! deadline plus slack, and what runs next in the same process is unaffected.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tollgate::engine::Runtime;
use tollgate::evaluate::decision::{Outcome, Verdict};
use tollgate::policy::{self, PluginCache};
use tollgate::snapshot::Snapshot;

use crate::support::{repo, values, write};

/// Builds the component for `tests/hostile/<name>.wat` against the current
/// contract in `wit/`.
fn component(name: &str) -> Vec<u8> {
    component_for(name, &repo("wit"))
}

/// Builds the component for `tests/hostile/<name>.wat` against the WIT
/// package in `wit_dir`, naming its imports and exports with that version.
pub fn component_for(name: &str, wit_dir: &Path) -> Vec<u8> {
    shelled(name, wit_dir, "gate", "gate-shell.wat")
}

/// Builds the source-world component for `tests/hostile/<name>.wat`, whose
/// `start` and `next` bodies fill `source-shell.wat`.
pub fn source_component(name: &str) -> Vec<u8> {
    shelled(name, &repo("wit"), "source", "source-shell.wat")
}

/// A fragment file laid into a shell: the text before the first marker
/// line (`;;BODY`, `;;START`, …) replaces `(;IMPORTS;)` (a fragment with
/// no `;;BODY` or `;;START` opens with its body), and each marked section replaces its
/// `(;MARKER;)`; then the world's metadata is
/// embedded and the module encoded as a component.
fn shelled(name: &str, wit_dir: &Path, world: &str, shell: &str) -> Vec<u8> {
    let fragment = std::fs::read_to_string(repo(&format!("tests/hostile/{name}.wat"))).unwrap();
    if fragment.contains("(component") {
        return wat::parse_str(&fragment).unwrap();
    }
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve.push_dir(wit_dir).unwrap();
    let version = resolve.packages[pkg]
        .name
        .version
        .clone()
        .unwrap()
        .to_string();
    let world = resolve.select_world(&[pkg], Some(world)).unwrap();
    // Imports come first only where a body marker follows them; else the
    // fragment opens with the gate's body.
    let marked = fragment.lines().any(|l| l == ";;BODY" || l == ";;START");
    let first = if marked { "IMPORTS" } else { "BODY" };
    let mut sections = vec![(first.to_string(), String::new())];
    for line in fragment.lines() {
        let marker = line
            .strip_prefix(";;")
            .filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()));
        match marker {
            Some(m) => sections.push((m.to_string(), String::new())),
            None => {
                let text = &mut sections.last_mut().unwrap().1;
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    let mut text = std::fs::read_to_string(repo(&format!("tests/hostile/{shell}"))).unwrap();
    for marker in ["IMPORTS", "BODY", "START", "NEXT", "EXTRA"] {
        let body = sections
            .iter()
            .find(|(m, _)| m == marker)
            .map_or("", |(_, t)| t.as_str());
        text = text.replace(&format!("(;{marker};)"), body);
    }
    let text = text.replace("WIT_VERSION", &version);
    let mut module = wat::parse_str(&text).unwrap();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

/// A policy whose one stage runs the hostile gate first, then a real gate.
fn policy(dir: &Path, hostile: &str, limits: &str) -> PathBuf {
    write(dir, &format!("{hostile}.wasm"), &component(hostile));
    let text = format!(
        "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {{name: hostile}}\nplugins:\n  hostile: {{path: {hostile}.wasm}}\nstages:\n  - name: s\n    gates:\n      - name: hostile\n        plugin: hostile\n{limits}      - name: coverage\n        plugin: threshold\n        with: {{metric: cov, op: '>=', threshold: 80}}\n"
    );
    write(dir, "hostile.yaml", text.as_bytes())
}

const SLACK: Duration = Duration::from_millis(500);

/// Runs the hostile policy twice in one runtime, then the bundled CI policy,
/// and checks the hostile gate's cause and that everything else is correct.
fn assert_contained(hostile: &str, limits: &str, cause: &str, message: &str, deadline: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let path = policy(dir.path(), hostile, limits);
    let runtime = Runtime::new().unwrap();
    let mut cache = PluginCache::new();
    let text = std::fs::read_to_string(&path).unwrap();
    let loaded = policy::load(&runtime, &mut cache, &text, dir.path()).unwrap();
    let snapshot =
        Arc::new(Snapshot::from_json(values(&[("cov", 85.0)]).to_string().as_bytes()).unwrap());
    for _ in 0..2 {
        let d = tollgate::evaluate::evaluate(&loaded, None, Arc::clone(&snapshot)).unwrap();
        let gate = &d.gates[0];
        assert_eq!(gate.verdict, Verdict::Error, "{hostile}: {gate:?}");
        assert_eq!(gate.cause.as_deref(), Some(cause), "{hostile}: {gate:?}");
        assert!(gate.reason.contains(message), "{hostile}: {}", gate.reason);
        assert!(
            Duration::from_micros(gate.duration_us) < deadline + SLACK,
            "{hostile} took {} µs",
            gate.duration_us
        );
        // It fails closed, and the gate after it still judges correctly.
        assert_eq!(gate.counted_as, tollgate::evaluate::decision::Counted::Fail);
        assert_eq!(d.decision, Outcome::Rollback, "{hostile}: {}", d.summary);
        assert_eq!(d.gates[1].verdict, Verdict::Pass);
        assert_eq!(d.gates[1].observed, Some(85.0));
    }
    // The same process still evaluates a bundled policy exactly.
    let ci_text = std::fs::read_to_string(repo("policies/ci-quality-gates.yaml")).unwrap();
    let ci = policy::load(&runtime, &mut cache, &ci_text, &repo("policies")).unwrap();
    let ok = Snapshot::from_json(&std::fs::read(repo("tests/fixtures/ci-passing.json")).unwrap())
        .unwrap();
    let d = tollgate::evaluate::evaluate(&ci, None, Arc::new(ok)).unwrap();
    assert_eq!(d.decision, Outcome::Promote, "{}", d.summary);
}

#[test]
fn the_control_gate_passes() {
    let dir = tempfile::tempdir().unwrap();
    let path = policy(dir.path(), "well-behaved", "");
    let run = crate::support::eval(&path, &values(&[("cov", 85.0)]), None);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.gate("hostile")["verdict"], "pass");
}

#[test]
fn an_infinite_loop_hits_the_deadline() {
    assert_contained(
        "infinite-loop",
        "",
        "deadline",
        "deadline of 100 ms exceeded",
        Duration::from_millis(100),
    );
}

#[test]
fn a_policy_can_shorten_the_deadline() {
    assert_contained(
        "infinite-loop",
        "        deadline: 20ms\n",
        "deadline",
        "deadline of 20 ms exceeded",
        Duration::from_millis(20),
    );
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    assert_contained(
        "memory-bomb",
        "",
        "memory",
        "memory limit 16 MiB exceeded",
        Duration::from_millis(100),
    );
    assert_contained(
        "memory-bomb",
        "        memory: 4MiB\n",
        "memory",
        "memory limit 4 MiB exceeded",
        Duration::from_millis(100),
    );
}

/// The finding: one `memory.fill` over 256 MiB ran 140–180 ms against a
/// 10 ms deadline. Such limits are now refused at load, and at the least
/// deadline allowed for 256 MiB the fill loop still ends within the
/// deadline plus the documented bound (`engine::uninterruptible_bound`).
#[test]
fn a_fill_over_the_whole_memory_ends_within_the_deadline_plus_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let path = policy(
        dir.path(),
        "fill-loop",
        "        memory: 256MiB\n        deadline: 10ms\n",
    );
    let run = crate::support::eval(&path, &values(&[("cov", 85.0)]), None);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("raise `deadline` to at least 251 ms or lower `memory`"),
        "{}",
        run.stderr
    );
    let bound = tollgate::engine::uninterruptible_bound(256 << 20);
    assert_contained(
        "fill-loop",
        "        memory: 256MiB\n        deadline: 251ms\n",
        "deadline",
        "deadline of 251 ms exceeded",
        Duration::from_millis(251) + bound,
    );
}

#[test]
fn unbounded_recursion_exhausts_the_stack() {
    assert_contained(
        "recursion",
        "",
        "stack",
        "wasm stack exhausted",
        Duration::from_millis(100),
    );
}

#[test]
fn a_100_mb_reason_is_refused() {
    assert_contained(
        "huge-reason",
        "        memory: 128MiB\n        deadline: 2s\n",
        "output",
        "reason of 100000000 bytes exceeds the 4096-byte limit",
        Duration::from_secs(2),
    );
}

#[test]
fn a_100_mb_reason_past_the_memory_limit_traps() {
    assert_contained(
        "huge-reason",
        "",
        "memory",
        "memory limit 16 MiB exceeded",
        Duration::from_millis(100),
    );
}

#[test]
fn a_plain_trap_is_reported() {
    assert_contained(
        "trap",
        "",
        "trap",
        "plugin trapped: wasm `unreachable` instruction executed",
        Duration::from_millis(100),
    );
}

#[test]
fn a_non_finite_observation_is_refused() {
    assert_contained(
        "nan-observed",
        "",
        "output",
        "observed value is not a finite number",
        Duration::from_millis(100),
    );
}

#[test]
fn on_error_warn_and_ignore_change_how_the_error_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = policy(dir.path(), "trap", "        on_error: ignore\n");
    let run = crate::support::eval(&path, &values(&[("cov", 85.0)]), None);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.gate("hostile")["verdict"], "error");
    assert_eq!(run.gate("hostile")["counted_as"], "ignored");
    let path = policy(dir.path(), "trap", "        on_error: warn\n");
    let run = crate::support::eval(&path, &values(&[("cov", 85.0)]), None);
    assert_eq!(run.json()["score"], 75.0);
    assert_eq!(run.json()["decision"], "hold");
}

#[test]
fn a_wasi_import_the_host_does_not_link_is_refused_at_load_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = policy(dir.path(), "wasi-filesystem", "");
    let run = crate::support::tollgate(&["validate", path.to_str().unwrap()], "");
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(
            "plugin `hostile`: imports `wasi:filesystem/types@0.3.0`, which this host does not provide"
        ),
        "{}",
        run.stderr
    );
}

/// A policy running `component` as its only gate.
fn single_gate_policy(dir: &Path, component: &[u8]) -> PathBuf {
    write(dir, "old.wasm", component);
    let text = "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: compat}\nplugins:\n  old: {path: old.wasm}\nstages:\n  - name: s\n    gates:\n      - name: old\n        plugin: old\n";
    write(dir, "compat.yaml", text.as_bytes())
}

#[test]
fn a_plugin_built_against_wit_0_1_0_still_loads_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let old = component_for("well-behaved", &repo("tests/compat"));
    let path = single_gate_policy(dir.path(), &old);
    let run = crate::support::eval(&path, &values(&[]), None);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.gate("old")["verdict"], "pass");
}

#[test]
fn a_plugin_built_against_an_incompatible_wit_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let wit = dir.path().join("wit");
    std::fs::create_dir(&wit).unwrap();
    let text = std::fs::read_to_string(repo("tests/compat/tollgate-0.1.0.wit")).unwrap();
    std::fs::write(
        wit.join("tollgate.wit"),
        text.replace("tollgate:plugin@0.1.0", "tollgate:plugin@0.2.0"),
    )
    .unwrap();
    let path = single_gate_policy(dir.path(), &component_for("well-behaved", &wit));
    let run = crate::support::tollgate(&["validate", path.to_str().unwrap()], "");
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("plugin `old`: built against `tollgate:plugin@0.2.0`, which this host (tollgate:plugin@0.1.2) cannot serve"),
        "{}",
        run.stderr
    );
}

/// The SDK's bump allocator grows a guest `Vec` (the threshold gate
/// collects every point it reads) in 1 MiB steps, and the memory cap stops
/// it cleanly: under a tight cap the gate is `memory`, under a wider one it
/// passes, and the host is unaffected either way.
#[test]
fn a_guest_vec_grows_under_the_memory_cap_with_the_bump_allocator() {
    let dir = tempfile::tempdir().unwrap();
    let n = 200_000i64;
    let points: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!([crate::support::TAKEN_AT - i, 1.0]))
        .collect();
    let snapshot = serde_json::json!({
        "service": "s", "version": "1", "taken_at": crate::support::TAKEN_AT,
        "metrics": [{"name": "m", "points": points}],
    });
    let policy = |memory: &str| {
        let text = format!(
            "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {{name: vec}}\nstages:\n  - name: s\n    gates:\n      - name: all\n        plugin: threshold\n        memory: {memory}\n        deadline: 10s\n        with: {{metric: m, aggregate: count, op: '>=', threshold: 1}}\n"
        );
        write(dir.path(), &format!("vec-{memory}.yaml"), text.as_bytes())
    };
    // 200,000 points are 3.2 MB lifted into the guest and 3.2 MB again in
    // the gate's Vec: more than 4 MiB, less than 32 MiB.
    let tight = crate::support::eval(&policy("4MiB"), &snapshot, None);
    assert_eq!(tight.gate("all")["verdict"], "error", "{}", tight.stdout);
    assert_eq!(tight.gate("all")["cause"], "memory");
    let wide = crate::support::eval(&policy("32MiB"), &snapshot, None);
    assert_eq!(wide.code, 0, "{}{}", wide.stdout, wide.stderr);
    assert_eq!(wide.gate("all")["observed"], 200_000.0);
}

/// One instance per plugin per evaluation: a plugin's gates with the same
/// limits run on one instance, a gate with other limits gets its own, and
/// the next evaluation starts from fresh instances.
#[test]
fn a_plugins_gates_share_an_instance_within_one_evaluation_only() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "counter.wasm", &component("counter"));
    let gate = |name: &str, limits: &str| {
        format!("      - name: {name}\n        plugin: counter\n{limits}")
    };
    let text = format!(
        "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {{name: counter}}\nplugins:\n  counter: {{path: counter.wasm}}\nstages:\n  - name: s\n    gates:\n{}{}{}{}",
        gate("a", ""),
        gate("b", ""),
        gate("other-limits", "        memory: 8MiB\n"),
        gate("c", ""),
    );
    let runtime = Runtime::new().unwrap();
    let loaded = policy::load(&runtime, &mut PluginCache::new(), &text, dir.path()).unwrap();
    let snapshot =
        Arc::new(Snapshot::from_json(values(&[("m", 1.0)]).to_string().as_bytes()).unwrap());
    for _ in 0..2 {
        let d = tollgate::evaluate::evaluate(&loaded, None, Arc::clone(&snapshot)).unwrap();
        let calls: Vec<Option<f64>> = d.gates.iter().map(|g| g.observed).collect();
        assert_eq!(
            calls,
            [Some(1.0), Some(2.0), Some(1.0), Some(3.0)],
            "{:?}",
            d.gates
        );
    }
}

/// A call that fails on a shared instance is judged again on a fresh one:
/// the threshold gate's bump allocator never returns memory, so the second
/// of three gates collecting 200,000 points each would pass the cap on a
/// shared instance though each passes alone.
#[test]
fn what_earlier_gates_left_in_a_shared_instance_cannot_fail_a_later_one() {
    let dir = tempfile::tempdir().unwrap();
    let n = 200_000i64;
    let points: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!([crate::support::TAKEN_AT - i, 1.0]))
        .collect();
    let snapshot = serde_json::json!({
        "service": "s", "version": "1", "taken_at": crate::support::TAKEN_AT,
        "metrics": [{"name": "m", "points": points}],
    });
    let gate = |name: &str| {
        format!(
            "      - name: {name}\n        plugin: threshold\n        memory: 12MiB\n        deadline: 10s\n        with: {{metric: m, aggregate: count, op: '>=', threshold: 1}}\n"
        )
    };
    let text = format!(
        "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {{name: vec}}\nstages:\n  - name: s\n    gates:\n{}{}{}",
        gate("first"),
        gate("second"),
        gate("third")
    );
    let path = write(dir.path(), "three.yaml", text.as_bytes());
    let run = crate::support::eval(&path, &snapshot, None);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    for name in ["first", "second", "third"] {
        assert_eq!(run.gate(name)["verdict"], "pass", "{name}: {}", run.stdout);
        assert_eq!(run.gate(name)["observed"], 200_000.0);
    }
    // A later gate ran again on a fresh instance, and its log says why.
    let again = "run again on a fresh instance after: memory limit 12 MiB exceeded";
    assert!(
        ["second", "third"]
            .iter()
            .any(|g| run.gate(g)["logs"].to_string().contains(again)),
        "{}",
        run.stdout
    );
}

/// A one-shot command's pool has a few slots; a stage naming more
/// distinct plugins (here one plugin under twelve different limits) than a
/// session keeps gives back the oldest instance instead of running out.
#[test]
fn a_stage_with_more_distinct_plugins_than_a_session_keeps_still_runs_every_gate() {
    let dir = tempfile::tempdir().unwrap();
    let gates: String = (1..=12)
        .map(|i| {
            format!("      - name: g{i}\n        plugin: threshold\n        memory: {}MiB\n        with: {{metric: cov, op: '>=', threshold: 80}}\n", 8 + i)
        })
        .collect();
    let text = format!(
        "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {{name: many}}\nstages:\n  - name: s\n    gates:\n{gates}"
    );
    let path = write(dir.path(), "many.yaml", text.as_bytes());
    let run = crate::support::eval(&path, &values(&[("cov", 85.0)]), None);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    for i in 1..=12 {
        assert_eq!(
            run.gate(&format!("g{i}"))["verdict"],
            "pass",
            "{}",
            run.stdout
        );
    }
}
