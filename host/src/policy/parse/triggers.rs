//! Rollback triggers and deployment actions: named plugin uses beside the
//! stages.

use std::collections::BTreeMap;

use super::get;
use super::settings::{PluginUse, read_use};
use crate::policy::reader::{Entries, Reader};
use crate::policy::schema::{ActionDoc, TriggerDoc, keys};
use crate::policy::yaml::{Node, Value};
use crate::policy::{ActionStep, Name, PluginDecl, Trigger};

/// The entries of a `triggers:` or `actions:` list, each a named mapping.
fn named_items<'a>(
    r: &mut Reader,
    node: &'a Node,
    list: &str,
    allowed: &[&str],
) -> Vec<(Name, &'a Node, &'a Entries)> {
    let Value::Seq(items) = &node.value else {
        r.problem(
            node.line,
            format!("`{list}` must be a list, not {}", node.value.kind()),
        );
        return Vec::new();
    };
    let mut out: Vec<(Name, &Node, &Entries)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(fields) = r.map(item, &format!("entry {} of `{list}`", i + 1), allowed) else {
            continue;
        };
        let Some(name) = (match get(fields, "name") {
            Some(n) => r.name(n, &format!("`name` in `{list}`")),
            None => {
                r.problem(
                    item.line,
                    format!("missing field `name` in entry {} of `{list}`", i + 1),
                );
                None
            }
        }) else {
            continue;
        };
        if out.iter().any(|(n, _, _)| *n == name) {
            r.problem(item.line, format!("duplicate `{name}` in `{list}`"));
        }
        out.push((name, item, fields));
    }
    out
}

/// `triggers:`, each a plugin with `hold` and the `stages` it is checked in.
pub(super) fn read_triggers(
    r: &mut Reader,
    node: &Node,
    plugins: &BTreeMap<String, PluginDecl>,
) -> Vec<Trigger> {
    let mut out = Vec::new();
    for (name, item, fields) in named_items(r, node, "triggers", keys::<TriggerDoc>()) {
        let what = format!("trigger `{name}`");
        let hold = get(fields, "hold")
            .and_then(|n| r.boolean(n, &format!("`hold` of {what}")))
            .unwrap_or(false);
        let mut stages = Vec::new();
        if let Some(n) = get(fields, "stages") {
            match &n.value {
                Value::Seq(items) => {
                    for item in items {
                        if let Some(s) = r.name(item, &format!("a stage of `stages` of {what}")) {
                            stages.push(s);
                        }
                    }
                }
                _ => r.problem(
                    n.line,
                    format!("`stages` of {what} must be a list of stage names"),
                ),
            }
        }
        if let Some(PluginUse {
            plugin,
            config,
            limits,
            description,
        }) = read_use(r, fields, item, &what, plugins)
        {
            out.push(Trigger {
                name,
                description,
                plugin,
                config,
                hold,
                stages,
                limits,
                line: item.line,
            });
        }
    }
    out
}

/// `actions:`, each a plugin that plans the next steps.
pub(super) fn read_actions(
    r: &mut Reader,
    node: &Node,
    plugins: &BTreeMap<String, PluginDecl>,
) -> Vec<ActionStep> {
    let mut out = Vec::new();
    for (name, item, fields) in named_items(r, node, "actions", keys::<ActionDoc>()) {
        let what = format!("action `{name}`");
        if let Some(PluginUse {
            plugin,
            config,
            limits,
            description,
        }) = read_use(r, fields, item, &what, plugins)
        {
            out.push(ActionStep {
                name,
                description,
                plugin,
                config,
                limits,
                line: item.line,
            });
        }
    }
    out
}
