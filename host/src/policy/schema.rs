//! The policy format, described once. These types name every key each
//! part of a policy may have: the parser accepts exactly their fields (see
//! [`keys`]), `schemas/policy.schema.json` is generated from them for
//! editors (`# yaml-language-server: $schema=…`) and other tools, and so is
//! the field reference in `docs/policy-format.md`. Tests keep both files
//! equal to them, and every bundled policy deserializes into them.
//!
//! A new key is added here; the parser then accepts it and needs only the
//! code that reads its value.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

/// A tollgate policy: stages of gates, rollback triggers, deployment
/// actions, and where metrics come from.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "tollgate policy")]
#[expect(
    dead_code,
    reason = "a description of the format; the parser reads policies"
)]
pub(super) struct PolicyDoc {
    /// Always `tollgate.dev/v1`.
    #[serde(rename = "apiVersion")]
    #[schemars(regex(pattern = r"^tollgate\.dev/v1$"))]
    api_version: String,
    /// Always `Policy`.
    #[schemars(regex(pattern = "^Policy$"))]
    kind: String,
    metadata: MetadataDoc,
    /// User plugins, by the name gates use.
    plugins: Option<BTreeMap<String, PluginDoc>>,
    scoring: Option<ScoringDoc>,
    /// The stages, in order; at least one.
    #[schemars(length(min = 1))]
    stages: Vec<StageDoc>,
    /// Rollback triggers, checked with every stage.
    triggers: Option<Vec<TriggerDoc>>,
    /// Deployment actions, planned after every stage.
    actions: Option<Vec<ActionDoc>>,
    /// Where metrics come from when the caller sends no snapshot.
    metrics: Option<BTreeMap<String, MetricDoc>>,
    tracks: Option<TracksDoc>,
    /// Refuse any plugin file without an SSH signature (`FILE.sig`, from
    /// `ssh-keygen -Y sign -n tollgate-plugin`) by a key in `allowed_signers`.
    require_signature: Option<bool>,
    /// An `allowed_signers` file (ssh-keygen format), relative to the policy.
    allowed_signers: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename = "Metadata", deny_unknown_fields)]
#[expect(dead_code, reason = "a description of the format")]
pub(super) struct MetadataDoc {
    name: NameDoc,
    description: Option<String>,
}

/// What a plugin may read beyond its snapshot, through WASI.
#[derive(Deserialize, JsonSchema)]
#[serde(rename = "Grants", deny_unknown_fields)]
#[expect(dead_code, reason = "a description of the format")]
pub(super) struct GrantsDoc {
    /// Directories the plugin may read (never write), each seen at `guest`.
    files: Option<Vec<FileGrantDoc>>,
}

/// A directory the plugin may read.
#[derive(Deserialize, JsonSchema)]
#[serde(rename = "FileGrant", deny_unknown_fields)]
#[expect(dead_code, reason = "a description of the format")]
pub(super) struct FileGrantDoc {
    /// A directory on the host, relative to the policy.
    host: String,
    /// An absolute path where the plugin sees it, e.g. `/reports`.
    guest: String,
}

