//! `tollgate audit`: what a plugin is and exactly what it may do.

use std::path::Path;

use serde_json::json;

use crate::digest::Digest;
use crate::engine::{self, Limits};

#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    /// Component files, or names of first-party plugins.
    #[arg(required = true)]
    plugins: Vec<String>,
}

/// Prints one JSON report per plugin; exit 1 if any plugin would be refused.
pub(crate) fn run(args: AuditArgs) -> anyhow::Result<u8> {
    let runtime = super::runtime()?;
    let mut refused = 0;
    let mut reports = Vec::new();
    for arg in &args.plugins {
        let (name, bytes) = match crate::builtin::plugin(arg) {
            Some(b) if !Path::new(arg).exists() => (arg.clone(), b.to_vec()),
            _ => {
                let bytes =
                    crate::files::read_limited(Path::new(arg), crate::files::MAX_PLUGIN_BYTES)
                        .map_err(|e| anyhow::anyhow!("cannot read plugin `{arg}`: {e}"))?;
                let name = Path::new(arg)
                    .file_stem()
                    .map_or_else(|| arg.clone(), |s| s.to_string_lossy().into_owned());
                (name, bytes)
            }
        };
        let digest = Digest::of(&bytes);
        match runtime.load(&name, &bytes) {
            Ok(plugin) => {
                let info = plugin.info();
                reports.push(json!({
                    "plugin": name,
                    "source": arg,
                    "digest": digest.to_string(),
                    "size_bytes": bytes.len(),
                    "world": info.world,
                    "wit_version": info.wit_version,
                    "imports": info.imports,
                    "exports": info.exports,
                    "capabilities": [],
                    "wasi": false,
                    "limits": {
                        "default_deadline_ms": Limits::default().deadline.as_millis() as u64,
                        "default_memory_bytes": Limits::default().memory,
                        "max_deadline_ms": engine::MAX_DEADLINE.as_millis() as u64,
                        "max_memory_bytes": engine::MAX_MEMORY,
                        "wasm_stack_bytes": engine::MAX_WASM_STACK,
                        "max_reason_bytes": engine::MAX_REASON_BYTES,
                        "max_details": engine::MAX_DETAILS,
                        "max_state_bytes": engine::MAX_STATE_BYTES,
                    },
                    "verdict": "accepted",
                }));
            }
            Err(e) => {
                refused += 1;
                reports.push(json!({
                    "plugin": name,
                    "source": arg,
                    "digest": digest.to_string(),
                    "size_bytes": bytes.len(),
                    "verdict": "refused",
                    "reason": e.to_string(),
                }));
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&reports)?);
    Ok(u8::from(refused > 0))
}
