//! The plugins a policy declares, and the plugin each gate, trigger and
//! action names.

use std::collections::BTreeMap;
use std::path::Path;

use super::get;
use crate::policy::approvals::HostGate;
use crate::policy::reader::{Entries, Reader};
use crate::policy::schema::{PluginDoc, keys};
use crate::policy::yaml::{Node, Value};
use crate::policy::{Name, PluginDecl};

/// `plugins:`, the user plugins by name, each path resolved against
/// `base_dir`; a first-party name may not be taken.
pub(super) fn read_plugins(
    r: &mut Reader,
    node: &Node,
    base_dir: &Path,
) -> BTreeMap<String, PluginDecl> {
    let mut out = BTreeMap::new();
    let Value::Map(entries) = &node.value else {
        r.problem(
            node.line,
            format!(
                "`plugins` must be a mapping of name to plugin, not {}",
                node.value.kind()
            ),
        );
        return out;
    };
    for (name, decl) in entries {
        if name.parse::<Name>().is_err() {
            r.problem(
                decl.line,
                format!("plugin name `{name}` must use lowercase letters, digits, `-`, `_` or `.`"),
            );
        }
        if crate::policy::builtin::plugin(name).is_some() {
            r.problem(decl.line, format!("plugin `{name}` shadows the first-party plugin of that name; choose another name"));
            continue;
        }
        let what = format!("plugin `{name}`");
        let Some(fields) = r.map(decl, &what, keys::<PluginDoc>()) else {
            continue;
        };
        let path = match get(fields, "path") {
            Some(p) => r.text(p, &format!("`path` of {what}")),
            None => {
                r.problem(decl.line, format!("missing field `path` in {what}"));
                None
            }
        };
        let digest = get(fields, "digest").and_then(|d| {
            let text = r.text(d, &format!("`digest` of {what}"))?;
            match text.parse() {
                Ok(dg) => Some(dg),
                Err(e) => {
                    r.problem(d.line, format!("{e}"));
                    None
                }
            }
        });
        if let Some(path) = path {
            out.insert(
                name.clone(),
                PluginDecl {
                    path: base_dir.join(path),
                    digest,
                    line: decl.line,
                },
            );
        }
    }
    out
}

/// The `plugin` of a gate, trigger or action, checked against the known plugins.
pub(super) fn read_plugin_name(
    r: &mut Reader,
    fields: &Entries,
    item: &Node,
    what: &str,
    plugins: &BTreeMap<String, PluginDecl>,
) -> Option<String> {
    let Some(n) = get(fields, "plugin") else {
        r.problem(item.line, format!("missing field `plugin` in {what}"));
        return None;
    };
    let plugin = r.text(n, &format!("`plugin` of {what}"));
    if let Some(p) = &plugin
        && crate::policy::builtin::is_source(p)
        && !plugins.contains_key(p)
    {
        r.problem(
            n.line,
            format!(
                "`{p}` in {what} is a telemetry source, not a gate, trigger or action: name it in `metrics:` (`source: {p}`)"
            ),
        );
        return None;
    }
    if let Some(p) = &plugin
        && crate::policy::builtin::plugin(p).is_none()
        && HostGate::named(p).is_none()
        && !plugins.contains_key(p)
    {
        let known: Vec<String> = crate::policy::builtin::rule_names()
            .map(str::to_string)
            .chain(plugins.keys().cloned())
            .collect();
        r.problem(
            n.line,
            format!(
                "unknown plugin `{p}` in {what}{}",
                crate::base::suggest::with_listing(
                    p,
                    known
                        .iter()
                        .map(String::as_str)
                        .chain(HostGate::ALL.map(HostGate::as_str)),
                    &format!("known plugins: {}", known.join(", "))
                )
            ),
        );
    }
    plugin
}
