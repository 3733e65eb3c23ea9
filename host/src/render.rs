//! Decisions rendered for people and machines: JSON, a table, JUnit XML.

use std::fmt::Write as _;

use quick_xml::escape::escape;

use crate::decision::{Action, Decision, Fire, Outcome, Verdict};
use crate::text::escape_control;

/// Output formats of `tollgate eval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Junit,
}

/// Renders `decision`; `color` adds ANSI colours to the table.
pub fn render(decision: &Decision, format: Format, color: bool) -> String {
    match format {
        Format::Json => json(decision),
        Format::Table => table(&printable(decision), color),
        Format::Junit => junit(&printable(decision)),
    }
}

/// `d` with every plugin- or input-supplied text escaped, for outputs that
/// are not JSON: a terminal must not receive a plugin's ESC or CR, and XML
/// 1.0 cannot carry most control characters at all.
fn printable(d: &Decision) -> Decision {
    fn e(s: &mut String) {
        if let std::borrow::Cow::Owned(escaped) = escape_control(s) {
            *s = escaped;
        }
    }
    fn map(m: &mut std::collections::BTreeMap<String, String>) {
        *m = std::mem::take(m)
            .into_iter()
            .map(|(mut k, mut v)| {
                e(&mut k);
                e(&mut v);
                (k, v)
            })
            .collect();
    }
    let mut d = d.clone();
    for s in [
        &mut d.summary,
        &mut d.service,
        &mut d.version,
        &mut d.policy,
        &mut d.stage,
    ] {
        e(s);
    }
    for g in &mut d.gates {
        e(&mut g.name);
        e(&mut g.plugin);
        e(&mut g.reason);
        map(&mut g.details);
        g.logs.iter_mut().for_each(|l| e(&mut l.message));
    }
    for t in &mut d.triggers {
        e(&mut t.name);
        e(&mut t.plugin);
        e(&mut t.reason);
        map(&mut t.details);
        t.logs.iter_mut().for_each(|l| e(&mut l.message));
    }
    for p in &mut d.actions {
        e(&mut p.name);
        e(&mut p.plugin);
        if let Some(err) = &mut p.error {
            e(err);
        }
        p.logs.iter_mut().for_each(|l| e(&mut l.message));
        for a in &mut p.actions {
            match a {
                Action::Hold { reason } | Action::Rollback { reason } => e(reason),
                Action::BumpVersion { version } => e(version),
                Action::FlagRollout(f) => {
                    e(&mut f.flag);
                    f.segments.iter_mut().for_each(e);
                }
                Action::SetWeight { .. } | Action::Promote | Action::Pause { .. } => {}
            }
        }
    }
    d
}

/// The decision as pretty JSON, the same shape the HTTP API returns.
pub fn json(decision: &Decision) -> String {
    let mut s =
        serde_json::to_string_pretty(decision).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

fn paint(text: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn verdict_color(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "32",
        Verdict::Warn | Verdict::Inconclusive => "33",
        Verdict::Fail | Verdict::Error => "31",
    }
}

fn number(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn table(d: &Decision, color: bool) -> String {
    let mut out = String::new();
    let outcome_color = match d.decision {
        Outcome::Promote => "1;32",
        Outcome::Hold => "1;33",
        Outcome::Rollback => "1;31",
    };
    let _ = writeln!(
        out,
        "{}  {} {} · policy {} · stage {}",
        paint(&d.decision.as_str().to_uppercase(), outcome_color, color),
        d.service,
        d.version,
        d.policy,
        d.stage
    );
    let _ = writeln!(out, "{}", d.summary);
    if let Some(score) = d.score {
        let _ = writeln!(
            out,
            "score {:.1}% (pass ≥ {}%, warn ≥ {}%)",
            score, d.scoring.pass, d.scoring.warn
        );
    }
    let _ = writeln!(out);
    let rows: Vec<[String; 5]> = d
        .gates
        .iter()
        .map(|g| {
            let mut flags = Vec::new();
            if g.key {
                flags.push("key");
            }
            if g.dry_run {
                flags.push("dry-run");
            }
            let name = if flags.is_empty() {
                g.name.clone()
            } else {
                format!("{} ({})", g.name, flags.join(", "))
            };
            [
                name,
                g.verdict.as_str().to_string(),
                number(g.observed),
                number(g.threshold),
                g.reason.clone(),
            ]
        })
        .collect();
    let headers = ["GATE", "VERDICT", "OBSERVED", "THRESHOLD", "REASON"];
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()).take(4) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5], verdict: Option<Verdict>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate().take(4) {
            let pad = " ".repeat(widths[i].saturating_sub(cell.chars().count()));
            let shown = match verdict {
                Some(v) if i == 1 => paint(cell, verdict_color(v), color),
                _ => (*cell).to_string(),
            };
            let _ = write!(s, "{shown}{pad}  ");
        }
        s.push_str(cells[4]);
        s
    };
    let _ = writeln!(out, "{}", line(headers, None));
    for (row, g) in rows.iter().zip(&d.gates) {
        let cells = [
            row[0].as_str(),
            row[1].as_str(),
            row[2].as_str(),
            row[3].as_str(),
            row[4].as_str(),
        ];
        let _ = writeln!(out, "{}", line(cells, Some(g.verdict)));
    }
    if !d.triggers.is_empty() {
        let _ = writeln!(out, "\nTRIGGERS");
        let width = d
            .triggers
            .iter()
            .map(|t| t.name.chars().count())
            .max()
            .unwrap_or(0);
        for t in &d.triggers {
            let code = match t.fire {
                Fire::None => "32",
                Fire::Alert | Fire::PrepareRollback => "33",
                Fire::ImmediateRollback => "31",
            };
            let fire = t.fire.as_str();
            let _ = writeln!(
                out,
                "{}{}  {}{}  {}",
                t.name,
                " ".repeat(width - t.name.chars().count()),
                paint(fire, code, color),
                " ".repeat(18usize.saturating_sub(fire.len())),
                t.reason
            );
        }
    }
    let planned: Vec<String> = d
        .actions
        .iter()
        .flat_map(|p| {
            let mut lines: Vec<String> = p
                .actions
                .iter()
                .map(|a| format!("{}: {}", p.name, describe(a)))
                .collect();
            if let Some(e) = &p.error {
                lines.push(format!("{}: could not plan: {e}", p.name));
            }
            lines
        })
        .collect();
    if !planned.is_empty() {
        let _ = writeln!(out, "\nACTIONS");
        for l in planned {
            let _ = writeln!(out, "{l}");
        }
    }
    out
}

