//! The store: the decision log, trigger state and idempotency keys, behind
//! one trait with three backends.
//!
//! - [`sqlite::SqliteStore`], the embedded default: one file, WAL,
//!   `synchronous=FULL`, and a single writer thread that commits the
//!   requests waiting at once in one transaction (group commit), so
//!   durability costs one fsync per batch, not per decision.
//! - [`postgres::PgStore`], for several replicas behind a load balancer.
//! - [`memory::MemoryStore`], which logs nothing: trigger state and keys
//!   live in this process only (`--store memory`).
//!
//! A decision is reported only after [`Store::commit`] returned: its record,
//! the blobs it references (plugin bytes, policy text, snapshot body, each
//! stored once by digest), the trigger state it advanced and its
//! idempotency key go in one transaction, or none of them do. Trigger state
//! is versioned: a commit names the version it read, and fails with
//! [`StoreError::Conflict`] when another evaluation (on any replica)
//! advanced it first, so no two evaluations both advance one breaker.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::base::digest::Digest;
use crate::evaluate::decision::Decision;

pub(crate) mod dora;
pub mod memory;
pub mod postgres;
pub mod sqlite;

/// What a store call returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a store call failed. Callers branch: a conflict is retried, a key
/// already answered is replayed, anything else is a 503 (or exit 2).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be read or written: a full disk, a read-only file,
    /// a locked database, an unreachable server.
    #[error("decision store `{store}` unavailable: {message}")]
    Unavailable { store: String, message: String },
    /// Trigger state changed since it was read: evaluate again.
    #[error("trigger state `{key}` was advanced concurrently")]
    Conflict { key: String },
    /// The idempotency key was answered by another request first.
    #[error("idempotency key already answered")]
    KeyTaken(Box<StoredAnswer>),
    /// A stored blob's bytes do not hash to the digest it is stored under.
    #[error("stored {kind} `{digest}` is corrupt: its bytes hash to `{actual}`")]
    Corrupt {
        kind: String,
        digest: Digest,
        actual: Digest,
    },
    /// The store holds data this version cannot read.
    #[error("decision store `{store}`: {message}")]
    Invalid { store: String, message: String },
    /// The release, or this approver on it, already holds the most
    /// approvals allowed; checked in the inserting transaction, so
    /// concurrent requests cannot pass it together.
    #[error("{service} {version} already has {held} {what}, the most {whom} may hold")]
    ApprovalsFull {
        service: String,
        version: String,
        held: usize,
        /// `approvals and attestations`, or `approvals and attestations by <approver>`.
        what: String,
        /// `one release`, or `one approver on one release`.
        whom: &'static str,
    },
}

impl StoreError {
    /// The refusal for a release (or an approver on it) at its cap, given
    /// what the store counted inside the inserting transaction; `None`
    /// when there is room.
    pub fn approvals_full(
        approval: &crate::policy::approvals::Approval,
        release: usize,
        by_approver: usize,
    ) -> Option<Self> {
        let full = |held: usize, what: String, whom| {
            Some(Self::ApprovalsFull {
                service: crate::base::text::escape_control(&approval.service).into_owned(),
                version: crate::base::text::escape_control(&approval.version).into_owned(),
                held,
                what,
                whom,
            })
        };
        if release >= crate::policy::approvals::MAX_PER_RELEASE {
            full(release, "approvals and attestations".into(), "one release")
        } else if by_approver >= crate::policy::approvals::MAX_PER_APPROVER {
            full(
                by_approver,
                format!(
                    "approvals and attestations by {}",
                    crate::base::text::escape_control(&approval.approver)
                ),
                "one approver on one release",
            )
        } else {
            None
        }
    }
}

/// Trigger state as stored, with the version a commit must name to replace it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub state: Vec<u8>,
    pub version: i64,
}

/// New trigger state, replacing the version read (`None`: there was none).
#[derive(Debug, Clone)]
pub struct StateWrite {
    pub key: String,
    pub read: Option<i64>,
    pub state: Vec<u8>,
}

