//! Decisions rendered for people and machines: JSON, a table, JUnit XML,
//! and Markdown ([`super::markdown`]).

use std::fmt::Write as _;

use quick_xml::escape::escape;

use crate::base::text::escape_control;
use crate::evaluate::decision::{Action, Decision, Fire, Outcome, Verdict};

/// Output formats of `tollgate eval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Junit,
    /// GitHub-flavoured Markdown for CI job summaries and merge-request
    /// comments, with Mermaid charts of windowed metrics.
    Markdown,
}

/// Renders `decision`; `color` adds ANSI colours to the table.
pub fn render(decision: &Decision, format: Format, color: bool) -> String {
    match format {
        Format::Json => json(decision),
        Format::Table => table(&printable(decision), color),
        Format::Junit => junit(&printable(decision)),
        Format::Markdown => super::markdown::decision(decision, &[]),
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

/// A number as people read it: at most six significant digits, no
/// trailing zeros (`0.000266667`, `86.2069`, `120`).
fn number(v: Option<f64>) -> String {
    let Some(v) = v else {
        return "-".into();
    };
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor() as i32;
    if !(-4..15).contains(&magnitude) {
        return format!("{v:.5e}");
    }
    let decimals = usize::try_from((5 - magnitude).max(0)).unwrap_or(0);
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// How a verdict counted, when that differs from what the plugin said.
fn verdict_cell(g: &crate::evaluate::decision::GateResult) -> String {
    let counted = g.counted_as.as_str();
    if counted == g.verdict.as_str() {
        counted.to_string()
    } else {
        format!("{} → {counted}", g.verdict.as_str())
    }
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
        "{}  {} · policy {} · stage {}",
        paint(&d.decision.as_str().to_uppercase(), outcome_color, color),
        release(&d.service, &d.version),
        d.policy,
        d.stage
    );
    let _ = writeln!(out, "{}", d.summary);
    if d.what_if
        && let Some(at) = d.decided_at
    {
        let _ = writeln!(
            out,
            "what-if: decided as at {}, not at this host's clock; nothing was logged and no trigger state advanced",
            crate::evaluate::rfc3339(at)
        );
    }
    if !d.pipeline.is_empty() {
        let width = d
            .pipeline
            .iter()
            .map(|r| r.stage.chars().count())
            .max()
            .unwrap_or(0)
            .max(5);
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:width$}  {:12}  {:6}  SUMMARY",
            "STAGE", "RESULT", "SCORE"
        );
        for r in &d.pipeline {
            let score = r
                .score
                .map_or_else(|| "-".to_string(), |s| format!("{}%", number(Some(s))));
            let _ = writeln!(
                out,
                "{:width$}  {:12}  {:6}  {}",
                r.stage,
                r.stage_result.as_str(),
                score,
                r.summary
            );
        }
        let _ = writeln!(out, "gates of stage `{}`:", d.stage);
    }
    let inconclusive = d
        .gates
        .iter()
        .filter(|g| g.counted_as == crate::evaluate::decision::Counted::Inconclusive)
        .count();
    let mut scoring = match d.score {
        // The summary already gives the score: give the bands only.
        Some(_) if d.summary.starts_with("score ") => format!(
            "bands over the gates that counted: pass ≥ {}%, warn ≥ {}%",
            d.scoring.pass, d.scoring.warn
        ),
        Some(score) => format!(
            "score {} over the gates that counted (pass ≥ {}%, warn ≥ {}%)",
            format_args!("{}%", number(Some(score))),
            d.scoring.pass,
            d.scoring.warn
        ),
        None => "no score: no gate counted".to_string(),
    };
    if inconclusive > 0 {
        scoring.push_str(&format!(
            "; {inconclusive} of {} gate(s) inconclusive",
            d.gates.len()
        ));
    }
    let _ = writeln!(out, "{scoring}");
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
                verdict_cell(g),
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
        let width = d
            .triggers
            .iter()
            .map(|t| t.name.chars().count())
            .max()
            .unwrap_or(0)
            .max("TRIGGER".len());
        let _ = writeln!(
            out,
            "\nTRIGGER{}  FIRE                REASON",
            " ".repeat(width - "TRIGGER".len())
        );
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
        let _ = writeln!(out, "\nACTION: PLAN");
        for l in planned {
            let _ = writeln!(out, "{l}");
        }
    }
    out
}

