//! Decisions and explanations as GitHub-flavoured Markdown, for CI job
//! summaries (`$GITHUB_STEP_SUMMARY`) and merge-request comments: the
//! failing gates first, details collapsed, and each windowed metric a
//! Mermaid `xychart-beta` chart, which GitHub and GitLab draw natively.
//!
//! Every text from a plugin or a request is escaped for Markdown, so it can
//! neither open HTML nor a link nor break a table; chart labels keep only
//! characters Mermaid reads as plain text.

use std::fmt::Write as _;

use crate::base::text::escape_control;
use crate::evaluate::charts::Chart;
use crate::evaluate::decision::{Action, Counted, Decision, Fire, GateResult, Outcome, Verdict};
use crate::evaluate::explain::{DecidedBy, Explanation};
use crate::snapshot::Point;

/// Columns of a chart at most: GitHub's viewer keeps about this many
/// readable; longer windows are averaged into this many runs.
pub const MAX_CHART_POINTS: usize = 60;

/// Longest text a chart label keeps, in characters.
const MAX_LABEL: usize = 60;

/// Line colours in the order lines are drawn: canary, baseline, threshold,
/// observed aggregate.
const CURRENT: (&str, &str) = ("#2563eb", "blue");
const BASELINE: (&str, &str) = ("#f97316", "orange");
const THRESHOLD: (&str, &str) = ("#dc2626", "red");
const OBSERVED: (&str, &str) = ("#16a34a", "green");

/// Text from a plugin or a request, made inert in Markdown: one line, every
/// ASCII punctuation character backslash-escaped (CommonMark lets any be),
/// so no `<`, `[`, `|`, `*` or backtick keeps its meaning.
pub fn text(s: &str) -> String {
    let line = escape_control(s).replace(['\n', '\r'], " ");
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Text from a plugin or a request inside raw HTML (a `<summary>`), where
/// Markdown escapes do not apply: HTML-escaped, on one line.
pub fn html_text(s: &str) -> String {
    let line = escape_control(s).replace(['\n', '\r'], " ");
    quick_xml::escape::escape(line.as_str()).into_owned()
}

/// A number for a table or a chart: at most six significant digits, never
/// in exponent form (Mermaid reads plain decimals only).
pub fn number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".into();
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = usize::try_from((5 - magnitude).clamp(0, 20)).unwrap_or(0);
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), number)
}

fn icon(o: Outcome) -> &'static str {
    match o {
        Outcome::Promote => "✅",
        Outcome::Hold => "⏸️",
        Outcome::Rollback => "❌",
    }
}

fn verdict_icon(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "✅",
        Verdict::Warn => "⚠️",
        Verdict::Inconclusive => "❔",
        Verdict::Fail | Verdict::Error => "❌",
    }
}

/// Failing gates first, then warnings, inconclusive, passes, ignored.
fn rank(g: &GateResult) -> u8 {
    match g.counted_as {
        Counted::Fail => 0,
        Counted::Warn => 1,
        Counted::Inconclusive => 2,
        Counted::Pass => 3,
        Counted::Ignored => 4,
    }
}

