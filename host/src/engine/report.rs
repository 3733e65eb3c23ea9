//! What a plugin is and exactly what it may do: one report, the same from
//! `tollgate audit` and from `GET /v1/plugins`.

use serde::Serialize;

use crate::base::digest::Digest;
use crate::engine::{self, Limits, Plugin, PluginInfo};

/// The limits every call of a plugin runs under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitsReport {
    pub default_deadline_ms: u64,
    pub default_memory_bytes: usize,
    pub max_deadline_ms: u64,
    pub max_memory_bytes: usize,
    pub wasm_stack_bytes: usize,
    pub max_reason_bytes: usize,
    pub max_details: usize,
    pub max_state_bytes: usize,
}

impl LimitsReport {
    /// The host's limits.
    pub fn host() -> Self {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            default_deadline_ms: ms(Limits::default().deadline),
            default_memory_bytes: Limits::default().memory,
            max_deadline_ms: ms(engine::MAX_DEADLINE),
            max_memory_bytes: engine::MAX_MEMORY,
            wasm_stack_bytes: engine::MAX_WASM_STACK,
            max_reason_bytes: engine::MAX_REASON_BYTES,
            max_details: engine::MAX_DETAILS,
            max_state_bytes: engine::MAX_STATE_BYTES,
        }
    }

    /// The limits of a source plugin's calls: parsing an answer of
    /// megabytes needs more than a gate's, and a round's state carries the
    /// pages before it.
    pub fn source() -> Self {
        let limits = engine::source_limits();
        Self {
            default_deadline_ms: u64::try_from(limits.deadline.as_millis()).unwrap_or(u64::MAX),
            default_memory_bytes: limits.memory,
            max_state_bytes: engine::MAX_ROUND_STATE,
            ..Self::host()
        }
    }
}

/// What a source plugin may reach, whatever configures it.
pub const SOURCE_REACH: &str = "http through the host only: the requests it describes go to the base URL an operator configures for it, with credentials the host adds and the plugin never sees (`tollgate audit --sources FILE` shows where)";

/// Whether a plugin would be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Acceptance {
    Accepted,
    Refused,
}

/// One plugin's audit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginReport {
    /// The name policies use.
    pub plugin: String,
    /// Where it came from: a path, or `builtin:<name>`.
    pub source: String,
    /// The bytes' digest; absent when the file could not be read, so an
    /// unreadable path never shows the digest of nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<usize>,
    pub verdict: Acceptance,
    /// Why it is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub info: Option<PluginInfo>,
    /// Capabilities granted beyond the snapshot, by the policies that use
    /// the plugin (server only): `files:<policy>/<gate>: <host dir> -> <guest path> (read-only)`.
    pub capabilities: Vec<String>,
    /// Whether the plugin imports WASI; `wasi_imports` lists each
    /// interface and what the host gives it.
    pub wasi: bool,
    /// Who signed it (`FILE.sig`, an SSH signature), when it is signed;
    /// `trusted` when the key is in the allowed signers consulted.
    pub signature: Option<crate::engine::signature::Signed>,
    pub limits: LimitsReport,
    /// The policies that use it (server only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_by: Option<Vec<String>>,
}

impl PluginReport {
    /// The report of a plugin that loaded.
    pub fn accepted(name: &str, source: &str, plugin: &Plugin) -> Self {
        let is_source = plugin.info().world == engine::World::Source;
        Self {
            plugin: name.to_string(),
            source: source.to_string(),
            digest: Some(plugin.digest()),
            size_bytes: Some(plugin.size()),
            verdict: Acceptance::Accepted,
            reason: None,
            info: Some(plugin.info().clone()),
            capabilities: if is_source {
                vec![SOURCE_REACH.to_string()]
            } else {
                Vec::new()
            },
            wasi: !plugin.info().wasi.is_empty(),
            signature: None,
            limits: if is_source {
                LimitsReport::source()
            } else {
                LimitsReport::host()
            },
            used_by: None,
        }
    }

    /// The report of a plugin that would not load, and why: `bytes` is
    /// `None` when they could not even be read.
    pub fn refused(name: &str, source: &str, bytes: Option<&[u8]>, reason: String) -> Self {
        Self {
            plugin: name.to_string(),
            source: source.to_string(),
            digest: bytes.map(Digest::of),
            size_bytes: bytes.map(<[u8]>::len),
            verdict: Acceptance::Refused,
            reason: Some(reason),
            info: None,
            capabilities: Vec::new(),
            wasi: false,
            signature: None,
            limits: LimitsReport::host(),
            used_by: None,
        }
    }
}