/// What a table names a release by: `checkout 2.1.0`, or `(no service)`
/// when the snapshot names none, rather than a blank.
pub(crate) fn release(service: &str, version: &str) -> String {
    match (service.is_empty(), version.is_empty()) {
        (true, true) => NO_SERVICE.to_string(),
        (true, false) => format!("{NO_SERVICE} {version}"),
        (false, true) => service.to_string(),
        (false, false) => format!("{service} {version}"),
    }
}

/// How tables show a decision whose snapshot names no service.
pub(crate) const NO_SERVICE: &str = "(no service)";

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

/// One JUnit test case: its element, and how it counts.
enum Case {
    Pass,
    Skipped(String),
    Failure(String, &'static str),
    Error(String),
    Output(String),
}

/// One test case with its class and time.
struct TestCase {
    name: String,
    us: u64,
    case: Case,
}

/// One `<testsuite>`: a stage's gates, and for the stage that decided, its
/// triggers and the decision itself.
struct Suite {
    name: String,
    properties: Vec<(&'static str, String)>,
    cases: Vec<TestCase>,
}

impl Suite {
    fn count(&self, f: fn(&Case) -> bool) -> usize {
        self.cases.iter().filter(|c| f(&c.case)).count()
    }

    fn micros(&self) -> u64 {
        self.cases.iter().map(|c| c.us).sum()
    }
}

/// A gate as a test case: how it counted decides the element, so an
/// ignored error is not a failure and an inconclusive gate that holds is
/// skipped.
fn gate_case(g: &crate::evaluate::decision::GateResult) -> TestCase {
    use crate::evaluate::decision::Counted;
    let case = match (g.verdict, g.counted_as) {
        (Verdict::Error, Counted::Fail) => Case::Error(g.reason.clone()),
        (_, Counted::Fail) => Case::Failure(g.reason.clone(), "fail"),
        (_, Counted::Inconclusive) => Case::Skipped(g.reason.clone()),
        (_, Counted::Warn) => Case::Output(format!("warn: {}", g.reason)),
        (_, Counted::Ignored) => {
            Case::Output(format!("ignored ({}): {}", g.verdict.as_str(), g.reason))
        }
        (_, Counted::Pass) => Case::Pass,
    };
    TestCase {
        name: g.name.clone(),
        us: g.duration_us,
        case,
    }
}

/// A trigger as a test case: anything that bears on the decision is a
/// failure, so a CI job reading JUnit sees a hold or a rollback a trigger
/// caused.
fn trigger_case(t: &crate::evaluate::decision::TriggerResult) -> TestCase {
    let case = if t.error {
        Case::Error(t.reason.clone())
    } else {
        match t.fire {
            Fire::None => Case::Pass,
            Fire::ImmediateRollback => Case::Failure(t.reason.clone(), "immediate-rollback"),
            f if t.holds => Case::Failure(t.reason.clone(), f.as_str()),
            f => Case::Output(format!("{}: {}", f.as_str(), t.reason)),
        }
    };
    TestCase {
        name: format!("trigger {}", t.name),
        us: t.duration_us,
        case,
    }
}

/// The decision as a test case of its own: a hold or a rollback fails it,
/// so a report never shows a green suite beside a failed job.
fn decision_case(d: &Decision) -> TestCase {
    let case = match d.decision {
        Outcome::Promote => Case::Pass,
        Outcome::Hold => Case::Failure(d.summary.clone(), "hold"),
        Outcome::Rollback => Case::Failure(d.summary.clone(), "rollback"),
    };
    TestCase {
        name: "decision".into(),
        us: 0,
        case,
    }
}

/// The decision as JUnit XML: one `<testsuite>` per stage evaluated (one,
/// or each stage of `--stage all`), each gate a test case; the stage that
/// decided also holds the triggers and the decision.
fn junit(d: &Decision) -> String {
    type Stage<'a> = (
        &'a str,
        crate::evaluate::decision::StageResult,
        Option<f64>,
        &'a [crate::evaluate::decision::GateResult],
    );
    let stages: Vec<Stage<'_>> = if d.pipeline.is_empty() {
        vec![(d.stage.as_str(), d.stage_result, d.score, &d.gates)]
    } else {
        d.pipeline
            .iter()
            .map(|r| {
                (
                    r.stage.as_str(),
                    r.stage_result,
                    r.score,
                    r.gates.as_slice(),
                )
            })
            .collect()
    };
    let last = stages.len().saturating_sub(1);
    let suites: Vec<Suite> = stages
        .into_iter()
        .enumerate()
        .map(|(i, (stage, result, score, gates))| {
            let mut cases: Vec<TestCase> = gates.iter().map(gate_case).collect();
            let mut properties = vec![
                ("stage", stage.to_string()),
                ("stage_result", result.as_str().to_string()),
            ];
            if let Some(s) = score {
                properties.push(("score", number(Some(s))));
            }
            if i == last {
                cases.extend(d.triggers.iter().map(trigger_case));
                cases.push(decision_case(d));
                properties.push(("decision", d.decision.as_str().to_string()));
                properties.push(("summary", d.summary.clone()));
            }
            Suite {
                name: format!("{}/{stage}", d.policy),
                properties,
                cases,
            }
        })
        .collect();
    write_suites(&format!("tollgate {}", d.policy), &suites)
}

