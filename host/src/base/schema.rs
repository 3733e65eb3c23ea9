//! JSON Schema generation shared by the snapshot and policy formats.

use serde_json::Value;

/// The draft 2020-12 schema of `T`, with optional fields written as
/// absent-or-typed rather than nullable: the readers refuse `null` where a
/// value is optional, so the schema must too.
pub(crate) fn generate<T: schemars::JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let mut schema =
        serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or_default();
    drop_null(&mut schema);
    schema
}

fn drop_null(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(options)) = map.get_mut("anyOf") {
                options.retain(|o| {
                    o.get("type").is_none_or(|t| t != "null")
                        || o.as_object().is_some_and(|m| m.len() > 1)
                });
                if options.len() == 1
                    && let Some(Value::Object(only)) = options.pop()
                {
                    map.remove("anyOf");
                    for (k, val) in only {
                        map.entry(k).or_insert(val);
                    }
                }
            }
            map.values_mut().for_each(drop_null);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null),
        _ => {}
    }
}
