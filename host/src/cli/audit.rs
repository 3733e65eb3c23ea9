//! `tollgate audit`: what a plugin is and exactly what it may do.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::path::Path;

use super::Exit;
use crate::engine::report::PluginReport;

/// How `audit` prints its reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// A summary table, then each plugin's imports, exports and WASI.
    Table,
    /// The full reports, as `GET /v1/plugins` gives them.
    Json,
}

#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    /// Component files, or names of first-party plugins.
    #[arg(required_unless_present = "sources")]
    plugins: Vec<String>,
    /// A sources file (`--sources` of `eval`): audit each source's plugin
    /// and show what it may reach and which credentials the host adds.
    #[arg(long, value_name = "FILE")]
    sources: Option<std::path::PathBuf>,
    /// Output format [default: table on a terminal, json otherwise].
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Check each file's SSH signature (`FILE.sig`) against this
    /// `allowed_signers` file; without it the signing key is shown, untrusted.
    #[arg(long)]
    allowed_signers: Option<std::path::PathBuf>,
}

/// The first-party plugin a mistyped name most likely meant.
fn suggestion(arg: &str) -> Option<&'static str> {
    crate::base::suggest::closest(arg, crate::policy::builtin::names())
}

/// The report for one argument; a path that cannot be read is a refused
/// report, so one bad path does not hide the others. A signature that does
/// not verify, or whose key `allowed` does not list, refuses the plugin.
fn report(
    runtime: &crate::engine::Runtime,
    arg: &str,
    allowed: Option<&crate::engine::signature::AllowedSigners>,
) -> PluginReport {
    let (name, source, bytes) = match crate::policy::builtin::plugin(arg) {
        Some(b) if !Path::new(arg).exists() => {
            (arg.to_string(), format!("builtin:{arg}"), b.to_vec())
        }
        _ => {
            let name = Path::new(arg)
                .file_stem()
                .map_or_else(|| arg.to_string(), |s| s.to_string_lossy().into_owned());
            match crate::base::files::read_limited(
                Path::new(arg),
                crate::base::files::MAX_PLUGIN_BYTES,
            ) {
                Ok(bytes) => (name, arg.to_string(), bytes),
                Err(e) => {
                    let hint = if e.is_not_found()
                        && crate::policy::approvals::HostGate::named(arg).is_some()
                    {
                        format!(
                            "; `{arg}` is a gate the host evaluates from recorded approvals, not a plugin: it runs no code of its own and reaches only the store's approvals"
                        )
                    } else if e.is_not_found() {
                        suggestion(arg).map_or_else(String::new, |s| {
                            format!("; did you mean the first-party plugin `{s}`?")
                        })
                    } else {
                        String::new()
                    };
                    return PluginReport::refused(
                        &name,
                        arg,
                        None,
                        format!("cannot read `{arg}`: {e}{hint}"),
                    );
                }
            }
        }
    };
    let signature = if source.starts_with("builtin:") {
        Ok(None)
    } else {
        crate::engine::signature::check(&name, Path::new(arg), &bytes, allowed, allowed.is_some())
    };
    let signature = match signature {
        Ok(s) => s,
        Err(e) => return PluginReport::refused(&name, &source, Some(&bytes), e.to_string()),
    };
    let mut report = match runtime.load(&name, &bytes) {
        Ok(plugin) => PluginReport::accepted(&name, &source, &plugin),
        Err(e) => PluginReport::refused(&name, &source, Some(&bytes), e.to_string()),
    };
    report.signature = signature;
    report
}

/// Prints one report per plugin, as a table or JSON; exit 1 if any plugin
/// would be refused.
pub(crate) fn run(args: AuditArgs) -> anyhow::Result<Exit> {
    let runtime = super::runtime()?;
    let allowed = args
        .allowed_signers
        .as_deref()
        .map(crate::engine::signature::AllowedSigners::read)
        .transpose()?;
    let mut reports: Vec<PluginReport> = args
        .plugins
        .iter()
        .map(|a| report(&runtime, a, allowed.as_ref()))
        .collect();
    if let Some(path) = &args.sources {
        let file = crate::sources::settings::read_file(path).map_err(anyhow::Error::msg)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for (name, spec) in &file.sources {
            let plugin = spec.plugin.clone().unwrap_or_else(|| name.clone());
            let arg = if plugin.ends_with(".wasm") || plugin.contains('/') {
                base.join(&plugin).display().to_string()
            } else {
                plugin
            };
            let mut r = report(&runtime, &arg, allowed.as_ref());
            r.plugin = format!("{name} (source)");
            r.capabilities = crate::sources::settings::reach(spec, name);
            // What `eval --sources` would refuse: settings the plugin does
            // not take, key files that cannot be read, a bad URL.
            let one = std::collections::BTreeMap::from([(name.clone(), spec.clone())]);
            if r.verdict == crate::engine::report::Acceptance::Accepted
                && let Err(e) = crate::sources::settings::build(&runtime, &one, base)
            {
                r.verdict = crate::engine::report::Acceptance::Refused;
                r.reason = Some(e);
            }
            reports.push(r);
        }
    }
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Json
    });
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
        Format::Table => print!("{}", table(&reports)),
    }
    Ok(Exit::failed_if(reports.iter().any(|r| {
        r.verdict == crate::engine::report::Acceptance::Refused
    })))
}

