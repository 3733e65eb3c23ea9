//! `tollgate snapshot build`: the snapshot `eval` would judge, as JSON v1,
//! for inspection or for `POST /v1/evaluate`.

use super::Exit;
use std::path::PathBuf;

use super::sources::SourceArgs;

#[derive(Debug, clap::Args)]
pub(crate) struct SnapshotArgs {
    #[command(subcommand)]
    command: SnapshotCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SnapshotCommand {
    /// Build a snapshot from Prometheus, reports and values, and print it.
    Build(BuildArgs),
}

#[derive(Debug, clap::Args)]
struct BuildArgs {
    /// Policy whose `metrics:` say what to query (needed with --prometheus).
    #[arg(long, short = 'p')]
    policy: Option<PathBuf>,
    /// Stage whose duration is the default query window.
    #[arg(long)]
    stage: Option<String>,
    #[command(flatten)]
    sources: SourceArgs,
}

pub(crate) fn run(args: SnapshotArgs) -> anyhow::Result<Exit> {
    let SnapshotCommand::Build(args) = args.command;
    let policy = match &args.policy {
        Some(path) => {
            let text = crate::files::read_text(path)
                .map_err(|e| anyhow::anyhow!("cannot read policy `{}`: {e}", path.display()))?;
            let base = path.parent().unwrap_or(std::path::Path::new("."));
            Some(crate::policy::parse(&text, base).map_err(|p| {
                anyhow::anyhow!(
                    "policy `{}` is invalid:\n{}",
                    path.display(),
                    p.render(Some(&path.display().to_string()))
                )
            })?)
        }
        None => None,
    };
    let (snapshot, _) = args.sources.build(policy.as_ref(), args.stage.as_deref())?;
    println!("{}", serde_json::to_string_pretty(&snapshot.to_json_v1())?);
    Ok(Exit::Success)
}
