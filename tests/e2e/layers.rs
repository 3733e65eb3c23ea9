//! The architecture's one-way layering, checked on the source. The crate
//! root holds one folder per layer, and each names only the layers below
//! it; inside a folder, the modules' references form no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::support::repo;

/// The layers, bottom first. A module may name its own layer and those
/// before it, never one after.
const LAYERS: [&str; 10] = [
    "base", "snapshot", "engine", "policy", "sources", "evaluate", "store", "decide", "server",
    "cli",
];

/// Every `.rs` file under `dir`, recursively.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file under `host/src`: `server/auth/grant.rs`
/// is `["server", "auth", "grant"]`, and `server.rs` is `["server"]`.
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect()
}

fn ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The first path segment after every `prefix` in `text`, including each
/// member of a `prefix{a, b::c}` group: the modules the text names.
fn named_after(text: &str, prefix: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices(prefix) {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let line = text[..i].matches('\n').count() + 1;
        let rest = &text[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut start = 0;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' | ',' if depth == 1 => {
                        let name = ident(group[start..j].trim_start());
                        if !name.is_empty() {
                            out.push((line, name.to_string()));
                        }
                        start = j + 1;
                        if c == '}' {
                            break;
                        }
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.push((line, name.to_string()));
            }
        }
    }
    out
}

/// Every source file with its module path and text.
fn crate_files() -> Vec<(PathBuf, Vec<String>, String)> {
    let root = repo("host/src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let module = module_of(&root, &f);
            let text = std::fs::read_to_string(&f).unwrap();
            (f, module, text)
        })
        .collect()
}

#[test]
fn the_crate_root_is_one_folder_per_layer() {
    let mut roots: BTreeSet<String> = BTreeSet::new();
    for (_, module, _) in crate_files() {
        roots.insert(module[0].clone());
    }
    roots.remove("lib");
    roots.remove("main");
    let layers: BTreeSet<String> = LAYERS.iter().map(ToString::to_string).collect();
    assert_eq!(roots, layers, "the crate root's modules are its layers");
}

#[test]
fn every_layer_names_only_the_layers_below_it() {
    let rank = |name: &str| LAYERS.iter().position(|l| *l == name);
    let mut found = Vec::new();
    let mut checked = 0;
    for (file, module, text) in crate_files() {
        let Some(own) = rank(&module[0]) else {
            continue;
        };
        checked += 1;
        for (line, named) in named_after(&text, "crate::") {
            if let Some(theirs) = rank(&named)
                && theirs > own
            {
                found.push(format!(
                    "{}:{line}: `{}` names `{named}`, a higher layer",
                    file.display(),
                    module[0]
                ));
            }
        }
    }
    assert!(checked > 50, "checked only {checked} files");
    assert!(found.is_empty(), "upward references:\n{}", found.join("\n"));
}

/// The modules of one folder, and which of its siblings each names.
fn sibling_graph(
    files: &[(PathBuf, Vec<String>, String)],
) -> BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> {
    let mut graphs: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut children: BTreeMap<Vec<String>, BTreeSet<String>> = BTreeMap::new();
    for (_, module, _) in files {
        if let Some((last, parent)) = module.split_last() {
            children
                .entry(parent.to_vec())
                .or_default()
                .insert(last.clone());
        }
    }
    for (_, module, text) in files {
        let Some((me, parent)) = module.split_last() else {
            continue;
        };
        let siblings = children.get(parent).cloned().unwrap_or_default();
        let mut named = BTreeSet::new();
        // `super::x` from a file names its sibling `x`; `crate::a::b::x`
        // names `x` when `a::b` is the file's own folder.
        for (_, n) in named_after(text, "super::") {
            named.insert(n);
        }
        let own = format!("crate::{}::", parent.join("::"));
        if !parent.is_empty() {
            for (_, n) in named_after(text, &own) {
                named.insert(n);
            }
        } else {
            for (_, n) in named_after(text, "crate::") {
                named.insert(n);
            }
        }
        let edges = graphs
            .entry(parent.to_vec())
            .or_default()
            .entry(me.clone())
            .or_default();
        for n in named {
            if n != *me && siblings.contains(&n) {
                edges.insert(n);
            }
        }
    }
    graphs
}

/// A cycle in `graph`, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_folder_has_an_import_cycle() {
    let files = crate_files();
    let graphs = sibling_graph(&files);
    assert!(graphs.len() > 8, "found {} folders", graphs.len());
    let cycles: Vec<String> = graphs
        .iter()
        .filter_map(|(folder, graph)| {
            cycle(graph).map(|c| format!("{}: {}", folder.join("/"), c.join(" → ")))
        })
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), ["b".to_string()].into()),
        ("b".to_string(), ["c".to_string()].into()),
        ("c".to_string(), ["a".to_string()].into()),
    ]
    .into();
    assert_eq!(
        cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let groups = named_after(
        "use crate::{base::text, engine::{A, B}};\nx crate::policy::P",
        "crate::",
    );
    let names: Vec<&str> = groups.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["base", "engine", "policy"]);
}

#[test]
fn clap_is_named_only_in_the_cli() {
    let mut found = Vec::new();
    for (file, module, text) in crate_files() {
        if module[0] == "cli" || module[0] == "main" {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            if line.contains("clap::") || line.contains("use clap") {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "clap outside cli/:\n{}", found.join("\n"));
}

#[test]
fn no_host_source_file_is_over_700_lines_unless_it_says_why() {
    let mut found = Vec::new();
    for (file, _, text) in crate_files() {
        let lines = text.lines().count();
        let says_why = text
            .lines()
            .next()
            .is_some_and(|l| l.contains("long because"));
        if lines > 700 && !says_why {
            found.push(format!("{}: {lines} lines", file.display()));
        }
    }
    assert!(
        found.is_empty(),
        "files over 700 lines:\n{}",
        found.join("\n")
    );
}
