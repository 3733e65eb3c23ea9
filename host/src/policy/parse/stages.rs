//! Stages and their gates, with the score bands a policy or stage sets.

use std::collections::BTreeMap;
use std::time::Duration;

use super::get;
use super::settings::{PluginUse, read_use};
use crate::policy::reader::Reader;
use crate::policy::schema::{GateDoc, ScoringDoc, StageDoc, keys};
use crate::policy::yaml::{Node, Value};
use crate::policy::{ALL_STAGES, Gate, GateKind, OnError, OnNoData, PluginDecl, Scoring, Stage};

/// A `scoring:` of `owner`, each band defaulting to `inherited`.
pub(super) fn read_scoring(
    r: &mut Reader,
    node: &Node,
    inherited: Scoring,
    owner: &str,
) -> Scoring {
    let what = format!("`scoring` of {owner}");
    let Some(fields) = r.map(node, &what, keys::<ScoringDoc>()) else {
        return inherited;
    };
    let pass = get(fields, "pass")
        .and_then(|n| r.percent(n, "`scoring.pass`"))
        .unwrap_or(inherited.pass);
    let warn = get(fields, "warn")
        .and_then(|n| r.percent(n, "`scoring.warn`"))
        .unwrap_or(inherited.warn);
    if warn > pass {
        r.problem(
            node.line,
            format!("in {what}, `warn` ({warn}%) must not exceed `pass` ({pass}%)"),
        );
    }
    Scoring { pass, warn }
}

/// `stages:`, in order, each with its gates; a stage's `scoring` defaults
/// to the policy's.
pub(super) fn read_stages(
    r: &mut Reader,
    node: &Node,
    scoring: Scoring,
    plugins: &BTreeMap<String, PluginDecl>,
) -> Vec<Stage> {
    let Value::Seq(items) = &node.value else {
        r.problem(
            node.line,
            format!("`stages` must be a list, not {}", node.value.kind()),
        );
        return Vec::new();
    };
    if items.is_empty() {
        r.problem(
            node.line,
            "`stages` is empty; a policy needs at least one stage".into(),
        );
    }
    let mut stages: Vec<Stage> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(fields) = r.map(item, &format!("stage {}", i + 1), keys::<StageDoc>()) else {
            continue;
        };
        let name = match get(fields, "name") {
            Some(n) => r.name(n, "stage `name`"),
            None => {
                r.problem(
                    item.line,
                    format!("missing field `name` in stage {}", i + 1),
                );
                None
            }
        };
        let Some(name) = name else { continue };
        if stages.iter().any(|s| s.name == name) {
            r.problem(item.line, format!("duplicate stage `{name}`"));
        }
        if name.as_str() == ALL_STAGES {
            r.problem(
                item.line,
                "a stage may not be named `all`: `--stage all` evaluates every stage".to_string(),
            );
        }
        let owner = format!("stage `{name}`");
        let description = get(fields, "description").and_then(|d| r.text(d, "stage `description`"));
        let scoring = match get(fields, "scoring") {
            Some(n) => read_scoring(r, n, scoring, &owner),
            None => scoring,
        };
        let traffic = get(fields, "traffic")
            .and_then(|n| r.percent(n, &format!("`traffic` of {owner}")))
            .and_then(|p| {
                if p.fract() == 0.0 {
                    Some(p as u8)
                } else {
                    r.problem(
                        item.line,
                        format!("`traffic` of {owner} must be a whole percentage"),
                    );
                    None
                }
            });
        let duration = get(fields, "duration")
            .and_then(|n| r.duration(n, &format!("`duration` of {owner}"), MAX_STAGE));
        let gates = match get(fields, "gates") {
            Some(n) => read_gates(r, n, &owner, plugins),
            None => {
                r.problem(item.line, format!("missing field `gates` in {owner}"));
                Vec::new()
            }
        };
        stages.push(Stage {
            name,
            description,
            traffic,
            duration,
            scoring,
            gates,
        });
    }
    stages
}

/// The `gates:` of `owner`.
fn read_gates(
    r: &mut Reader,
    node: &Node,
    owner: &str,
    plugins: &BTreeMap<String, PluginDecl>,
) -> Vec<Gate> {
    let Value::Seq(items) = &node.value else {
        r.problem(
            node.line,
            format!(
                "`gates` of {owner} must be a list, not {}",
                node.value.kind()
            ),
        );
        return Vec::new();
    };
    if items.is_empty() {
        r.problem(node.line, format!("{owner} has no gates"));
    }
    let mut gates: Vec<Gate> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(fields) = r.map(
            item,
            &format!("gate {} of {owner}", i + 1),
            keys::<GateDoc>(),
        ) else {
            continue;
        };
        let Some(name) = (match get(fields, "name") {
            Some(n) => r.name(n, "gate `name`"),
            None => {
                r.problem(
                    item.line,
                    format!("missing field `name` in gate {} of {owner}", i + 1),
                );
                None
            }
        }) else {
            continue;
        };
        if gates.iter().any(|g| g.name == name) {
            r.problem(item.line, format!("duplicate gate `{name}` in {owner}"));
        }
        let what = format!("gate `{name}`");
        let Some(PluginUse {
            plugin,
            config,
            limits,
            description,
        }) = read_use(r, fields, item, &what, plugins)
        else {
            continue;
        };
        let weight = match get(fields, "weight") {
            None => 1.0,
            Some(n) => match r.number(n, &format!("`weight` of {what}")) {
                Some(w) if (0.0..=1e6).contains(&w) => w,
                Some(w) => {
                    r.problem(
                        n.line,
                        format!("`weight` of {what} must be between 0 and 1000000, not {w}"),
                    );
                    1.0
                }
                None => 1.0,
            },
        };
        let flag = |r: &mut Reader, key: &str| {
            get(fields, key)
                .and_then(|n| r.boolean(n, &format!("`{key}` of {what}")))
                .unwrap_or(false)
        };
        let key = flag(r, "key");
        let dry_run = flag(r, "dry_run");
        let on_no_data = get(fields, "on_no_data")
            .and_then(|n| r.parsed::<OnNoData>(n, &format!("`on_no_data` of {what}")))
            .unwrap_or_default();
        let on_error = get(fields, "on_error")
            .and_then(|n| r.parsed::<OnError>(n, &format!("`on_error` of {what}")))
            .unwrap_or_default();
        gates.push(Gate {
            name,
            description,
            plugin,
            // Host gates are told apart once every gate is read.
            kind: GateKind::Plugin,
            config,
            weight,
            key,
            dry_run,
            on_no_data,
            on_error,
            limits,
            line: item.line,
        });
    }
    gates
}

/// The longest `duration` a stage may declare.
const MAX_STAGE: Duration = Duration::from_secs(30 * 24 * 3600);
