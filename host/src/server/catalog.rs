//! What the catalog shows: a loaded policy (`GET /v1/policies`) and the
//! plugins the policies use (`GET /v1/plugins`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::PolicySet;
use crate::base::digest::Digest;
use crate::engine::report::PluginReport;
use crate::policy::{LoadedPolicy, OnError, OnNoData, Scoring};

/// A policy as the catalog shows it.
#[derive(Debug, Serialize)]
pub(super) struct PolicyView<'a> {
    name: &'a str,
    description: Option<&'a str>,
    digest: Digest,
    /// Its file, or `bundled:<file>`.
    source: &'a str,
    stages: Vec<StageView<'a>>,
    triggers: Vec<TriggerView<'a>>,
    actions: Vec<ActionView<'a>>,
    /// Each plugin the policy uses, by name, with its digest.
    plugins: BTreeMap<&'a str, Digest>,
    /// The metrics it queries from Prometheus.
    metrics: Vec<&'a str>,
}

#[derive(Debug, Serialize)]
struct StageView<'a> {
    name: &'a str,
    description: Option<&'a str>,
    traffic_percent: Option<u8>,
    duration_seconds: Option<u64>,
    scoring: Scoring,
    gates: Vec<GateView<'a>>,
}

#[derive(Debug, Serialize)]
struct GateView<'a> {
    name: &'a str,
    description: Option<&'a str>,
    plugin: &'a str,
    /// Its settings (`with:`), flattened keys as the plugin receives them.
    with: BTreeMap<&'a str, serde_json::Value>,
    weight: f64,
    key: bool,
    dry_run: bool,
    on_no_data: OnNoData,
    on_error: OnError,
    deadline_ms: u64,
    memory_bytes: usize,
}

#[derive(Debug, Serialize)]
struct TriggerView<'a> {
    name: &'a str,
    description: Option<&'a str>,
    plugin: &'a str,
    with: BTreeMap<&'a str, serde_json::Value>,
    hold: bool,
}

#[derive(Debug, Serialize)]
struct ActionView<'a> {
    name: &'a str,
    plugin: &'a str,
    with: BTreeMap<&'a str, serde_json::Value>,
}

impl<'a> PolicyView<'a> {
    pub(super) fn new(name: &'a str, loaded: &'a LoadedPolicy, source: &'a str) -> Self {
        let p = &loaded.policy;
        Self {
            name,
            description: p.description.as_deref(),
            digest: loaded.digest,
            source,
            stages: p
                .stages
                .iter()
                .map(|s| StageView {
                    name: s.name.as_str(),
                    description: s.description.as_deref(),
                    traffic_percent: s.traffic,
                    duration_seconds: s.duration.map(|d| d.as_secs()),
                    scoring: s.scoring,
                    gates: s
                        .gates
                        .iter()
                        .map(|g| GateView {
                            name: g.name.as_str(),
                            description: g.description.as_deref(),
                            plugin: &g.plugin,
                            with: settings(&g.config),
                            weight: g.weight,
                            key: g.key,
                            dry_run: g.dry_run,
                            on_no_data: g.on_no_data,
                            on_error: g.on_error,
                            deadline_ms: u64::try_from(g.limits.deadline.as_millis())
                                .unwrap_or(u64::MAX),
                            memory_bytes: g.limits.memory,
                        })
                        .collect(),
                })
                .collect(),
            triggers: p
                .triggers
                .iter()
                .map(|t| TriggerView {
                    name: t.name.as_str(),
                    description: t.description.as_deref(),
                    plugin: &t.plugin,
                    with: settings(&t.config),
                    hold: t.hold,
                })
                .collect(),
            actions: p
                .actions
                .iter()
                .map(|a| ActionView {
                    name: a.name.as_str(),
                    plugin: &a.plugin,
                    with: settings(&a.config),
                })
                .collect(),
            plugins: loaded
                .plugins
                .iter()
                .map(|(n, pl)| (n.as_str(), pl.digest()))
                .collect(),
            metrics: p.metrics.iter().map(|m| m.name.as_str()).collect(),
        }
    }
}

/// Plugin settings as JSON, for people reading a policy.
fn settings(config: &crate::engine::PluginConfig) -> BTreeMap<&str, serde_json::Value> {
    use crate::engine::{ConfigValue, Scalar};
    let scalar = |s: &Scalar| match s {
        Scalar::Boolean(b) => serde_json::Value::from(*b),
        Scalar::Integer(i) => serde_json::Value::from(*i),
        Scalar::Number(n) => serde_json::Value::from(*n),
        Scalar::Text(t) => serde_json::Value::from(t.as_str()),
    };
    config
        .iter()
        .map(|(k, v)| {
            let value = match v {
                ConfigValue::Boolean(b) => serde_json::Value::from(*b),
                ConfigValue::Integer(i) => serde_json::Value::from(*i),
                ConfigValue::Number(n) => serde_json::Value::from(*n),
                ConfigValue::Text(t) => serde_json::Value::from(t.as_str()),
                ConfigValue::List(items) => items.iter().map(scalar).collect(),
            };
            (k.as_str(), value)
        })
        .collect()
}

/// Every plugin the policies of `set` use and every first-party one, as
/// `tollgate audit` reports them, each with the policies that use it and
/// the directories they grant it.
pub(super) fn plugin_reports(set: &PolicySet) -> Vec<PluginReport> {
    let mut plugins: BTreeMap<String, PluginReport> = BTreeMap::new();
    for (policy, loaded, _) in set.iter() {
        for (name, p) in &loaded.plugins {
            let source = if crate::policy::builtin::plugin(name).is_some() {
                format!("builtin:{name}")
            } else {
                loaded
                    .policy
                    .plugins
                    .get(name)
                    .map_or_else(|| name.clone(), |d| d.path.display().to_string())
            };
            let entry = plugins
                .entry(p.digest().to_string())
                .or_insert_with(|| PluginReport::accepted(name, &source, p));
            if entry.signature.is_none() {
                entry.signature = loaded.signers.get(name).cloned();
            }
            entry
                .capabilities
                .extend(grants_of(policy, &loaded.policy, name));
            entry
                .used_by
                .get_or_insert_with(Vec::new)
                .push(policy.clone());
        }
    }
    for (name, p) in set.builtins() {
        plugins.entry(p.digest().to_string()).or_insert_with(|| {
            let mut report = PluginReport::accepted(name, &format!("builtin:{name}"), p);
            report.used_by = Some(Vec::new());
            report
        });
    }
    plugins.into_values().collect()
}

/// The directories `policy` grants to the uses of plugin `name`.
fn grants_of(policy: &str, p: &crate::policy::Policy, name: &str) -> Vec<String> {
    let uses = p
        .stages
        .iter()
        .flat_map(|s| {
            s.gates
                .iter()
                .map(|g| (g.name.as_str(), g.plugin.as_str(), &g.limits))
        })
        .chain(
            p.triggers
                .iter()
                .map(|t| (t.name.as_str(), t.plugin.as_str(), &t.limits)),
        )
        .chain(
            p.actions
                .iter()
                .map(|a| (a.name.as_str(), a.plugin.as_str(), &a.limits)),
        );
    uses.filter(|(_, plugin, _)| *plugin == name)
        .flat_map(|(what, _, limits)| {
            limits.files.iter().map(move |f| {
                format!(
                    "files:{policy}/{what}: {} -> {} (read-only)",
                    f.host.display(),
                    f.guest
                )
            })
        })
        .collect()
}
