//! `tollgate decisions list|show|prune`, `tollgate replay` and `tollgate
//! report dora`: the decision log from the command line, with the same
//! filters as the HTTP API.

use std::sync::Arc;

use anyhow::Context as _;

use super::Exit;
use crate::base::text::escape_control;
use crate::store::{Cursor, Filter, Store};

/// Where the log is: a SQLite file or `postgres://…`.
#[derive(Debug, clap::Args)]
pub(super) struct LogArg {
    /// The decision log: a SQLite file or `postgres://…`.
    #[arg(long, alias = "store", default_value = crate::store::DEFAULT_PATH, env = "TOLLGATE_STORE")]
    log: String,
}

impl LogArg {
    /// Opens the log to read it. A command that reads the log never
    /// creates one: where there is none, that is the answer.
    pub(super) async fn open_existing(&self) -> anyhow::Result<Arc<dyn Store>> {
        let spec = self.log.as_str();
        if spec == "memory" {
            anyhow::bail!(
                "`memory` keeps no decision log; give the log `serve` or `eval --log` wrote (--log DB or TOLLGATE_STORE)"
            );
        }
        let is_postgres = spec.starts_with("postgres://") || spec.starts_with("postgresql://");
        let path = std::path::Path::new(spec.strip_prefix("sqlite:").unwrap_or(spec));
        if !is_postgres && !spec.trim().is_empty() && !path.exists() {
            anyhow::bail!(
                "no decision log at `{}`: nothing was logged there (`tollgate eval --log` and `tollgate serve` write one); name the log with --log DB or TOLLGATE_STORE",
                escape_control(&path.display().to_string())
            );
        }
        Ok(crate::store::open(spec).await?)
    }
}

/// Plain lines or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Table,
    Json,
}

