//! `tollgate audit`: what a plugin is and exactly what it may do.

use std::path::Path;

use super::Exit;
use crate::audit::PluginReport;

#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    /// Component files, or names of first-party plugins.
    #[arg(required = true)]
    plugins: Vec<String>,
    /// Check each file's SSH signature (`FILE.sig`) against this
    /// `allowed_signers` file; without it the signing key is shown, untrusted.
    #[arg(long)]
    allowed_signers: Option<std::path::PathBuf>,
}

/// The first-party plugin a mistyped name most likely meant.
fn suggestion(arg: &str) -> Option<&'static str> {
    crate::builtin::names()
        .map(|n| (strsim_distance(arg, n), n))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Levenshtein distance, for short names.
fn strsim_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// The report for one argument; a path that cannot be read is a refused
/// report, so one bad path does not hide the others. A signature that does
/// not verify, or whose key `allowed` does not list, refuses the plugin.
fn report(
    runtime: &crate::engine::Runtime,
    arg: &str,
    allowed: Option<&crate::signature::AllowedSigners>,
) -> PluginReport {
    let (name, source, bytes) = match crate::builtin::plugin(arg) {
        Some(b) if !Path::new(arg).exists() => {
            (arg.to_string(), format!("builtin:{arg}"), b.to_vec())
        }
        _ => {
            let name = Path::new(arg)
                .file_stem()
                .map_or_else(|| arg.to_string(), |s| s.to_string_lossy().into_owned());
            match crate::files::read_limited(Path::new(arg), crate::files::MAX_PLUGIN_BYTES) {
                Ok(bytes) => (name, arg.to_string(), bytes),
                Err(e) => {
                    let hint = if e.is_not_found() && crate::approvals::is_host_gate(arg) {
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
        crate::signature::check(&name, Path::new(arg), &bytes, allowed, allowed.is_some())
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

/// Prints one JSON report per plugin; exit 1 if any plugin would be refused.
pub(crate) fn run(args: AuditArgs) -> anyhow::Result<Exit> {
    let runtime = super::runtime()?;
    let allowed = args
        .allowed_signers
        .as_deref()
        .map(crate::signature::AllowedSigners::read)
        .transpose()?;
    let reports: Vec<PluginReport> = args
        .plugins
        .iter()
        .map(|a| report(&runtime, a, allowed.as_ref()))
        .collect();
    println!("{}", serde_json::to_string_pretty(&reports)?);
    Ok(Exit::failed_if(
        reports
            .iter()
            .any(|r| r.verdict == crate::audit::Acceptance::Refused),
    ))
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
