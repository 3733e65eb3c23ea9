//! What every gate, trigger and action has besides its name: the plugin,
//! its settings (`with:`), its limits and grants, and a description.

use std::collections::BTreeMap;

use super::get;
use crate::engine::{ConfigValue, Limits, MAX_DEADLINE, PluginConfig, Scalar};
use crate::policy::PluginDecl;
use crate::policy::reader::{Entries, Reader};
use crate::policy::schema::{FileGrantDoc, GrantsDoc, keys};
use crate::policy::yaml::{Node, Value};

/// What every gate, trigger and action has: its plugin, settings, limits
/// and description.
pub(super) struct PluginUse {
    pub(super) plugin: String,
    pub(super) config: PluginConfig,
    pub(super) limits: Limits,
    pub(super) description: Option<String>,
}

/// Reads the fields shared by gates, triggers and actions; `None` when the
/// plugin is missing (already reported).
pub(super) fn read_use(
    r: &mut Reader,
    fields: &Entries,
    item: &Node,
    what: &str,
    plugins: &BTreeMap<String, PluginDecl>,
) -> Option<PluginUse> {
    let plugin = super::plugins::read_plugin_name(r, fields, item, what, plugins);
    let config = get(fields, "with")
        .map(|n| read_config(r, n, what))
        .unwrap_or_default();
    let limits = read_limits(r, fields, what);
    let description =
        get(fields, "description").and_then(|d| r.text(d, &format!("`description` of {what}")));
    Some(PluginUse {
        plugin: plugin?,
        config,
        limits,
        description,
    })
}

/// `grants: { files: [ { host: DIR, guest: /PATH } ] }`: directories the
/// plugin may read through WASI. `host` is resolved against the policy's
/// directory when the policy loads.
fn read_grants(r: &mut Reader, node: &Node, what: &str) -> Vec<crate::engine::wasi::FileGrant> {
    let mut out = Vec::new();
    let Some(g) = r.map(node, &format!("`grants` of {what}"), keys::<GrantsDoc>()) else {
        return out;
    };
    let Some(files) = get(g, "files") else {
        return out;
    };
    let Value::Seq(items) = &files.value else {
        r.problem(
            files.line,
            format!("`grants.files` of {what} must be a list of {{host, guest}}"),
        );
        return out;
    };
    for item in items {
        let Some(f) = r.map(
            item,
            &format!("a file grant of {what}"),
            keys::<FileGrantDoc>(),
        ) else {
            continue;
        };
        let host =
            get(f, "host").and_then(|n| r.text(n, &format!("`host` of a file grant of {what}")));
        let guest =
            get(f, "guest").and_then(|n| r.text(n, &format!("`guest` of a file grant of {what}")));
        match (host, guest) {
            (Some(host), Some(guest)) => {
                if !guest.starts_with('/') || guest.split('/').any(|c| c == "..") {
                    r.problem(
                        item.line,
                        format!("`guest` of a file grant of {what} must be an absolute path without `..`, e.g. `/reports`"),
                    );
                    continue;
                }
                out.push(crate::engine::wasi::FileGrant {
                    host: std::path::PathBuf::from(host),
                    guest,
                });
            }
            _ => r.problem(
                item.line,
                format!("a file grant of {what} needs `host` (a directory) and `guest` (where the plugin sees it)"),
            ),
        }
    }
    out
}

/// `deadline`, `memory` and `grants`, defaulting to [`Limits::default`].
fn read_limits(r: &mut Reader, fields: &Entries, what: &str) -> Limits {
    let defaults = Limits::default();
    let limits = Limits {
        files: get(fields, "grants")
            .map(|n| read_grants(r, n, what))
            .unwrap_or_default()
            .into(),
        deadline: get(fields, "deadline")
            .and_then(|n| r.duration(n, &format!("`deadline` of {what}"), MAX_DEADLINE))
            .unwrap_or(defaults.deadline),
        memory: get(fields, "memory")
            .and_then(|n| r.bytes(n, &format!("`memory` of {what}")))
            .unwrap_or(defaults.memory),
    };
    // One uninterruptible instruction over the whole memory may outlast a
    // shorter deadline: such limits would promise a bound they cannot keep.
    let bound = crate::engine::uninterruptible_bound(limits.memory);
    if limits.deadline < bound
        && let Some(node) = get(fields, "deadline").or_else(|| get(fields, "memory"))
    {
        r.problem(
            node.line,
            format!(
                "`deadline` of {what} ({}) is shorter than one instruction over its `memory` ({}) may run (about {} ms at 1 GiB/s), so it could not be kept; raise `deadline` to at least {} ms or lower `memory`",
                humantime::format_duration(limits.deadline),
                crate::engine::human_bytes(limits.memory),
                bound.as_millis(),
                bound.as_millis() + 1
            ),
        );
    }
    limits
}

/// Flattens a gate's `with:` mapping into typed, dotted keys.
fn read_config(r: &mut Reader, node: &Node, what: &str) -> PluginConfig {
    let mut out = Vec::new();
    match &node.value {
        Value::Map(entries) => {
            for (k, v) in entries {
                flatten(r, k.clone(), v, what, &mut out);
            }
        }
        other => r.problem(
            node.line,
            format!("`with` of {what} must be a mapping, not {}", other.kind()),
        ),
    }
    out
}

/// A list item as a typed scalar; `None` for a collection.
fn scalar(value: &Value) -> Option<Scalar> {
    Some(match value {
        Value::Bool(b) => Scalar::Boolean(*b),
        Value::Int(i) => Scalar::Integer(*i),
        Value::Float(f) => Scalar::Number(*f),
        Value::Str(s) => Scalar::Text(s.clone()),
        _ => return None,
    })
}

/// Adds `node` to `out` under `key`, nested mappings and lists of
/// collections as dotted keys.
fn flatten(r: &mut Reader, key: String, node: &Node, what: &str, out: &mut PluginConfig) {
    if let Value::Float(f) = node.value
        && !f.is_finite()
    {
        r.problem(
            node.line,
            format!("setting `{key}` of {what} must be a finite number"),
        );
        return;
    }
    let value = match &node.value {
        Value::Null => {
            r.problem(node.line, format!("setting `{key}` of {what} is empty"));
            return;
        }
        Value::Bool(b) => ConfigValue::Boolean(*b),
        Value::Int(i) => ConfigValue::Integer(*i),
        Value::Float(f) => ConfigValue::Number(*f),
        Value::Str(s) => ConfigValue::Text(s.clone()),
        Value::Map(entries) => {
            for (k, v) in entries {
                flatten(r, format!("{key}.{k}"), v, what, out);
            }
            return;
        }
        Value::Seq(items) => {
            let scalars: Option<Vec<Scalar>> = items.iter().map(|n| scalar(&n.value)).collect();
            match scalars {
                Some(list)
                    if items
                        .iter()
                        .all(|n| !matches!(n.value, Value::Float(f) if !f.is_finite())) =>
                {
                    ConfigValue::List(list)
                }
                _ => {
                    for (i, item) in items.iter().enumerate() {
                        flatten(r, format!("{key}.{i}"), item, what, out);
                    }
                    return;
                }
            }
        }
    };
    out.push((key, value));
}
