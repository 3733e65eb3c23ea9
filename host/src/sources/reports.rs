//! CI report files turned into the seed's metric names.
//!
//! | kind | formats | metrics |
//! |---|---|---|
//! | `coverage` | lcov, Cobertura XML | `test_coverage_percent`, `test_branch_coverage_percent` |
//! | `tests` | JUnit XML | `tests_total`, `tests_failed`, `tests_skipped` |
//! | `lint` | SARIF 2.1.0 | `lint_errors`, `lint_warnings`, `lint_notes` |
//! | `security` | SARIF 2.1.0 | `vulnerabilities_critical`, `_high`, `_medium`, `_low` |
//! | `complexity` | radon `cc -j` | `cyclomatic_complexity_max` |
//! | `maintainability` | radon `mi -j` | `maintainability_index` (the lowest file's) |
//! | `duplication` | jscpd JSON | `duplication_percent` |
//! | `secrets` | detect-secrets, gitleaks JSON | `secrets_detected` |
//! | `dependencies` | pip-audit JSON | `dependencies_vulnerable`, `_unaudited`, `_total` |
//!
//! XML is read with quick-xml, which never expands entities a document
//! defines; a document type declaration is refused outright, so an XML bomb
//! gets an error, not memory. Every file is read through a size bound.

use std::collections::BTreeMap;
use std::path::Path;

use quick_xml::events::{BytesStart, Event};
use serde::Deserialize;

use crate::digest::Digest;

/// Largest report read.
pub const MAX_REPORT_BYTES: u64 = 64 << 20;

/// What a report file is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportKind {
    /// Line (and branch) coverage from lcov or Cobertura XML.
    Coverage,
    /// Test results from JUnit XML.
    Tests,
    /// Findings by level from SARIF.
    Lint,
    /// Findings by `security-severity` from SARIF.
    Security,
    /// Cyclomatic complexity per function from radon's `cc -j`.
    Complexity,
    /// Maintainability index per file from radon's `mi -j`.
    Maintainability,
    /// Duplicated lines from jscpd's JSON report.
    Duplication,
    /// Hardcoded secrets from detect-secrets' or gitleaks' JSON.
    Secrets,
    /// A dependency audit from pip-audit's JSON.
    Dependencies,
}

impl std::str::FromStr for ReportKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "coverage" | "lcov" | "cobertura" => Self::Coverage,
            "tests" | "junit" => Self::Tests,
            "lint" | "sarif" => Self::Lint,
            "security" | "vulnerabilities" => Self::Security,
            "complexity" => Self::Complexity,
            "maintainability" => Self::Maintainability,
            "duplication" => Self::Duplication,
            "secrets" => Self::Secrets,
            "dependencies" | "pip-audit" => Self::Dependencies,
            other => {
                return Err(format!(
                    "unknown report kind `{other}`; expected coverage, tests, lint, security, complexity, maintainability, duplication, secrets or dependencies"
                ));
            }
        })
    }
}

/// A report that could not be read; the file is named by the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReportError(pub String);

fn err(message: impl Into<String>) -> ReportError {
    ReportError(message.into())
}

/// The metrics a report yields, in a stable order.
pub type Values = BTreeMap<&'static str, f64>;

/// Reads `path` as a `kind` report.
pub fn read(kind: ReportKind, path: &Path) -> Result<(Values, Digest), ReportError> {
    let bytes =
        crate::files::read_limited(path, MAX_REPORT_BYTES).map_err(|e| err(e.to_string()))?;
    let values = parse(kind, crate::files::without_bom(&bytes))?;
    Ok((values, Digest::of(&bytes)))
}

/// Parses report bytes of `kind`.
pub fn parse(kind: ReportKind, bytes: &[u8]) -> Result<Values, ReportError> {
    match kind {
        ReportKind::Coverage => {
            let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
            if start.is_some_and(|i| bytes[i] == b'<') {
                cobertura(bytes)
            } else {
                lcov(bytes)
            }
        }
        ReportKind::Tests => junit(bytes),
        ReportKind::Lint => sarif(bytes).map(|s| s.levels()),
        ReportKind::Security => sarif(bytes).map(|s| s.severities()),
        ReportKind::Complexity => radon_cc(bytes),
        ReportKind::Maintainability => radon_mi(bytes),
        ReportKind::Duplication => jscpd(bytes),
        ReportKind::Secrets => secrets(bytes),
        ReportKind::Dependencies => pip_audit(bytes),
    }
}

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
fn pip_audit(bytes: &[u8]) -> Result<Values, ReportError> {
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

/// Deserializes a JSON report, naming where it broke.
fn json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ReportError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_eof() {
            err(format!(
                "{what}: truncated at line {}, column {}",
                inner.line(),
                inner.column()
            ))
        } else if path == "." {
            err(format!("{what}: {inner}"))
        } else {
            err(format!("{what}: {path}: {inner}"))
        }
    })
}

