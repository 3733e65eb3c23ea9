//! JUnit XML: test cases run, failed and skipped.

use super::xml::{Xml, walk_xml};
use super::{ReportError, Values, err};

/// JUnit XML: every `testcase`, failed when it holds a `failure` or an
/// `error`, skipped when it holds `skipped`.
pub(super) fn junit(bytes: &[u8]) -> Result<Values, ReportError> {
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
