//! jscpd's JSON report: the share of duplicated lines.

use serde::Deserialize;

use super::{ReportError, Values, json};

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
pub(super) fn jscpd(bytes: &[u8]) -> Result<Values, ReportError> {
    let report: Jscpd = json(bytes, "jscpd")?;
    let total = report.statistics.total;
    let mut out = Values::new();
    // jscpd reports NaN-free 0 for no sources; no lines is nothing measured.
    if total.lines > 0 {
        out.insert("duplication_percent", total.percentage);
    }
    Ok(out)
}