/// How `decisions show` prints a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ShowFormat {
    Table,
    Json,
    /// A CI summary, with charts drawn from the logged snapshot.
    Markdown,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DecisionsArgs {
    #[command(subcommand)]
    command: DecisionsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DecisionsCommand {
    /// Logged decisions, newest first.
    List(ListArgs),
    /// One logged decision: the whole record.
    Show {
        /// The decision id.
        id: String,
        #[command(flatten)]
        log: LogArg,
        #[arg(long, value_enum, default_value_t = ShowFormat::Json)]
        format: ShowFormat,
    },
    /// Remove decisions older than `--retain`, and blobs no longer referenced.
    Prune {
        /// Keep this much history, e.g. `90d`.
        #[arg(long, value_parser = humantime::parse_duration)]
        retain: std::time::Duration,
        #[command(flatten)]
        log: LogArg,
    },
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    #[command(flatten)]
    log: LogArg,
    #[arg(long)]
    service: Option<String>,
    #[arg(long)]
    policy: Option<String>,
    /// promote, hold or rollback.
    #[arg(long, value_parser = ["promote", "hold", "rollback"])]
    decision: Option<String>,
    /// Decisions taken at or after (unix seconds or RFC 3339).
    #[arg(long, value_parser = crate::sources::parse_time)]
    since: Option<i64>,
    /// Decisions taken before (unix seconds or RFC 3339).
    #[arg(long, value_parser = crate::sources::parse_time)]
    until: Option<i64>,
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1000))]
    limit: u64,
    /// Continue from a previous page's `next_cursor`.
    #[arg(long)]
    cursor: Option<Cursor>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    /// The decision ids to replay.
    #[arg(required_unless_present = "all")]
    ids: Vec<String>,
    /// Replay every logged decision.
    #[arg(long, conflicts_with = "ids")]
    all: bool,
    #[command(flatten)]
    log: LogArg,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {
    #[command(subcommand)]
    command: ReportCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ReportCommand {
    /// Deployment frequency, lead time, change failure rate and time to
    /// restore, from the log, beside the release process's targets.
    Dora {
        #[arg(long)]
        service: String,
        /// How far back from `--until`, e.g. `30d`.
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        window: std::time::Duration,
        /// End of the window (unix seconds or RFC 3339) [default: now].
        #[arg(long, value_parser = crate::sources::parse_time)]
        until: Option<i64>,
        #[command(flatten)]
        log: LogArg,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

fn time(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

pub(crate) fn decisions(args: DecisionsArgs) -> anyhow::Result<Exit> {
    block_on(async {
        match args.command {
            DecisionsCommand::List(a) => list(a).await,
            DecisionsCommand::Show { id, log, format } => {
                let store = log.open_existing().await?;
                let record = store
                    .decision(&id)
                    .await?
                    .with_context(|| format!("no decision `{}` in the log", escape_control(&id)))?;
                match format {
                    ShowFormat::Markdown => {
                        let snapshot =
                            crate::decide::replay::logged_snapshot(store.as_ref(), &record).await?;
                        let charts = crate::evaluate::charts::charts(&record.decision, &snapshot);
                        print!("{}", super::markdown::decision(&record.decision, &charts));
                    }
                    ShowFormat::Json => {
                        let mut shown = serde_json::to_value(&record)?;
                        shown["state_in"] = record
                            .state_in
                            .iter()
                            .map(|(name, hex)| (name.clone(), readable_state(hex)))
                            .collect::<serde_json::Map<_, _>>()
                            .into();
                        println!("{}", serde_json::to_string_pretty(&shown)?);
                    }
                    ShowFormat::Table => {
                        println!(
                            "decision {} · recorded {} · token {} · trace {}",
                            record.decision_id,
                            time(record.recorded_at_ms / 1000),
                            record.token_id.as_deref().unwrap_or("-"),
                            record.trace_id.as_deref().unwrap_or("-"),
                        );
                        print!(
                            "{}",
                            super::render::render(
                                &record.decision,
                                super::render::Format::Table,
                                false
                            )
                        );
                        let states: Vec<_> = record
                            .state_in
                            .iter()
                            .filter(|(_, hex)| !hex.is_empty())
                            .collect();
                        if !states.is_empty() {
                            println!("\nTRIGGER STATE READ");
                            for (name, hex) in states {
                                let version = record
                                    .state_versions
                                    .get(name)
                                    .map(|v| format!(" (version {v})"))
                                    .unwrap_or_default();
                                let text = match readable_state(hex) {
                                    serde_json::Value::String(text) => text,
                                    other => other.to_string(),
                                };
                                println!(
                                    "{}{version}: {}",
                                    escape_control(name),
                                    escape_control(&text)
                                );
                            }
                        }
                    }
                }
                Ok(Exit::Success)
            }
            DecisionsCommand::Prune { retain, log } => {
                crate::store::check_retain(retain).map_err(|e| anyhow::anyhow!("{e}"))?;
                let store = log.open_existing().await?;
                let cutoff = crate::store::now_ms()
                    .saturating_sub(i64::try_from(retain.as_millis()).unwrap_or(i64::MAX));
                let pruned = store.prune(cutoff).await?;
                println!(
                    "pruned {} decision(s), {} blob(s), {} idempotency key(s)",
                    pruned.decisions, pruned.blobs, pruned.idempotency_keys
                );
                Ok(Exit::Success)
            }
        }
    })
}

/// Trigger state as a person reads it: the text it is (the first-party
/// triggers keep text such as `open last_seen=… opened_at=…`; JSON is
/// text too), or `{"hex": …}` only when the bytes are not UTF-8.
fn readable_state(hex: &str) -> serde_json::Value {
    match hex::decode(hex).map(String::from_utf8) {
        Ok(Ok(text)) => serde_json::Value::String(text),
        _ => serde_json::json!({ "hex": hex }),
    }
}

async fn list(a: ListArgs) -> anyhow::Result<Exit> {
    let store = a.log.open_existing().await?;
    let limit = usize::try_from(a.limit).unwrap_or(1000);
    let filter = Filter {
        service: a.service,
        policy: a.policy,
        decision: a.decision,
        since: a.since,
        until: a.until,
        final_stage: None,
        limit,
        cursor: a.cursor,
        oldest_first: false,
    };
    let (page, next) = crate::store::page(store.as_ref(), &filter).await?;
    let next = next.map(|c| c.to_string());

    match a.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"decisions": page, "next_cursor": next})
            )?
        ),
        Format::Table => {
            println!(
                "{:<36}  {:<20}  {:<16} {:<10} {:<18} {:<16} {:<8}  SUMMARY",
                "DECISION", "TAKEN AT", "SERVICE", "VERSION", "POLICY", "STAGE", "RESULT"
            );
            for s in &page {
                println!(
                    "{:<36}  {:<20}  {:<16} {:<10} {:<18} {:<16} {:<8}  {}",
                    s.decision_id,
                    time(s.taken_at),
                    if s.service.is_empty() {
                        super::render::NO_SERVICE.into()
                    } else {
                        escape_control(&s.service)
                    },
                    if s.version.is_empty() {
                        "-".into()
                    } else {
                        escape_control(&s.version)
                    },
                    s.policy,
                    s.stage,
                    s.decision,
                    escape_control(&s.summary)
                );
            }
            if let Some(c) = next {
                println!("more: --cursor {c}");
            }
        }
    }
    Ok(Exit::Success)
}