/// Lowercase letters, digits, `-`, `_` and `.`; 1 to 64 characters.
#[derive(Deserialize, JsonSchema)]
#[serde(rename = "Name", transparent)]
#[expect(dead_code, reason = "a description of the format")]
pub(super) struct NameDoc(#[schemars(regex(pattern = r"^[a-z0-9._-]{1,64}$"))] String);

/// A component file, optionally pinned by digest.
#[derive(Deserialize, JsonSchema)]
#[serde(rename = "Plugin", deny_unknown_fields)]
#[expect(dead_code, reason = "a description of the format")]
pub(super) struct PluginDoc {
    /// Relative to the policy file.
    path: String,
    /// `sha256:<64 hex digits>`; a component with another digest is refused.
    #[schemars(regex(pattern = "^sha256:[0-9a-f]{64}$"))]
    digest: Option<String>,
}

/// A percentage: `90`, or `"90%"`.
#[derive(Deserialize, JsonSchema)]
#[serde(rename = "Percent", untagged)]
#[expect(dead_code, reason = "a description of the format")]
pub(super) enum PercentDoc {
    Number(#[schemars(range(min = 0, max = 100))] f64),
    Text(#[schemars(regex(pattern = r"^\s*[0-9]+(\.[0-9]+)?\s*%$"))] String),
}

/// Score bands: at or above `pass` passes, at or above `warn` warns.
#[derive(Deserialize, JsonSchema)]
#[serde(rename = "Scoring", deny_unknown_fields)]
#[expect(dead_code, reason = "a description of the format")]
pub(super) struct ScoringDoc {
    pass: Option<PercentDoc>,
    warn: Option<PercentDoc>,
}

/// A duration such as `100ms`, `15m` or `1h 30m`.
#[derive(Deserialize, JsonSchema)]
#[serde(rename = "Duration", transparent)]
#[expect(dead_code, reason = "a description of the format")]
pub(super) struct DurationDoc(String);

/// A memory size such as `16MiB`, or bytes.
#[derive(Deserialize, JsonSchema)]
#[serde(rename = "Bytes", untagged)]
#[expect(dead_code, reason = "a description of the format")]
pub(super) enum BytesDoc {
    Bytes(u64),
    Text(String),
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename = "Stage", deny_unknown_fields)]
#[expect(dead_code, reason = "a description of the format")]
pub(super) struct StageDoc {
    name: NameDoc,
    description: Option<String>,
    scoring: Option<ScoringDoc>,
    /// Share of traffic the stage sends to the new version.
    traffic: Option<PercentDoc>,
    /// How long the stage must run before it may be left.
    duration: Option<DurationDoc>,
    gates: Vec<GateDoc>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename = "OnNoData", rename_all = "lowercase")]
pub(super) enum OnNoDataDoc {
    Inconclusive,
    Fail,
    Pass,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename = "OnError", rename_all = "lowercase")]
pub(super) enum OnErrorDoc {
    Fail,
    Warn,
    Ignore,
}

/// A plugin's settings: scalars, lists of scalars, nested mappings.
#[derive(Deserialize, JsonSchema)]
#[serde(rename = "With", transparent)]
#[expect(dead_code, reason = "a description of the format")]
pub(super) struct WithDoc(BTreeMap<String, serde_json::Value>);

#[derive(Deserialize, JsonSchema)]
#[serde(rename = "Gate", deny_unknown_fields)]
#[expect(dead_code, reason = "a description of the format")]
pub(super) struct GateDoc {
    name: NameDoc,
    description: Option<String>,
    /// A first-party plugin or one declared under `plugins`.
    plugin: String,
    with: Option<WithDoc>,
    #[schemars(range(min = 0, max = 1_000_000))]
    weight: Option<f64>,
    /// A failing key gate fails the stage whatever the score.
    key: Option<bool>,
    /// Evaluated and recorded, but never changes the decision.
    dry_run: Option<bool>,
    on_no_data: Option<OnNoDataDoc>,
    on_error: Option<OnErrorDoc>,
    /// CPU time per call (100ms by default, 10s at most).
    deadline: Option<DurationDoc>,
    /// Linear memory per call (16MiB by default, 256MiB at most).
    memory: Option<BytesDoc>,
    grants: Option<GrantsDoc>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename = "Trigger", deny_unknown_fields)]
#[expect(dead_code, reason = "a description of the format")]
pub(super) struct TriggerDoc {
    name: NameDoc,
    description: Option<String>,
    plugin: String,
    with: Option<WithDoc>,
    /// Whether an `alert` or `prepare-rollback` holds promotion.
    hold: Option<bool>,
    /// The stages it is checked in (default: every stage).
    stages: Option<Vec<NameDoc>>,
    deadline: Option<DurationDoc>,
    memory: Option<BytesDoc>,
    grants: Option<GrantsDoc>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename = "Action", deny_unknown_fields)]
#[expect(dead_code, reason = "a description of the format")]
pub(super) struct ActionDoc {
    name: NameDoc,
    description: Option<String>,
    plugin: String,
    with: Option<WithDoc>,
    deadline: Option<DurationDoc>,
    memory: Option<BytesDoc>,
    grants: Option<GrantsDoc>,
}

/// A metric queried from Prometheus: PromQL with `${service}`,
/// `${version}`, `${stage}` and `${track}`.
#[derive(Deserialize, JsonSchema)]
#[serde(rename = "Metric", deny_unknown_fields)]
#[expect(dead_code, reason = "a description of the format")]
pub(super) struct MetricDoc {
    /// PromQL for the server's or the CLI's Prometheus. Give this, or
    /// `source` and `query`.
    prometheus: Option<String>,
    /// A source configured on the server (`telemetry.sources`) or the CLI
    /// (`--source`, `--sources`), whose plugin runs `query`.
    source: Option<String>,
    /// The query in the source's language (InfluxQL, LogQL, NRQL, …), with
    /// the same `${service}`, `${version}`, `${stage}` and `${track}`.
    query: Option<String>,
    /// How far back to query (the stage's duration, else 15m).
    window: Option<DurationDoc>,
    /// Resolution of the range query (30s).
    step: Option<DurationDoc>,
}

