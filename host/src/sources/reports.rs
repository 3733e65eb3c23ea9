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
//! Each format has a module of its own.

use std::collections::BTreeMap;
use std::path::Path;

use crate::base::digest::Digest;

mod cobertura;
mod jscpd;
mod junit;
mod lcov;
mod pip_audit;
mod radon;
mod sarif;
mod secrets;
mod xml;

use self::cobertura::cobertura;
use self::jscpd::jscpd;
use self::junit::junit;
use self::lcov::lcov;
use self::pip_audit::pip_audit;
use self::radon::{radon_cc, radon_mi};
use self::sarif::sarif;
use self::secrets::secrets;

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

/// A report kind that is none of those read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown report kind `{0}`; expected coverage, tests, lint, security, complexity, maintainability, duplication, secrets or dependencies"
)]
pub struct UnknownReportKind(pub String);

impl std::str::FromStr for ReportKind {
    type Err = UnknownReportKind;

    fn from_str(s: &str) -> Result<Self, UnknownReportKind> {
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
            other => return Err(UnknownReportKind(other.to_string())),
        })
    }
}

/// A report that could not be read; the file is named by the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReportError(pub String);

pub(super) fn err(message: impl Into<String>) -> ReportError {
    ReportError(message.into())
}

/// The metrics a report yields, in a stable order.
pub type Values = BTreeMap<&'static str, f64>;

/// Reads `path` as a `kind` report.
pub fn read(kind: ReportKind, path: &Path) -> Result<(Values, Digest), ReportError> {
    let bytes =
        crate::base::files::read_limited(path, MAX_REPORT_BYTES).map_err(|e| err(e.to_string()))?;
    let values = parse(kind, crate::base::files::without_bom(&bytes))?;
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

/// Deserializes a JSON report, naming where it broke.
pub(super) fn json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
) -> Result<T, ReportError> {
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