/// The decision as a job summary: the outcome and its reason, the gates
/// (failing first) in a table, then collapsed sections for charts,
/// triggers, the action plan and the digests.
pub fn decision(d: &Decision, charts: &[Chart]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### {} tollgate: **{}** · {} {} · {} / {}\n",
        icon(d.decision),
        d.decision.as_str(),
        text(&d.service),
        text(&d.version),
        text(&d.policy),
        text(&d.stage),
    );
    let _ = writeln!(out, "> {}\n", text(&d.summary));
    let score = d.score.map_or_else(
        || "no score (no gate counted)".into(),
        |s| format!("score **{}%**", number(s)),
    );
    let _ = writeln!(
        out,
        "{score} · pass at {}%, warn at {}% · stage result {}{}\n",
        number(d.scoring.pass),
        number(d.scoring.warn),
        d.stage_result.as_str(),
        if d.what_if {
            " · what-if: nothing was logged"
        } else {
            ""
        }
    );
    if !d.gates.is_empty() {
        let mut gates: Vec<&GateResult> = d.gates.iter().collect();
        gates.sort_by_key(|g| rank(g));
        let _ = writeln!(out, "| | Gate | Counted | Observed | Threshold | Reason |");
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for g in gates {
            let mut name = text(&g.name);
            if g.key {
                name.push_str(" (key)");
            }
            if g.dry_run {
                name.push_str(" (dry run)");
            }
            let _ = writeln!(
                out,
                "| {} | {name} | {} | {} | {} | {} |",
                verdict_icon(g.verdict),
                g.counted_as.as_str(),
                cell(g.observed),
                cell(g.threshold),
                text(&g.reason),
            );
        }
        out.push('\n');
    }
    for c in charts {
        let _ = writeln!(
            out,
            "<details><summary>{} {}: {}</summary>\n",
            verdict_icon(c.verdict),
            html_text(&c.gate),
            html_text(&c.metric),
        );
        out.push_str(&chart(c));
        out.push_str("\n</details>\n\n");
    }
    if !d.triggers.is_empty() {
        let fired = d.triggers.iter().filter(|t| t.fire != Fire::None).count();
        let _ = writeln!(
            out,
            "<details><summary>Triggers: {fired} of {} fired</summary>\n",
            d.triggers.len()
        );
        let _ = writeln!(out, "| Trigger | Fired | Observed | Threshold | Reason |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for t in &d.triggers {
            let _ = writeln!(
                out,
                "| {} | {}{} | {} | {} | {} |",
                text(&t.name),
                t.fire.as_str(),
                if t.error { " (error)" } else { "" },
                cell(t.observed),
                cell(t.threshold),
                text(&t.reason),
            );
        }
        out.push_str("\n</details>\n\n");
    }
    if !d.actions.is_empty() {
        let _ = writeln!(out, "<details><summary>Action plan</summary>\n");
        for p in &d.actions {
            let planned: Vec<String> = p.actions.iter().map(action).collect();
            let _ = writeln!(
                out,
                "- {}: {}",
                text(&p.name),
                match &p.error {
                    Some(e) => format!("could not plan: {}", text(e)),
                    None if planned.is_empty() => "nothing".into(),
                    None => planned.join(", "),
                }
            );
        }
        out.push_str("\n</details>\n\n");
    }
    let _ = writeln!(out, "<details><summary>Digests</summary>\n");
    let _ = writeln!(out, "- policy `{}`", d.digests.policy);
    let _ = writeln!(out, "- input `{}`", d.digests.input);
    for (name, digest) in &d.digests.plugins {
        let _ = writeln!(out, "- plugin {}: `{digest}`", text(name));
    }
    if let Some(id) = &d.decision_id {
        let _ = writeln!(out, "- decision {}", text(id));
    }
    out.push_str("\n</details>\n");
    out
}