/// What `${track}` becomes for the current and the baseline series.
#[derive(Deserialize, JsonSchema)]
#[serde(rename = "Tracks", deny_unknown_fields)]
#[expect(dead_code, reason = "a description of the format")]
pub(super) struct TracksDoc {
    current: Option<String>,
    baseline: Option<String>,
}

/// The policy format's JSON Schema.
pub fn policy_schema() -> serde_json::Value {
    crate::base::schema::generate::<PolicyDoc>()
}

/// The keys a part of a policy may have, in the order its type declares
/// them (the order problems list them in), as serde's derive names them.
pub(super) fn keys<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    let mut found: &'static [&'static str] = &[];
    // The probe reads no data: it ends the call as soon as the type has
    // named its fields.
    let _ = T::deserialize(FieldProbe(&mut found));
    found
}

/// A deserializer that only asks a struct for its field names.
struct FieldProbe<'a>(&'a mut &'static [&'static str]);

/// How [`FieldProbe`] ends every call.
#[derive(Debug, thiserror::Error)]
#[error("only field names are asked for")]
struct Probed;

impl serde::de::Error for Probed {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Self
    }
}

impl<'de> serde::Deserializer<'de> for FieldProbe<'_> {
    type Error = Probed;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        Err(Probed)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Probed> {
        *self.0 = fields;
        Err(Probed)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// Each part of a policy the reference lists, with its keys in order and
/// its definition in the schema (`None` for the policy itself).
fn parts() -> [(&'static str, Option<&'static str>, &'static [&'static str]); 12] {
    [
        ("Policy", None, keys::<PolicyDoc>()),
        ("Metadata", Some("Metadata"), keys::<MetadataDoc>()),
        ("Plugin", Some("Plugin"), keys::<PluginDoc>()),
        ("Scoring", Some("Scoring"), keys::<ScoringDoc>()),
        ("Stage", Some("Stage"), keys::<StageDoc>()),
        ("Gate", Some("Gate"), keys::<GateDoc>()),
        ("Trigger", Some("Trigger"), keys::<TriggerDoc>()),
        ("Action", Some("Action"), keys::<ActionDoc>()),
        ("Metric", Some("Metric"), keys::<MetricDoc>()),
        ("Tracks", Some("Tracks"), keys::<TracksDoc>()),
        ("Grants", Some("Grants"), keys::<GrantsDoc>()),
        ("FileGrant", Some("FileGrant"), keys::<FileGrantDoc>()),
    ]
}

/// The values the parts' keys take, described in the schema.
const VALUES: [&str; 7] = [
    "Name", "Percent", "Duration", "Bytes", "With", "OnNoData", "OnError",
];

/// The field reference in `docs/policy-format.md`, from the same types as
/// the parser's keys and the schema.
pub fn policy_reference() -> String {
    use std::fmt::Write as _;
    let schema = policy_schema();
    let mut out = String::from(
        "# Policy format\n\n\
         <!-- Generated from host/src/policy/schema.rs; \
         `BLESS=1 cargo test -p tollgate --lib policy::schema` rewrites it. -->\n\n\
         Every key a policy may have, part by part. The parser accepts exactly \
         these keys, and `schemas/policy.schema.json` is generated from the same \
         types. A key in no table is refused with the line it is on.\n",
    );
    for (title, def, keys) in parts() {
        let node = def.map_or(&schema, |d| &schema["$defs"][d]);
        let _ = write!(out, "\n## {title}\n\n");
        if let Some(text) = node["description"].as_str() {
            let _ = write!(out, "{}\n\n", one_line(text));
        }
        out.push_str("| key | value | required | description |\n|---|---|---|---|\n");
        let required = node["required"].as_array();
        for key in keys {
            let property = &node["properties"][*key];
            let needed = required.is_some_and(|r| r.iter().any(|k| k == key));
            let _ = writeln!(
                out,
                "| `{key}` | {} | {} | {} |",
                value(property),
                if needed { "yes" } else { "no" },
                property["description"]
                    .as_str()
                    .map(one_line)
                    .unwrap_or_default()
            );
        }
    }
    out.push_str("\n## Values\n");
    for name in VALUES {
        let node = &schema["$defs"][name];
        let _ = write!(out, "\n### {name}\n\n");
        if let Some(text) = node["description"].as_str() {
            let _ = write!(out, "{}\n\n", one_line(text));
        }
        let _ = writeln!(out, "{}", value(&Value::Object(inline(node))));
    }
    out
}

