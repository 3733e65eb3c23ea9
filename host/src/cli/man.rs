//! `tollgate man`: man pages from the CLI definition, one per command and
//! subcommand (`tollgate(1)`, `tollgate-eval(1)`, `tollgate-decisions-list(1)`,
//! …), each with its options, exit status and environment.

use std::path::PathBuf;

use clap::CommandFactory as _;
use clap_mangen::roff::{Roff, bold, roman};

use super::Exit;

#[derive(Debug, clap::Args)]
pub(crate) struct ManArgs {
    /// The command whose page to print, e.g. `eval` or `decisions list`;
    /// without it, the page of `tollgate` itself.
    command: Vec<String>,
    /// Write every page (`tollgate.1`, `tollgate-eval.1`, …) into this
    /// directory instead, e.g. `/usr/local/share/man/man1`.
    #[arg(long, conflicts_with = "command")]
    dir: Option<PathBuf>,
}

/// The CLI as the pages describe it: built, so each subcommand knows its
/// page name (`tollgate-eval`), and without the `help` subcommand, which
/// has no page of its own.
fn root() -> clap::Command {
    let mut cmd = super::Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

pub(crate) fn run(args: ManArgs) -> anyhow::Result<Exit> {
    let root = root();
    if let Some(dir) = args.dir {
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", dir.display()))?;
        let mut written = 0;
        for (path, cmd) in commands(&root, Vec::new()) {
            let file = dir.join(format!("{}.1", page_name(&path)));
            std::fs::write(&file, page(&cmd, &path)?)
                .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", file.display()))?;
            written += 1;
        }
        println!("wrote {written} man pages to {}", dir.display());
        return Ok(Exit::Success);
    }
    let mut cmd = root;
    let mut path = Vec::new();
    for word in &args.command {
        let names: Vec<&str> = cmd.get_subcommands().map(clap::Command::get_name).collect();
        let Some(sub) = cmd.find_subcommand(word).cloned() else {
            let at = if path.is_empty() {
                "tollgate".to_string()
            } else {
                format!("tollgate {}", path.join(" "))
            };
            anyhow::bail!(
                "`{at}` has no subcommand `{}`{}",
                crate::base::text::escape_control(word),
                crate::base::suggest::with_listing(
                    word,
                    names.iter().copied(),
                    &format!("subcommands: {}", names.join(", "))
                )
            );
        };
        path.push(sub.get_name().to_string());
        cmd = sub;
    }
    use std::io::Write as _;
    std::io::stdout().write_all(&page(&cmd, &path)?)?;
    Ok(Exit::Success)
}

/// Every command with a page, depth first: the root, then each
/// subcommand with its path of names.
fn commands(cmd: &clap::Command, path: Vec<String>) -> Vec<(Vec<String>, clap::Command)> {
    let mut out = vec![(path.clone(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut p = path.clone();
        p.push(sub.get_name().to_string());
        out.extend(commands(sub, p));
    }
    out
}

/// `tollgate`, `tollgate-eval`, `tollgate-decisions-list`.
fn page_name(path: &[String]) -> String {
    std::iter::once("tollgate")
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("-")
}

/// What a command's exit status means.
fn exit_status(path: &[String]) -> &'static [(&'static str, &'static str)] {
    let first = path.first().map(String::as_str);
    let second = path.get(1).map(String::as_str);
    match (first, second) {
        (None, _) => &[
            ("0", "success: promote, valid, every case passed"),
            (
                "1",
                "the answer is no: hold or rollback, invalid, a case failed, a plugin refused, a replay differs",
            ),
            (
                "2",
                "the command could not do its job: bad input, a source or log that cannot be read, an engine fault",
            ),
        ],
        (Some("eval"), _) => &[
            ("0", "the decision is promote"),
            ("1", "the decision is hold or rollback"),
            (
                "2",
                "no decision: bad input, a source that cannot be read, a server or network error (with --format json or junit, stdout still holds a report of the error)",
            ),
        ],
        (Some("validate"), _) => &[
            ("0", "every policy is valid"),
            ("1", "a policy is invalid"),
            ("2", "a file cannot be read"),
        ],
        (Some("test"), _) => &[
            ("0", "every case passed"),
            ("1", "a case failed, or a test file is invalid"),
            ("2", "the tests cannot be found or run"),
        ],
        (Some("audit"), _) => &[
            ("0", "every plugin would be accepted"),
            ("1", "a plugin would be refused (or cannot be read)"),
            ("2", "the audit could not run"),
        ],
        (Some("replay"), _) => &[
            ("0", "every decision replayed identically"),
            ("1", "a decision differs, or its logged bytes were refused"),
            ("2", "no decision log, or it cannot be read"),
        ],
        (Some("plugin"), Some("build")) => &[
            ("0", "built, and the component would be accepted"),
            ("1", "built, but the component would be refused"),
            ("2", "the build failed"),
        ],
        (Some("serve"), _) => &[
            ("0", "stopped gracefully (SIGTERM, SIGINT)"),
            (
                "2",
                "could not start: bad settings, the address in use, a policy that does not load",
            ),
        ],
        (Some("completions" | "man" | "flag"), _) => {
            &[("0", "success"), ("2", "the output could not be written")]
        }
        _ => &[
            ("0", "success"),
            (
                "2",
                "error: bad input, no decision log, a server or network error",
            ),
        ],
    }
}

/// The environment variables a command reads, beyond its options' own
/// (`[env: …]` in OPTIONS).
fn environment(path: &[String]) -> Vec<(&'static str, &'static str)> {
    let first = path.first().map(String::as_str);
    let second = path.get(1).map(String::as_str);
    let mut out = Vec::new();
    let runs_plugins = matches!(
        first,
        None | Some("eval" | "validate" | "test" | "audit" | "serve" | "replay")
    ) || (first == Some("plugin") && second == Some("build"));
    if matches!(first, None | Some("eval" | "approve" | "approvals")) {
        out.push((
            "TOLLGATE_TOKEN",
            "the bearer token sent to a tollgate server (eval --server, approve, approvals)",
        ));
    }
    if matches!(first, None | Some("eval")) {
        out.push((
            "NO_COLOR",
            "when set to a non-empty value, the table is never coloured",
        ));
    }
    if matches!(first, None | Some("serve")) {
        out.extend([
            (
                "TOLLGATE_TOKENS_FILE",
                "the token file, when --tokens-file is not given",
            ),
            (
                "TOLLGATE_STORE",
                "the decision log, when --store is not given",
            ),
            (
                "RUST_LOG",
                "the log filter (tracing's EnvFilter syntax), e.g. tollgate=debug",
            ),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "export spans over OTLP/HTTP to this endpoint; without it no exporter is built",
            ),
            (
                "OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES",
                "the exported spans' resource",
            ),
        ]);
    }
    if runs_plugins {
        out.extend([
            (
                "TOLLGATE_CACHE_DIR",
                "where compiled plugins are cached; `off` disables the cache",
            ),
            (
                "XDG_CACHE_HOME",
                "the cache is $XDG_CACHE_HOME/tollgate when TOLLGATE_CACHE_DIR is not set",
            ),
            ("HOME", "else the cache is ~/.cache/tollgate"),
        ]);
    }
    if first == Some("plugin") && matches!(second, None | Some("build")) {
        out.push((
            "CARGO",
            "the cargo that builds a Rust plugin (default: cargo)",
        ));
    }
    out
}

/// One page: clap_mangen's sections, then exit status, environment and
/// the related pages.
fn page(cmd: &clap::Command, path: &[String]) -> anyhow::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd.clone())
        .title(page_name(path))
        .source(format!("tollgate {}", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut out)?;
    }
    if cmd.get_after_help().is_some() || cmd.get_after_long_help().is_some() {
        man.render_extra_section(&mut out)?;
    }
    let mut roff = Roff::default();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in exit_status(path) {
        roff.control("TP", []);
        roff.text([bold(*code)]);
        roff.text([roman(*meaning)]);
    }
    let mut env: Vec<(String, String)> = cmd
        .get_arguments()
        .filter_map(|a| {
            let var = a.get_env()?.to_string_lossy().into_owned();
            let long = a.get_long()?;
            Some((var, format!("the --{long} option, when it is not given")))
        })
        .collect();
    env.extend(
        environment(path)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    if !env.is_empty() {
        roff.control("SH", ["ENVIRONMENT"]);
        for (var, meaning) in &env {
            roff.control("TP", []);
            roff.text([bold(var.as_str())]);
            roff.text([roman(meaning.as_str())]);
        }
    }
    let related: Vec<String> = if path.is_empty() {
        cmd.get_subcommands()
            .map(|s| format!("{}(1)", page_name(&[s.get_name().to_string()])))
            .collect()
    } else {
        let mut pages = vec![format!("{}(1)", page_name(&path[..path.len() - 1]))];
        pages.extend(cmd.get_subcommands().map(|s| {
            let mut p = path.to_vec();
            p.push(s.get_name().to_string());
            format!("{}(1)", page_name(&p))
        }));
        pages
    };
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(related.join(", "))]);
    roff.to_writer(&mut out)?;
    if cmd.get_version().is_some() {
        man.render_version_section(&mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_the_pages_name_is_written() {
        let all = commands(&root(), Vec::new());
        let names: Vec<String> = all.iter().map(|(p, _)| page_name(p)).collect();
        assert!(
            names.contains(&"tollgate-decisions-list".to_string()),
            "{names:?}"
        );
        assert!(!names.iter().any(|n| n.ends_with("-help")), "{names:?}");
        for (path, cmd) in &all {
            let text = String::from_utf8(page(cmd, path).unwrap()).unwrap();
            for referenced in text.split_whitespace().filter(|w| w.contains("(1)")) {
                let name = referenced
                    .trim_end_matches(',')
                    .trim_end_matches("(1)")
                    .replace("\\-", "-");
                assert!(
                    names.contains(&name),
                    "{} names {name}, which has no page",
                    page_name(path)
                );
            }
        }
    }
}