/// An idempotency key in its scope: the caller's token id and the policy
/// evaluated, then the `Idempotency-Key` itself. One caller's key never
/// answers, conflicts with, or reveals another caller's, nor the same
/// caller's for another policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    /// The id of the token that sent it (never the token).
    pub token_id: String,
    pub policy: String,
    /// The `Idempotency-Key` header.
    pub key: String,
}

impl std::fmt::Display for IdempotencyKey {
    /// The key as its caller sent it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key)
    }
}

/// Bytes of the secret a store keeps for keyed token ids.
pub const TOKEN_KEY_BYTES: usize = 32;

/// A fresh random secret for token ids.
pub fn new_token_key() -> [u8; TOKEN_KEY_BYTES] {
    let mut key = [0u8; TOKEN_KEY_BYTES];
    for chunk in key.chunks_mut(16) {
        chunk.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    key
}

/// The answer given for an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub key: IdempotencyKey,
    /// The digest of the request body it answered.
    pub body: Digest,
    pub status: u16,
    pub response: Arc<[u8]>,
    pub decision_id: String,
}

/// What an evaluation is asked, beside the snapshot: enough to replay it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asked {
    pub stage: Option<String>,
    pub elapsed_ms: Option<u64>,
    /// Who kept the stage clock; logged as `policy` or `caller`.
    pub schedule: crate::evaluate::Schedule,
    /// Whether the triggers' new state was kept.
    pub advance_state: bool,
}

/// One logged decision: the decision as answered, and what is needed to
/// look it up and replay it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub decision_id: String,
    /// When the decision was committed, unix milliseconds.
    pub recorded_at_ms: i64,
    pub asked: Asked,
    /// The digest of the policy file's text, stored as a blob.
    pub policy_text: Digest,
    /// The digest of the snapshot's canonical JSON, stored as a blob: the
    /// decision's `digests.input`.
    pub snapshot_body: Digest,
    /// Each trigger's state before the evaluation, hex, by trigger name.
    pub state_in: BTreeMap<String, String>,
    /// The version of each trigger's state read, by trigger name: each
    /// version is advanced by exactly one committed decision.
    #[serde(default)]
    pub state_versions: BTreeMap<String, i64>,
    /// Whether the stage is the policy's last (a promotion of it is a deployment).
    pub final_stage: bool,
    /// The oldest commit timestamp in the snapshot (lead time).
    pub oldest_commit: Option<i64>,
    /// The OpenTelemetry trace id of the request, when traced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The id of the token that asked (never the token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    pub decision: Decision,
}

/// The kinds of stored blob, by what they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    Plugin,
    Policy,
    Snapshot,
    /// An approval or attestation a decision judged.
    Approval,
}

impl BlobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plugin => "plugin",
            Self::Policy => "policy",
            Self::Snapshot => "snapshot",
            Self::Approval => "approval",
        }
    }
}

/// Content-addressed bytes a record references.
#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: Digest,
    pub kind: BlobKind,
    pub bytes: Arc<[u8]>,
}

/// Everything one decision writes, in one transaction.
#[derive(Debug, Clone)]
pub struct Commit {
    pub record: Record,
    pub blobs: Vec<Blob>,
    pub state: Vec<StateWrite>,
    pub idempotency: Option<StoredAnswer>,
}

/// Filters of a decision listing; times are the decision's `taken_at`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub service: Option<String>,
    pub policy: Option<String>,
    pub decision: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, exclusive.
    pub until: Option<i64>,
    /// Only decisions of a policy's last stage.
    pub final_stage: Option<bool>,
    pub limit: usize,
    /// Continue after this position (from a previous page).
    pub cursor: Option<Cursor>,
    /// Oldest first (`taken_at`, then decision id, which is time-ordered),
    /// for a reader that walks the whole log in order.
    pub oldest_first: bool,
}

/// A position in a listing's order: `(taken_at, decision_id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub taken_at: i64,
    pub decision_id: String,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.taken_at, self.decision_id)
    }
}

/// Why a cursor cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// No `_` between the time and the decision id.
    #[error("a cursor is `<taken_at>_<decision id>`, as `next_cursor` gives it")]
    Shape,
    /// The part before the `_` is not a number.
    #[error("cursor time `{0}` is not a number")]
    Time(String),
}

