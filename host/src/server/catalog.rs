//! What `GET /v1/policies` shows of a loaded policy.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::digest::Digest;
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
    plugin: &'a str,
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
    plugin: &'a str,
    hold: bool,
}

#[derive(Debug, Serialize)]
struct ActionView<'a> {
    name: &'a str,
    plugin: &'a str,
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
                            plugin: &g.plugin,
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
                    plugin: &t.plugin,
                    hold: t.hold,
                })
                .collect(),
            actions: p
                .actions
                .iter()
                .map(|a| ActionView {
                    name: a.name.as_str(),
                    plugin: &a.plugin,
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
