//! lcov tracefiles: line and branch coverage.

use super::{ReportError, Values, err};

fn percent(hit: u64, found: u64) -> f64 {
    if found == 0 {
        100.0
    } else {
        hit as f64 * 100.0 / found as f64
    }
}

/// lcov tracefiles: `LF`/`LH` (or `DA` lines when a writer leaves the
/// totals out) and `BRF`/`BRH`, summed over every record.
pub(super) fn lcov(bytes: &[u8]) -> Result<Values, ReportError> {
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
