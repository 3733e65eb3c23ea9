//! From YAML text to a [`Policy`], reporting every problem with its line.
//!
//! This pass has no side effects: it neither reads plugin files nor runs them.
//! The keys each part may have come from the format's types
//! ([`super::schema`]); the readers here check each value.

mod metrics;
mod plugins;
mod settings;
mod stages;
mod triggers;

use std::collections::BTreeMap;
use std::path::Path;

use super::reader::{Entries, Reader};
use super::schema::{MetadataDoc, PolicyDoc, keys};
use super::yaml::{self, Node};
use super::{
    API_VERSION, GateKind, Name, PluginDecl, Policy, Problem, Problems, Scoring, Stage, Trigger,
};

/// The largest policy file read.
pub const MAX_POLICY_BYTES: usize = 1 << 20;

/// Parses policy YAML into a [`Policy`], or returns every problem found.
/// Relative plugin paths are resolved against `base_dir`.
pub fn parse(text: &str, base_dir: &Path) -> Result<Policy, Problems> {
    parse_with(text, base_dir, &BTreeMap::new()).map(|parsed| parsed.policy)
}

/// A policy as read, with the settings problems that are the load's to
/// report.
pub(super) struct Parsed {
    pub(super) policy: Policy,
    /// Host-gate settings the rule refuses, and host gates used as a
    /// trigger or action: those uses are left out of `policy`, and the load
    /// reports these among the plugins' answers about their own settings.
    pub(super) refused: Vec<Refusal>,
}

/// A use of a plugin or host gate refused for its settings, reported just
/// before the `before`-th use in [`Policy::plugin_uses`].
pub(super) struct Refusal {
    pub(super) before: usize,
    pub(super) problem: Problem,
}

/// Like [`parse`], with `shared` user plugins (a server's plugin directory)
/// available to the policy besides those it declares; its own win.
pub(super) fn parse_with(
    text: &str,
    base_dir: &Path,
    shared: &BTreeMap<String, PluginDecl>,
) -> Result<Parsed, Problems> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(Problems(vec![Problem {
            line: None,
            message: format!(
                "policy is {} bytes; the limit is {MAX_POLICY_BYTES}",
                text.len()
            ),
        }]));
    }
    let root = yaml::parse(text).map_err(|e| {
        Problems(vec![Problem {
            line: Some(e.line),
            message: format!(
                "invalid YAML: {}",
                crate::base::text::escape_control(&e.message)
            ),
        }])
    })?;
    let mut r = Reader::new();
    let policy = read_policy(&mut r, &root, base_dir, shared);
    match policy {
        Some(mut policy) if r.problems.is_empty() => {
            let refused = host_gates(&mut policy);
            Ok(Parsed { policy, refused })
        }
        _ => {
            if r.problems.is_empty() {
                r.problem(root.line, "policy is incomplete".into());
            }
            Err(Problems(r.problems))
        }
    }
}

/// Makes each gate that names a host gate one, by the rule its settings
/// give. A host gate whose settings the rule refuses, and a trigger or
/// action that names a host gate, leave the policy and are refused.
fn host_gates(policy: &mut Policy) -> Vec<Refusal> {
    use crate::policy::approvals::{HostGate, Rule};
    let mut refused = Vec::new();
    // Plugin uses kept so far: where the load reports a refusal.
    let mut uses = 0;
    let mut refuse = |before: usize, line: usize, message: String| {
        refused.push(Refusal {
            before,
            problem: Problem {
                line: Some(line),
                message,
            },
        });
    };
    for stage in &mut policy.stages {
        stage.gates.retain_mut(|g| {
            let Some(host) = HostGate::named(&g.plugin) else {
                uses += 1;
                return true;
            };
            match Rule::parse(host, &g.config) {
                Ok(rule) => {
                    g.kind = GateKind::Host(rule);
                    true
                }
                Err(e) => {
                    refuse(
                        uses,
                        g.line,
                        format!(
                            "invalid settings for gate `{}` (host gate `{}`): {e}",
                            g.name, g.plugin
                        ),
                    );
                    false
                }
            }
        });
    }
    let mut misplaced = |plugin: &str, role: &str, line: usize| {
        if HostGate::named(plugin).is_none() {
            uses += 1;
            return true;
        }
        refuse(
            uses,
            line,
            format!("`{plugin}` is a gate the host evaluates, not a {role}"),
        );
        false
    };
    policy
        .triggers
        .retain(|t| misplaced(&t.plugin, "trigger", t.line));
    policy
        .actions
        .retain(|a| misplaced(&a.plugin, "action", a.line));
    refused
}

