//! The published JSON Schemas: generated from the Rust types, committed
//! under `schemas/`, and met by every bundled policy, example and fixture.
//! `BLESS=1` rewrites the committed files.

use serde_json::Value;

use crate::support::repo;

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

/// A validator for the subset of JSON Schema the generated schemas use.
fn errors(root: &Value, schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    if schema == &Value::Bool(true) {
        return;
    }
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/$defs/");
        return errors(root, &root["$defs"][name], value, path, out);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema[key].as_array() {
            let passing = options
                .iter()
                .filter(|o| {
                    let mut e = Vec::new();
                    errors(root, o, value, path, &mut e);
                    e.is_empty()
                })
                .count();
            let ok = if key == "oneOf" {
                passing == 1
            } else {
                passing >= 1
            };
            if !ok {
                out.push(format!("{path}: {passing} of {key} match {value}"));
            }
        }
    }
    let type_ok = |t: &str| match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    };
    match &schema["type"] {
        Value::String(t) if !type_ok(t) => out.push(format!("{path}: expected {t}, got {value}")),
        Value::Array(ts) if !ts.iter().any(|t| type_ok(t.as_str().unwrap_or(""))) => {
            out.push(format!("{path}: expected {ts:?}, got {value}"));
        }
        _ => {}
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        out.push(format!("{path}: {value} not in {options:?}"));
    }
    if let (Some(min), Some(v)) = (schema["minimum"].as_f64(), value.as_f64())
        && v < min
    {
        out.push(format!("{path}: {v} < {min}"));
    }
    if let (Some(max), Some(v)) = (schema["maximum"].as_f64(), value.as_f64())
        && v > max
    {
        out.push(format!("{path}: {v} > {max}"));
    }
    if let Some(obj) = value.as_object() {
        for r in schema["required"].as_array().into_iter().flatten() {
            if !obj.contains_key(r.as_str().unwrap_or("")) {
                out.push(format!("{path}: missing `{r}`"));
            }
        }
        for (k, v) in obj {
            match schema["properties"].get(k) {
                Some(s) => errors(root, s, v, &format!("{path}.{k}"), out),
                None => match &schema["additionalProperties"] {
                    Value::Bool(false) => out.push(format!("{path}: unexpected `{k}`")),
                    s @ Value::Object(_) => errors(root, s, v, &format!("{path}.{k}"), out),
                    _ => {}
                },
            }
        }
    }
    if let Some(items) = value.as_array() {
        if let Some(n) = schema["minItems"].as_u64()
            && (items.len() as u64) < n
        {
            out.push(format!("{path}: fewer than {n} items"));
        }
        if let Some(n) = schema["maxItems"].as_u64()
            && (items.len() as u64) > n
        {
            out.push(format!("{path}: more than {n} items"));
        }
        let prefix = schema["prefixItems"].as_array();
        for (i, v) in items.iter().enumerate() {
            let item_schema = prefix
                .and_then(|p| p.get(i))
                .or_else(|| schema.get("items"));
            if let Some(s) = item_schema {
                errors(root, s, v, &format!("{path}[{i}]"), out);
            }
        }
    }
}

fn valid(schema: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    errors(schema, schema, value, "$", &mut out);
    out
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
        let problems = valid(&schema, &json);
        assert!(problems.is_empty(), "{name}: {problems:#?}");
        checked += 1;
    }
    assert!(checked >= 4);
    // And it is not vacuous: a misspelt field and a bad enum are caught.
    let bad = serde_json::json!({"apiVersion": "tollgate.dev/v1", "kind": "Policy",
        "metadata": {"name": "x"}, "stages": [{"name": "s", "gates": [
            {"name": "g", "plugin": "threshold", "on_eror": "warn", "on_no_data": "maybe"}]}]});
    let problems = valid(&schema, &bad);
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
        let problems = valid(&schema, &json);
        assert!(problems.is_empty(), "{}: {problems:#?}", path.display());
    }
    let bad = serde_json::json!({"service": "s", "version": "1", "taken_at": 1,
        "metrics": [{"name": "m", "points": [[1, 2, 3]]}], "baselin": []});
    assert_eq!(valid(&schema, &bad).len(), 2);
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
