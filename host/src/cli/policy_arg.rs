//! What a `--policy` argument names: a policy file, or a bundled policy by
//! its name (`ci-quality-gates`), as the server knows them.

use std::path::{Path, PathBuf};

/// A policy's text, with how messages name it and the directory its
/// relative paths (plugins, grants, signers) are resolved against.
pub(crate) struct PolicyText {
    /// The file as given, or `bundled:NAME.yaml`.
    pub(crate) shown: String,
    pub(crate) text: String,
    pub(crate) base: PathBuf,
}

/// Whether `arg` is a bare name (`canary`) rather than a path
/// (`policies/canary.yaml`, `./canary`).
fn is_name(arg: &Path) -> bool {
    let text = arg.to_string_lossy();
    !text.contains('/') && !text.ends_with(".yaml") && !text.ends_with(".yml")
}

/// Reads the policy `arg` names: the file when it exists, else the bundled
/// policy of that name. An argument that is neither is an error that says
/// what was meant, when that is clear, and what there is.
pub(crate) fn read(arg: &Path) -> anyhow::Result<PolicyText> {
    let shown = arg.display().to_string();
    let missing = !arg.exists() && arg.symlink_metadata().is_err();
    if missing
        && is_name(arg)
        && let Some(text) = crate::policy::builtin::policy(&shown)
    {
        return Ok(PolicyText {
            shown: format!("bundled:{shown}.yaml"),
            text: text.to_string(),
            base: PathBuf::from("."),
        });
    }
    match crate::base::files::read_text(arg) {
        Ok(text) => Ok(PolicyText {
            base: arg.parent().unwrap_or(Path::new(".")).to_path_buf(),
            shown,
            text,
        }),
        Err(e) if e.is_not_found() => Err(anyhow::anyhow!(
            "cannot read policy `{}`: {e}{}",
            crate::base::text::escape_control(&shown),
            not_found_hint(arg)
        )),
        Err(e) => Err(anyhow::anyhow!(
            "cannot read policy `{}`: {e}",
            crate::base::text::escape_control(&shown)
        )),
    }
}

/// What a missing policy most likely meant, and what there is: for a bare
/// name the bundled policies, for a path the policy files beside it.
fn not_found_hint(arg: &Path) -> String {
    let bundled: Vec<&str> = crate::policy::builtin::policy_names().collect();
    let listing = format!("bundled policies: {}", bundled.join(", "));
    if is_name(arg) {
        let typed = arg.to_string_lossy();
        let meant = crate::base::suggest::closest(&typed, bundled.iter().copied());
        return hint(meant.map(|m| format!("`{m}`")), &listing);
    }
    if let Some(stem) = arg.file_stem().map(|s| s.to_string_lossy())
        && crate::policy::builtin::policy(&stem).is_some()
    {
        return hint(
            Some(format!(
                "the bundled policy `{stem}` (its name, not a file)"
            )),
            &listing,
        );
    }
    let dir = match arg.parent() {
        Some(d) if d.as_os_str().is_empty() => Path::new("."),
        Some(d) => d,
        None => return hint(None, &listing),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return hint(None, &listing);
    };
    let mut siblings: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| (n.ends_with(".yaml") || n.ends_with(".yml")) && !n.ends_with(".test.yaml"))
        .collect();
    if siblings.is_empty() {
        return hint(None, &listing);
    }
    siblings.sort();
    let typed = arg
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let meant = crate::base::suggest::closest(&typed, siblings.iter().map(String::as_str))
        .map(|s| format!("`{}`", dir.join(s).display()));
    hint(
        meant,
        &format!("policies in `{}`: {}", dir.display(), siblings.join(", ")),
    )
}

/// `; did you mean X? LISTING`, or `; LISTING` when nothing is close.
fn hint(meant: Option<String>, listing: &str) -> String {
    match meant {
        Some(m) => format!(
            "; did you mean {}? {listing}",
            crate::base::text::escape_control(&m)
        ),
        None => format!("; {listing}"),
    }
}