/// One entry of radon's per-file output: its blocks, or the error radon
/// met reading the file.
#[derive(Deserialize)]
#[serde(untagged)]
enum RadonFile<T> {
    Error { error: String },
    Ok(T),
}

/// A block of `radon cc -j`: a function, a method or a class, with the
/// methods and closures inside it.
#[derive(Deserialize)]
struct RadonBlock {
    complexity: f64,
    #[serde(default)]
    methods: Vec<RadonBlock>,
    #[serde(default)]
    closures: Vec<RadonBlock>,
    #[serde(default, rename = "type")]
    kind: String,
}

impl RadonBlock {
    /// The highest complexity of a function or method in this block. A
    /// class's own figure is the average of its methods', so it is skipped.
    fn max(&self) -> Option<f64> {
        let own = (self.kind != "class").then_some(self.complexity);
        self.methods
            .iter()
            .chain(&self.closures)
            .filter_map(RadonBlock::max)
            .chain(own)
            .reduce(f64::max)
    }
}

/// `radon cc -j`: the most complex function anywhere.
fn radon_cc(bytes: &[u8]) -> Result<Values, ReportError> {
    let files: BTreeMap<String, RadonFile<Vec<RadonBlock>>> = json(bytes, "radon cc")?;
    let mut max = None::<f64>;
    for (file, entry) in &files {
        match entry {
            RadonFile::Error { error } => {
                return Err(err(format!("radon cc: `{file}`: {error}")));
            }
            RadonFile::Ok(blocks) => {
                if let Some(m) = blocks.iter().filter_map(RadonBlock::max).reduce(f64::max) {
                    max = Some(max.map_or(m, |x| x.max(m)));
                }
            }
        }
    }
    let mut out = Values::new();
    // A report with no function in it has no complexity to judge.
    if let Some(max) = max {
        out.insert("cyclomatic_complexity_max", max);
    }
    Ok(out)
}

#[derive(Deserialize)]
struct RadonMi {
    mi: f64,
}

/// `radon mi -j`: the least maintainable file's index (0–100).
fn radon_mi(bytes: &[u8]) -> Result<Values, ReportError> {
    let files: BTreeMap<String, RadonFile<RadonMi>> = json(bytes, "radon mi")?;
    let mut min = None::<f64>;
    for (file, entry) in &files {
        match entry {
            RadonFile::Error { error } => {
                return Err(err(format!("radon mi: `{file}`: {error}")));
            }
            RadonFile::Ok(RadonMi { mi }) => min = Some(min.map_or(*mi, |m| m.min(*mi))),
        }
    }
    let mut out = Values::new();
    if let Some(min) = min {
        out.insert("maintainability_index", min);
    }
    Ok(out)
}

#[derive(Deserialize)]
struct Jscpd {
    statistics: JscpdStatistics,
}

#[derive(Deserialize)]
struct JscpdStatistics {
    total: JscpdTotal,
}

#[derive(Deserialize)]
struct JscpdTotal {
    percentage: f64,
    lines: u64,
}

/// jscpd's JSON report: the share of duplicated lines over all sources.
fn jscpd(bytes: &[u8]) -> Result<Values, ReportError> {
    let report: Jscpd = json(bytes, "jscpd")?;
    let total = report.statistics.total;
    let mut out = Values::new();
    // jscpd reports NaN-free 0 for no sources; no lines is nothing measured.
    if total.lines > 0 {
        out.insert("duplication_percent", total.percentage);
    }
    Ok(out)
}

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