/// One action in words.
fn describe(a: &Action) -> String {
    match a {
        Action::SetWeight { percent } => format!("set weight to {percent}%"),
        Action::Promote => "promote".into(),
        Action::Pause { seconds } => format!(
            "pause {}",
            humantime::format_duration(std::time::Duration::from_secs(*seconds))
        ),
        Action::Hold { reason } => format!("hold: {reason}"),
        Action::Rollback { reason } => format!("rollback: {reason}"),
        Action::BumpVersion { version } => format!("release as {version}"),
        Action::FlagRollout(f) if f.segments.is_empty() => {
            format!("flag `{}` to {}%", f.flag, f.percent)
        }
        Action::FlagRollout(f) => format!(
            "flag `{}` to {}% of {}",
            f.flag,
            f.percent,
            f.segments.join(", ")
        ),
    }
}

fn junit(d: &Decision) -> String {
    let failures = d
        .gates
        .iter()
        .filter(|g| g.verdict == Verdict::Fail)
        .count();
    let errors = d
        .gates
        .iter()
        .filter(|g| g.verdict == Verdict::Error)
        .count();
    let skipped = d
        .gates
        .iter()
        .filter(|g| g.verdict == Verdict::Inconclusive)
        .count();
    let total_us: u64 = d.gates.iter().map(|g| g.duration_us).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let suite = format!("{}/{}", d.policy, d.stage);
    let _ = writeln!(
        out,
        "<testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{:.6}\">",
        escape(&suite),
        d.gates.len() + d.triggers.len(),
        total_us as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "  <properties><property name=\"decision\" value=\"{}\"/><property name=\"summary\" value=\"{}\"/></properties>",
        d.decision.as_str(),
        escape(&d.summary)
    );
    for g in &d.gates {
        let _ = write!(
            out,
            "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.6}\"",
            escape(&suite),
            escape(&g.name),
            g.duration_us as f64 / 1e6
        );
        let reason = escape(&g.reason);
        match g.verdict {
            Verdict::Pass => out.push_str("/>\n"),
            Verdict::Warn => {
                let _ = writeln!(
                    out,
                    ">\n    <system-out>warn: {reason}</system-out>\n  </testcase>"
                );
            }
            Verdict::Fail => {
                let _ = writeln!(
                    out,
                    ">\n    <failure message=\"{reason}\" type=\"fail\"/>\n  </testcase>"
                );
            }
            Verdict::Error => {
                let _ = writeln!(
                    out,
                    ">\n    <error message=\"{reason}\" type=\"error\"/>\n  </testcase>"
                );
            }
            Verdict::Inconclusive => {
                let _ = writeln!(out, ">\n    <skipped message=\"{reason}\"/>\n  </testcase>");
            }
        }
    }
    for t in &d.triggers {
        let _ = write!(
            out,
            "  <testcase classname=\"{}/triggers\" name=\"{}\" time=\"{:.6}\"",
            escape(&suite),
            escape(&t.name),
            t.duration_us as f64 / 1e6
        );
        let reason = escape(&t.reason);
        match t.fire {
            Fire::None => out.push_str("/>\n"),
            Fire::ImmediateRollback => {
                let _ = writeln!(
                    out,
                    ">\n    <failure message=\"{reason}\" type=\"immediate-rollback\"/>\n  </testcase>"
                );
            }
            other => {
                let _ = writeln!(
                    out,
                    ">\n    <system-out>{}: {reason}</system-out>\n  </testcase>",
                    other.as_str()
                );
            }
        }
    }
    out.push_str("</testsuite>\n");
    out
}
