//! Golden files: each `tests/ui/valid/*.yaml` evaluated over
//! `tests/ui/snapshot.json` gives the decision in the `.json` beside it, and
//! each `tests/ui/invalid/*.yaml` gives the problems in the `.err` beside it.
//! `BLESS=1` rewrites the expected files.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use tollgate::policy::{self, PluginCache};
use tollgate::snapshot::Snapshot;

use crate::server_router::runtime;
use crate::support::repo;

fn cases(dir: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo(&format!("tests/ui/{dir}")))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

/// Compares `actual` with the file, or rewrites the file under `BLESS=1`.
fn golden(expected: &Path, actual: &str) -> Option<String> {
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(expected, actual).unwrap();
        return None;
    }
    let want = std::fs::read_to_string(expected).unwrap_or_default();
    (want != actual).then(|| {
        format!(
            "{} differs (BLESS=1 rewrites it):\n--- expected\n{want}\n--- actual\n{actual}",
            expected.display()
        )
    })
}

/// The decision without what changes from run to run.
fn stable(mut d: Value) -> Value {
    if let Some(o) = d.as_object_mut() {
        o.remove("digests");
        // The clock the decision was made at.
        o.remove("decided_at");
    }
    for list in ["gates", "triggers", "actions"] {
        for item in d[list].as_array_mut().into_iter().flatten() {
            item["duration_us"] = Value::from(0);
        }
    }
    d
}

#[test]
fn valid_policies_decide_as_their_golden_files_say() {
    let runtime = runtime();
    let snapshot = Arc::new(
        Snapshot::from_json(&std::fs::read(repo("tests/ui/snapshot.json")).unwrap()).unwrap(),
    );
    let mut failures = Vec::new();
    for path in cases("valid") {
        let text = std::fs::read_to_string(&path).unwrap();
        let loaded = policy::load(
            &runtime,
            &mut PluginCache::new(),
            &text,
            path.parent().unwrap(),
        )
        .unwrap_or_else(|p| panic!("{}: {p}", path.display()));
        let d = tollgate::evaluate::evaluate(&loaded, None, Arc::clone(&snapshot)).unwrap();
        let json = stable(serde_json::to_value(&d).unwrap());
        let text = format!("{}\n", serde_json::to_string_pretty(&json).unwrap());
        failures.extend(golden(&path.with_extension("json"), &text));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn invalid_policies_report_the_problems_in_their_golden_files() {
    let runtime = runtime();
    let mut failures = Vec::new();
    for path in cases("invalid") {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let problems = match policy::load(
            &runtime,
            &mut PluginCache::new(),
            &text,
            path.parent().unwrap(),
        ) {
            Ok(_) => panic!("{name} loaded"),
            Err(p) => p.render(Some(&name)),
        };
        failures.extend(golden(
            &path.with_extension("err"),
            &format!("{problems}\n"),
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
