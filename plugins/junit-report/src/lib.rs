//! The `junit-report` gate: no failed or errored tests in a JUnit XML
//! report, read by the plugin itself from a directory its policy grants.
//!
//! ```yaml
//! - name: tests-pass
//!   plugin: junit-report
//!   key: true
//!   grants: { files: [ { host: ./reports, guest: /reports } ] }
//!   with: { path: /reports/junit.xml }
//! ```
//!
//! `path` is a file, or a directory whose `*.xml` files (not recursive, as
//! Maven Surefire and Gradle write one per class) are read together. A
//! `testcase` counts as failed when it holds a `failure`, errored when it
//! holds an `error`, skipped when it holds `skipped`; reruns that passed
//! (`flakyFailure`, `rerunFailure`) do not count. The gate passes when
//! failed + errored ≤ `allowed_failures` (default 0) and at least
//! `min_tests` (default 1) test cases ran, so an empty run does not pass.
//! A report it cannot read or parse makes it inconclusive, naming the file
//! and the cause; the policy's `on_no_data` decides what that means.
//!
//! The report is streamed, so memory stays flat whatever its size; a
//! document type declaration is refused rather than expanded.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use quick_xml::events::{BytesStart, Event};
use tollgate_sdk::config::Settings;
use tollgate_sdk::gate::{Detail, Finding, Verdict};
use tollgate_sdk::rule::{GateRule, View};

/// At most this many failing test cases are named in the finding.
const NAMED_FAILURES: usize = 10;
/// A named failure's message is cut to this many characters.
const MESSAGE_CHARS: usize = 100;
/// A test case's name is cut to this many characters, so that a report
/// with absurd names still fits the host's limits on reasons and details
/// (1 KiB a detail: 220 characters of up to 4 bytes each, with room to
/// spare) and gets a verdict rather than an output error.
const NAME_CHARS: usize = 120;
/// At most this many report files are read from a directory.
const MAX_FILES: usize = 1000;
/// Elements nested deeper than this are refused.
const MAX_DEPTH: usize = 256;

/// The gate's settings.
pub struct Rule {
    path: String,
    allowed_failures: u64,
    min_tests: u64,
}

impl Rule {
    fn read(s: &Settings) -> Result<Self, String> {
        let path = s.text("path")?.to_string();
        if !path.starts_with('/') {
            return Err(format!(
                "`path` must be an absolute path inside a granted directory (such as /reports/junit.xml), not `{path}`"
            ));
        }
        let count = |key: &str, default: u64| -> Result<u64, String> {
            match s.opt_integer(key)? {
                None => Ok(default),
                Some(n) => u64::try_from(n).map_err(|_| format!("`{key}` must not be negative")),
            }
        };
        Ok(Self {
            path,
            allowed_failures: count("allowed_failures", 0)?,
            min_tests: count("min_tests", 1)?,
        })
    }

    fn evaluate(&self) -> Finding {
        let (files, in_dir) = match report_files(Path::new(&self.path)) {
            Ok(found) => found,
            Err(e) => return inconclusive(e),
        };
        let mut tally = Tally::default();
        let mut read = 0;
        for file in &files {
            // In a directory, other XML reports (coverage.xml) are passed over.
            match tally.read(file, in_dir) {
                Ok(true) => read += 1,
                Ok(false) => {}
                Err(e) => return inconclusive(e),
            }
        }
        if read == 0 {
            return inconclusive(format!("{} holds no JUnit report", self.path));
        }
        self.judge(&tally, in_dir.then_some(read))
    }

    /// `in_dir` is how many reports a directory gave, `None` for one file.
    fn judge(&self, t: &Tally, in_dir: Option<usize>) -> Finding {
        let bad = t.failed + t.errored;
        let counts = format!(
            "{} test(s): {} failed, {} errored, {} skipped",
            t.total, t.failed, t.errored, t.skipped
        );
        let source = match in_dir {
            None => format!("in {}", self.path),
            Some(n) => format!("in {n} report(s) under {}", self.path),
        };
        let (verdict, reason) = if t.total < self.min_tests {
            (
                Verdict::Fail,
                format!(
                    "{counts} {source}; at least {} test case(s) must run",
                    self.min_tests
                ),
            )
        } else if bad > self.allowed_failures {
            let first = t
                .named
                .first()
                .map(|n| format!("; first: {n}"))
                .unwrap_or_default();
            (
                Verdict::Fail,
                format!(
                    "{counts} {source}, more than the {} allowed{first}",
                    self.allowed_failures
                ),
            )
        } else {
            (Verdict::Pass, format!("{counts} {source}"))
        };
        let mut details = vec![
            detail("tests", t.total),
            detail("failed", t.failed),
            detail("errored", t.errored),
            detail("skipped", t.skipped),
            detail("files", in_dir.unwrap_or(1)),
        ];
        details.extend(
            t.named
                .iter()
                .enumerate()
                .map(|(i, n)| detail(&format!("failure.{}", i + 1), n)),
        );
        Finding {
            verdict,
            reason,
            observed: Some(bad as f64),
            threshold: Some(self.allowed_failures as f64),
            details,
        }
    }
}

