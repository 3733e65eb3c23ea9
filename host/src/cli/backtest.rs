//! `tollgate backtest`: what a candidate policy would have decided for every
//! logged decision of a policy, against the log or another policy, with
//! each release labelled by what happened to it next.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

use super::Exit;
use super::decisions::LogArg;
use crate::base::text::escape_control;
use crate::decide::backtest::{Against, Confusion, Label, Options, Report, StateMode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Table,
    Json,
    Markdown,
}

/// What a written test case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Expect {
    /// The decision as logged (the regression a case guards against).
    Logged,
    /// The candidate's decision, gate by gate (to pin its behaviour).
    Candidate,
}

#[derive(Debug, clap::Args)]
pub(crate) struct BacktestArgs {
    /// The candidate policy file.
    #[arg(long, short = 'p')]
    policy: PathBuf,
    /// Compare with `logged` decisions (the default) or with another policy
    /// file evaluated the same way (the one enforced now).
    #[arg(long, default_value = "logged")]
    against: String,
    /// The logged policy name to re-evaluate [default: the candidate's].
    #[arg(long)]
    policy_name: Option<String>,
    #[command(flatten)]
    log: LogArg,
    #[arg(long)]
    service: Option<String>,
    /// Decisions taken since: a duration back from now (`90d`) or a time
    /// (unix seconds or RFC 3339) [default: every decision].
    #[arg(long)]
    since: Option<String>,
    /// Decisions taken before this time (unix seconds or RFC 3339).
    #[arg(long, value_parser = crate::sources::parse_time)]
    until: Option<i64>,
    /// Read the trigger state each decision read, instead of replaying the
    /// candidate's triggers from empty state in time order.
    #[arg(long)]
    logged_state: bool,
    /// Release labels kept elsewhere: CSV lines `service,version,good|bad`.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// The policy whose decisions are hotfixes.
    #[arg(long, default_value = "hotfix")]
    hotfix_policy: String,
    /// A hotfix of the service this soon after a release makes it bad.
    #[arg(long, default_value = "72h", value_parser = humantime::parse_duration)]
    hotfix_window: std::time::Duration,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Exit 1 when the candidate changes any decision (for a policy
    /// change's CI job).
    #[arg(long)]
    fail_on_change: bool,
    /// Write past decisions as policy test cases to DIR/backtest.test.yaml:
    /// those named with `--case`, else every changed one.
    #[arg(long)]
    write_cases: Option<PathBuf>,
    /// A decision id to write as a case (repeatable).
    #[arg(long = "case", requires = "write_cases")]
    cases: Vec<String>,
    /// What written cases expect.
    #[arg(long, value_enum, default_value_t = Expect::Logged)]
    expect: Expect,
    /// Query the candidate's `metrics:` that logged snapshots lack from
    /// this Prometheus, at each decision's `taken_at`.
    #[command(flatten)]
    prometheus: super::sources::PrometheusArgs,
}

fn since(text: &str) -> anyhow::Result<i64> {
    crate::decide::backtest::since(text)
        .map_err(|e| anyhow::anyhow!("`--since {}`: {e}", escape_control(text)))
}

/// Labels from a CSV file: `service,version,good|bad`, `#` comments and a
/// header line allowed.
fn labels(path: &Path) -> anyhow::Result<std::collections::BTreeMap<(String, String), Label>> {
    let text = crate::base::files::read_text(path)
        .with_context(|| format!("cannot read labels `{}`", path.display()))?;
    let mut out = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("service,") {
            continue;
        }
        let parts: Vec<&str> = line.split(',').map(str::trim).collect();
        let label = match parts.as_slice() {
            [_, _, "good"] => Label::Good,
            [_, _, "bad"] => Label::Bad,
            _ => anyhow::bail!(
                "labels `{}` line {}: expected `service,version,good|bad`, found `{}`",
                path.display(),
                i + 1,
                escape_control(line)
            ),
        };
        out.insert((parts[0].to_string(), parts[1].to_string()), label);
    }
    Ok(out)
}