fn action(a: &Action) -> String {
    match a {
        Action::SetWeight { percent } => format!("set weight {percent}%"),
        Action::Promote => "promote".into(),
        Action::Pause { seconds } => format!("pause {seconds}s"),
        Action::Hold { reason } => format!("hold ({})", text(reason)),
        Action::Rollback { reason } => format!("rollback ({})", text(reason)),
        Action::BumpVersion { version } => format!("bump version to {}", text(version)),
        Action::FlagRollout(f) => format!(
            "flag {} to {}%{}",
            text(&f.flag),
            f.percent,
            if f.segments.is_empty() {
                String::new()
            } else {
                format!(
                    " for {}",
                    f.segments
                        .iter()
                        .map(|s| text(s))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ),
    }
}

/// A chart label: letters, digits and a few plain marks only, shortened.
fn label(s: &str) -> String {
    s.chars()
        .take(MAX_LABEL)
        .map(|c| {
            if c.is_alphanumeric() || " _-.:/%()=,".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The clock time of `t` (UTC), with the date when the chart spans days.
fn clock(t: i64, with_date: bool) -> String {
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp(t) else {
        return t.to_string();
    };
    if with_date {
        format!(
            "{:02}-{:02} {:02}:{:02}",
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute()
        )
    } else {
        format!("{:02}:{:02}:{:02}", at.hour(), at.minute(), at.second())
    }
}

/// The series on one time axis: the union of their timestamps, in at most
/// [`MAX_CHART_POINTS`] runs; each series' value in a run is the mean of
/// its points there, or its nearest earlier value (its first, before any).
fn aligned(series: &[&[Point]]) -> (Vec<i64>, Vec<Vec<f64>>, bool) {
    let mut times: Vec<i64> = series
        .iter()
        .flat_map(|s| s.iter().map(|p| p.timestamp))
        .collect();
    times.sort_unstable();
    times.dedup();
    let per = times.len().div_ceil(MAX_CHART_POINTS).max(1);
    let runs: Vec<(i64, i64)> = times.chunks(per).map(|c| (c[0], c[c.len() - 1])).collect();
    let values = series
        .iter()
        .map(|s| {
            let mut last: Option<f64> = s.first().map(|p| p.value);
            runs.iter()
                .map(|(from, to)| {
                    let inside: Vec<f64> = s
                        .iter()
                        .filter(|p| p.timestamp >= *from && p.timestamp <= *to)
                        .map(|p| p.value)
                        .collect();
                    if !inside.is_empty() {
                        last = Some(inside.iter().sum::<f64>() / inside.len() as f64);
                    }
                    last.unwrap_or(0.0)
                })
                .collect()
        })
        .collect();
    (runs.iter().map(|r| r.1).collect(), values, per > 1)
}

/// One gate's metric as a Mermaid `xychart-beta` block and its legend.
pub fn chart(c: &Chart) -> String {
    let mut lines: Vec<(&[Point], (&str, &str), String)> = Vec::new();
    if !c.current.is_empty() {
        lines.push((&c.current, CURRENT, "canary".into()));
    }
    if !c.baseline.is_empty() {
        lines.push((&c.baseline, BASELINE, "baseline".into()));
    }
    if lines.is_empty() {
        return format!(
            "No points of {} in the window the gate read.\n",
            text(&c.metric)
        );
    }
    let points: Vec<&[Point]> = lines.iter().map(|l| l.0).collect();
    let (times, mut values, averaged) = aligned(&points);
    let mut legend: Vec<String> = lines
        .iter()
        .map(|(_, colour, name)| format!("{} {name}", colour.1))
        .collect();
    let mut palette: Vec<&str> = lines.iter().map(|l| (l.1).0).collect();
    for (v, colour, name) in [
        (c.threshold, THRESHOLD, "threshold"),
        (c.observed, OBSERVED, "observed"),
    ] {
        if let Some(v) = v {
            values.push(vec![v; times.len()]);
            palette.push(colour.0);
            legend.push(format!("{} {name} {}", colour.1, number(v)));
        }
    }
    let with_date = times
        .first()
        .zip(times.last())
        .is_some_and(|(a, b)| b.saturating_sub(*a) > 86_400);
    let window = c
        .window_seconds
        .map(|w| {
            format!(
                " over {}",
                humantime::format_duration(std::time::Duration::from_secs(w))
            )
        })
        .unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "```mermaid");
    let _ = writeln!(
        out,
        "---\nconfig:\n  themeVariables:\n    xyChart:\n      plotColorPalette: \"{}\"\n---",
        palette.join(", ")
    );
    let _ = writeln!(out, "xychart-beta");
    let _ = writeln!(
        out,
        "    title \"{}\"",
        label(&format!("{}: {}{window}", c.gate, c.metric))
    );
    let _ = writeln!(
        out,
        "    x-axis \"time (UTC)\" [{}]",
        times
            .iter()
            .map(|t| format!("\"{}\"", clock(*t, with_date)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(out, "    y-axis \"{}\"", label(&c.metric));
    for v in &values {
        let _ = writeln!(
            out,
            "    line [{}]",
            v.iter().map(|x| number(*x)).collect::<Vec<_>>().join(", ")
        );
    }
    let _ = writeln!(out, "```");
    let _ = writeln!(
        out,
        "\nLines: {}.{}",
        legend.join(", "),
        if averaged {
            format!(" Points averaged into {MAX_CHART_POINTS} runs.")
        } else {
            String::new()
        }
    );
    out
}

/// An explanation as Markdown: what decided, then each gate's distance and
/// share, then the fewest changes that would have changed the decision.
pub fn explanation(e: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### {} Why **{}** · {} / {}\n",
        icon(e.decision),
        e.decision.as_str(),
        text(&e.policy),
        text(&e.stage)
    );
    let _ = writeln!(out, "> {}\n", text(&e.summary));
    let _ = writeln!(out, "Decided by {}.\n", decided_by(&e.decided_by));
    let _ = writeln!(
        out,
        "| Gate | Counted | Observed | Threshold | Distance | Relative | Share of score | Points | Decisive |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for g in &e.gates {
        let pct = |v: Option<f64>| v.map_or_else(|| "–".into(), |v| format!("{}%", number(v)));
        let _ = writeln!(
            out,
            "| {}{} | {} | {} | {} | {} | {} | {} | {} | {} |",
            text(&g.name),
            if g.key { " (key)" } else { "" },
            g.counted_as.as_str(),
            cell(g.observed),
            cell(g.threshold),
            cell(g.distance),
            pct(g.distance_percent),
            pct(g.weight_percent),
            pct(g.score_points),
            if g.deciding { "yes" } else { "" },
        );
    }
    out.push('\n');
    for a in &e.alternatives {
        if a.changes.is_empty() {
            let _ = writeln!(
                out,
                "- **{}**: {}",
                a.decision.as_str(),
                text(a.why_not.as_deref().unwrap_or("not reachable"))
            );
        } else {
            let sets: Vec<String> = a.changes.iter().map(|set| changes(set)).collect();
            let _ = writeln!(
                out,
                "- **{}** if {}",
                a.decision.as_str(),
                sets.join(", or ")
            );
        }
    }
    out
}

fn changes(set: &[crate::evaluate::explain::Change]) -> String {
    set.iter()
        .map(|c| {
            format!(
                "{} {} (was {})",
                text(&c.gate),
                c.to.as_str(),
                c.from.as_str()
            )
        })
        .collect::<Vec<_>>()
        .join(" and ")
}

/// What set the outcome, in words.
pub fn decided_by(d: &DecidedBy) -> String {
    match d {
        DecidedBy::Gates { rule } => format!("the gates: {}", text(rule)),
        DecidedBy::Trigger { name, fire } => {
            format!("trigger {}, which fired {}", text(name), fire.as_str())
        }
        DecidedBy::Action { name } => format!("the plan of action {}", text(name)),
    }
}

/// The summary a CI job still gets when no decision could be made.
pub fn error(policy: &str, message: &str) -> String {
    format!(
        "### ❗ tollgate: no decision · {}\n\n> {}\n",
        text(policy),
        text(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_a_plugin_cannot_open_html_links_tables_or_code() {
        let hostile = "<script>x</script> [a](javascript:1) | `c` *b*\n# h\x1b[31m";
        let shown = text(hostile);
        assert!(!shown.contains('\n') && !shown.contains('\x1b'), "{shown}");
        // Every ASCII punctuation mark is escaped, so none keeps a meaning.
        let mut chars = shown.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\\' {
                assert!(chars.next().is_some_and(|n| n.is_ascii_punctuation()));
            } else {
                assert!(!c.is_ascii_punctuation(), "unescaped {c:?} in {shown}");
            }
        }
    }

    #[test]
    fn numbers_are_plain_decimals_mermaid_reads() {
        assert_eq!(number(0.0005), "0.0005");
        assert_eq!(number(1.0e-7), "0.0000001");
        assert_eq!(number(86.206896), "86.2069");
        assert_eq!(number(120.0), "120");
        assert_eq!(number(-2.5), "-2.5");
        assert_eq!(number(f64::NAN), "0");
        assert!(!number(1.0e300).contains('e'));
    }

    #[test]
    fn a_long_window_is_averaged_into_at_most_the_chart_columns() {
        let points: Vec<Point> = (0..600)
            .map(|i| Point {
                timestamp: i * 10,
                value: f64::from(i32::try_from(i % 2).unwrap()),
            })
            .collect();
        let chart = Chart {
            gate: "g".into(),
            verdict: Verdict::Pass,
            metric: "m\"]\n```".into(),
            window_seconds: Some(6000),
            taken_at: 6000,
            current: points,
            baseline: Vec::new(),
            observed: Some(0.5),
            threshold: Some(1.0),
            thinned: false,
        };
        let drawn = super::chart(&chart);
        let line = drawn.lines().find(|l| l.contains("line [")).unwrap();
        assert_eq!(line.matches(',').count() + 1, MAX_CHART_POINTS);
        assert!(drawn.contains("Points averaged"), "{drawn}");
        // The metric's quote and fence became plain characters.
        assert_eq!(drawn.matches("```").count(), 2, "{drawn}");
        assert!(drawn.contains("title \"g: m______ over"), "{drawn}");
    }
}
