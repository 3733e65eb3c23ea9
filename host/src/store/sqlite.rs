//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! Every write goes through one writer thread (`batch`). It takes the
//! commits that are waiting, applies each inside a savepoint of one
//! transaction (a commit whose trigger state is stale, or whose idempotency
//! key is taken, is rolled back alone), then commits the transaction once:
//! one fsync for the whole batch. Each caller is answered only after that
//! commit. Readers use their own connections (`reads`); WAL lets them
//! run beside the writer.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{
    Commit, Filter, IdempotencyKey, Pruned, Record, Store, StoreError, StoreFuture, StoredAnswer,
    Summary, TOKEN_KEY_BYTES, Versioned,
};
use crate::base::digest::Digest;
use batch::Job;

mod batch;
mod reads;
mod schema;
mod writes;

/// Why a statement sequence stopped, before the store's name is known: the
/// database failed, or the store answered with an error of its own (a
/// refusal, or data this version cannot read). [`Error::at`] makes it the
/// [`StoreError`] callers see.
#[derive(Debug, thiserror::Error)]
enum Error {
    /// A statement failed: the store is unavailable, and a batch's
    /// transaction is lost.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The store refused this write alone, or cannot read what it holds.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    /// The error as callers of the store `shown` see it.
    fn at(self, shown: &str) -> StoreError {
        match self {
            Self::Sqlite(e) => StoreError::Unavailable {
                store: shown.to_string(),
                message: e.to_string(),
            },
            Self::Store(e) => e,
        }
    }
}

/// Reader connections kept for reuse at most.
const MAX_READERS: usize = 8;

/// The SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<mpsc::Sender<Job>>,
    readers: Mutex<Vec<Connection>>,
    token_key: [u8; TOKEN_KEY_BYTES],
}

impl SqliteStore {
    /// Opens (creating when absent) the database at `path`, applies pending
    /// migrations and starts the writer thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let unavailable = |message: String| StoreError::Unavailable {
            store: shown.clone(),
            message,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| unavailable(format!("cannot create `{}`: {e}", parent.display())))?;
        }
        let conn = schema::connect(path, false).map_err(|e| Error::from(e).at(&shown))?;
        schema::migrate(&conn, &shown).map_err(|e| e.at(&shown))?;
        let token_key = schema::token_secret(&conn).map_err(|e| Error::from(e).at(&shown))?;
        let (tx, rx) = mpsc::channel();
        let writer_shown = shown.clone();
        std::thread::Builder::new()
            .name("tollgate-store".into())
            .spawn(move || batch::run(conn, &rx, &writer_shown))
            .map_err(|e| unavailable(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: Mutex::new(tx),
            readers: Mutex::new(Vec::new()),
            token_key,
        })
    }

    /// The store as errors name it: its path.
    fn shown(&self) -> String {
        self.path.display().to_string()
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable {
            store: self.shown(),
            message: e.to_string(),
        }
    }

    /// Runs `f` on a reader connection off the async threads; `f` is given
    /// the store's name for the errors it makes.
    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &str) -> Result<T, Error> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let conn = self
            .readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let path = self.path.clone();
        Box::pin(async move {
            let (conn, result) = tokio::task::spawn_blocking(move || {
                let shown = path.display().to_string();
                let conn = match conn {
                    Some(c) => c,
                    None => schema::connect(&path, true).map_err(|e| Error::from(e).at(&shown))?,
                };
                let result = f(&conn, &shown).map_err(|e| e.at(&shown));
                Ok::<_, StoreError>((conn, result))
            })
            .await
            .map_err(|e| self.unavailable(e))??;
            let mut readers = self
                .readers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if readers.len() < MAX_READERS {
                readers.push(conn);
            }
            result
        })
    }

    /// Hands `job` to the writer thread and waits for its answer; `doing`
    /// names the job in the error if the thread stops first.
    fn write<T: Send + 'static>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
        doing: &'static str,
    ) -> StoreFuture<'_, T> {
        let (tx, rx) = oneshot::channel();
        let sent = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(job(tx))
            .map_err(|_| self.unavailable("the writer thread has stopped"));
        Box::pin(async move {
            sent?;
            rx.await.map_err(|_| {
                self.unavailable(format!("the writer thread stopped before {doing}"))
            })?
        })
    }
}

impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    fn logs_decisions(&self) -> bool {
        true
    }

    fn read_state<'a>(&'a self, keys: &'a [String]) -> StoreFuture<'a, Vec<Option<Versioned>>> {
        if keys.is_empty() {
            return Box::pin(std::future::ready(Ok(Vec::new())));
        }
        let keys = keys.to_vec();
        self.read(move |conn, _| reads::state(conn, &keys))
    }

    fn answer<'a>(&'a self, key: &'a IdempotencyKey) -> StoreFuture<'a, Option<StoredAnswer>> {
        let key = key.clone();
        self.read(move |conn, _| Ok(reads::answer(conn, &key)?))
    }

    fn token_key(&self) -> [u8; TOKEN_KEY_BYTES] {
        self.token_key
    }

    fn commit(&self, commit: Commit) -> StoreFuture<'_, ()> {
        match serde_json::to_string(&commit.record) {
            Ok(json) => self.write(
                |reply| Job::Commit(Box::new(commit), json, reply),
                "committing",
            ),
            Err(e) => {
                let e = self.unavailable(format!("cannot encode the record: {e}"));
                Box::pin(std::future::ready(Err(e)))
            }
        }
    }

    fn decision<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Record>> {
        let id = id.to_string();
        self.read(move |conn, shown| reads::decision(conn, shown, &id))
    }

    fn list<'a>(&'a self, filter: &'a Filter) -> StoreFuture<'a, Vec<Summary>> {
        let filter = filter.clone();
        self.read(move |conn, _| reads::list(conn, &filter))
    }

    fn count<'a>(&'a self, filter: &'a Filter) -> StoreFuture<'a, usize> {
        let filter = filter.clone();
        self.read(move |conn, _| reads::count(conn, &filter))
    }

    fn blob<'a>(&'a self, digest: &'a Digest) -> StoreFuture<'a, Option<Vec<u8>>> {
        let digest = *digest;
        self.read(move |conn, _| reads::blob(conn, &digest))
    }

    fn prune(&self, before_ms: i64) -> StoreFuture<'_, Pruned> {
        self.write(|reply| Job::Prune(before_ms, reply), "pruning")
    }

    fn add_approval(&self, approval: crate::policy::approvals::Approval) -> StoreFuture<'_, ()> {
        self.write(
            |reply| Job::Approve(Box::new(approval), reply),
            "recording the approval",
        )
    }

    fn approvals<'a>(
        &'a self,
        service: &'a str,
        version: &'a str,
    ) -> StoreFuture<'a, Vec<crate::policy::approvals::Approval>> {
        let (service, version) = (service.to_string(), version.to_string());
        self.read(move |conn, shown| reads::approvals(conn, shown, &service, &version))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::schema::{MIGRATIONS, connect};
    use super::*;
    use crate::store::{Asked, Blob, BlobKind, StateWrite};

    /// A record of a minimal decision, for store tests.
    pub(crate) fn record(id: &str) -> Record {
        let decision: crate::evaluate::decision::Decision = serde_json::from_value(serde_json::json!({
            "decision": "promote", "summary": "ok", "policy": "p", "stage": "s",
            "stage_result": "pass", "score": 100.0, "scoring": {"pass": 90.0, "warn": 75.0},
            "service": "svc", "version": "1.0.0", "taken_at": 1_764_237_600,
            "gates": [], "triggers": [], "actions": [],
            "digests": {"policy": Digest::of(b"p").to_string(), "input": Digest::of(b"i").to_string(), "plugins": {}}
        }))
        .unwrap();
        Record {
            decision_id: id.into(),
            recorded_at_ms: 1_764_237_600_000,
            asked: Asked {
                stage: None,
                elapsed_ms: None,
                schedule: crate::evaluate::Schedule::Policy,
                advance_state: true,
            },
            policy_text: Digest::of(b"p"),
            snapshot_body: Digest::of(b"s"),
            state_in: std::collections::BTreeMap::new(),
            state_versions: std::collections::BTreeMap::new(),
            final_stage: true,
            oldest_commit: None,
            trace_id: None,
            token_id: None,
            decision,
        }
    }

    fn block_on<T>(f: StoreFuture<'_, T>) -> Result<T, StoreError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_commit_is_all_or_nothing_and_blobs_are_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        let plugin: std::sync::Arc<[u8]> = b"plugin bytes".to_vec().into();
        let blob = Blob {
            digest: Digest::of(&plugin),
            kind: BlobKind::Plugin,
            bytes: plugin,
        };
        for id in ["a", "b"] {
            block_on(store.commit(Commit {
                record: record(id),
                blobs: vec![blob.clone()],
                state: Vec::new(),
                idempotency: None,
            }))
            .unwrap();
        }
        // A stale state version fails the commit and writes none of it.
        let e = block_on(store.commit(Commit {
            record: record("c"),
            blobs: Vec::new(),
            state: vec![StateWrite {
                key: "k".into(),
                read: Some(7),
                state: vec![1],
            }],
            idempotency: None,
        }))
        .unwrap_err();
        assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
        assert!(block_on(store.decision("c")).unwrap().is_none());
        assert_eq!(block_on(store.decision("a")).unwrap().unwrap(), record("a"));
        assert_eq!(
            block_on(store.blob(&blob.digest)).unwrap().unwrap(),
            b"plugin bytes"
        );
        let conn = connect(&dir.path().join("t.db"), true).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn keys_stored_before_scoping_stay_readable_and_answer_no_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        // A database as the previous schema left it, with one key.
        let conn = connect(&path, false).unwrap();
        for (i, sql) in MIGRATIONS[..2].iter().enumerate() {
            conn.execute_batch(&format!("{sql} PRAGMA user_version = {};", i + 1))
                .unwrap();
        }
        conn.execute(
            "INSERT INTO idempotency (key, body, status, response, decision_id, recorded_at) VALUES ('deploy-42', ?1, 200, X'7B7D', 'd1', 1000)",
            [Digest::of(b"body").to_string()],
        )
        .unwrap();
        drop(conn);
        let store = SqliteStore::open(&path).unwrap();
        let key = IdempotencyKey {
            token_id: "tok_0123456789abcdef".into(),
            policy: "canary".into(),
            key: "deploy-42".into(),
        };
        assert_eq!(block_on(store.answer(&key)).unwrap(), None);
        let unscoped = IdempotencyKey {
            token_id: String::new(),
            policy: String::new(),
            key: "deploy-42".into(),
        };
        let old = block_on(store.answer(&unscoped)).unwrap().unwrap();
        assert_eq!((old.decision_id.as_str(), old.status), ("d1", 200));
        assert_eq!(block_on(store.prune(2000)).unwrap().idempotency_keys, 1);
        // The token secret is made once and kept.
        let secret = store.token_key();
        drop(store);
        assert_eq!(SqliteStore::open(&path).unwrap().token_key(), secret);
    }

    #[test]
    fn prune_keeps_blobs_still_referenced() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        let shared: std::sync::Arc<[u8]> = b"shared".to_vec().into();
        let only_old: std::sync::Arc<[u8]> = b"only old".to_vec().into();
        let blob = |b: &std::sync::Arc<[u8]>| Blob {
            digest: Digest::of(b),
            kind: BlobKind::Plugin,
            bytes: b.clone(),
        };
        let mut old = record("old");
        old.recorded_at_ms = 1000;
        block_on(store.commit(Commit {
            record: old,
            blobs: vec![blob(&shared), blob(&only_old)],
            state: Vec::new(),
            idempotency: None,
        }))
        .unwrap();
        block_on(store.commit(Commit {
            record: record("new"),
            blobs: vec![blob(&shared)],
            state: Vec::new(),
            idempotency: None,
        }))
        .unwrap();
        let pruned = block_on(store.prune(2000)).unwrap();
        assert_eq!((pruned.decisions, pruned.blobs), (1, 1));
        assert!(
            block_on(store.blob(&Digest::of(&shared)))
                .unwrap()
                .is_some()
        );
        assert!(
            block_on(store.blob(&Digest::of(&only_old)))
                .unwrap()
                .is_none()
        );
    }
}