fn secrets(bytes: &[u8]) -> Result<Values, ReportError> {
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

fn percent(hit: u64, found: u64) -> f64 {
    if found == 0 {
        100.0
    } else {
        hit as f64 * 100.0 / found as f64
    }
}

/// lcov tracefiles: `LF`/`LH` (or `DA` lines when a writer leaves the
/// totals out) and `BRF`/`BRH`, summed over every record.
fn lcov(bytes: &[u8]) -> Result<Values, ReportError> {
    let text = std::str::from_utf8(bytes).map_err(|_| err("lcov: not UTF-8 text"))?;
    #[derive(Default)]
    struct Record {
        lf: Option<u64>,
        lh: Option<u64>,
        da_found: u64,
        da_hit: u64,
        brf: u64,
        brh: u64,
    }
    let (mut lines_found, mut lines_hit, mut br_found, mut br_hit) = (0u64, 0u64, 0u64, 0u64);
    let mut records = 0;
    let mut open: Option<(usize, Record)> = None;
    let number = |n: usize, v: &str| -> Result<u64, ReportError> {
        v.trim()
            .parse()
            .map_err(|_| err(format!("lcov line {n}: `{v}` is not a count")))
    };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with("TN:") {
            continue;
        }
        if line.starts_with("SF:") {
            if open.is_some() {
                return Err(err(format!(
                    "lcov line {n}: `SF:` before the previous record's `end_of_record`"
                )));
            }
            open = Some((n, Record::default()));
            continue;
        }
        if line == "end_of_record" {
            let Some((_, r)) = open.take() else {
                return Err(err(format!("lcov line {n}: `end_of_record` without `SF:`")));
            };
            let (found, hit) = match (r.lf, r.lh) {
                (Some(f), Some(h)) => (f, h),
                _ => (r.da_found, r.da_hit),
            };
            if hit > found || r.brh > r.brf {
                return Err(err(format!(
                    "lcov line {n}: more lines or branches hit than found"
                )));
            }
            lines_found += found;
            lines_hit += hit;
            br_found += r.brf;
            br_hit += r.brh;
            records += 1;
            continue;
        }
        let Some((_, r)) = open.as_mut() else {
            return Err(err(format!(
                "lcov line {n}: data outside a record (`SF:` missing)"
            )));
        };
        let (tag, value) = line.split_once(':').ok_or_else(|| {
            err(format!(
                "lcov line {n}: expected `TAG:value`, found `{line}`"
            ))
        })?;
        match tag {
            "LF" => r.lf = Some(number(n, value)?),
            "LH" => r.lh = Some(number(n, value)?),
            "BRF" => r.brf = number(n, value)?,
            "BRH" => r.brh = number(n, value)?,
            "DA" => {
                let mut parts = value.split(',');
                let _line = parts.next();
                let hits = parts
                    .next()
                    .ok_or_else(|| err(format!("lcov line {n}: `DA:` needs `line,hits`")))?;
                r.da_found += 1;
                // Hit counts may be written as floats by some writers.
                let hits: f64 = hits
                    .trim()
                    .parse()
                    .map_err(|_| err(format!("lcov line {n}: `{hits}` is not a count")))?;
                if hits > 0.0 {
                    r.da_hit += 1;
                }
            }
            "FN" | "FNDA" | "FNF" | "FNH" | "BRDA" | "VER" | "FNL" | "FNA" => {}
            other => {
                return Err(err(format!("lcov line {n}: unknown record `{other}:`")));
            }
        }
    }
    if let Some((n, _)) = open {
        return Err(err(format!(
            "lcov: truncated: the record opened at line {n} has no `end_of_record`"
        )));
    }
    if records == 0 {
        return Err(err("lcov: no records (`SF:` … `end_of_record`)"));
    }
    let mut out = Values::new();
    out.insert("test_coverage_percent", percent(lines_hit, lines_found));
    if br_found > 0 {
        out.insert("test_branch_coverage_percent", percent(br_hit, br_found));
    }
    Ok(out)
}