/// A report that carries an error instead of a decision, in `format`, so
/// that `--format junit > report.xml` (or json) leaves a file its reader
/// can parse, and shows why there is no decision. `None` for the table,
/// whose reader is a person: the error goes to stderr.
pub fn error_report(format: Format, policy: &str, message: &str) -> Option<String> {
    match format {
        Format::Table => None,
        Format::Markdown => Some(super::markdown::error(policy, message)),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&serde_json::json!({
                "error": { "message": message }
            }))
            .unwrap_or_default();
            s.push('\n');
            Some(s)
        }
        Format::Junit => {
            let policy = escape_control(policy);
            let suite = Suite {
                name: policy.to_string(),
                properties: vec![("decision", "error".into())],
                cases: vec![TestCase {
                    name: "evaluation".into(),
                    us: 0,
                    case: Case::Error(escape_control(message).into_owned()),
                }],
            };
            Some(write_suites(&format!("tollgate {policy}"), &[suite]))
        }
    }
}

fn write_suites(name: &str, suites: &[Suite]) -> String {
    let total = |f: fn(&Case) -> bool| suites.iter().map(|s| s.count(f)).sum::<usize>();
    let tests: usize = suites.iter().map(|s| s.cases.len()).sum();
    let failures = total(|c| matches!(c, Case::Failure(..)));
    let errors = total(|c| matches!(c, Case::Error(_)));
    let skipped = total(|c| matches!(c, Case::Skipped(_)));
    let us: u64 = suites.iter().map(Suite::micros).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{:.6}\">",
        escape(name),
        us as f64 / 1e6
    );
    for suite in suites {
        write_suite(&mut out, suite);
    }
    out.push_str("</testsuites>\n");
    out
}

fn write_suite(out: &mut String, suite: &Suite) {
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.6}\">",
        escape(&suite.name),
        suite.cases.len(),
        suite.count(|c| matches!(c, Case::Failure(..))),
        suite.count(|c| matches!(c, Case::Error(_))),
        suite.count(|c| matches!(c, Case::Skipped(_))),
        suite.micros() as f64 / 1e6
    );
    out.push_str("    <properties>");
    for (name, value) in &suite.properties {
        let _ = write!(
            out,
            "<property name=\"{name}\" value=\"{}\"/>",
            escape(value)
        );
    }
    out.push_str("</properties>\n");
    for TestCase { name, us, case } in &suite.cases {
        let _ = write!(
            out,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.6}\"",
            escape(&suite.name),
            escape(name),
            *us as f64 / 1e6
        );
        match case {
            Case::Pass => out.push_str("/>\n"),
            Case::Skipped(r) => {
                let _ = writeln!(
                    out,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    escape(r)
                );
            }
            Case::Failure(r, kind) => {
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{}\" type=\"{kind}\"/>\n    </testcase>",
                    escape(r)
                );
            }
            Case::Error(r) => {
                let _ = writeln!(
                    out,
                    ">\n      <error message=\"{}\" type=\"error\"/>\n    </testcase>",
                    escape(r)
                );
            }
            Case::Output(text) => {
                let _ = writeln!(
                    out,
                    ">\n      <system-out>{}</system-out>\n    </testcase>",
                    escape(text)
                );
            }
        }
    }
    out.push_str("  </testsuite>\n");
}

#[cfg(test)]
mod tests {
    use super::number;

    #[test]
    fn numbers_are_rounded_for_people() {
        assert_eq!(number(Some(0.0002666666666666667)), "0.000266667");
        assert_eq!(number(Some(86.20689655172414)), "86.2069");
        assert_eq!(number(Some(120.0)), "120");
        assert_eq!(number(Some(0.0)), "0");
        assert_eq!(number(None), "-");
        assert_eq!(number(Some(1.5e20)), "1.50000e20");
    }
}