impl std::str::FromStr for Cursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Self, CursorError> {
        let (t, id) = s.split_once('_').ok_or(CursorError::Shape)?;
        Ok(Self {
            taken_at: t.parse().map_err(|_| CursorError::Time(t.to_string()))?,
            decision_id: id.to_string(),
        })
    }
}

/// One line of a decision listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub decision_id: String,
    pub recorded_at_ms: i64,
    pub taken_at: i64,
    pub service: String,
    pub version: String,
    pub policy: String,
    pub stage: String,
    pub final_stage: bool,
    pub decision: String,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_commit: Option<i64>,
}

impl Summary {
    pub fn of(record: &Record) -> Self {
        let d = &record.decision;
        Self {
            decision_id: record.decision_id.clone(),
            recorded_at_ms: record.recorded_at_ms,
            taken_at: d.taken_at,
            service: d.service.clone(),
            version: d.version.clone(),
            policy: d.policy.clone(),
            stage: d.stage.clone(),
            final_stage: record.final_stage,
            decision: d.decision.as_str().to_string(),
            summary: d.summary.clone(),
            oldest_commit: record.oldest_commit,
        }
    }
}

/// What a prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    pub decisions: u64,
    pub blobs: u64,
    pub idempotency_keys: u64,
}

/// Where decisions, trigger state and idempotency keys live.
pub trait Store: Send + Sync {
    /// The store as logs and errors name it (no password).
    fn describe(&self) -> String;
    /// Whether decisions are logged (not by `--store memory`).
    fn logs_decisions(&self) -> bool;
    /// The current state of each key, in order.
    fn read_state<'a>(&'a self, keys: &'a [String]) -> StoreFuture<'a, Vec<Option<Versioned>>>;
    /// The answer stored for an idempotency key, in its scope only.
    fn answer<'a>(&'a self, key: &'a IdempotencyKey) -> StoreFuture<'a, Option<StoredAnswer>>;
    /// The secret token ids are keyed with: made once, when the store is
    /// created, and kept in it, so replicas sharing a store name a token
    /// alike and no one without the store can tell which token an id is.
    fn token_key(&self) -> [u8; TOKEN_KEY_BYTES];
    /// Writes one decision durably: all of it, or nothing.
    fn commit(&self, commit: Commit) -> StoreFuture<'_, ()>;
    /// One record.
    fn decision<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Record>>;
    /// Records newest first (or oldest first), at most `filter.limit`.
    fn list<'a>(&'a self, filter: &'a Filter) -> StoreFuture<'a, Vec<Summary>>;
    /// How many records `filter` selects, its cursor and limit aside.
    fn count<'a>(&'a self, filter: &'a Filter) -> StoreFuture<'a, usize>;
    /// A blob's bytes, checked against its digest.
    fn blob<'a>(&'a self, digest: &'a Digest) -> StoreFuture<'a, Option<Vec<u8>>>;
    /// Removes records committed before `before_ms` (unix ms), their
    /// idempotency keys, and blobs no remaining record references.
    fn prune(&self, before_ms: i64) -> StoreFuture<'_, Pruned>;
    /// Records an approval or attestation, durably, before the caller is
    /// told it was recorded.
    fn add_approval(&self, approval: crate::policy::approvals::Approval) -> StoreFuture<'_, ()>;
    /// The approvals on record for one release, oldest first.
    fn approvals<'a>(
        &'a self,
        service: &'a str,
        version: &'a str,
    ) -> StoreFuture<'a, Vec<crate::policy::approvals::Approval>>;
}

/// Opens the store `spec` names: `memory`, `postgres://…` (or
/// `postgresql://…`), `sqlite:PATH` or a plain file path.
pub async fn open(spec: &str) -> Result<Arc<dyn Store>, StoreError> {
    if spec.trim().is_empty() {
        return Err(StoreError::Invalid {
            store: String::new(),
            message: "no store given: a SQLite file, `postgres://…` or `memory`".into(),
        });
    }
    if spec == "memory" {
        return Ok(Arc::new(memory::MemoryStore::default()));
    }
    if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        return Ok(Arc::new(postgres::PgStore::connect(spec).await?));
    }
    let path = spec.strip_prefix("sqlite:").unwrap_or(spec);
    let path = std::path::PathBuf::from(path);
    let store = tokio::task::spawn_blocking(move || sqlite::SqliteStore::open(&path))
        .await
        .map_err(|e| StoreError::Unavailable {
            store: spec.to_string(),
            message: e.to_string(),
        })??;
    Ok(Arc::new(store))
}