fn get<'a>(entries: &'a Entries, key: &str) -> Option<&'a Node> {
    entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn read_policy(
    r: &mut Reader,
    root: &Node,
    base_dir: &Path,
    shared: &BTreeMap<String, PluginDecl>,
) -> Option<Policy> {
    let top = r.map(root, "the policy", keys::<PolicyDoc>())?;
    read_envelope(r, root, top);
    let (name, description) = read_metadata(r, root, top);
    let mut plugins = match get(top, "plugins") {
        None => BTreeMap::new(),
        Some(n) => plugins::read_plugins(r, n, base_dir),
    };
    for (name, decl) in shared {
        if crate::policy::builtin::plugin(name).is_none() {
            plugins.entry(name.clone()).or_insert_with(|| decl.clone());
        }
    }
    let scoring = match get(top, "scoring") {
        None => Scoring::default(),
        Some(n) => stages::read_scoring(r, n, Scoring::default(), "the policy"),
    };
    let stages = match get(top, "stages") {
        None => {
            r.problem(
                root.line,
                "missing field `stages`; a policy needs at least one stage".into(),
            );
            Vec::new()
        }
        Some(n) => stages::read_stages(r, n, scoring, &plugins),
    };
    let triggers = match get(top, "triggers") {
        None => Vec::new(),
        Some(n) => triggers::read_triggers(r, n, &plugins),
    };
    check_trigger_stages(r, &triggers, &stages);
    let actions = match get(top, "actions") {
        None => Vec::new(),
        Some(n) => triggers::read_actions(r, n, &plugins),
    };
    let metrics = match get(top, "metrics") {
        None => Vec::new(),
        Some(n) => metrics::read_metric_sources(r, n),
    };
    let tracks = match get(top, "tracks") {
        None => super::Tracks::default(),
        Some(n) => metrics::read_tracks(r, n),
    };
    let (require_signature, allowed_signers) = read_signing(r, root, top, base_dir);
    Some(Policy {
        name: name?,
        description,
        plugins,
        stages,
        triggers,
        actions,
        metrics,
        tracks,
        require_signature,
        allowed_signers,
    })
}

/// `apiVersion` and `kind`: what the document says it is.
fn read_envelope(r: &mut Reader, root: &Node, top: &Entries) {
    match get(top, "apiVersion") {
        None => r.problem(
            root.line,
            format!("missing field `apiVersion`; expected `{API_VERSION}`"),
        ),
        Some(n) => {
            if let Some(v) = r.text(n, "`apiVersion`")
                && v != API_VERSION
            {
                r.problem(
                    n.line,
                    format!("unsupported apiVersion `{v}`; expected `{API_VERSION}`"),
                );
            }
        }
    }
    match get(top, "kind") {
        None => r.problem(root.line, "missing field `kind`; expected `Policy`".into()),
        Some(n) => {
            if let Some(v) = r.text(n, "`kind`")
                && v != "Policy"
            {
                r.problem(n.line, format!("unsupported kind `{v}`; expected `Policy`"));
            }
        }
    }
}

/// The policy's `metadata`: its name (`None` when missing or invalid, as
/// reported) and description.
fn read_metadata(r: &mut Reader, root: &Node, top: &Entries) -> (Option<Name>, Option<String>) {
    let Some(meta) = get(top, "metadata") else {
        r.problem(
            root.line,
            "missing field `metadata` with the policy's `name`".into(),
        );
        return (None, None);
    };
    let Some(m) = r.map(meta, "`metadata`", keys::<MetadataDoc>()) else {
        return (None, None);
    };
    let name = match get(m, "name") {
        Some(n) => r.name(n, "`metadata.name`"),
        None => {
            r.problem(meta.line, "missing field `name` in `metadata`".into());
            None
        }
    };
    let description = get(m, "description").and_then(|d| r.text(d, "`metadata.description`"));
    (name, description)
}

