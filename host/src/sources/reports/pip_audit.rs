//! pip-audit's JSON report: vulnerable and unaudited dependencies.

use serde::Deserialize;

use super::{ReportError, Values, json};

#[derive(Deserialize)]
struct PipAudit {
    dependencies: Vec<AuditedDependency>,
}

#[derive(Deserialize)]
struct AuditedDependency {
    #[serde(default)]
    vulns: Vec<serde_json::Value>,
    #[serde(default)]
    skip_reason: Option<String>,
}

/// pip-audit's JSON (`-f json`): dependencies with a known vulnerability,
/// and those it could not audit — which pip-audit itself reports as "No
/// known vulnerabilities found", so a gate can refuse a partial audit.
pub(super) fn pip_audit(bytes: &[u8]) -> Result<Values, ReportError> {
    let report: PipAudit = json(bytes, "pip-audit")?;
    let count = |f: fn(&AuditedDependency) -> bool| {
        report.dependencies.iter().filter(|d| f(d)).count() as f64
    };
    let mut out = Values::new();
    out.insert("dependencies_total", report.dependencies.len() as f64);
    out.insert("dependencies_vulnerable", count(|d| !d.vulns.is_empty()));
    out.insert("dependencies_unaudited", count(|d| d.skip_reason.is_some()));
    Ok(out)
}