/// One page of a listing: at most `filter.limit` decisions, and the
/// cursor of the next page when there is one.
pub async fn page(
    store: &dyn Store,
    filter: &Filter,
) -> Result<(Vec<Summary>, Option<Cursor>), StoreError> {
    let limit = filter.limit;
    let more = Filter {
        limit: limit.saturating_add(1),
        ..filter.clone()
    };
    let mut page = store.list(&more).await?;
    let next = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|s| Cursor {
            taken_at: s.taken_at,
            decision_id: s.decision_id.clone(),
        })
    } else {
        None
    };
    Ok((page, next))
}

/// Every decision `filter` selects, page by page.
pub async fn all(store: &dyn Store, filter: &Filter) -> Result<Vec<Summary>, StoreError> {
    let mut out = Vec::new();
    each(store, filter, |s| out.push(s)).await?;
    Ok(out)
}

/// Calls `f` with every decision `filter` selects, a page at a time, so
/// memory holds one page.
pub async fn each(
    store: &dyn Store,
    filter: &Filter,
    mut f: impl FnMut(Summary),
) -> Result<(), StoreError> {
    let mut filter = Filter {
        limit: 1000,
        ..filter.clone()
    };
    loop {
        let (page, next) = page(store, &filter).await?;
        page.into_iter().for_each(&mut f);
        match next {
            Some(c) => filter.cursor = Some(c),
            None => return Ok(()),
        }
    }
}

/// The default store of `serve` and of `--log` without a value:
/// `.tollgate/tollgate.db` in the working directory.
pub const DEFAULT_PATH: &str = ".tollgate/tollgate.db";

/// The shortest retention accepted: `--retain 0d` (a typo for `90d`, or a
/// misread unit) would delete every decision as soon as it is made.
pub const MIN_RETAIN: std::time::Duration = std::time::Duration::from_secs(3600);

/// A retention shorter than [`MIN_RETAIN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "`retain` is {}; it must be at least {}: a retention this short deletes decisions almost as soon as they are made",
    humantime::format_duration(self.retain),
    humantime::format_duration(MIN_RETAIN)
)]
pub struct RetainTooShort {
    pub retain: std::time::Duration,
}

/// Refuses a retention shorter than [`MIN_RETAIN`].
pub fn check_retain(retain: std::time::Duration) -> Result<(), RetainTooShort> {
    if retain < MIN_RETAIN {
        return Err(RetainTooShort { retain });
    }
    Ok(())
}

/// Checks that `bytes` hash to `digest`.
pub fn verify(kind: &str, digest: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
    let actual = Digest::of(bytes);
    if actual == *digest {
        Ok(())
    } else {
        Err(StoreError::Corrupt {
            kind: kind.to_string(),
            digest: *digest,
            actual,
        })
    }
}

/// Blob digests a writer remembers as stored before it forgets them all:
/// snapshots rarely repeat, so keeping every digest would grow the cache by
/// one per decision.
const MAX_KNOWN_BLOBS: usize = 10_000;

/// Refuses a schema `version` newer than the `known` migrations.
fn check_schema(store: &str, version: i64, known: usize) -> Result<(), StoreError> {
    let known = i64::try_from(known).unwrap_or(i64::MAX);
    if version > known {
        return Err(StoreError::Invalid {
            store: store.to_string(),
            message: format!(
                "schema version {version} is newer than this tollgate knows ({known}); upgrade tollgate"
            ),
        });
    }
    Ok(())
}

/// A logged record from its stored JSON.
fn decode_record(store: &str, id: &str, json: &str) -> Result<Record, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Invalid {
        store: store.to_string(),
        message: format!("record `{id}` cannot be read: {e}"),
    })
}

/// An approval from its stored JSON.
fn decode_approval(
    store: &str,
    json: &str,
) -> Result<crate::policy::approvals::Approval, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Invalid {
        store: store.to_string(),
        message: format!("an approval cannot be read: {e}"),
    })
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