/// Each trigger's `stages` must name stages of the policy.
fn check_trigger_stages(r: &mut Reader, triggers: &[Trigger], stages: &[Stage]) {
    for t in triggers {
        for s in &t.stages {
            if !stages.iter().any(|st| st.name == *s) {
                let known: Vec<&str> = stages.iter().map(|st| st.name.as_str()).collect();
                r.problem(
                    t.line,
                    format!(
                        "unknown stage `{s}` in `stages` of trigger `{}`; stages: {}",
                        t.name,
                        known.join(", ")
                    ),
                );
            }
        }
    }
}

/// `require_signature` and `allowed_signers` (resolved against
/// `base_dir`); the first needs the second.
fn read_signing(
    r: &mut Reader,
    root: &Node,
    top: &Entries,
    base_dir: &Path,
) -> (bool, Option<std::path::PathBuf>) {
    let require_signature = get(top, "require_signature")
        .and_then(|n| r.boolean(n, "`require_signature`"))
        .unwrap_or(false);
    let allowed_signers = get(top, "allowed_signers")
        .and_then(|n| r.text(n, "`allowed_signers`"))
        .map(|p| base_dir.join(p));
    if require_signature && allowed_signers.is_none() {
        r.problem(
            get(top, "require_signature").map_or(root.line, |n| n.line),
            "`require_signature: true` needs `allowed_signers`: the file of keys allowed to sign plugins".into(),
        );
    }
    (require_signature, allowed_signers)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        parse(yaml, Path::new("."))
            .unwrap_err()
            .0
            .into_iter()
            .map(|p| p.to_string())
            .collect()
    }

    const MINIMAL: &str = "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: p}\n";

    /// Found by the `policy` fuzz target: a quoted name holding a newline
    /// broke its problem over two lines.
    #[test]
    fn a_name_with_a_newline_is_quoted_on_one_line() {
        let found = problems(
            "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {name: \"hotfix\\n-\"}\n",
        );
        assert!(found.iter().all(|p| !p.contains('\n')), "{found:?}");
        assert!(
            found[0].contains("`hotfix\\n-` is not a valid name"),
            "{found:?}"
        );
    }

    #[test]
    fn reports_every_problem_with_its_line() {
        let found = problems(&format!(
            "{MINIMAL}stages:\n  - name: s\n    gates:\n      - name: a\n        plugin: nope\n        weight: -1\n      - name: b\n        plugin: threshold\n        on_error: explode\n        tyop: 1\n"
        ));
        assert_eq!(
            found,
            vec![
                "line 8: unknown plugin `nope` in gate `a`; known plugins: approved-registries, baseline-drop, canary-judge, canary-schedule, circuit-breaker, flag-rollout, junit-report, semver-bump, sustained, threshold, window",
                "line 9: `weight` of gate `a` must be between 0 and 1000000, not -1",
                "line 13: unknown field `tyop` in gate 2 of stage `s`; expected one of name, description, plugin, with, weight, key, dry_run, on_no_data, on_error, deadline, memory, grants",
                "line 12: `on_error` of gate `b` is `explode`; expected fail, warn or ignore",
            ]
        );
    }

    #[test]
    fn host_gates_are_told_apart_once_and_refused_where_they_were_written() {
        let text = format!(
            "{MINIMAL}stages:\n  - name: s\n    gates:\n      - name: a\n        plugin: threshold\n      - name: b\n        plugin: approval\n        with: {{count: 0}}\n      - name: c\n        plugin: checklist\n        with: {{items: [x]}}\n      - name: d\n        plugin: threshold\ntriggers:\n  - name: t\n    plugin: approval\n  - name: u\n    plugin: sustained\n"
        );
        let Parsed { policy, refused } =
            parse_with(&text, Path::new("."), &BTreeMap::new()).unwrap();
        let kinds: Vec<(&str, bool)> = policy.stages[0]
            .gates
            .iter()
            .map(|g| (g.name.as_str(), matches!(g.kind, GateKind::Host(_))))
            .collect();
        assert_eq!(kinds, [("a", false), ("c", true), ("d", false)]);
        assert!(policy.uses_approvals());
        let uses: Vec<&str> = policy.plugin_uses().map(|u| u.name.as_str()).collect();
        assert_eq!(uses, ["a", "d", "u"]);
        // Each refusal goes before the plugin use that followed it.
        let places: Vec<(usize, String)> = refused
            .into_iter()
            .map(|r| (r.before, r.problem.to_string()))
            .collect();
        assert_eq!(
            places,
            [
                (
                    1,
                    "line 9: invalid settings for gate `b` (host gate `approval`): `count` must be 1 to 100".to_string()
                ),
                (
                    2,
                    "line 18: `approval` is a gate the host evaluates, not a trigger".to_string()
                ),
            ]
        );
    }

    #[test]
    fn flattens_nested_settings() {
        let p = parse(
            &format!("{MINIMAL}stages:\n  - name: s\n    gates:\n      - name: a\n        plugin: threshold\n        with:\n          selector: {{track: canary}}\n          steps: [{{w: 5}}]\n          segs: [a, b]\n"),
            Path::new("."),
        )
        .unwrap();
        let keys: Vec<&str> = p.stages[0].gates[0]
            .config
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(keys, vec!["selector.track", "steps.0.w", "segs"]);
    }

    #[test]
    fn parses_limits_and_scoring() {
        let p = parse(
            &format!("{MINIMAL}scoring: {{pass: 95%, warn: 80}}\nstages:\n  - name: s\n    gates:\n      - name: a\n        plugin: threshold\n        deadline: 250ms\n        memory: 32MiB\n"),
            Path::new("."),
        )
        .unwrap();
        let g = &p.stages[0].gates[0];
        assert_eq!(g.limits.deadline, Duration::from_millis(250));
        assert_eq!(g.limits.memory, 32 << 20);
        assert_eq!(
            p.stages[0].scoring,
            Scoring {
                pass: 95.0,
                warn: 80.0
            }
        );
    }

    #[test]
    fn refuses_limits_beyond_the_host_maximum() {
        let found = problems(&format!(
            "{MINIMAL}stages:\n  - name: s\n    gates:\n      - name: a\n        plugin: threshold\n        deadline: 1h\n        memory: 4GiB\n"
        ));
        assert_eq!(found.len(), 2, "{found:?}");
    }

    #[test]
    fn requires_the_envelope() {
        let found = problems("stages: []\n");
        assert!(
            found
                .iter()
                .any(|p| p.contains("missing field `apiVersion`")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|p| p.contains("stages` is empty")),
            "{found:?}"
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// YAML-shaped text: keys, scalars, flow and block collections.
    fn yamlish() -> impl Strategy<Value = String> {
        "[a-z_:\\-\\[\\]{},. \n0-9%\"'&*!|>#]{0,300}"
    }

    proptest! {
        #[test]
        fn the_yaml_reader_never_panics(text in any::<String>()) {
            let _ = yaml::parse(&text);
        }

        #[test]
        fn the_policy_parser_never_panics_and_every_problem_has_a_line(text in yamlish()) {
            if let Err(Problems(problems)) = parse(&text, Path::new(".")) {
                prop_assert!(!problems.is_empty());
                for p in problems {
                    prop_assert!(p.line.is_some(), "{p:?} for {text:?}");
                }
            }
        }

        #[test]
        fn a_policy_with_mutated_fields_is_reported_with_lines(
            stage in "[a-z]{1,8}", field in "[a-z_]{1,10}", value in "[a-z0-9%]{0,6}",
        ) {
            let text = format!(
                "apiVersion: tollgate.dev/v1\nkind: Policy\nmetadata: {{name: p}}\nstages:\n  - name: {stage}\n    gates:\n      - name: g\n        plugin: threshold\n        {field}: {value}\n"
            );
            if let Err(Problems(problems)) = parse(&text, Path::new(".")) {
                for p in problems {
                    prop_assert!(p.line.is_some(), "{p:?}");
                }
            }
        }

        #[test]
        fn the_snapshot_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = crate::snapshot::Snapshot::from_json(&bytes);
        }
    }
}