fn detail(key: &str, value: impl ToString) -> Detail {
    Detail {
        key: key.to_string(),
        value: value.to_string(),
    }
}

fn inconclusive(reason: String) -> Finding {
    tollgate_sdk::rule::finding(Verdict::Inconclusive, reason, None, None)
}

/// The report files at `path`: itself, or a directory's `*.xml`, sorted;
/// and whether it is a directory.
fn report_files(path: &Path) -> Result<(Vec<PathBuf>, bool), String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_dir() {
        return Ok((vec![path.to_path_buf()], false));
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| format!("cannot list {shown}: {e}"))? {
        let entry = entry.map_err(|e| format!("cannot list {shown}: {e}"))?;
        let file = entry.path();
        if file.extension().is_some_and(|x| x == "xml")
            && entry.file_type().is_ok_and(|t| t.is_file())
        {
            files.push(file);
            if files.len() > MAX_FILES {
                return Err(format!("{shown} holds more than {MAX_FILES} XML files"));
            }
        }
    }
    if files.is_empty() {
        return Err(format!("{shown} holds no *.xml report"));
    }
    files.sort();
    Ok((files, true))
}

/// Test cases counted across the reports read so far.
#[derive(Debug, Default)]
struct Tally {
    total: u64,
    failed: u64,
    errored: u64,
    skipped: u64,
    /// `classname.name: message` of the first failing cases.
    named: Vec<String>,
}

/// The test case being read.
struct Open {
    depth: usize,
    name: String,
    failure: Option<(&'static str, String)>,
    skipped: bool,
}

impl Tally {
    /// Streams one report into the tally. With `other_roots`, a document
    /// whose root is not JUnit's is passed over (`Ok(false)`), not refused.
    fn read(&mut self, path: &Path, other_roots: bool) -> Result<bool, String> {
        let shown = path.display();
        let file = File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        let mut reader = quick_xml::Reader::from_reader(BufReader::new(file));
        reader.config_mut().check_end_names = true;
        let mut buf = Vec::new();
        let mut depth = 0usize;
        let mut root = false;
        let mut open: Option<Open> = None;
        loop {
            let at = reader.buffer_position();
            let event = reader
                .read_event_into(&mut buf)
                .map_err(|e| format!("{shown} is not well-formed XML at byte {at}: {e}"))?;
            let opens = matches!(event, Event::Start(_));
            match event {
                Event::DocType(_) => {
                    return Err(format!(
                        "{shown}: document type declarations are not accepted"
                    ));
                }
                Event::Start(e) | Event::Empty(e) if depth == 0 && !root => {
                    if !matches!(e.name().as_ref(), b"testsuites" | b"testsuite") {
                        if other_roots {
                            return Ok(false);
                        }
                        return Err(format!(
                            "{shown} is not a JUnit report: its root element is `{}`, not `testsuites` or `testsuite`",
                            String::from_utf8_lossy(e.name().as_ref())
                        ));
                    }
                    root = true;
                    depth += usize::from(opens);
                }
                Event::Start(e) => {
                    self.element(&e, depth, false, &mut open);
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(format!("{shown}: elements nested deeper than {MAX_DEPTH}"));
                    }
                }
                Event::Empty(e) => self.element(&e, depth, true, &mut open),
                Event::End(_) => {
                    depth = depth.saturating_sub(1);
                    if let Some(case) = open.take_if(|c| c.depth == depth) {
                        self.close(case);
                    }
                }
                Event::Eof => break,
                _ => {}
            }
            buf.clear();
        }
        if depth > 0 {
            return Err(format!(
                "{shown} is truncated: {depth} element(s) still open at its end"
            ));
        }
        if !root {
            return Err(format!("{shown} has no root element"));
        }
        Ok(true)
    }

