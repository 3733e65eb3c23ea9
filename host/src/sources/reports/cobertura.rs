//! Cobertura XML: line and branch coverage totals.

use super::xml::{Xml, attr_number, walk_xml};
use super::{ReportError, Values, err};

/// Cobertura XML: the root `coverage` element's line and branch totals
/// (`lines-covered`/`lines-valid`, else `line-rate`).
pub(super) fn cobertura(bytes: &[u8]) -> Result<Values, ReportError> {
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
