//! `tollgate validate`: every problem in every file, nothing evaluated.

use super::Exit;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub(crate) struct ValidateArgs {
    /// Policy files to check.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub(crate) fn run(args: ValidateArgs) -> anyhow::Result<Exit> {
    let runtime = super::runtime()?;
    let mut invalid = 0;
    for file in &args.files {
        match super::load_policy(&runtime, file) {
            Ok(loaded) => {
                let gates: usize = loaded.policy.stages.iter().map(|s| s.gates.len()).sum();
                println!(
                    "ok: {} (policy `{}`, {} stage(s), {gates} gate(s))",
                    file.display(),
                    loaded.policy.name,
                    loaded.policy.stages.len()
                );
            }
            Err(e) => {
                invalid += 1;
                super::print_error(&e);
            }
        }
    }
    Ok(Exit::failed_if(invalid > 0))
}
