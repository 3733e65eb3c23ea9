//! One gate run into its finding: a plugin gate through the evaluation's
//! session, or a host gate judged from the recorded approvals.

use std::collections::BTreeMap;

use super::decision::{Counted, GateResult, Verdict};
use super::scoring::counted_as;
use super::{Request, micros};
use crate::engine::{self, Finding};
use crate::policy::{Gate, LoadedPolicy};
use crate::snapshot::Snapshot;

/// A gate the host judges from the recorded approvals, by its rule.
pub(super) fn run_host_gate(
    gate: &Gate,
    rule: &crate::policy::approvals::Rule,
    request: &Request<'_>,
    snapshot: &Snapshot,
    stage: &str,
) -> GateResult {
    let started = std::time::Instant::now();
    let judged = rule.judge(request.approvals, snapshot, stage, request.decided_at);
    let verdict = if judged.met() {
        Verdict::Pass
    } else {
        Verdict::Inconclusive
    };
    GateResult {
        name: gate.name.to_string(),
        plugin: gate.plugin.clone(),
        verdict,
        counted_as: counted_as(gate, verdict),
        reason: judged.to_string(),
        observed: Some(judged.counted() as f64),
        threshold: Some(judged.required() as f64),
        weight: gate.weight,
        key: gate.key,
        dry_run: gate.dry_run,
        details: judged.details(),
        logs: Vec::new(),
        reads: Vec::new(),
        cause: None,
        duration_us: micros(started.elapsed()),
    }
}

pub(super) fn run_gate(
    loaded: &LoadedPolicy,
    gate: &Gate,
    session: &mut engine::Session,
) -> GateResult {
    let mut result = GateResult {
        name: gate.name.to_string(),
        plugin: gate.plugin.clone(),
        verdict: Verdict::Error,
        counted_as: Counted::Fail,
        reason: String::new(),
        observed: None,
        threshold: None,
        weight: gate.weight,
        key: gate.key,
        dry_run: gate.dry_run,
        details: BTreeMap::new(),
        logs: Vec::new(),
        reads: Vec::new(),
        cause: None,
        duration_us: 0,
    };
    let Some(plugin) = loaded.plugins.get(&gate.plugin) else {
        // A loaded policy resolves every plugin; this guards the invariant.
        result.reason = format!("plugin `{}` is not loaded", gate.plugin);
        return result;
    };
    let span = tracing::info_span!(
        "gate",
        gate = %gate.name,
        plugin = %gate.plugin,
        verdict = tracing::field::Empty,
        duration_us = tracing::field::Empty
    );
    let _entered = span.enter();
    let call = session.evaluate(plugin, &gate.config, &gate.limits);
    result.duration_us = micros(call.elapsed);
    span.record("duration_us", result.duration_us);
    result.logs = call.logs;
    result.reads = call.reads;
    match call.result {
        Ok(Finding {
            verdict,
            reason,
            observed,
            threshold,
            details,
        }) => {
            result.verdict = match verdict {
                engine::PluginVerdict::Pass => Verdict::Pass,
                engine::PluginVerdict::Warn => Verdict::Warn,
                engine::PluginVerdict::Fail => Verdict::Fail,
                engine::PluginVerdict::Inconclusive => Verdict::Inconclusive,
            };
            result.reason = reason;
            result.observed = observed;
            result.threshold = threshold;
            result.details = details.into_iter().collect();
        }
        Err(e) => {
            result.verdict = Verdict::Error;
            result.reason = e.to_string();
            result.cause = Some(e.cause().to_string());
        }
    }
    result.counted_as = counted_as(gate, result.verdict);
    span.record("verdict", result.verdict.as_str());
    result
}
