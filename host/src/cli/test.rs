//! `tollgate test`: run policy test cases and report `N passed, N failed`.

use super::Exit;
use std::path::PathBuf;

use super::cases;
use crate::policy::PluginCache;

#[derive(Debug, clap::Args)]
pub(crate) struct TestArgs {
    /// Test files, or directories searched for `*.test.yaml` [default:
    /// `policies`, as in a tollgate checkout or a project laid out like one].
    paths: Vec<PathBuf>,
    /// Commit each case's decision to this decision log (a SQLite file or
    /// `postgres://…`), so `tollgate replay` can check them.
    #[arg(long)]
    log: Option<String>,
}

/// Where `tollgate test` looks when given nothing.
const DEFAULT_DIR: &str = "policies";

pub(crate) fn run(args: TestArgs) -> anyhow::Result<Exit> {
    let runtime = super::runtime()?;
    let log = args.log.as_deref().map(cases::CaseLog::open).transpose()?;
    let mut cache = PluginCache::new();
    let paths = if args.paths.is_empty() {
        let default = PathBuf::from(DEFAULT_DIR);
        if !default.is_dir() {
            anyhow::bail!(
                "no `{DEFAULT_DIR}` directory here to run the tests of; name the test files or the directories that hold them: `tollgate test my-gate` (a project `plugin new` made), `tollgate test path/to/policies` (the bundled policies' tests are in a tollgate checkout's `policies/`)"
            );
        }
        vec![default]
    } else {
        args.paths
    };
    if let Some(missing) = paths.iter().find(|p| !p.exists()) {
        anyhow::bail!(
            "cannot read `{}`: no such file or directory; give test files (`*.test.yaml`) or directories that hold them",
            crate::base::text::escape_control(&missing.display().to_string())
        );
    }
    let files = cases::discover(&paths)?;
    if files.is_empty() {
        let shown: Vec<String> = paths.iter().map(|p| format!("`{}`", p.display())).collect();
        anyhow::bail!(
            "no `*.test.yaml` files under {}",
            crate::base::text::escape_control(&shown.join(", "))
        );
    }
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        let shown = file.display();
        match cases::run_file(&runtime, &mut cache, file, log.as_ref()) {
            Err(e) => {
                failed += 1;
                println!("FAIL {e}");
            }
            Ok(results) => {
                for r in results {
                    if r.failures.is_empty() {
                        passed += 1;
                        println!("ok   {shown}: {}", r.name);
                    } else {
                        failed += 1;
                        println!("FAIL {shown}: {}", r.name);
                        for f in &r.failures {
                            println!("     - {f}");
                        }
                    }
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(Exit::failed_if(failed > 0))
}
