//! `tollgate eval`: one decision, printed, and an exit code CI can branch on.

use super::Exit;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::render::{self, Format};
use super::sources::SourceArgs;
use crate::decide::{self, Asker, Committed, Evaluation, Prefetched, StateFrom};
use crate::evaluate::Schedule;
use crate::evaluate::trigger_state::{EphemeralState, StateFile};
use crate::store::Asked;

#[derive(Debug, clap::Args)]
pub(crate) struct EvalArgs {
    /// Policy file (YAML), or a bundled policy's name (`canary`,
    /// `ci-quality-gates`, `ci-reports`, …; a name that is neither lists
    /// them). With `--server`, the server's policy name.
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
    #[arg(long, default_value = "policy", value_parser = schedule_parser())]
    schedule: Schedule,
    /// Evaluate on a running `tollgate serve` instead of here: `--policy` is
    /// then the server's policy name (or a file, whose `metadata.name` is
    /// used); the snapshot is built here from the same flags and sent. The
    /// token comes from `TOLLGATE_TOKEN`.
    #[arg(long)]
    server: Option<reqwest::Url>,
    /// Commit the decision to a decision log before printing it: a SQLite
    /// file or `postgres://…` [default with no value: .tollgate/tollgate.db].
    /// Without `--state`, trigger state is kept in the log too.
    #[arg(long, num_args = 0..=1, default_missing_value = crate::store::DEFAULT_PATH, conflicts_with = "server")]
    log: Option<String>,
}

/// `--schedule`'s words, listed in `--help` and completions; the domain
/// type stays free of the CLI's.
fn schedule_parser() -> impl clap::builder::TypedValueParser<Value = Schedule> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(["policy", "caller"])
        .try_map(|s| s.parse::<Schedule>())
}

/// The policy name to ask a server for: a file's `metadata.name`, or the
/// argument itself.
fn policy_name(arg: &std::path::Path) -> anyhow::Result<String> {
    if !arg.exists() {
        return Ok(arg.display().to_string());
    }
    let text = crate::base::files::read_text(arg)
        .map_err(|e| anyhow::anyhow!("cannot read policy `{}`: {e}", arg.display()))?;
    let base = arg.parent().unwrap_or(std::path::Path::new("."));
    let policy = crate::policy::parse(&text, base).map_err(|p| {
        anyhow::anyhow!(
            "policy `{}` is invalid:\n{}",
            arg.display(),
            p.render(Some(&arg.display().to_string()))
        )
    })?;
    Ok(policy.name.to_string())
}

/// Sends the evaluation to `server` and returns its decision.
fn remote(
    args: &EvalArgs,
    server: &reqwest::Url,
) -> anyhow::Result<(
    crate::evaluate::decision::Decision,
    Option<crate::snapshot::Snapshot>,
)> {
    let name = policy_name(&args.policy)?;
    let mut body = serde_json::json!({
        "policy": name,
        "schedule": args.schedule.as_str(),
    });
    let sent = match args.sources.identity_only() {
        // Only a service and version: the server queries its Prometheus.
        Some((service, version)) => {
            body["service"] = serde_json::Value::from(service);
            body["version"] = serde_json::Value::from(version);
            None
        }
        None => {
            let (snapshot, _) = args.sources.build(None, None, args.stage.as_deref())?;
            body["snapshot"] = snapshot.to_json_v1();
            Some(snapshot)
        }
    };
    if let Some(stage) = &args.stage {
        body["stage"] = serde_json::Value::from(stage.clone());
    }
    if let Some(e) = args.elapsed {
        body["elapsed"] = serde_json::Value::from(format!("{}s", e.as_secs()));
    }
    let answer = super::client::call(server, "v1/evaluate", Some(&body))
        .map_err(|e| with_known_policies(e, server, &name))?;
    let decision = serde_json::from_value(answer)
        .map_err(|e| anyhow::anyhow!("{server} answered something that is not a decision: {e}"))?;
    Ok((decision, sent))
}

/// Evaluates and prints the decision. When no decision can be made, a
/// machine-readable format still gets a report: a JUnit file with the error
/// as a test case, or a JSON object with the error, so the file a CI job
/// collects can be parsed and says why (the error goes to stderr as well).
/// A server's "unknown policy" with the closest of the policies it serves
/// and their list, asked of the server itself; any other error as is.
fn with_known_policies(e: anyhow::Error, server: &reqwest::Url, name: &str) -> anyhow::Error {
    let Some(refused) = e.downcast_ref::<super::client::Refused>() else {
        return e;
    };
    if refused.code.as_deref() != Some("unknown_policy") {
        return e;
    }
    let Ok(listed) = super::client::call(server, "v1/policies", None) else {
        return e;
    };
    let names: Vec<String> = listed["policies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    if names.is_empty() || refused.message.contains("; policies:") {
        return e;
    }
    let meant = crate::base::suggest::did_you_mean(name, names.iter().map(String::as_str));
    anyhow::anyhow!(
        "{}{meant}; the server's policies: {}",
        e,
        crate::base::text::escape_control(&names.join(", "))
    )
}

pub(crate) fn run(args: EvalArgs) -> anyhow::Result<Exit> {
    let format = args.format;
    let policy = args.policy.display().to_string();
    decide(args).inspect_err(|e| {
        if let Some(report) = render::error_report(format, &policy, &format!("{e:#}")) {
            print!("{report}");
        }
    })
}