/// An element boundary met while walking a document.
enum Xml<'a, 'b> {
    /// A start or empty element, its depth, and whether it is empty.
    Open(&'a BytesStart<'b>, usize, bool),
    /// An end element's name and the depth it returns to.
    Close(&'a [u8], usize),
}

/// Reads XML events to the end, refusing a DTD and a document that stops
/// before its root closes; `visit` sees every element boundary.
fn walk_xml(
    bytes: &[u8],
    what: &str,
    mut visit: impl FnMut(Xml<'_, '_>) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    let mut reader = quick_xml::Reader::from_reader(bytes);
    let config = reader.config_mut();
    config.check_end_names = true;
    let mut buf = Vec::new();
    let mut depth = 0usize;
    let mut roots = 0;
    loop {
        let pos = reader.buffer_position();
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| err(format!("{what}: malformed XML at byte {pos}: {e}")))?;
        match event {
            Event::DocType(_) => {
                return Err(err(format!(
                    "{what}: document type declarations are not accepted (entity expansion)"
                )));
            }
            Event::Start(e) => {
                if depth == 0 {
                    roots += 1;
                }
                visit(Xml::Open(&e, depth, false))?;
                depth += 1;
                if depth > 256 {
                    return Err(err(format!("{what}: elements nested deeper than 256")));
                }
            }
            Event::Empty(e) => {
                if depth == 0 {
                    roots += 1;
                }
                visit(Xml::Open(&e, depth, true))?;
            }
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                visit(Xml::Close(e.name().as_ref(), depth))?;
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if depth > 0 {
        return Err(err(format!(
            "{what}: truncated: {depth} element(s) still open at the end of the file"
        )));
    }
    if roots == 0 {
        return Err(err(format!("{what}: no root element")));
    }
    Ok(())
}

fn attr(e: &BytesStart<'_>, name: &str, what: &str) -> Result<Option<String>, ReportError> {
    for a in e.attributes() {
        let a = a.map_err(|x| err(format!("{what}: malformed attribute: {x}")))?;
        if a.key.as_ref() == name.as_bytes() {
            let v = a
                .unescape_value()
                .map_err(|x| err(format!("{what}: attribute `{name}`: {x}")))?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

fn attr_number(e: &BytesStart<'_>, name: &str, what: &str) -> Result<Option<f64>, ReportError> {
    attr(e, name, what)?
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| err(format!("{what}: `{name}` is `{v}`, not a number")))
        })
        .transpose()
}

/// Cobertura XML: the root `coverage` element's line and branch totals
/// (`lines-covered`/`lines-valid`, else `line-rate`).
fn cobertura(bytes: &[u8]) -> Result<Values, ReportError> {
    let what = "Cobertura";
    let mut out = Values::new();
    let mut seen = false;
    walk_xml(bytes, what, |event| {
        let Xml::Open(e, 0, _) = event else {
            return Ok(());
        };
        if e.name().as_ref() != b"coverage" {
            return Err(err(format!(
                "{what}: the root element is `{}`, not `coverage`",
                String::from_utf8_lossy(e.name().as_ref())
            )));
        }
        seen = true;
        let rate = |covered: &str, valid: &str, rate: &str| -> Result<Option<f64>, ReportError> {
            match (attr_number(e, covered, what)?, attr_number(e, valid, what)?) {
                (Some(_), Some(0.0)) => Ok(Some(100.0)),
                (Some(c), Some(v)) => Ok(Some(c * 100.0 / v)),
                _ => Ok(attr_number(e, rate, what)?.map(|r| r * 100.0)),
            }
        };
        let lines = rate("lines-covered", "lines-valid", "line-rate")?
            .ok_or_else(|| err(format!("{what}: `coverage` has no line totals")))?;
        out.insert("test_coverage_percent", lines.min(100.0));
        let has_branches = attr_number(e, "branches-valid", what)?.is_some_and(|v| v > 0.0);
        if has_branches && let Some(b) = rate("branches-covered", "branches-valid", "branch-rate")?
        {
            out.insert("test_branch_coverage_percent", b.min(100.0));
        }
        Ok(())
    })?;
    if !seen {
        return Err(err(format!("{what}: no `coverage` element")));
    }
    Ok(out)
}

/// JUnit XML: every `testcase`, failed when it holds a `failure` or an
/// `error`, skipped when it holds `skipped`.
fn junit(bytes: &[u8]) -> Result<Values, ReportError> {
    let what = "JUnit";
    let (mut total, mut failed, mut skipped) = (0u64, 0u64, 0u64);
    // The outcome of the testcase being read, if one is open.
    let mut open: Option<(usize, &'static str)> = None;
    let mut root_ok = None;
    walk_xml(bytes, what, |event| {
        let (e, depth, empty) = match event {
            Xml::Open(e, depth, empty) => (e, depth, empty),
            Xml::Close(name, depth) => {
                if name == b"testcase"
                    && let Some((d, outcome)) = open
                    && d == depth
                {
                    match outcome {
                        "failed" => failed += 1,
                        "skipped" => skipped += 1,
                        _ => {}
                    }
                    open = None;
                }
                return Ok(());
            }
        };
        let name = e.name();
        if depth == 0 {
            root_ok = Some(matches!(name.as_ref(), b"testsuites" | b"testsuite"));
        }
        match name.as_ref() {
            b"testcase" => {
                total += 1;
                if !empty {
                    open = Some((depth, "passed"));
                }
            }
            b"failure" | b"error" => {
                if let Some((_, outcome)) = open.as_mut() {
                    *outcome = "failed";
                }
            }
            b"skipped" => {
                if let Some((_, outcome)) = open.as_mut()
                    && *outcome == "passed"
                {
                    *outcome = "skipped";
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    if root_ok != Some(true) {
        return Err(err(format!(
            "{what}: the root element is not `testsuites` or `testsuite`"
        )));
    }
    let mut out = Values::new();
    out.insert("tests_total", total as f64);
    out.insert("tests_failed", failed as f64);
    out.insert("tests_skipped", skipped as f64);
    Ok(out)
}

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
struct Findings(Vec<(String, Option<f64>)>);

impl Findings {
    fn levels(&self) -> Values {
        let count = |l: &str| self.0.iter().filter(|(level, _)| level == l).count() as f64;
        let mut out = Values::new();
        out.insert("lint_errors", count("error"));
        out.insert("lint_warnings", count("warning"));
        out.insert("lint_notes", count("note"));
        out
    }

    /// CVSS bands as GitHub code scanning reads `security-severity`:
    /// over 9.0 critical, 7.0–8.9 high, 4.0–6.9 medium, 0.1–3.9 low.
    fn severities(&self) -> Values {
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

fn sarif(bytes: &[u8]) -> Result<Findings, ReportError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcov_sums_line_and_branch_totals() {
        let v = parse(
            ReportKind::Coverage,
            b"TN:\nSF:a.py\nDA:1,1\nLF:10\nLH:8\nBRF:4\nBRH:1\nend_of_record\nSF:b.py\nDA:1,0\nDA:2,3\nend_of_record\n",
        )
        .unwrap();
        assert_eq!(v["test_coverage_percent"], 900.0 / 12.0);
        assert_eq!(v["test_branch_coverage_percent"], 25.0);
    }

    #[test]
    fn truncated_lcov_names_the_open_record() {
        let e = parse(ReportKind::Coverage, b"SF:a.py\nLF:3\nLH:1\n").unwrap_err();
        assert!(e.0.contains("truncated") && e.0.contains("line 1"), "{e}");
        let e = parse(ReportKind::Coverage, b"SF:a.py\nLF:x\nend_of_record\n").unwrap_err();
        assert_eq!(e.0, "lcov line 2: `x` is not a count");
    }

    #[test]
    fn xml_with_a_dtd_is_refused() {
        let bomb = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><testsuite><testcase name="&lol2;"/></testsuite>"#;
        let e = parse(ReportKind::Tests, bomb).unwrap_err();
        assert!(e.0.contains("document type declarations"), "{e}");
    }

    #[test]
    fn truncated_xml_is_an_error() {
        let e = parse(
            ReportKind::Tests,
            b"<testsuites><testsuite><testcase name=\"a\"/>",
        )
        .unwrap_err();
        assert!(e.0.contains("truncated"), "{e}");
        let e = parse(ReportKind::Coverage, b"<coverage line-rate=\"0.5\"><pack").unwrap_err();
        assert!(e.0.contains("Cobertura"), "{e}");
    }

    #[test]
    fn junit_counts_match_the_elements() {
        let v = parse(
            ReportKind::Tests,
            br#"<testsuite tests="99"><testcase name="a"/><testcase name="b"><failure/></testcase><testcase name="c"><error message="x"/></testcase><testcase name="d"><skipped/></testcase></testsuite>"#,
        )
        .unwrap();
        assert_eq!(
            (v["tests_total"], v["tests_failed"], v["tests_skipped"]),
            (4.0, 2.0, 1.0)
        );
    }

    #[test]
    fn a_byte_order_mark_before_a_report_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        for (kind, body) in [
            (
                ReportKind::Tests,
                &br#"<?xml version="1.0" encoding="utf-8"?><testsuite><testcase name="a"><failure/></testcase></testsuite>"#[..],
            ),
            (ReportKind::Maintainability, br#"{"a.py": {"mi": 70.0, "rank": "A"}}"#),
            (ReportKind::Coverage, b"SF:a.py\nLF:2\nLH:1\nend_of_record\n"),
        ] {
            let path = dir.path().join("report");
            let mut bytes = b"\xEF\xBB\xBF".to_vec();
            bytes.extend_from_slice(body);
            std::fs::write(&path, &bytes).unwrap();
            let (with, digest) = read(kind, &path).unwrap();
            assert_eq!(with, parse(kind, body).unwrap(), "{kind:?}");
            // The digest is of the file as it is.
            assert_eq!(digest, Digest::of(&bytes));
        }
    }

    #[test]
    fn radon_complexity_looks_inside_classes_and_closures_and_names_a_broken_file() {
        let cc = br#"{"a.py": [{"type": "class", "complexity": 3, "name": "C", "methods": [
            {"type": "method", "complexity": 2, "name": "f", "closures": []},
            {"type": "method", "complexity": 5, "name": "g", "closures": [{"type": "function", "complexity": 11, "name": "inner"}]}]}],
            "b.py": [{"type": "function", "complexity": 7, "name": "h", "closures": []}]}"#;
        let v = parse(ReportKind::Complexity, cc).unwrap();
        assert_eq!(v["cyclomatic_complexity_max"], 11.0);
        let broken = br#"{"c.py": {"error": "invalid syntax (<unknown>, line 3)"}}"#;
        assert_eq!(
            parse(ReportKind::Complexity, broken).unwrap_err().0,
            "radon cc: `c.py`: invalid syntax (<unknown>, line 3)"
        );
        assert!(parse(ReportKind::Complexity, b"{}").unwrap().is_empty());
        let mi = br#"{"a.py": {"mi": 82.5, "rank": "A"}, "b.py": {"mi": 64.25, "rank": "A"}}"#;
        assert_eq!(
            parse(ReportKind::Maintainability, mi).unwrap()["maintainability_index"],
            64.25
        );
        assert!(
            parse(ReportKind::Duplication, br#"{"statistics": {"total": {}}}"#)
                .unwrap_err()
                .0
                .starts_with("jscpd: statistics.total: missing field"),
        );
    }

    #[test]
    fn sarif_levels_follow_the_spec_defaults() {
        let log = br#"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"t","rules":[{"id":"R1","defaultConfiguration":{"level":"note"}}]}},
            "results":[{"ruleId":"R1","message":{"text":"a"}},{"ruleId":"R2","message":{"text":"b"}},{"level":"error","message":{"text":"c"}},{"kind":"pass","message":{"text":"d"}}]}]}"#;
        let v = parse(ReportKind::Lint, log).unwrap();
        assert_eq!(
            (v["lint_errors"], v["lint_warnings"], v["lint_notes"]),
            (1.0, 1.0, 1.0)
        );
    }

    #[test]
    fn sarif_security_severity_falls_into_cvss_bands() {
        let log = br#"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"t","rules":[
            {"id":"a","properties":{"security-severity":"9.8"}},{"id":"b","properties":{"security-severity":"7.0"}},
            {"id":"c","properties":{"security-severity":"4.3"}},{"id":"d","properties":{"security-severity":"0.5"}},{"id":"e"}]}},
            "results":[{"ruleId":"a","ruleIndex":0},{"ruleId":"a"},{"ruleId":"b"},{"ruleId":"c"},{"ruleId":"d"},{"ruleId":"e"},{"ruleId":"x","properties":{"security-severity":8.1}}]}]}"#;
        let v = parse(ReportKind::Security, log).unwrap();
        assert_eq!(v["vulnerabilities_critical"], 2.0);
        assert_eq!(v["vulnerabilities_high"], 2.0);
        assert_eq!(v["vulnerabilities_medium"], 1.0);
        assert_eq!(v["vulnerabilities_low"], 1.0);
    }

    #[test]
    fn sarif_errors_name_the_json_path() {
        let e = parse(
            ReportKind::Lint,
            br#"{"version":"2.1.0","runs":[{"tool":{"driver":{}},"results":[{"level":3}]}]}"#,
        )
        .unwrap_err();
        assert!(e.0.contains("runs[0].results[0].level"), "{e}");
        let e = parse(ReportKind::Lint, br#"{"version":"2.1.0","runs":[{"tool""#).unwrap_err();
        assert!(e.0.contains("truncated"), "{e}");
    }
}
