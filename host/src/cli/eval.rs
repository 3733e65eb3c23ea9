//! `tollgate eval`: one decision, printed, and an exit code CI can branch on.

use super::Exit;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use super::render::{self, Format};
use super::sources::SourceArgs;
use crate::evaluate::{Request, Schedule, evaluate_with};
use crate::state::{FileStore, MemoryStore};

#[derive(Debug, clap::Args)]
pub(crate) struct EvalArgs {
    /// Policy file (YAML).
    #[arg(long, short = 'p')]
    policy: PathBuf,
    #[command(flatten)]
    sources: SourceArgs,
    /// Stage to evaluate; defaults to the policy's first stage.
    #[arg(long)]
    stage: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Trigger state file, read before and written after the evaluation, so
    /// stateful triggers (the circuit breaker) carry over between runs.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Time already spent in the stage, e.g. `20m`; overrides the snapshot's
    /// `stage_started_at` attribute.
    #[arg(long, value_parser = humantime::parse_duration)]
    elapsed: Option<std::time::Duration>,
    /// Who keeps the stage clock: `policy` (a stage with a `duration` holds
    /// while the time in it is unknown) or `caller` (durations not checked).
    #[arg(long, value_enum, default_value_t = Schedule::Policy)]
    schedule: Schedule,
}

pub(crate) fn run(args: EvalArgs) -> anyhow::Result<Exit> {
    let runtime = super::runtime()?;
    let loaded = super::load_policy(&runtime, &args.policy)?;
    if let Some(s) = &args.stage
        && loaded.policy.stage(Some(s)).is_none()
    {
        return Err(crate::evaluate::EvalError::UnknownStage {
            policy: loaded.policy.name.to_string(),
            stage: s.clone(),
            available: loaded.policy.stage_names(),
        }
        .into());
    }
    let (snapshot, evidence) = args
        .sources
        .build(Some(&loaded.policy), args.stage.as_deref())?;
    let snapshot = Arc::new(snapshot);
    let request = Request {
        stage: args.stage.as_deref(),
        elapsed: args.elapsed,
        schedule: args.schedule,
    };
    let mut decision = match &args.state {
        Some(path) => {
            let mut store = FileStore::open(path)?;
            evaluate_with(&loaded, &request, snapshot, &mut store)?
        }
        None => evaluate_with(&loaded, &request, snapshot, &mut MemoryStore::default())?,
    };
    decision.sources = evidence;
    let stdout = std::io::stdout();
    let color = stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    print!("{}", render::render(&decision, args.format, color));
    Ok(Exit::for_decision(&decision))
}
