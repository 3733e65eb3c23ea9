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
    /// Policy file, or a bundled policy's name, whose `metrics:` say what to
    /// query (needed with --prometheus).
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
            let super::policy_arg::PolicyText { shown, text, base } =
                super::policy_arg::read(path)?;
            Some(crate::policy::parse(&text, &base).map_err(|p| {
                anyhow::anyhow!("policy `{shown}` is invalid:\n{}", p.render(Some(&shown)))
            })?)
        }
        None => None,
    };
    let (snapshot, _) = args
        .sources
        .build(None, policy.as_ref(), args.stage.as_deref())?;
    println!("{}", serde_json::to_string_pretty(&snapshot.to_json_v1())?);
    Ok(Exit::Success)
}