/// A definition without its description, to show its value alone.
fn inline(node: &Value) -> serde_json::Map<String, Value> {
    let mut node = node.as_object().cloned().unwrap_or_default();
    node.remove("description");
    node
}

/// A schema's value, as a reader says it.
fn value(schema: &Value) -> String {
    use std::fmt::Write as _;
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/$defs/");
        return format!("[{name}](#{})", name.to_lowercase());
    }
    if let Some(options) = schema["anyOf"].as_array() {
        let shown: Vec<String> = options.iter().map(value).collect();
        return shown.join(", or ");
    }
    if let Some(values) = schema["enum"].as_array() {
        let shown: Vec<String> = values
            .iter()
            .map(|v| format!("`{}`", v.as_str().unwrap_or_default()))
            .collect();
        return format!("one of {}", shown.join(", "));
    }
    let mut shown = match schema["type"].as_str() {
        Some("string") => "text".to_string(),
        Some("boolean") => "`true` or `false`".to_string(),
        Some("integer") => "a whole number".to_string(),
        Some("number") => "a number".to_string(),
        Some("array") => format!("a list of {}", value(&schema["items"])),
        Some("object") => match &schema["additionalProperties"] {
            Value::Bool(true) => "a mapping of settings".to_string(),
            Value::Object(_) => format!(
                "a mapping of name to {}",
                value(&schema["additionalProperties"])
            ),
            _ => "a mapping".to_string(),
        },
        _ => "anything".to_string(),
    };
    if let Some(pattern) = schema["pattern"].as_str() {
        let _ = write!(shown, " matching `{pattern}`");
    }
    if let (Some(min), Some(max)) = (schema["minimum"].as_f64(), schema["maximum"].as_f64()) {
        let _ = write!(shown, " from {min} to {max}");
    }
    if let Some(n) = schema["minItems"].as_u64() {
        let _ = write!(shown, ", at least {n}");
    }
    shown
}

/// A description on one table line.
fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys a schema object allows, sorted.
    fn properties(node: &Value) -> Vec<String> {
        let mut keys: Vec<String> = node["properties"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    fn sorted(fields: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = fields.iter().map(|s| (*s).to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn the_parser_and_the_schema_read_the_same_keys_from_the_types() {
        let schema = policy_schema();
        for (title, def, keys) in parts() {
            let node = def.map_or(&schema, |d| &schema["$defs"][d]);
            assert!(!keys.is_empty(), "{title}");
            assert_eq!(properties(node), sorted(keys), "{title}");
        }
        assert_eq!(
            keys::<GateDoc>(),
            [
                "name",
                "description",
                "plugin",
                "with",
                "weight",
                "key",
                "dry_run",
                "on_no_data",
                "on_error",
                "deadline",
                "memory",
                "grants"
            ]
        );
        assert_eq!(keys::<PolicyDoc>()[0], "apiVersion");
    }

    #[test]
    fn every_bundled_policy_is_described_by_the_types() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.to_string_lossy().into_owned();
            if !name.ends_with(".yaml") || name.ends_with(".test.yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let json = super::super::yaml::parse(&text).unwrap().to_json();
            if let Err(e) = serde_json::from_value::<PolicyDoc>(json) {
                panic!("{name}: {e}");
            }
            checked += 1;
        }
        assert!(checked >= 4);
        let typo = serde_json::json!({"apiVersion": "tollgate.dev/v1", "kind": "Policy",
            "metadata": {"name": "x"}, "stages": [{"name": "s", "gates": [
                {"name": "g", "plugin": "threshold", "on_eror": "warn"}]}]});
        assert!(serde_json::from_value::<PolicyDoc>(typo).is_err());
    }

    #[test]
    fn the_committed_reference_is_the_generated_one() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/policy-format.md");
        let generated = policy_reference();
        if std::env::var_os("BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "`docs/policy-format.md` differs from the types; run `BLESS=1 cargo test -p tollgate --lib policy::schema` and commit it"
        );
    }
}
