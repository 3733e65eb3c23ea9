//! `tollgate explain ID`: why a logged decision came out as it did, from
//! the log itself or from a server's `GET /v1/decisions/{id}/explanation`.

use std::fmt::Write as _;

use anyhow::Context as _;

use super::Exit;
use super::decisions::LogArg;
use crate::base::text::escape_control;
use crate::evaluate::explain::{DecidedBy, Explanation};

/// Text for people, JSON for scripts, Markdown for CI summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Table,
    Json,
    Markdown,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ExplainArgs {
    /// The decision id (`decision_id` of a logged decision).
    id: String,
    #[command(flatten)]
    log: LogArg,
    /// Ask this tollgate server instead of reading a log here (token from
    /// `TOLLGATE_TOKEN`, read scope); `--log` is then not read.
    #[arg(long)]
    server: Option<reqwest::Url>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub(crate) fn run(args: ExplainArgs) -> anyhow::Result<Exit> {
    let explained: Explanation = match &args.server {
        Some(server) => {
            if uuid::Uuid::try_parse(&args.id).is_err() {
                anyhow::bail!(
                    "`{}` is not a decision id: ids are UUIDs, as `decision_id` gives them",
                    crate::base::text::shown(&args.id)
                );
            }
            let answer = super::client::call(
                server,
                &format!("v1/decisions/{}/explanation", args.id),
                None,
            )?;
            serde_json::from_value(answer).map_err(|e| {
                anyhow::anyhow!("{server} answered something that is not an explanation: {e}")
            })?
        }
        None => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let record = runtime.block_on(async {
                let store = args.log.open_existing().await?;
                store.decision(&args.id).await?.with_context(|| {
                    format!("no decision `{}` in the log", escape_control(&args.id))
                })
            })?;
            crate::evaluate::explain::explain(&record.decision)
        }
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&explained)?),
        Format::Markdown => print!("{}", super::markdown::explanation(&explained)),
        Format::Table => print!("{}", table(&explained)),
    }
    Ok(Exit::Success)
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), super::markdown::number)
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(
        || "-".into(),
        |v| format!("{}%", super::markdown::number(v)),
    )
}

/// The explanation as plain text, every logged text escaped for a terminal.
fn table(e: &Explanation) -> String {
    let mut out = String::new();
    let s = |t: &str| escape_control(t).into_owned();
    let _ = writeln!(
        out,
        "{} · policy {} · stage {} · score {} (pass {}%, warn {}%)",
        e.decision.as_str().to_uppercase(),
        s(&e.policy),
        s(&e.stage),
        pct(e.score),
        super::markdown::number(e.scoring.pass),
        super::markdown::number(e.scoring.warn),
    );
    let _ = writeln!(out, "{}", s(&e.summary));
    let by = match &e.decided_by {
        DecidedBy::Gates { rule } => format!("the gates: {}", s(rule)),
        DecidedBy::Trigger { name, fire } => {
            format!("trigger `{}`, which fired {}", s(name), fire.as_str())
        }
        DecidedBy::Action { name } => format!("the plan of action `{}`", s(name)),
    };
    let _ = writeln!(out, "decided by {by}\n");
    let width = e
        .gates
        .iter()
        .map(|g| g.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let _ = writeln!(
        out,
        "{:width$}  {:12}  {:>10}  {:>10}  {:>10}  {:>9}  {:>6}  {:>6}  DECISIVE",
        "GATE", "COUNTED", "OBSERVED", "THRESHOLD", "DISTANCE", "RELATIVE", "SHARE", "POINTS"
    );
    for g in &e.gates {
        let _ = writeln!(
            out,
            "{:width$}  {:12}  {:>10}  {:>10}  {:>10}  {:>9}  {:>6}  {:>6}  {}",
            s(&g.name),
            format!(
                "{}{}",
                g.counted_as.as_str(),
                if g.key { " key" } else { "" }
            ),
            num(g.observed),
            num(g.threshold),
            num(g.distance),
            pct(g.distance_percent),
            pct(g.weight_percent),
            pct(g.score_points),
            if g.deciding { "yes" } else { "" },
        );
    }
    let _ = writeln!(out, "\nWOULD HAVE BEEN");
    for a in &e.alternatives {
        if a.changes.is_empty() {
            let _ = writeln!(
                out,
                "{:8}  never: {}",
                a.decision.as_str(),
                s(a.why_not.as_deref().unwrap_or("not reachable"))
            );
            continue;
        }
        for (i, set) in a.changes.iter().enumerate() {
            let changes: Vec<String> = set
                .iter()
                .map(|c| {
                    format!(
                        "`{}` {} (was {})",
                        s(&c.gate),
                        c.to.as_str(),
                        c.from.as_str()
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "{:8}  {} {}",
                if i == 0 { a.decision.as_str() } else { "" },
                if i == 0 { "if" } else { "or" },
                changes.join(" and ")
            );
        }
    }
    out
}
