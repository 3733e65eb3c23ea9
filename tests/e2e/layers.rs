//! The architecture's one-way layering, checked on the source: the sandbox
//! (`engine`) is the bottom layer and names no module above it.

use crate::support::repo;

/// Every `.rs` file under `dir`, recursively.
fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_engine_names_no_higher_layer() {
    let mut files = vec![repo("host/src/engine.rs")];
    sources(&repo("host/src/engine"), &mut files);
    assert!(files.len() > 3, "found {files:?}");
    let higher = [
        "decision", "policy", "evaluate", "server", "cli", "render", "cases",
    ];
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for layer in higher {
                for prefix in ["crate::", "super::super::"] {
                    let needle = format!("{prefix}{layer}");
                    let hit = line.match_indices(&needle).any(|(i, _)| {
                        !line[i + needle.len()..]
                            .starts_with(|c: char| c.is_alphanumeric() || c == '_')
                    });
                    if hit {
                        found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the engine refers upward:\n{}",
        found.join("\n")
    );
}
