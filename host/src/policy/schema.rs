//! The policy format as JSON Schema, for editors (`# yaml-language-server:
//! $schema=…`) and for other tools. The types here exist only to generate
//! `schemas/policy.schema.json`; a test keeps their field lists equal to
//! the ones the parser accepts, and the committed file equal to them.

use std::collections::BTreeMap;

use schemars::JsonSchema;

/// A tollgate policy: stages of gates, rollback triggers, deployment
/// actions, and where metrics come from.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields, title = "tollgate policy")]
#[expect(dead_code, reason = "a schema-only type; nothing reads its fields")]
pub(super) struct PolicyDoc {
    /// Always `tollgate.dev/v1`.
    #[schemars(rename = "apiVersion", regex(pattern = r"^tollgate\.dev/v1$"))]
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

#[derive(JsonSchema)]
#[schemars(rename = "Metadata")]
#[schemars(deny_unknown_fields)]
#[expect(dead_code, reason = "a schema-only type")]
struct MetadataDoc {
    name: NameDoc,
    description: Option<String>,
}

/// What a plugin may read beyond its snapshot, through WASI.
#[derive(JsonSchema)]
#[schemars(rename = "Grants")]
#[schemars(deny_unknown_fields)]
#[expect(dead_code, reason = "a schema-only type")]
struct GrantsDoc {
    /// Directories the plugin may read (never write), each seen at `guest`.
    files: Option<Vec<FileGrantDoc>>,
}

/// A directory the plugin may read.
#[derive(JsonSchema)]
#[schemars(rename = "FileGrant")]
#[schemars(deny_unknown_fields)]
#[expect(dead_code, reason = "a schema-only type")]
struct FileGrantDoc {
    /// A directory on the host, relative to the policy.
    host: String,
    /// An absolute path where the plugin sees it, e.g. `/reports`.
    guest: String,
}

/// Lowercase letters, digits, `-`, `_` and `.`; 1 to 64 characters.
#[derive(JsonSchema)]
#[schemars(rename = "Name")]
#[schemars(transparent)]
#[expect(dead_code, reason = "a schema-only type")]
struct NameDoc(#[schemars(regex(pattern = r"^[a-z0-9._-]{1,64}$"))] String);

/// A component file, optionally pinned by digest.
#[derive(JsonSchema)]
#[schemars(rename = "Plugin")]
#[schemars(deny_unknown_fields)]
#[expect(dead_code, reason = "a schema-only type")]
struct PluginDoc {
    /// Relative to the policy file.
    path: String,
    /// `sha256:<64 hex digits>`; a component with another digest is refused.
    #[schemars(regex(pattern = "^sha256:[0-9a-f]{64}$"))]
    digest: Option<String>,
}

/// A percentage: `90`, or `"90%"`.
#[derive(JsonSchema)]
#[schemars(rename = "Percent")]
#[schemars(untagged)]
#[expect(dead_code, reason = "a schema-only type")]
enum PercentDoc {
    Number(#[schemars(range(min = 0, max = 100))] f64),
    Text(#[schemars(regex(pattern = r"^\s*[0-9]+(\.[0-9]+)?\s*%$"))] String),
}

/// Score bands: at or above `pass` passes, at or above `warn` warns.
#[derive(JsonSchema)]
#[schemars(rename = "Scoring")]
#[schemars(deny_unknown_fields)]
#[expect(dead_code, reason = "a schema-only type")]
struct ScoringDoc {
    pass: Option<PercentDoc>,
    warn: Option<PercentDoc>,
}

/// A duration such as `100ms`, `15m` or `1h 30m`.
#[derive(JsonSchema)]
#[schemars(rename = "Duration")]
#[schemars(transparent)]
#[expect(dead_code, reason = "a schema-only type")]
struct DurationDoc(String);

/// A memory size such as `16MiB`, or bytes.
#[derive(JsonSchema)]
#[schemars(rename = "Bytes")]
#[schemars(untagged)]
#[expect(dead_code, reason = "a schema-only type")]
enum BytesDoc {
    Bytes(u64),
    Text(String),
}

#[derive(JsonSchema)]
#[schemars(rename = "Stage")]
#[schemars(deny_unknown_fields)]
#[expect(dead_code, reason = "a schema-only type")]
struct StageDoc {
    name: NameDoc,
    description: Option<String>,
    scoring: Option<ScoringDoc>,
    /// Share of traffic the stage sends to the new version.
    traffic: Option<PercentDoc>,
    /// How long the stage must run before it may be left.
    duration: Option<DurationDoc>,
    gates: Vec<GateDoc>,
}

#[derive(JsonSchema)]
#[schemars(rename = "OnNoData")]
#[schemars(rename_all = "lowercase")]
#[expect(dead_code, reason = "a schema-only type")]
enum OnNoDataDoc {
    Inconclusive,
    Fail,
    Pass,
}

#[derive(JsonSchema)]
#[schemars(rename = "OnError")]
#[schemars(rename_all = "lowercase")]
#[expect(dead_code, reason = "a schema-only type")]
enum OnErrorDoc {
    Fail,
    Warn,
    Ignore,
}

/// A plugin's settings: scalars, lists of scalars, nested mappings.
#[derive(JsonSchema)]
#[schemars(rename = "With")]
#[schemars(transparent)]
#[expect(dead_code, reason = "a schema-only type")]
struct WithDoc(BTreeMap<String, serde_json::Value>);

#[derive(JsonSchema)]
#[schemars(rename = "Gate")]
#[schemars(deny_unknown_fields)]
#[expect(dead_code, reason = "a schema-only type")]
struct GateDoc {
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

#[derive(JsonSchema)]
#[schemars(rename = "Trigger")]
#[schemars(deny_unknown_fields)]
#[expect(dead_code, reason = "a schema-only type")]
struct TriggerDoc {
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

#[derive(JsonSchema)]
#[schemars(rename = "Action")]
#[schemars(deny_unknown_fields)]
#[expect(dead_code, reason = "a schema-only type")]
struct ActionDoc {
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
#[derive(JsonSchema)]
#[schemars(rename = "Metric")]
#[schemars(deny_unknown_fields)]
#[expect(dead_code, reason = "a schema-only type")]
struct MetricDoc {
    prometheus: String,
    /// How far back to query (the stage's duration, else 15m).
    window: Option<DurationDoc>,
    /// Resolution of the range query (30s).
    step: Option<DurationDoc>,
}

/// What `${track}` becomes for the current and the baseline series.
#[derive(JsonSchema)]
#[schemars(rename = "Tracks")]
#[schemars(deny_unknown_fields)]
#[expect(dead_code, reason = "a schema-only type")]
struct TracksDoc {
    current: Option<String>,
    baseline: Option<String>,
}

/// The policy format's JSON Schema.
pub fn policy_schema() -> serde_json::Value {
    crate::schema::generate::<PolicyDoc>()
}

/// The properties a schema object allows, for the drift check.
#[cfg(test)]
fn properties(schema: &serde_json::Value, def: Option<&str>) -> Vec<String> {
    let node = match def {
        Some(d) => &schema["$defs"][d],
        None => schema,
    };
    let mut keys: Vec<String> = node["properties"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(fields: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = fields.iter().map(|s| (*s).to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn the_schema_allows_exactly_what_the_parser_reads() {
        let s = policy_schema();
        let p = super::super::parse::FIELDS;
        assert_eq!(properties(&s, None), sorted(p.policy));
        assert_eq!(properties(&s, Some("Stage")), sorted(p.stage));
        assert_eq!(properties(&s, Some("Gate")), sorted(p.gate));
        assert_eq!(properties(&s, Some("Trigger")), sorted(p.trigger));
        assert_eq!(properties(&s, Some("Action")), sorted(p.action));
        assert_eq!(properties(&s, Some("Metric")), sorted(p.metric));
    }
}