pub(crate) fn run(args: BacktestArgs) -> anyhow::Result<Exit> {
    let runtime = super::runtime()?;
    let candidate = Arc::new(super::load_policy(&runtime, &args.policy)?);
    let against = match args.against.as_str() {
        "logged" => Against::Logged,
        file => Against::Policy(Arc::new(super::load_policy(&runtime, Path::new(file))?)),
    };
    let options = Options {
        policy_name: args
            .policy_name
            .clone()
            .unwrap_or_else(|| candidate.policy.name.to_string()),
        candidate,
        against,
        service: args.service.clone(),
        since: args.since.as_deref().map(since).transpose()?,
        until: args.until,
        state: if args.logged_state {
            StateMode::Logged
        } else {
            StateMode::Replayed
        },
        labels: args
            .labels
            .as_deref()
            .map(labels)
            .transpose()?
            .unwrap_or_default(),
        hotfix_policy: args.hotfix_policy.clone(),
        hotfix_window: i64::try_from(args.hotfix_window.as_secs()).unwrap_or(i64::MAX),
        prometheus: args.prometheus.client()?,
        pace: None,
        max_rows: crate::decide::backtest::MAX_ROWS,
    };
    let tty = std::io::stderr().is_terminal();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = tokio.block_on(async {
        let store = args.log.open_existing().await?;
        let mut shown = 0;
        let report = crate::decide::backtest::run(store.as_ref(), &options, |done, total| {
            // A progress line on a terminal, at most every 1 %.
            if tty && total > 0 && (done == total || done * 100 / total != shown) {
                shown = done * 100 / total;
                eprint!("\rbacktest: {done}/{total} decisions ({shown}%)");
                if done == total {
                    eprintln!();
                }
            }
        })
        .await?;
        if let Some(dir) = &args.write_cases {
            write_cases(store.as_ref(), &options, &report, &args, dir).await?;
        }
        Ok::<_, anyhow::Error>(report)
    })?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => print!("{}", table(&report)),
        Format::Markdown => print!("{}", markdown(&report)),
    }
    Ok(if args.fail_on_change && report.changed > 0 {
        Exit::Failure
    } else {
        Exit::Success
    })
}

/// `to` relative to the directory `from` (both made absolute).
fn relative(to: &Path, from: &Path) -> PathBuf {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (to, from) = (abs(to), abs(from));
    let common = to
        .components()
        .zip(from.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = PathBuf::new();
    for _ in from.components().skip(common) {
        out.push("..");
    }
    for c in to.components().skip(common) {
        out.push(c);
    }
    out
}

async fn write_cases(
    store: &dyn crate::store::Store,
    options: &Options,
    report: &Report,
    args: &BacktestArgs,
    dir: &Path,
) -> anyhow::Result<()> {
    let ids: Vec<String> = if args.cases.is_empty() {
        report
            .rows
            .iter()
            .filter(|r| r.error.is_none())
            .map(|r| r.decision_id.clone())
            .collect()
    } else {
        args.cases.clone()
    };
    let mut cases = Vec::new();
    for id in &ids {
        let record = store
            .decision(id)
            .await?
            .with_context(|| format!("no decision `{}` in the log", escape_control(id)))?;
        let snapshot = Arc::new(crate::decide::replay::logged_snapshot(store, &record).await?);
        let expect = match args.expect {
            Expect::Logged => {
                let mut d = record.decision.clone();
                // The candidate's gates may differ: expect the decision only.
                d.gates.clear();
                d
            }
            Expect::Candidate => {
                let approvals: Arc<[_]> = crate::decide::replay::logged_approvals(store, &record)
                    .await?
                    .into();
                let evaluation = crate::decide::Evaluation {
                    loaded: Arc::clone(&options.candidate),
                    snapshot: Arc::clone(&snapshot),
                    approvals,
                    asked: record.asked.clone(),
                    decided_at: record
                        .decision
                        .decided_at
                        .unwrap_or(record.decision.taken_at),
                    what_if: true,
                    asker: crate::decide::Asker::default(),
                    idempotency: None,
                    evidence: None,
                    canonical: Default::default(),
                };
                evaluation
                    .evaluate(&mut crate::evaluate::trigger_state::EphemeralState::default())?
            }
        };
        cases.push(crate::decide::backtest::case(&record, &snapshot, &expect));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let file = serde_json::json!({
        "policy": relative(&args.policy, dir),
        "cases": cases,
    });
    let path = dir.join("backtest.test.yaml");
    // JSON is YAML; the test runner reads it as written.
    std::fs::write(&path, serde_json::to_string_pretty(&file)?)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    eprintln!("wrote {} case(s) to {}", cases.len(), path.display());
    Ok(())
}

fn number(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), super::markdown::number)
}

/// What changed in a row, in a few words.
fn change(r: &crate::decide::backtest::Row) -> String {
    if let Some(e) = &r.error {
        return format!("error: {e}");
    }
    let mut parts: Vec<String> = r
        .gates
        .iter()
        .map(|g| {
            format!(
                "gate {} {}→{} ({} vs {}→{})",
                g.name,
                g.before.as_deref().unwrap_or("absent"),
                g.after.as_deref().unwrap_or("absent"),
                number(g.observed_after.or(g.observed_before)),
                number(g.threshold_before),
                number(g.threshold_after)
            )
        })
        .collect();
    parts.extend(r.triggers.iter().map(|t| {
        format!(
            "trigger {} {}→{}",
            t.name,
            t.before.as_deref().unwrap_or("absent"),
            t.after.as_deref().unwrap_or("absent")
        )
    }));
    if !r.no_data.is_empty() {
        parts.push(format!("no data for {}", r.no_data.join(", ")));
    }
    if !r.requeried.is_empty() {
        parts.push(format!("re-queried {}", r.requeried.join(", ")));
    }
    parts.join("; ")
}

