//! SARIF 2.1.0: findings by level (lint) and by `security-severity`
//! (security).

use serde::Deserialize;

use super::{ReportError, Values, err};

#[derive(Deserialize)]
struct Sarif {
    version: String,
    #[serde(default)]
    runs: Vec<Run>,
}

#[derive(Deserialize)]
struct Run {
    tool: Tool,
    #[serde(default)]
    results: Vec<SarifResult>,
}

#[derive(Deserialize)]
struct Tool {
    driver: Component,
    #[serde(default)]
    extensions: Vec<Component>,
}

#[derive(Deserialize)]
struct Component {
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    #[serde(default)]
    id: Option<String>,
    #[serde(default, rename = "defaultConfiguration")]
    default_configuration: Option<Configuration>,
    #[serde(default)]
    properties: Option<Properties>,
}

#[derive(Deserialize)]
struct Configuration {
    #[serde(default)]
    level: Option<String>,
}

#[derive(Deserialize)]
struct Properties {
    #[serde(default, rename = "security-severity")]
    security_severity: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct SarifResult {
    #[serde(default, rename = "ruleId")]
    rule_id: Option<String>,
    #[serde(default, rename = "ruleIndex")]
    rule_index: Option<usize>,
    #[serde(default)]
    rule: Option<RuleReference>,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    properties: Option<Properties>,
}

#[derive(Deserialize)]
struct RuleReference {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    index: Option<usize>,
    #[serde(default, rename = "toolComponent")]
    tool_component: Option<ToolComponentReference>,
}

#[derive(Deserialize)]
struct ToolComponentReference {
    #[serde(default)]
    index: Option<usize>,
}

/// Every result of a SARIF log with its effective level and severity.
pub(super) struct Findings(Vec<(String, Option<f64>)>);

impl Findings {
    pub(super) fn levels(&self) -> Values {
        let count = |l: &str| self.0.iter().filter(|(level, _)| level == l).count() as f64;
        let mut out = Values::new();
        out.insert("lint_errors", count("error"));
        out.insert("lint_warnings", count("warning"));
        out.insert("lint_notes", count("note"));
        out
    }

    /// CVSS bands as GitHub code scanning reads `security-severity`:
    /// over 9.0 critical, 7.0–8.9 high, 4.0–6.9 medium, 0.1–3.9 low.
    pub(super) fn severities(&self) -> Values {
        let mut out = Values::new();
        for band in ["critical", "high", "medium", "low"] {
            out.insert(band_metric(band), 0.0);
        }
        for (_, severity) in &self.0 {
            let band = match severity {
                Some(s) if *s >= 9.0 => "critical",
                Some(s) if *s >= 7.0 => "high",
                Some(s) if *s >= 4.0 => "medium",
                Some(s) if *s > 0.0 => "low",
                _ => continue,
            };
            if let Some(n) = out.get_mut(band_metric(band)) {
                *n += 1.0;
            }
        }
        out
    }
}

fn band_metric(band: &str) -> &'static str {
    match band {
        "critical" => "vulnerabilities_critical",
        "high" => "vulnerabilities_high",
        "medium" => "vulnerabilities_medium",
        _ => "vulnerabilities_low",
    }
}

fn severity(p: Option<&Properties>) -> Result<Option<f64>, ReportError> {
    let Some(v) = p.and_then(|p| p.security_severity.as_ref()) else {
        return Ok(None);
    };
    let n = match v {
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        serde_json::Value::Number(n) => n.as_f64(),
        _ => None,
    };
    n.filter(|n| n.is_finite() && (0.0..=10.0).contains(n))
        .map(Some)
        .ok_or_else(|| {
            err(format!(
                "SARIF: `security-severity` {v} is not a score from 0 to 10"
            ))
        })
}

pub(super) fn sarif(bytes: &[u8]) -> Result<Findings, ReportError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let log: Sarif = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_eof() {
            err(format!(
                "SARIF: truncated at line {}, column {}",
                inner.line(),
                inner.column()
            ))
        } else if path == "." {
            err(format!("SARIF: {inner}"))
        } else {
            err(format!("SARIF: {path}: {inner}"))
        }
    })?;
    if log.version != "2.1.0" {
        return Err(err(format!(
            "SARIF: version `{}` is not 2.1.0",
            log.version
        )));
    }
    let mut findings = Vec::new();
    for run in &log.runs {
        for r in &run.results {
            let component = match r.rule.as_ref().and_then(|x| x.tool_component.as_ref()) {
                Some(t) => t.index.and_then(|i| run.tool.extensions.get(i)),
                None => Some(&run.tool.driver),
            };
            let id = r
                .rule_id
                .as_deref()
                .or_else(|| r.rule.as_ref().and_then(|x| x.id.as_deref()));
            let index = r
                .rule_index
                .or_else(|| r.rule.as_ref().and_then(|x| x.index));
            let rule = component.and_then(|c| match index {
                Some(i) => c.rules.get(i),
                None => c
                    .rules
                    .iter()
                    .find(|rule| rule.id.as_deref() == id && id.is_some()),
            });
            // SARIF §3.27.10: a result's own level, else `none` for a kind
            // other than `fail`, else the rule's default, else `warning`.
            let level = match (&r.level, r.kind.as_deref()) {
                (Some(l), _) => l.clone(),
                (None, Some(k)) if k != "fail" => "none".into(),
                _ => rule
                    .and_then(|x| x.default_configuration.as_ref())
                    .and_then(|c| c.level.clone())
                    .unwrap_or_else(|| "warning".into()),
            };
            let sev = match severity(r.properties.as_ref())? {
                Some(s) => Some(s),
                None => severity(rule.and_then(|x| x.properties.as_ref()))?,
            };
            findings.push((level, sev));
        }
    }
    Ok(Findings(findings))
}
