//! The published JSON Schemas: generated from the Rust types, committed
//! under `schemas/`, and met by every bundled policy, example and fixture.
//! `BLESS=1` rewrites the committed files.

use serde_json::Value;

use crate::support::{repo, schema_errors};

fn check_committed(file: &str, generated: &Value) {
    let path = repo(&format!("schemas/{file}"));
    let text = format!("{}\n", serde_json::to_string_pretty(generated).unwrap());
    if std::env::var_os("BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "`schemas/{file}` differs from the types; run `BLESS=1 cargo test --test e2e schemas` and commit it"
    );
}

#[test]
fn committed_schemas_match_the_types() {
    check_committed(
        "snapshot-v1.schema.json",
        &tollgate::snapshot::Snapshot::schema(),
    );
    check_committed("policy.schema.json", &tollgate::policy::policy_schema());
}

#[test]
fn every_bundled_policy_validates_against_the_policy_schema() {
    let schema = tollgate::policy::policy_schema();
    let mut checked = 0;
    for entry in std::fs::read_dir(repo("policies")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".yaml") || name.ends_with(".test.yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let json = tollgate::policy::yaml::parse(&text).unwrap().to_json();
        let problems = schema_errors(&schema, &schema, &json);
        assert!(problems.is_empty(), "{name}: {problems:#?}");
        checked += 1;
    }
    assert!(checked >= 4);
    // And it is not vacuous: a misspelt field and a bad enum are caught.
    let bad = serde_json::json!({"apiVersion": "tollgate.dev/v1", "kind": "Policy",
        "metadata": {"name": "x"}, "stages": [{"name": "s", "gates": [
            {"name": "g", "plugin": "threshold", "on_eror": "warn", "on_no_data": "maybe"}]}]});
    let problems = schema_errors(&schema, &schema, &bad);
    assert_eq!(problems.len(), 2, "{problems:#?}");
}

#[test]
fn every_example_and_fixture_snapshot_validates_against_the_snapshot_schema() {
    let schema = tollgate::snapshot::Snapshot::schema();
    let mut files = Vec::new();
    for dir in ["tests/fixtures", "../shared/examples"] {
        let Ok(entries) = std::fs::read_dir(repo(dir)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    assert!(files.len() >= 9, "{files:?}");
    for path in &files {
        let json: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let problems = schema_errors(&schema, &schema, &json);
        assert!(problems.is_empty(), "{}: {problems:#?}", path.display());
    }
    let bad = serde_json::json!({"service": "s", "version": "1", "taken_at": 1,
        "metrics": [{"name": "m", "points": [[1, 2, 3]]}], "baselin": []});
    assert_eq!(schema_errors(&schema, &schema, &bad).len(), 2);
}

/// Found by the `snapshot` fuzz target: `2.41e82` was read one unit in the
/// last place off, so writing the snapshot back and reading it again gave
/// another number (and another input digest).
#[test]
fn fuzz_snapshot_numbers_survive_a_json_round_trip() {
    let text = r#"{"service": "s", "version": "1", "taken_at": 1764237600,
        "metrics": [{"name": "m", "points": [[1764236760, 2.41e82], [1764236820, 0.1], [1764236880, 5e-324]]}]}"#;
    let first = tollgate::snapshot::Snapshot::from_json(text.as_bytes()).unwrap();
    let written = serde_json::to_vec(&first.to_json_v1()).unwrap();
    let second = tollgate::snapshot::Snapshot::from_json(&written).unwrap();
    assert_eq!(first, second);
    assert_eq!(first.metrics[0].points[0].value, 2.41e82);
    assert_eq!(
        tollgate::evaluate::input_digest(&first),
        tollgate::evaluate::input_digest(&second)
    );
}