    fn element(&mut self, e: &BytesStart<'_>, depth: usize, empty: bool, open: &mut Option<Open>) {
        match e.name().as_ref() {
            b"testcase" => {
                let case = Open {
                    depth,
                    name: case_name(e),
                    failure: None,
                    skipped: false,
                };
                if empty {
                    self.close(case);
                } else {
                    *open = Some(case);
                }
            }
            what @ (b"failure" | b"error") => {
                if let Some(case) = open.as_mut().filter(|c| c.depth + 1 == depth) {
                    let kind = if what == b"failure" {
                        "failed"
                    } else {
                        "errored"
                    };
                    // An error outranks a failure in the same case.
                    if case.failure.as_ref().is_none_or(|(k, _)| *k == "failed") {
                        case.failure = Some((kind, attribute(e, "message")));
                    }
                }
            }
            b"skipped" => {
                if let Some(case) = open.as_mut().filter(|c| c.depth + 1 == depth) {
                    case.skipped = true;
                }
            }
            _ => {}
        }
    }

    fn close(&mut self, case: Open) {
        self.total += 1;
        match case.failure {
            Some((kind, message)) => {
                if kind == "failed" {
                    self.failed += 1;
                } else {
                    self.errored += 1;
                }
                if self.named.len() < NAMED_FAILURES {
                    let message = cut(message, MESSAGE_CHARS);
                    self.named.push(if message.is_empty() {
                        format!("{} ({kind})", case.name)
                    } else {
                        format!("{} ({kind}): {message}", case.name)
                    });
                }
            }
            None if case.skipped => self.skipped += 1,
            None => {}
        }
    }
}

/// `classname.name`, as JUnit tools print a test case, cut to
/// [`NAME_CHARS`].
fn case_name(e: &BytesStart<'_>) -> String {
    let class = attribute(e, "classname");
    let name = attribute(e, "name");
    let full = match (class.is_empty(), name.is_empty()) {
        (false, false) => format!("{class}.{name}"),
        (true, _) => name,
        (false, true) => class,
    };
    cut(full, NAME_CHARS)
}

/// `text` cut to `chars` characters, with `…` when it was longer.
fn cut(text: String, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text;
    }
    let mut short: String = text.chars().take(chars).collect();
    short.push('…');
    short
}

/// An attribute's text, on one line; empty when absent or malformed.
fn attribute(e: &BytesStart<'_>, key: &str) -> String {
    e.try_get_attribute(key)
        .ok()
        .flatten()
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The gate: reads the report at each evaluation; the snapshot is unused.
pub struct JunitReport;

impl GateRule for JunitReport {
    type Settings = Rule;
    fn settings(s: &Settings) -> Result<Rule, String> {
        Rule::read(s)
    }
    fn judge(rule: &Rule, _snapshot: &dyn View) -> Finding {
        rule.evaluate()
    }
}

#[cfg(target_arch = "wasm32")]
tollgate_sdk::export_gate_rule!(JunitReport);

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_sdk::rule::{MemorySnapshot, judge};

    fn report(dir: &Path, name: &str, xml: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, xml).unwrap();
        path.to_string_lossy().into_owned()
    }

    const MIXED: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="5">
  <testcase classname="tests.test_calc" name="test_add" time="0.001"/>
  <testcase classname="tests.test_calc" name="test_div"><failure message="ZeroDivisionError: division
 by zero">trace</failure></testcase>
  <testcase classname="tests.test_calc" name="test_io"><error message="OSError"/></testcase>
  <testcase classname="tests.test_calc" name="test_skip"><skipped message="later"/></testcase>
  <testcase classname="tests.test_calc" name="test_flaky"><flakyFailure message="once"/></testcase>
