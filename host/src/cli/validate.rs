//! `tollgate validate`: every problem in every file, nothing evaluated.

use std::path::{Path, PathBuf};

use super::Exit;

#[derive(Debug, clap::Args)]
pub(crate) struct ValidateArgs {
    /// Policy files, or directories of them (`*.yaml`, not `*.test.yaml`).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// The policy files `arg` names: itself, or a directory's `*.yaml` other
/// than test files, sorted.
fn expand(arg: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !arg.is_dir() {
        return Ok(vec![arg.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(arg)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml") && !is_test_file(p))
        .collect();
    files.sort();
    Ok(files)
}

fn is_test_file(p: &Path) -> bool {
    p.to_string_lossy().ends_with(".test.yaml")
}

/// Exit 0 when every policy is valid, 1 when one is invalid, 2 when a file
/// cannot be read at all.
pub(crate) fn run(args: ValidateArgs) -> anyhow::Result<Exit> {
    let runtime = super::runtime()?;
    let (mut invalid, mut unreadable) = (0, 0);
    for arg in &args.files {
        let files = match expand(arg) {
            Ok(f) => f,
            Err(e) => {
                unreadable += 1;
                super::print_error(&anyhow::anyhow!(
                    "cannot read directory `{}`: {e}",
                    arg.display()
                ));
                continue;
            }
        };
        for file in files {
            if is_test_file(&file) {
                println!(
                    "skipped: {} (a policy test file; `tollgate test` runs it)",
                    file.display()
                );
                continue;
            }
            let text = match super::policy_arg::read(&file) {
                Ok(text) => text,
                Err(e) => {
                    unreadable += 1;
                    super::print_error(&e);
                    continue;
                }
            };
            match super::load_text(&runtime, text) {
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
    }
    Ok(if unreadable > 0 {
        Exit::Error
    } else {
        Exit::failed_if(invalid > 0)
    })
}
