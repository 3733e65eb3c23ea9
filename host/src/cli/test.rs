//! `tollgate test`: run policy test cases and report `N passed, N failed`.

use super::Exit;
use std::path::PathBuf;

use super::cases;
use crate::policy::PluginCache;

#[derive(Debug, clap::Args)]
pub(crate) struct TestArgs {
    /// Test files, or directories searched for `*.test.yaml`.
    #[arg(default_value = "policies")]
    paths: Vec<PathBuf>,
    /// Commit each case's decision to this decision log (a SQLite file or
    /// `postgres://…`), so `tollgate replay` can check them.
    #[arg(long)]
    log: Option<String>,
}

pub(crate) fn run(args: TestArgs) -> anyhow::Result<Exit> {
    let runtime = super::runtime()?;
    let log = args.log.as_deref().map(cases::CaseLog::open).transpose()?;
    let mut cache = PluginCache::new();
    let files = cases::discover(&args.paths)?;
    if files.is_empty() {
        anyhow::bail!("no `*.test.yaml` files under {:?}", args.paths);
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