fn confusion_lines(before: &Confusion, after: &Confusion) -> Vec<(String, usize, usize)> {
    vec![
        (
            "stopped a bad release".into(),
            before.stopped_bad,
            after.stopped_bad,
        ),
        (
            "stopped a good release (false positive)".into(),
            before.stopped_good,
            after.stopped_good,
        ),
        (
            "let a bad release through".into(),
            before.passed_bad,
            after.passed_bad,
        ),
        (
            "let a good release through".into(),
            before.passed_good,
            after.passed_good,
        ),
        ("unlabelled".into(), before.unlabelled, after.unlabelled),
    ]
}

fn table(r: &Report) -> String {
    let s = |t: &str| escape_control(t).into_owned();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "BACKTEST candidate {} ({}) against {} · {} decision(s) of policy {} · trigger state {}",
        s(&r.candidate),
        r.candidate_digest,
        s(&r.against),
        r.decisions,
        s(&r.policy),
        match r.state {
            StateMode::Replayed => "replayed in order",
            StateMode::Logged => "as logged",
        }
    );
    let _ = writeln!(
        out,
        "changed {} of {} · errors {}",
        r.changed, r.decisions, r.errors
    );
    for (t, n) in &r.transitions {
        let _ = writeln!(out, "  {t}: {n}");
    }
    for (g, n) in &r.no_data {
        let _ = writeln!(
            out,
            "  gate {} had no data in {n} logged snapshot(s) (inconclusive)",
            s(g)
        );
    }
    for (m, n) in &r.requeried {
        let _ = writeln!(
            out,
            "  metric {} re-queried from {} for {n} decision(s)",
            s(m),
            s(r.prometheus.as_deref().unwrap_or("Prometheus"))
        );
    }
    if !r.rows.is_empty() {
        let _ = writeln!(
            out,
            "\n{:36}  {:16}  {:10}  {:16}  {:8}  {:8}  WHAT CHANGED",
            "DECISION", "SERVICE", "VERSION", "STAGE", "BEFORE", "AFTER"
        );
        for row in &r.rows {
            let _ = writeln!(
                out,
                "{:36}  {:16}  {:10}  {:16}  {:8}  {:8}  {}",
                s(&row.decision_id),
                s(&row.service),
                s(&row.version),
                s(&row.stage),
                row.before.as_str(),
                row.after.map_or("-", |o| o.as_str()),
                s(&change(row))
            );
        }
        if r.rows_omitted > 0 {
            let _ = writeln!(out, "… and {} more", r.rows_omitted);
        }
    }
    let labelled = r.releases.iter().filter(|x| x.label.is_some()).count();
    let _ = writeln!(
        out,
        "\nRELEASES {} · {labelled} labelled ({} bad, {} good)",
        r.releases.len(),
        r.releases
            .iter()
            .filter(|x| x.label == Some(Label::Bad))
            .count(),
        r.releases
            .iter()
            .filter(|x| x.label == Some(Label::Good))
            .count(),
    );
    let _ = writeln!(out, "{:42}  {:>8}  {:>9}", "", "BEFORE", "CANDIDATE");
    for (name, b, a) in confusion_lines(&r.confusion_before, &r.confusion_after) {
        let _ = writeln!(out, "{name:42}  {b:>8}  {a:>9}");
    }
    out
}

fn markdown(r: &Report) -> String {
    use super::markdown::text;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Backtest of {} against {}\n\n{} of {} logged decision(s) of {} change; {} could not be evaluated.\n",
        text(&r.candidate),
        text(&r.against),
        r.changed,
        r.decisions,
        text(&r.policy),
        r.errors
    );
    if !r.requeried.is_empty() {
        let metrics: Vec<String> = r
            .requeried
            .iter()
            .map(|(m, n)| format!("{} ({n})", text(m)))
            .collect();
        let _ = writeln!(
            out,
            "Metrics the log lacks, re-queried from Prometheus: {}.\n",
            metrics.join(", ")
        );
    }
    if !r.transitions.is_empty() {
        let _ = writeln!(out, "| Change | Decisions |\n|---|---|");
        for (t, n) in &r.transitions {
            let _ = writeln!(out, "| {} | {n} |", text(t));
        }
        out.push('\n');
    }
    let _ = writeln!(out, "| Releases | Before | Candidate |\n|---|---|---|");
    for (name, b, a) in confusion_lines(&r.confusion_before, &r.confusion_after) {
        let _ = writeln!(out, "| {name} | {b} | {a} |");
    }
    if !r.rows.is_empty() {
        let _ = writeln!(
            out,
            "\n<details><summary>Changed decisions ({})</summary>\n\n| Decision | Release | Stage | Before | After | What changed |\n|---|---|---|---|---|---|",
            r.rows.len() + r.rows_omitted
        );
        for row in &r.rows {
            let _ = writeln!(
                out,
                "| {} | {} {} | {} | {} | {} | {} |",
                text(&row.decision_id),
                text(&row.service),
                text(&row.version),
                text(&row.stage),
                row.before.as_str(),
                row.after.map_or("–", |o| o.as_str()),
                text(&change(row))
            );
        }
        out.push_str("\n</details>\n");
    }
    out
}
