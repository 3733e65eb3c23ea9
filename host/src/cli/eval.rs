//! `tollgate eval`: one decision, printed, and an exit code CI can branch on.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::evaluate::{Request, evaluate_with};
use crate::files::MAX_SNAPSHOT_BYTES;
use crate::render::{self, Format};
use crate::snapshot::Snapshot;
use crate::state::{FileStore, MemoryStore};

#[derive(Debug, clap::Args)]
pub(crate) struct EvalArgs {
    /// Policy file (YAML).
    #[arg(long, short = 'p')]
    policy: PathBuf,
    /// Snapshot JSON v1 file, or `-` for stdin.
    #[arg(long, short = 's')]
    snapshot: String,
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
}

fn read_snapshot(source: &str) -> anyhow::Result<Snapshot> {
    let mut bytes = Vec::new();
    if source == "-" {
        std::io::stdin()
            .take(MAX_SNAPSHOT_BYTES + 1)
            .read_to_end(&mut bytes)
            .context("cannot read the snapshot from stdin")?;
    } else {
        bytes = crate::files::read_limited(std::path::Path::new(source), MAX_SNAPSHOT_BYTES)
            .with_context(|| format!("cannot read snapshot `{source}`"))?;
    }
    if bytes.len() as u64 > MAX_SNAPSHOT_BYTES {
        anyhow::bail!(
            "snapshot `{source}` is larger than {} MiB",
            MAX_SNAPSHOT_BYTES >> 20
        );
    }
    Snapshot::from_json(&bytes).with_context(|| format!("invalid snapshot `{source}`"))
}

pub(crate) fn run(args: EvalArgs) -> anyhow::Result<u8> {
    let runtime = super::runtime()?;
    let loaded = super::load_policy(&runtime, &args.policy)?;
    let snapshot = Arc::new(read_snapshot(&args.snapshot)?);
    let request = Request {
        stage: args.stage.as_deref(),
        elapsed: args.elapsed,
    };
    let decision = match &args.state {
        Some(path) => {
            let mut store = FileStore::open(path)?;
            evaluate_with(&loaded, &request, snapshot, &mut store)?
        }
        None => evaluate_with(&loaded, &request, snapshot, &mut MemoryStore::default())?,
    };
    let stdout = std::io::stdout();
    let color = stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
    print!("{}", render::render(&decision, args.format, color));
    Ok(decision.exit_code())
}