</testsuite></testsuites>"#;

    #[test]
    fn counts_failed_errored_and_skipped_cases_and_names_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = report(dir.path(), "junit.xml", MIXED);
        let found =
            judge::<JunitReport>(&[("path", path.as_str().into())], &MemorySnapshot::new(0))
                .unwrap();
        assert_eq!(found.verdict, Verdict::Fail);
        assert_eq!(found.observed, Some(2.0));
        assert!(
            found
                .reason
                .starts_with("5 test(s): 1 failed, 1 errored, 1 skipped in "),
            "{}",
            found.reason
        );
        assert!(
            found.reason.ends_with(
                "more than the 0 allowed; first: tests.test_calc.test_div (failed): ZeroDivisionError: division by zero"
            ),
            "{}",
            found.reason
        );
        let passing = judge::<JunitReport>(
            &[
                ("path", path.as_str().into()),
                ("allowed_failures", 2i64.into()),
            ],
            &MemorySnapshot::new(0),
        )
        .unwrap();
        assert_eq!(passing.verdict, Verdict::Pass);
    }

    #[test]
    fn a_directory_is_read_as_one_run_and_an_empty_run_fails() {
        let dir = tempfile::tempdir().unwrap();
        report(
            dir.path(),
            "TEST-a.xml",
            r#"<testsuite><testcase name="a"/></testsuite>"#,
        );
        report(
            dir.path(),
            "TEST-b.xml",
            r#"<testsuite><testcase name="b"/><testcase name="c"/></testsuite>"#,
        );
        report(dir.path(), "notes.txt", "not a report");
        report(dir.path(), "coverage.xml", r#"<coverage line-rate="0.9"/>"#);
        let path = dir.path().to_string_lossy().into_owned();
        let found =
            judge::<JunitReport>(&[("path", path.as_str().into())], &MemorySnapshot::new(0))
                .unwrap();
        assert_eq!(found.verdict, Verdict::Pass, "{}", found.reason);
        assert!(
            found.reason.starts_with("3 test(s): 0 failed"),
            "{}",
            found.reason
        );
        assert!(
            found.reason.contains("in 2 report(s) under"),
            "{}",
            found.reason
        );

        let empty = report(dir.path(), "empty.xml", "<testsuites/>");
        let found =
            judge::<JunitReport>(&[("path", empty.as_str().into())], &MemorySnapshot::new(0))
                .unwrap();
        assert_eq!(found.verdict, Verdict::Fail);
        assert!(
            found.reason.contains("at least 1 test case(s) must run"),
            "{}",
            found.reason
        );
    }

    #[test]
    fn unreadable_or_malformed_reports_are_inconclusive_and_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("missing.xml", None, "cannot read"),
            (
                "truncated.xml",
                Some(r#"<testsuite><testcase name="a">"#),
                "is truncated: 2 element(s) still open",
            ),
            (
                "html.xml",
                Some("<html><body/></html>"),
                "its root element is `html`",
            ),
            (
                "dtd.xml",
                Some(r#"<!DOCTYPE x [<!ENTITY a "aaaa">]><testsuite/>"#),
                "document type declarations are not accepted",
            ),
            (
                "bad.xml",
                Some("<testsuite><a></b></testsuite>"),
                "is not well-formed XML at byte",
            ),
        ];
        for (name, body, expected) in cases {
            let path = match body {
                Some(xml) => report(dir.path(), name, xml),
                None => dir.path().join(name).to_string_lossy().into_owned(),
            };
            let found =
                judge::<JunitReport>(&[("path", path.as_str().into())], &MemorySnapshot::new(0))
                    .unwrap();
            assert_eq!(found.verdict, Verdict::Inconclusive, "{name}");
            assert!(found.reason.contains(expected), "{name}: {}", found.reason);
        }
    }

    #[test]
    fn absurdly_long_names_and_messages_are_cut_to_fit() {
        let dir = tempfile::tempdir().unwrap();
        let long = "é".repeat(20_000);
        let cases: String = (0..12)
            .map(|i| format!(r#"<testcase classname="{long}" name="t{i}"><failure message="{long}"/></testcase>"#))
            .collect();
        let path = report(
            dir.path(),
            "junit.xml",
            &format!("<testsuite>{cases}</testsuite>"),
        );
        let found =
            judge::<JunitReport>(&[("path", path.as_str().into())], &MemorySnapshot::new(0))
                .unwrap();
        assert_eq!(found.verdict, Verdict::Fail);
        // The host refuses reasons over 4 KiB and details over 1 KiB.
        assert!(found.reason.len() < 1024, "{}", found.reason.len());
        assert!(
            found
                .details
                .iter()
                .all(|d| d.key.len() + d.value.len() < 1024)
        );
        assert!(found.reason.contains("12 failed"), "{}", found.reason);
    }

    #[test]
    fn settings_are_checked() {
        let s = MemorySnapshot::new(0);
        assert!(
            judge::<JunitReport>(&[("path", "reports/junit.xml".into())], &s)
                .unwrap_err()
                .contains("must be an absolute path")
        );
        assert!(
            judge::<JunitReport>(
                &[("path", "/r".into()), ("allowed_failures", (-1i64).into())],
                &s
            )
            .unwrap_err()
            .contains("`allowed_failures` must not be negative")
        );
        assert_eq!(
            judge::<JunitReport>(&[("path", "/r".into()), ("alowed", 1i64.into())], &s)
                .unwrap_err(),
            "unknown setting `alowed`; settings: path, allowed_failures, min_tests"
        );
    }
}
