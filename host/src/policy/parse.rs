//! From YAML text to a [`Policy`], reporting every problem with its line.
//!
//! This pass has no side effects: it neither reads plugin files nor runs them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::reader::{Entries, Reader};
use super::yaml::{self, Node, Value};
use super::{
    API_VERSION, ActionStep, Gate, MetricSource, Name, OnError, OnNoData, PluginDecl, Policy,
    Problem, Problems, Scoring, Stage, Tracks, Trigger,
};
use crate::engine::{ConfigValue, Limits, MAX_DEADLINE, PluginConfig, Scalar};

/// The largest policy file read.
pub const MAX_POLICY_BYTES: usize = 1 << 20;

/// Parses policy YAML into a [`Policy`], or returns every problem found.
/// Relative plugin paths are resolved against `base_dir`.
pub fn parse(text: &str, base_dir: &Path) -> Result<Policy, Problems> {
    parse_with(text, base_dir, &BTreeMap::new())
}

/// Like [`parse`], with `shared` user plugins (a server's plugin directory)
/// available to the policy besides those it declares; its own win.
pub fn parse_with(
    text: &str,
    base_dir: &Path,
    shared: &BTreeMap<String, PluginDecl>,
) -> Result<Policy, Problems> {
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
            message: format!("invalid YAML: {}", crate::text::escape_control(&e.message)),
        }])
    })?;
    let mut r = Reader::new();
    let policy = read_policy(&mut r, &root, base_dir, shared);
    match policy {
        Some(p) if r.problems.is_empty() => Ok(p),
        _ => {
            if r.problems.is_empty() {
                r.problem(root.line, "policy is incomplete".into());
            }
            Err(Problems(r.problems))
        }
    }
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
    let top = r.map(root, "the policy", FIELDS.policy)?;
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
    let (name, description) = match get(top, "metadata") {
        None => {
            r.problem(
                root.line,
                "missing field `metadata` with the policy's `name`".into(),
            );
            (None, None)
        }
        Some(meta) => match r.map(meta, "`metadata`", &["name", "description"]) {
            None => (None, None),
            Some(m) => {
                let name = match get(m, "name") {
                    Some(n) => r.name(n, "`metadata.name`"),
                    None => {
                        r.problem(meta.line, "missing field `name` in `metadata`".into());
                        None
                    }
                };
                let description =
                    get(m, "description").and_then(|d| r.text(d, "`metadata.description`"));
                (name, description)
            }
        },
    };
    let mut plugins = match get(top, "plugins") {
        None => BTreeMap::new(),
        Some(n) => read_plugins(r, n, base_dir),
    };
    for (name, decl) in shared {
        if crate::builtin::plugin(name).is_none() {
            plugins.entry(name.clone()).or_insert_with(|| decl.clone());
        }
    }
    let scoring = match get(top, "scoring") {
        None => Scoring::default(),
        Some(n) => read_scoring(r, n, Scoring::default(), "the policy"),
    };
    let stages = match get(top, "stages") {
        None => {
            r.problem(
                root.line,
                "missing field `stages`; a policy needs at least one stage".into(),
            );
            Vec::new()
        }
        Some(n) => read_stages(r, n, scoring, &plugins),
    };
    let triggers = match get(top, "triggers") {
        None => Vec::new(),
        Some(n) => read_triggers(r, n, &plugins),
    };
    for t in &triggers {
        for s in &t.stages {
            if !stages.iter().any(|st: &Stage| st.name == *s) {
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
    let actions = match get(top, "actions") {
        None => Vec::new(),
        Some(n) => read_actions(r, n, &plugins),
    };
    let metrics = match get(top, "metrics") {
        None => Vec::new(),
        Some(n) => read_metric_sources(r, n),
    };
    let tracks = match get(top, "tracks") {
        None => Tracks::default(),
        Some(n) => read_tracks(r, n),
    };
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

fn read_plugins(r: &mut Reader, node: &Node, base_dir: &Path) -> BTreeMap<String, PluginDecl> {
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
        if crate::builtin::plugin(name).is_some() {
            r.problem(decl.line, format!("plugin `{name}` shadows the first-party plugin of that name; choose another name"));
            continue;
        }
        let what = format!("plugin `{name}`");
        let Some(fields) = r.map(decl, &what, &["path", "digest"]) else {
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

/// Longest window a metric may query.
const MAX_WINDOW: Duration = Duration::from_secs(31 * 24 * 3600);
/// Prometheus refuses range queries of more than 11,000 points per series.
const MAX_STEPS: u64 = 11_000;

fn read_metric_sources(r: &mut Reader, node: &Node) -> Vec<MetricSource> {
    let Value::Map(entries) = &node.value else {
        r.problem(
            node.line,
            format!(
                "`metrics` must be a mapping of metric name to source, not {}",
                node.value.kind()
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, decl) in entries {
        let what = format!("metric `{name}`");
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            r.problem(
                decl.line,
                format!("{what}: a metric name is 1 to 128 visible characters"),
            );
            continue;
        }
        let Some(fields) = r.map(decl, &what, FIELDS.metric) else {
            continue;
        };
        let Some(query) = get(fields, "prometheus").and_then(|q| {
            let text = r.text(q, &format!("`prometheus` of {what}"))?;
            match crate::sources::template::variables(&text) {
                Ok(used) => Some((text, used.iter().any(|v| v == "track"))),
                Err(e) => {
                    r.problem(q.line, format!("`prometheus` of {what}: {e}"));
                    None
                }
            }
        }) else {
            if get(fields, "prometheus").is_none() {
                r.problem(decl.line, format!("missing field `prometheus` in {what}"));
            }
            continue;
        };
        let window = get(fields, "window")
            .and_then(|n| r.duration(n, &format!("`window` of {what}"), MAX_WINDOW));
        let step = get(fields, "step").map_or(Some(Duration::from_secs(30)), |n| {
            r.duration(n, &format!("`step` of {what}"), MAX_WINDOW)
        });
        let Some(step) = step else { continue };
        if step.as_secs() == 0 {
            r.problem(decl.line, format!("`step` of {what} must be at least 1s"));
            continue;
        }
        if let Some(w) = window
            && w.as_secs() / step.as_secs() > MAX_STEPS
        {
            r.problem(
                decl.line,
                format!(
                    "{what}: a window of {} at a step of {} is more than Prometheus's {MAX_STEPS} points; raise `step`",
                    humantime::format_duration(w),
                    humantime::format_duration(step)
                ),
            );
            continue;
        }
        out.push(MetricSource {
            name: name.clone(),
            prometheus: query.0,
            window,
            step,
            uses_track: query.1,
            line: decl.line,
        });
    }
    out
}

fn read_tracks(r: &mut Reader, node: &Node) -> Tracks {
    let mut tracks = Tracks::default();
    let Some(fields) = r.map(node, "`tracks`", &["current", "baseline"]) else {
        return tracks;
    };
    if let Some(v) = get(fields, "current").and_then(|n| r.text(n, "`tracks.current`")) {
        tracks.current = v;
    }
    if let Some(v) = get(fields, "baseline").and_then(|n| r.text(n, "`tracks.baseline`")) {
        tracks.baseline = v;
    }
    tracks
}

fn read_scoring(r: &mut Reader, node: &Node, inherited: Scoring, owner: &str) -> Scoring {
    let what = format!("`scoring` of {owner}");
    let Some(fields) = r.map(node, &what, &["pass", "warn"]) else {
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

fn read_stages(
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
        let Some(fields) = r.map(item, &format!("stage {}", i + 1), FIELDS.stage) else {
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
        if name.as_str() == crate::evaluate::ALL_STAGES {
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

/// The keys each part of a policy may have; the JSON Schema is checked
/// against these.
pub(super) struct Fields {
    pub(super) policy: &'static [&'static str],
    pub(super) stage: &'static [&'static str],
    pub(super) gate: &'static [&'static str],
    pub(super) trigger: &'static [&'static str],
    pub(super) action: &'static [&'static str],
    pub(super) metric: &'static [&'static str],
}

pub(super) const FIELDS: Fields = Fields {
    policy: &[
        "apiVersion",
        "kind",
        "metadata",
        "plugins",
        "scoring",
        "stages",
        "triggers",
        "actions",
        "metrics",
        "tracks",
        "require_signature",
        "allowed_signers",
    ],
    stage: &[
        "name",
        "description",
        "scoring",
        "traffic",
        "duration",
        "gates",
    ],
    gate: &[
        "name",
        "description",
        "plugin",
        "with",
        "weight",
        "key",
        "dry_run",
        "on_no_data",
        "on_error",
        "deadline",
        "memory",
        "grants",
    ],
    trigger: &[
        "name",
        "description",
        "plugin",
        "with",
        "hold",
        "stages",
        "deadline",
        "memory",
        "grants",
    ],
    action: &[
        "name",
        "description",
        "plugin",
        "with",
        "deadline",
        "memory",
        "grants",
    ],
    metric: &["prometheus", "window", "step"],
};

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
        let Some(fields) = r.map(item, &format!("gate {} of {owner}", i + 1), FIELDS.gate) else {
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

/// What every gate, trigger and action has: its plugin, settings, limits
/// and description.
struct PluginUse {
    plugin: String,
    config: PluginConfig,
    limits: Limits,
    description: Option<String>,
}

/// Reads the fields shared by gates, triggers and actions; `None` when the
/// plugin is missing (already reported).
fn read_use(
    r: &mut Reader,
    fields: &Entries,
    item: &Node,
    what: &str,
    plugins: &BTreeMap<String, PluginDecl>,
) -> Option<PluginUse> {
    let plugin = read_plugin_name(r, fields, item, what, plugins);
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

/// The `plugin` of a gate, trigger or action, checked against the known plugins.
fn read_plugin_name(
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
        && crate::builtin::plugin(p).is_none()
        && !crate::approvals::is_host_gate(p)
        && !plugins.contains_key(p)
    {
        let known: Vec<String> = crate::builtin::names()
            .map(str::to_string)
            .chain(plugins.keys().cloned())
            .collect();
        r.problem(
            n.line,
            format!(
                "unknown plugin `{p}` in {what}{}",
                crate::suggest::with_listing(
                    p,
                    known
                        .iter()
                        .map(String::as_str)
                        .chain(crate::approvals::HOST_GATES),
                    &format!("known plugins: {}", known.join(", "))
                )
            ),
        );
    }
    plugin
}

/// `grants: { files: [ { host: DIR, guest: /PATH } ] }`: directories the
/// plugin may read through WASI. `host` is resolved against the policy's
/// directory when the policy loads.
fn read_grants(r: &mut Reader, node: &Node, what: &str) -> Vec<crate::engine::wasi::FileGrant> {
    let mut out = Vec::new();
    let Some(g) = r.map(node, &format!("`grants` of {what}"), &["files"]) else {
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
        let Some(f) = r.map(item, &format!("a file grant of {what}"), &["host", "guest"]) else {
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

fn read_triggers(
    r: &mut Reader,
    node: &Node,
    plugins: &BTreeMap<String, PluginDecl>,
) -> Vec<Trigger> {
    let mut out = Vec::new();
    for (name, item, fields) in named_items(r, node, "triggers", FIELDS.trigger) {
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

fn read_actions(
    r: &mut Reader,
    node: &Node,
    plugins: &BTreeMap<String, PluginDecl>,
) -> Vec<ActionStep> {
    let mut out = Vec::new();
    for (name, item, fields) in named_items(r, node, "actions", FIELDS.action) {
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

fn scalar(value: &Value) -> Option<Scalar> {
    Some(match value {
        Value::Bool(b) => Scalar::Boolean(*b),
        Value::Int(i) => Scalar::Integer(*i),
        Value::Float(f) => Scalar::Number(*f),
        Value::Str(s) => Scalar::Text(s.clone()),
        _ => return None,
    })
}

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

#[cfg(test)]
mod tests {
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
