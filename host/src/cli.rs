//! The command line: argument parsing and one module per subcommand.

mod approve;
mod audit;
mod backtest;
mod cases;
mod client;
mod decisions;
mod eval;
mod explain;
mod flag;
mod man;
mod markdown;
mod plugin;
mod policy_arg;
mod render;
mod serve;
mod snapshot;
mod sources;
mod templates;
mod test;
mod validate;

use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::engine::Runtime;
use crate::policy::{self, LoadedPolicy};

/// What a command's exit status says; every command uses these three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: promote, valid, all passed.
    Success,
    /// 1: hold or rollback, invalid, a case failed, a plugin refused.
    Failure,
    /// 2: the command could not do its job (bad input, an engine fault, a
    /// source that cannot be read).
    Error,
}

impl Exit {
    /// `Failure` when `failed`, else `Success`.
    pub fn failed_if(failed: bool) -> Self {
        if failed { Self::Failure } else { Self::Success }
    }

    /// 0 for promote, 1 for hold or rollback.
    pub fn for_decision(d: &crate::evaluate::decision::Decision) -> Self {
        Self::failed_if(d.decision != crate::evaluate::decision::Outcome::Promote)
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(match e {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Error => 2,
        })
    }
}

/// tollgate: evaluate release gates, written as sandboxed WebAssembly
/// plugins, over a telemetry snapshot.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Evaluate a policy stage over a snapshot: exit 0 promote, 1 hold or rollback, 2 error.
    Eval(eval::EvalArgs),
    /// Check policy files without evaluating anything: exit 0 valid, 1 invalid.
    Validate(validate::ValidateArgs),
    /// Run policy test cases (`*.test.yaml`): exit 0 when all pass.
    Test(test::TestArgs),
    /// Answer whether a user is in a feature flag's rollout.
    Flag(flag::FlagArgs),
    /// Report what plugins are and may do: digest, world, WIT version, imports, limits.
    Audit(audit::AuditArgs),
    /// Serve the HTTP evaluate API (bundled policies unless --policies).
    Serve(serve::ServeArgs),
    /// Build snapshots from Prometheus, CI reports and values.
    Snapshot(snapshot::SnapshotArgs),
    /// Look up logged decisions: list, show, prune.
    Decisions(decisions::DecisionsArgs),
    /// Re-run logged decisions over their logged inputs and compare: exit 0 when identical.
    Replay(decisions::ReplayArgs),
    /// Why a logged decision came out as it did: each gate's distance from
    /// its threshold and share of the score, and the fewest gate outcomes
    /// that would have changed it.
    Explain(explain::ExplainArgs),
    /// What a candidate policy would have decided for every logged decision
    /// of a policy, against the log, with each release's outcome.
    Backtest(backtest::BacktestArgs),
    /// Reports from the decision log (DORA).
    Report(decisions::ReportArgs),
    /// Create and build plugin projects.
    Plugin(plugin::PluginArgs),
    /// Record an approval (or, with --item, a checklist attestation) on a server, as the token's holder.
    Approve(approve::ApproveArgs),
    /// List a release's approvals and attestations on a server.
    Approvals(approve::ApprovalsArgs),
    /// Print shell completions: `tollgate completions bash > /etc/bash_completion.d/tollgate`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff): `tollgate man eval | man -l -`; `--dir D`
    /// writes one for every command.
    Man(man::ManArgs),
}

/// Parses the arguments, runs the subcommand and maps the outcome to an exit
/// code. Errors are printed with their cause chain.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    // Every HTTP client the process builds (Prometheus, the server client,
    // the OTLP exporter's own) needs rustls's process-wide provider; the
    // exporter builds its client on a thread of its own at start-up.
    crate::sources::prometheus::install_crypto();
    if !matches!(cli.command, Command::Serve(_)) {
        restore_sigpipe();
    }
    let result = match cli.command {
        Command::Eval(args) => eval::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Test(args) => test::run(args),
        Command::Flag(args) => flag::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Snapshot(args) => snapshot::run(args),
        Command::Plugin(args) => plugin::run(args),
        Command::Approve(args) => approve::approve(args),
        Command::Approvals(args) => approve::list(args),
        Command::Decisions(args) => decisions::decisions(args),
        Command::Replay(args) => decisions::replay(args),
        Command::Explain(args) => explain::run(args),
        Command::Backtest(args) => backtest::run(args),
        Command::Report(args) => decisions::report(args),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "tollgate", &mut std::io::stdout());
            Ok(Exit::Success)
        }
        Command::Man(args) => man::run(args),
    };
    match result {
        Ok(code) => code.into(),
        Err(e) => {
            print_error(&e);
            Exit::Error.into()
        }
    }
}