/// Bytes as people read them: `118.4 KiB`, `17.6 MiB`.
fn size(bytes: usize) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{bytes} bytes")
    }
}

/// The reports for a person: one summary line per plugin, then what each
/// imports and exports, its WASI interfaces grouped by what they get, and
/// the limits every plugin runs under.
fn table(reports: &[PluginReport]) -> String {
    use crate::base::text::escape_control as esc;
    let rows: Vec<[String; 6]> = reports
        .iter()
        .map(|r| {
            let info = r.info.as_ref();
            [
                esc(&r.plugin).into_owned(),
                match r.verdict {
                    crate::engine::report::Acceptance::Accepted => "accepted".into(),
                    crate::engine::report::Acceptance::Refused => "REFUSED".into(),
                },
                info.map_or("-".into(), |i| i.world.as_str().to_string()),
                info.map_or("-".into(), |i| esc(&i.wit_version).into_owned()),
                r.size_bytes.map_or("-".into(), size),
                esc(&r.source).into_owned(),
            ]
        })
        .collect();
    let headers = ["PLUGIN", "VERDICT", "WORLD", "WIT", "SIZE", "SOURCE"];
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            s.push_str(cell);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(headers);
    for row in &rows {
        out.push_str(&line(row.each_ref().map(String::as_str)));
    }
    for r in reports {
        let _ = writeln!(out, "\n{}", esc(&r.plugin));
        if let Some(reason) = &r.reason {
            let _ = writeln!(out, "  refused     {}", esc(reason));
        }
        if let Some(d) = &r.digest {
            let _ = writeln!(out, "  digest      {d}");
        }
        let signature = match &r.signature {
            None if r.source.starts_with("builtin:") => {
                "none needed (part of the binary)".to_string()
            }
            None => "unsigned".to_string(),
            Some(s) => format!(
                "{}{}{}",
                s.key,
                if s.principals.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", s.principals.join(", "))
                },
                if s.trusted {
                    ", trusted"
                } else {
                    ", not checked against allowed signers"
                }
            ),
        };
        if r.digest.is_some() {
            let _ = writeln!(out, "  signature   {}", esc(&signature));
        }
        let Some(info) = &r.info else {
            continue;
        };
        let tollgate: Vec<&str> = info
            .imports
            .iter()
            .map(String::as_str)
            .filter(|i| !i.starts_with("wasi:"))
            .collect();
        let _ = writeln!(out, "  imports     {}", esc(&tollgate.join(", ")));
        let _ = writeln!(out, "  exports     {}", esc(&info.exports.join(", ")));
        if info.wasi.is_empty() {
            out.push_str("  wasi        none\n");
        } else {
            // Grouped by what the host gives: a Python plugin imports
            // dozens of interfaces, nearly all inert.
            let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
            for w in &info.wasi {
                match groups.iter_mut().find(|(a, _)| *a == w.access) {
                    Some((_, list)) => list.push(&w.interface),
                    None => groups.push((&w.access, vec![&w.interface])),
                }
            }
            let _ = writeln!(out, "  wasi        {} interface(s):", info.wasi.len());
            for (access, interfaces) in groups {
                let _ = writeln!(out, "    {}: {}", esc(access), esc(&interfaces.join(", ")));
            }
        }
        for c in &r.capabilities {
            let _ = writeln!(out, "  capability  {}", esc(c));
        }
    }
    let l = crate::engine::report::LimitsReport::host();
    let _ = writeln!(
        out,
        "\nlimits of every call: deadline {} ms by default (a policy may set up to {} ms), memory {} by default (up to {}), wasm stack {}, reason {} bytes, {} details, trigger state {} bytes",
        l.default_deadline_ms,
        l.max_deadline_ms,
        crate::engine::human_bytes(l.default_memory_bytes),
        crate::engine::human_bytes(l.max_memory_bytes),
        crate::engine::human_bytes(l.wasm_stack_bytes),
        l.max_reason_bytes,
        l.max_details,
        l.max_state_bytes
    );
    if reports.iter().any(|r| {
        r.info
            .as_ref()
            .is_some_and(|i| i.world == crate::engine::World::Source)
    }) {
        let l = crate::engine::report::LimitsReport::source();
        let _ = writeln!(
            out,
            "limits of a source's calls: deadline {} ms, memory {}, round state {}; per query 16 rounds of at most 8 requests and 32 MiB of answers",
            l.default_deadline_ms,
            crate::engine::human_bytes(l.default_memory_bytes),
            crate::engine::human_bytes(l.max_state_bytes)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_suggests_the_first_party_name() {
        assert_eq!(suggestion("thresold"), Some("threshold"));
        assert_eq!(suggestion("sustaned"), Some("sustained"));
        assert_eq!(suggestion("something-else"), None);
    }
}