fn decide(args: EvalArgs) -> anyhow::Result<Exit> {
    // `--at` asks what the policy would decide at another time: a what-if,
    // which must neither be logged nor move trigger state.
    let what_if = args.sources.at();
    if what_if.is_some() {
        let refused = if args.log.is_some() {
            Some("--log")
        } else if args.state.is_some() {
            Some("--state")
        } else if args.server.is_some() {
            Some("--server")
        } else {
            None
        };
        if let Some(flag) = refused {
            anyhow::bail!(
                "`--at` makes a what-if evaluation as at another time, which `{flag}` cannot take: a logged, stateful or server decision is made at the deciding host's clock; drop `--at`"
            );
        }
    }
    if let Some(server) = &args.server {
        let (decision, sent) = remote(&args, server)?;
        return Ok(print(&decision, args.format, sent.as_ref()));
    }
    let runtime = super::runtime()?;
    let loaded = Arc::new(super::load_policy(&runtime, &args.policy)?);
    crate::evaluate::check_stage(&loaded.policy, args.stage.as_deref())?;
    let (snapshot, evidence) =
        args.sources
            .build(Some(&runtime), Some(&loaded.policy), args.stage.as_deref())?;
    let evaluation = Evaluation {
        loaded,
        snapshot: Arc::new(snapshot),
        approvals: Arc::from(Vec::new()),
        asked: Asked::new(args.stage.clone(), args.elapsed, args.schedule, true),
        decided_at: what_if.unwrap_or_else(crate::evaluate::clock_now),
        what_if: what_if.is_some(),
        asker: Asker::default(),
        idempotency: None,
        evidence,
        canonical: Default::default(),
    };
    let judged = Arc::clone(&evaluation.snapshot);
    let decision = match (&args.log, &args.state) {
        (Some(spec), state) => logged(spec, state.as_deref(), evaluation)?,
        (None, Some(path)) => evaluation.evaluate(&mut StateFile::open(path)?)?,
        (None, None) => evaluation.evaluate(&mut EphemeralState::default())?,
    };
    Ok(print(&decision, args.format, Some(&judged)))
}

/// Evaluates and commits the decision to the log `spec` before it is
/// printed. Trigger state comes from the `state` file when given, else
/// from the log, advanced with the version read.
fn logged(
    spec: &str,
    state: Option<&Path>,
    mut evaluation: Evaluation,
) -> anyhow::Result<crate::evaluate::decision::Decision> {
    // A shared log holds trigger state other evaluations read: telemetry
    // from ahead of this host's clock may not move it.
    crate::evaluate::check_clock(
        &evaluation.snapshot,
        evaluation.decided_at,
        crate::evaluate::DEFAULT_MAX_CLOCK_SKEW,
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = crate::store::open(spec).await?;
        // The approval gates judge what the log holds for this release.
        if crate::evaluate::uses_approvals(&evaluation.loaded.policy) {
            let snapshot = &evaluation.snapshot;
            evaluation.approvals = store
                .approvals(&snapshot.service, &snapshot.version)
                .await?
                .into();
        }
        let evaluation = Arc::new(evaluation);
        let committed = match state {
            Some(path) => {
                let mut file = StateFile::open(path)?;
                let held = Prefetched::held(&file, &evaluation.state_keys())?;
                decide::run(
                    store.as_ref(),
                    evaluation,
                    StateFrom::Held(held),
                    |e, read| std::future::ready(in_place(&e, &mut file, read)),
                )
                .await
            }
            None => {
                decide::run(
                    store.as_ref(),
                    evaluation,
                    StateFrom::Store { advance: true },
                    |e, mut read| {
                        let decision = e.evaluate(&mut read).map_err(anyhow::Error::from);
                        std::future::ready(decision.map(|d| (d, read)))
                    },
                )
                .await
            }
        };
        match committed.map_err(|e| {
            if e.is::<crate::store::StoreError>() {
                e.context("the decision was not logged, so it is not reported")
            } else {
                e
            }
        })? {
            Committed::Fresh(decision) => Ok(*decision),
            Committed::Replayed(answer) => anyhow::bail!(
                "the log answered from idempotency key `{}`, which this evaluation did not give",
                answer.key
            ),
        }
    })
}

/// Evaluates over state kept outside the log, recording `read` as the state
/// it started from.
fn in_place(
    evaluation: &Evaluation,
    state: &mut dyn crate::evaluate::trigger_state::TriggerState,
    read: Prefetched,
) -> anyhow::Result<(crate::evaluate::decision::Decision, Prefetched)> {
    Ok((evaluation.evaluate(state)?, read))
}

/// Prints a decision, local or remote, the same way; Markdown draws what
/// the gates read from `judged`, the snapshot evaluated, when it is here.
fn print(
    decision: &crate::evaluate::decision::Decision,
    format: Format,
    judged: Option<&crate::snapshot::Snapshot>,
) -> Exit {
    if format == Format::Markdown {
        let charts = judged
            .map(|s| crate::evaluate::charts::charts(decision, s))
            .unwrap_or_default();
        print!("{}", super::markdown::decision(decision, &charts));
        return Exit::for_decision(decision);
    }
    let stdout = std::io::stdout();
    let color = stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    print!("{}", render::render(decision, format, color));
    Exit::for_decision(decision)
}