/// A closed pipe (`tollgate audit … | head`) ends a one-shot command
/// quietly, as it ends `cat`, instead of panicking in `println!`. The
/// server keeps Rust's default (ignored), so a client hanging up is an
/// error on that connection only.
fn restore_sigpipe() {
    #[expect(
        unsafe_code,
        reason = "restoring SIGPIPE's default disposition has no safe API"
    )]
    // SAFETY: `signal` only sets this process's disposition for SIGPIPE to
    // the default; it runs before any other thread exists and installs no
    // handler, so no Rust code runs in signal context.
    let _previous = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// Prints an error chain on stderr, each line with its control characters
/// escaped: errors quote input and plugin text, which must not drive the
/// terminal.
pub(crate) fn print_error(e: &anyhow::Error) {
    let text = format!("{e:#}");
    let mut lines = text.lines();
    if let Some(first) = lines.next() {
        eprintln!("error: {}", crate::base::text::escape_control(first));
    }
    for line in lines {
        eprintln!("{}", crate::base::text::escape_control(line));
    }
}

/// The engine, with compiled plugins cached on disk unless
/// `TOLLGATE_CACHE_DIR=off`. The cache lives in `TOLLGATE_CACHE_DIR`,
/// else `$XDG_CACHE_HOME/tollgate`, else `~/.cache/tollgate`.
fn runtime() -> anyhow::Result<Runtime> {
    runtime_with(CLI_SLOTS, |n| {
        eprintln!("note: {}", crate::base::text::escape_control(n));
    })
}

/// Plugin instances a one-shot command holds at once: one evaluation's
/// session (loading validates settings before it, not beside it). Each
/// slot reserves address space, and a one-shot command must fit a 64 GiB
/// `ulimit -v` with its pool.
const CLI_SLOTS: u32 = crate::engine::SESSION_INSTANCES as u32;

/// The engine with `slots` pool slots and the compile cache; each notice
/// (a pool fallback, a cache not used) goes to `notify` once.
fn runtime_with(slots: u32, notify: impl Fn(&str)) -> anyhow::Result<Runtime> {
    let runtime = cache_runtime(Runtime::with_slots(slots)?);
    for notice in runtime.notices() {
        notify(notice);
    }
    Ok(runtime)
}

fn cache_runtime(runtime: Runtime) -> Runtime {
    let dir = match std::env::var_os("TOLLGATE_CACHE_DIR") {
        Some(d) if d == "off" => return runtime,
        Some(d) => Some(std::path::PathBuf::from(d)),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache"))
            })
            .map(|d| d.join("tollgate")),
    };
    match dir {
        Some(d) => runtime.with_cache_dir(d),
        None => runtime,
    }
}

/// Reads and loads a policy, a file or a bundled policy's name, rendering
/// every problem with file and line.
fn load_policy(runtime: &Runtime, path: &Path) -> anyhow::Result<LoadedPolicy> {
    load_text(runtime, policy_arg::read(path)?)
}

/// Loads a policy already read, rendering every problem with file and line.
fn load_text(runtime: &Runtime, policy: policy_arg::PolicyText) -> anyhow::Result<LoadedPolicy> {
    let policy_arg::PolicyText { shown, text, base } = policy;
    let mut cache = policy::PluginCache::new();
    policy::load(runtime, &mut cache, &text, &base).map_err(|problems| {
        anyhow::anyhow!(
            "policy `{shown}` is invalid:\n{}",
            problems.render(Some(&shown))
        )
    })
}