/// Replays each decision; exit 0 when every one is identical, 1 when any
/// differs or is refused.
pub(crate) fn replay(args: ReplayArgs) -> anyhow::Result<Exit> {
    let runtime = Arc::new(super::runtime()?);
    block_on(async {
        let store = args.log.open_existing().await?;
        let ids = if args.all {
            all_ids(store.as_ref()).await?
        } else {
            args.ids.clone()
        };
        let mut identical = 0usize;
        let mut reports = Vec::new();
        for id in &ids {
            let report =
                crate::decide::replay::replay(store.as_ref(), Arc::clone(&runtime), id).await;
            match &report {
                Ok(r) if r.identical => identical += 1,
                _ => {}
            }
            reports.push((id.clone(), report));
        }
        match args.format {
            Format::Json => {
                let json: Vec<serde_json::Value> = reports
                    .iter()
                    .map(|(id, r)| match r {
                        Ok(r) => serde_json::to_value(r).unwrap_or_default(),
                        Err(e) => serde_json::json!({"decision_id": id, "identical": false, "error": e.to_string()}),
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&json)?);
            }
            Format::Table => {
                for (id, r) in &reports {
                    match r {
                        Ok(r) => {
                            let word = if r.identical {
                                "identical"
                            } else {
                                "DIFFERENT"
                            };
                            println!(
                                "{id}  {word}  logged {} · replayed {}",
                                r.logged, r.replayed
                            );
                            for f in &r.findings {
                                let mark = if f.identical { "=" } else { "≠" };
                                println!("  {mark} {} {}", f.kind, escape_control(&f.name));
                                for d in &f.differences {
                                    println!("      {}", escape_control(d));
                                }
                            }
                        }
                        Err(e) => println!("{id}  REFUSED  {}", escape_control(&e.to_string())),
                    }
                }
                println!(
                    "{identical} of {} decision(s) replayed identically",
                    ids.len()
                );
            }
        }
        Ok(Exit::failed_if(identical != ids.len()))
    })
}

/// When the window holds no decision of `service`, says on stderr where
/// the service's decisions are, so an empty report is not mistaken for a
/// team that never deployed: times are the snapshots', and a log of last
/// year's snapshots is empty over the last 30 days.
async fn note_outside_window(
    store: &dyn Store,
    service: &str,
    since: i64,
    until: i64,
) -> anyhow::Result<()> {
    let filter = Filter {
        service: Some(service.to_string()),
        ..Filter::default()
    };
    let all = crate::store::all(store, &filter).await?;
    let (Some(first), Some(last)) = (
        all.iter().map(|s| s.taken_at).min(),
        all.iter().map(|s| s.taken_at).max(),
    ) else {
        eprintln!(
            "note: the log holds no decision of `{}`",
            escape_control(service)
        );
        return Ok(());
    };
    eprintln!(
        "note: no decision of `{}` was taken from {} to {}; its {} logged decision(s) were taken from {} to {}: move the window with --until {} (and --window)",
        escape_control(service),
        time(since),
        time(until),
        all.len(),
        time(first),
        time(last),
        time(last.saturating_add(1)),
    );
    Ok(())
}

async fn all_ids(store: &dyn Store) -> anyhow::Result<Vec<String>> {
    let all = crate::store::all(store, &Filter::default()).await?;
    Ok(all.into_iter().map(|s| s.decision_id).collect())
}

pub(crate) fn report(args: ReportArgs) -> anyhow::Result<Exit> {
    let ReportCommand::Dora {
        service,
        window,
        until,
        log,
        format,
    } = args.command;
    block_on(async {
        let store = log.open_existing().await?;
        let until = until.unwrap_or_else(|| crate::store::now_ms() / 1000);
        let since = until.saturating_sub(i64::try_from(window.as_secs()).unwrap_or(i64::MAX));
        let report = crate::store::dora::from_store(store.as_ref(), &service, since, until).await?;
        if report.deployments == 0 && report.rollbacks == 0 {
            note_outside_window(store.as_ref(), &service, since, until).await?;
        }
        match format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            Format::Table => {
                println!(
                    "DORA · {} · {} to {} · {} deployment(s), {} rollback(s)\n",
                    escape_control(&report.service),
                    time(report.since),
                    time(report.until),
                    report.deployments,
                    report.rollbacks
                );
                println!(
                    "{:<24} {:>12}  {:<18} {:<8} {:<4} {:<7} BENCHMARK",
                    "METRIC", "VALUE", "UNIT", "TARGET", "MET", "BAND"
                );
                for f in &report.figures {
                    let value = f
                        .value
                        .map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
                    let met = match f.meets_target {
                        Some(true) => "yes",
                        Some(false) => "no",
                        None => "-",
                    };
                    println!(
                        "{:<24} {:>12}  {:<18} {:<8} {:<4} {:<7} {}",
                        f.name,
                        value,
                        f.unit,
                        f.target,
                        met,
                        f.band.map_or("-", crate::store::dora::Band::as_str),
                        f.benchmark
                    );
                }
            }
        }
        Ok(Exit::Success)
    })
}
