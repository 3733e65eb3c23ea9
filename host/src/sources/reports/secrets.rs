//! Hardcoded secrets: detect-secrets' baseline or gitleaks' findings.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ReportError, Values, err, json};

/// detect-secrets' baseline (`results`: findings by file) or gitleaks'
/// report (a list of findings).
#[derive(Deserialize)]
#[serde(untagged)]
enum Secrets {
    DetectSecrets {
        results: BTreeMap<String, Vec<serde_json::Value>>,
    },
    Gitleaks(Vec<serde_json::Value>),
}

pub(super) fn secrets(bytes: &[u8]) -> Result<Values, ReportError> {
    let found = match json::<Secrets>(bytes, "secrets") {
        Ok(Secrets::DetectSecrets { results }) => results.values().map(Vec::len).sum::<usize>(),
        Ok(Secrets::Gitleaks(findings)) => findings.len(),
        Err(e) => {
            return Err(err(format!(
                "{e} (expected detect-secrets' JSON with `results`, or gitleaks' list of findings)"
            )));
        }
    };
    let mut out = Values::new();
    out.insert("secrets_detected", found as f64);
    Ok(out)
}
