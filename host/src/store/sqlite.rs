//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! Every write goes through one writer thread. It takes the commits that
//! are waiting, applies each inside a savepoint of one transaction (a
//! commit whose trigger state is stale, or whose idempotency key is taken,
//! is rolled back alone), then commits the transaction once: one fsync for
//! the whole batch. Each caller is answered only after that commit.
//! Readers use their own connections; WAL lets them run beside the writer.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{
    Commit, Filter, Pruned, Record, Store, StoreError, StoreFuture, StoredAnswer, Summary,
    Versioned,
};
use crate::digest::Digest;

/// Versioned schema: migration `i` moves `user_version` from `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE decisions (
    decision_id   TEXT PRIMARY KEY,
    recorded_at   INTEGER NOT NULL,
    taken_at      INTEGER NOT NULL,
    service       TEXT NOT NULL,
    version       TEXT NOT NULL,
    policy        TEXT NOT NULL,
    stage         TEXT NOT NULL,
    final_stage   INTEGER NOT NULL,
    decision      TEXT NOT NULL,
    summary       TEXT NOT NULL,
    oldest_commit INTEGER,
    -- The digests of the blobs the record references, a JSON array.
    blobs         TEXT NOT NULL,
    record        TEXT NOT NULL
) STRICT;
CREATE INDEX decisions_order ON decisions (taken_at DESC, decision_id DESC);
CREATE INDEX decisions_service ON decisions (service, taken_at DESC);
CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    kind   TEXT NOT NULL,
    bytes  BLOB NOT NULL
) STRICT;
CREATE TABLE trigger_state (
    key     TEXT PRIMARY KEY,
    state   BLOB NOT NULL,
    version INTEGER NOT NULL
) STRICT;
CREATE TABLE idempotency (
    key         TEXT PRIMARY KEY,
    body        TEXT NOT NULL,
    status      INTEGER NOT NULL,
    response    BLOB NOT NULL,
    decision_id TEXT NOT NULL,
    recorded_at INTEGER NOT NULL
) STRICT;
",
    r"
CREATE TABLE approvals (
    id       TEXT PRIMARY KEY,
    service  TEXT NOT NULL,
    version  TEXT NOT NULL,
    at_ms    INTEGER NOT NULL,
    -- The whole approval, JSON.
    approval TEXT NOT NULL
) STRICT;
CREATE INDEX approvals_release ON approvals (service, version, at_ms);
",
    // Idempotency keys scoped to (token id, policy, key); keys stored
    // before have no scope (''), so they stay readable and prunable but
    // answer no caller. And the secret token ids are keyed with.
    r"
CREATE TABLE idempotency_scoped (
    token_id    TEXT NOT NULL,
    policy      TEXT NOT NULL,
    key         TEXT NOT NULL,
    body        TEXT NOT NULL,
    status      INTEGER NOT NULL,
    response    BLOB NOT NULL,
    decision_id TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (token_id, policy, key)
) STRICT;
INSERT INTO idempotency_scoped (token_id, policy, key, body, status, response, decision_id, recorded_at)
    SELECT '', '', key, body, status, response, decision_id, recorded_at FROM idempotency;
DROP TABLE idempotency;
ALTER TABLE idempotency_scoped RENAME TO idempotency;
CREATE TABLE token_secret (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    secret BLOB NOT NULL
) STRICT;
",
];

/// Blob digests the writer remembers as stored before it forgets them all.
const MAX_KNOWN_BLOBS: usize = 10_000;

/// Commits taken into one transaction at most.
const MAX_BATCH: usize = 256;
/// How long a statement waits on a lock held by another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

type Reply = tokio::sync::oneshot::Sender<Result<(), StoreError>>;

enum Job {
    /// A commit with its record already serialised, so the one writer
    /// thread spends its time on SQLite only.
    Commit(Box<Commit>, String, Reply),
    Prune(
        i64,
        tokio::sync::oneshot::Sender<Result<Pruned, StoreError>>,
    ),
    Approve(
        Box<crate::approvals::Approval>,
        tokio::sync::oneshot::Sender<Result<(), StoreError>>,
    ),
}

/// The SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<mpsc::Sender<Job>>,
    readers: Mutex<Vec<Connection>>,
    token_key: [u8; super::TOKEN_KEY_BYTES],
}

impl SqliteStore {
    /// Opens (creating when absent) the database at `path`, applies pending
    /// migrations and starts the writer thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let unavailable = |message: String| StoreError::Unavailable {
            store: path.display().to_string(),
            message,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| unavailable(format!("cannot create `{}`: {e}", parent.display())))?;
        }
        let conn = connect(path, false).map_err(|e| unavailable(e.to_string()))?;
        migrate(&conn, path)?;
        let token_key = token_secret(&conn).map_err(|e| unavailable(e.to_string()))?;
        let (tx, rx) = mpsc::channel();
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("tollgate-store".into())
            .spawn(move || writer(conn, &rx, &shown))
            .map_err(|e| unavailable(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: Mutex::new(tx),
            readers: Mutex::new(Vec::new()),
            token_key,
        })
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable {
            store: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// Runs `f` on a reader connection off the async threads.
    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let conn = self
            .readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let path = self.path.clone();
        Box::pin(async move {
            let (conn, result) = tokio::task::spawn_blocking(move || {
                let conn = match conn {
                    Some(c) => c,
                    None => connect(&path, true).map_err(|e| StoreError::Unavailable {
                        store: path.display().to_string(),
                        message: e.to_string(),
                    })?,
                };
                let result = f(&conn);
                Ok::<_, StoreError>((conn, result))
            })
            .await
            .map_err(|e| self.unavailable(e))??;
            let mut readers = self
                .readers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if readers.len() < 8 {
                readers.push(conn);
            }
            result
        })
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(job)
            .map_err(|_| self.unavailable("the writer thread has stopped"))
    }
}

fn connect(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let fail = |e: rusqlite::Error| StoreError::Unavailable {
        store: path.display().to_string(),
        message: e.to_string(),
    };
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(fail)?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if version > known {
        return Err(StoreError::Invalid {
            store: path.display().to_string(),
            message: format!(
                "schema version {version} is newer than this tollgate knows ({known}); upgrade tollgate"
            ),
        });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let next = i + 1;
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql} PRAGMA user_version = {next}; COMMIT;"
        ))
        .map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            fail(e)
        })?;
    }
    Ok(())
}

/// The secret token ids are keyed with: the one stored, or a new one stored
/// now (a process opening the file at the same moment reads the first).
fn token_secret(conn: &Connection) -> Result<[u8; super::TOKEN_KEY_BYTES], rusqlite::Error> {
    let read = || {
        conn.query_row("SELECT secret FROM token_secret WHERE id = 1", [], |r| {
            r.get::<_, Vec<u8>>(0)
        })
        .optional()
    };
    // Read first: opening a store another process holds locked (to commit
    // a decision) must not fail here for want of a write.
    if read()?.is_none() {
        conn.execute(
            "INSERT INTO token_secret (id, secret) VALUES (1, ?1) ON CONFLICT (id) DO NOTHING",
            [&super::new_token_key()[..]],
        )?;
    }
    let secret: Vec<u8> =
        conn.query_row("SELECT secret FROM token_secret WHERE id = 1", [], |r| {
            r.get(0)
        })?;
    secret.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Blob,
            "the token secret is not 32 bytes".into(),
        )
    })
}

/// The writer thread: batches waiting commits into one transaction.
fn writer(mut conn: Connection, jobs: &mpsc::Receiver<Job>, shown: &str) {
    let mut known_blobs: HashSet<Digest> = HashSet::new();
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut commits = Vec::new();
        for job in batch {
            match job {
                Job::Commit(c, json, reply) => commits.push((c, json, reply)),
                Job::Prune(before, reply) => {
                    known_blobs.clear();
                    let _ =
                        reply.send(
                            prune(&mut conn, before).map_err(|e| StoreError::Unavailable {
                                store: shown.to_string(),
                                message: e.to_string(),
                            }),
                        );
                }
                Job::Approve(approval, reply) => {
                    let _ = reply.send(insert_approval(&conn, &approval).unwrap_or_else(|e| {
                        Err(StoreError::Unavailable {
                            store: shown.to_string(),
                            message: e.to_string(),
                        })
                    }));
                }
            }
        }
        if commits.is_empty() {
            continue;
        }
        let (results, written) = apply_batch(&mut conn, &commits, &known_blobs);
        match results {
            Ok(results) => {
                // Snapshots rarely repeat: keeping every digest would grow
                // the cache by one per decision, so it is bounded.
                if known_blobs.len() > MAX_KNOWN_BLOBS {
                    known_blobs.clear();
                }
                known_blobs.extend(written);
                for ((_, _, reply), result) in commits.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                let message = e.to_string();
                for (_, _, reply) in commits {
                    let _ = reply.send(Err(StoreError::Unavailable {
                        store: shown.to_string(),
                        message: message.clone(),
                    }));
                }
            }
        }
    }
}

/// One transaction for the batch, a savepoint per commit. The outer error
/// fails the whole batch (nothing of it was committed).
fn apply_batch(
    conn: &mut Connection,
    commits: &[(Box<Commit>, String, Reply)],
    known: &HashSet<Digest>,
) -> (rusqlite::Result<Vec<Result<(), StoreError>>>, Vec<Digest>) {
    let mut written = Vec::new();
    let mut run = || -> rusqlite::Result<Vec<Result<(), StoreError>>> {
        let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(commits.len());
        for (commit, json, _) in commits {
            let mut sp = tx.savepoint()?;
            match apply(&sp, commit, json, known, &mut written)? {
                Ok(()) => {
                    sp.commit()?;
                    results.push(Ok(()));
                }
                Err(e) => {
                    sp.rollback()?;
                    drop(sp);
                    results.push(Err(e));
                }
            }
        }
        tx.set_drop_behavior(rusqlite::DropBehavior::Commit);
        tx.commit()?;
        Ok(results)
    };
    let results = run();
    (results, written)
}

/// Applies one commit; the inner error is the commit's own refusal
/// (conflict, key taken), the outer a database failure.
fn apply(
    conn: &Connection,
    commit: &Commit,
    json: &str,
    known: &HashSet<Digest>,
    written: &mut Vec<Digest>,
) -> rusqlite::Result<Result<(), StoreError>> {
    if let Some(answer) = &commit.idempotency {
        let k = &answer.key;
        let existing = conn
            .prepare_cached(ANSWER_SQL)?
            .query_row(params![k.token_id, k.policy, k.key], answer_row)
            .optional()?;
        if let Some(existing) = existing {
            return Ok(Err(StoreError::KeyTaken(Box::new(existing))));
        }
    }
    for w in &commit.state {
        let changed = match w.read {
            None => conn
                .prepare_cached(
                    "INSERT INTO trigger_state (key, state, version) VALUES (?1, ?2, 1) ON CONFLICT (key) DO NOTHING",
                )?
                .execute(params![w.key, w.state])?,
            Some(v) => conn
                .prepare_cached(
                    "UPDATE trigger_state SET state = ?2, version = version + 1 WHERE key = ?1 AND version = ?3",
                )?
                .execute(params![w.key, w.state, v])?,
        };
        if changed == 0 {
            return Ok(Err(StoreError::Conflict { key: w.key.clone() }));
        }
    }
    let r = &commit.record;
    let d = &r.decision;
    let refs = serde_json::to_string(
        &commit
            .blobs
            .iter()
            .map(|b| b.digest.to_string())
            .collect::<Vec<_>>(),
    )
    .unwrap_or_default();
    conn.prepare_cached(
        "INSERT INTO decisions (decision_id, recorded_at, taken_at, service, version, policy, stage, final_stage, decision, summary, oldest_commit, blobs, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(
        params![
            r.decision_id,
            r.recorded_at_ms,
            d.taken_at,
            d.service,
            d.version,
            d.policy,
            d.stage,
            r.final_stage,
            d.decision.as_str(),
            d.summary,
            r.oldest_commit,
            refs,
            json
        ],
    )?;
    for blob in &commit.blobs {
        // The cache spares rewriting blobs this writer stored, but a prune
        // (here, or `decisions prune` in another process) may have removed
        // one since: a record must never reference a blob that is gone.
        if known.contains(&blob.digest)
            && conn
                .prepare_cached("SELECT 1 FROM blobs WHERE digest = ?1")?
                .exists([blob.digest.to_string()])?
        {
            continue;
        }
        conn.prepare_cached(
            "INSERT INTO blobs (digest, kind, bytes) VALUES (?1, ?2, ?3) ON CONFLICT (digest) DO NOTHING",
        )?
        .execute(params![blob.digest.to_string(), blob.kind.as_str(), &blob.bytes[..]])?;
        written.push(blob.digest);
    }
    if let Some(a) = &commit.idempotency {
        conn.prepare_cached(
            "INSERT INTO idempotency (token_id, policy, key, body, status, response, decision_id, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![a.key.token_id, a.key.policy, a.key.key, a.body.to_string(), a.status, &a.response[..], a.decision_id, r.recorded_at_ms])?;
    }
    Ok(Ok(()))
}

/// The answer stored for one scoped key; columns as [`answer_row`] reads them.
const ANSWER_SQL: &str = "SELECT token_id, policy, key, body, status, response, decision_id FROM idempotency WHERE token_id = ?1 AND policy = ?2 AND key = ?3";

fn answer_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredAnswer> {
    let body: String = row.get(3)?;
    let response: Vec<u8> = row.get(5)?;
    Ok(StoredAnswer {
        key: super::IdempotencyKey {
            token_id: row.get(0)?,
            policy: row.get(1)?,
            key: row.get(2)?,
        },
        body: body.parse().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
        })?,
        status: row.get(4)?,
        response: response.into(),
        decision_id: row.get(6)?,
    })
}

/// Records an approval unless its release, or its approver on that release,
/// is at the cap: counted and inserted in one immediate transaction, so
/// neither this writer's batches nor another process can pass it together.
fn insert_approval(
    conn: &Connection,
    approval: &crate::approvals::Approval,
) -> rusqlite::Result<Result<(), StoreError>> {
    let json = serde_json::to_string(approval)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let (release, by_approver): (i64, i64) = tx.query_row(
        "SELECT COUNT(*), COALESCE(SUM(json_extract(approval, '$.approver') = ?3), 0)
         FROM approvals WHERE service = ?1 AND version = ?2",
        rusqlite::params![approval.service, approval.version, approval.approver],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let count = |n: i64| usize::try_from(n).unwrap_or(usize::MAX);
    if let Some(full) = StoreError::approvals_full(approval, count(release), count(by_approver)) {
        return Ok(Err(full));
    }
    tx.execute(
        "INSERT INTO approvals (id, service, version, at_ms, approval) VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![
            approval.id,
            approval.service,
            approval.version,
            approval.at_ms,
            json
        ],
    )?;
    tx.commit()?;
    Ok(Ok(()))
}

fn prune(conn: &mut Connection, before_ms: i64) -> rusqlite::Result<Pruned> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let decisions = tx.execute("DELETE FROM decisions WHERE recorded_at < ?1", [before_ms])?;
    // Decisions keep the approvals they read, as blobs they reference.
    tx.execute("DELETE FROM approvals WHERE at_ms < ?1", [before_ms])?;
    let keys = tx.execute(
        "DELETE FROM idempotency WHERE recorded_at < ?1",
        [before_ms],
    )?;
    let blobs = tx.execute(
        "DELETE FROM blobs WHERE digest NOT IN (SELECT DISTINCT r.value FROM decisions, json_each(decisions.blobs) AS r)",
        [],
    )?;
    tx.commit()?;
    let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
    Ok(Pruned {
        decisions: n(decisions),
        blobs: n(blobs),
        idempotency_keys: n(keys),
    })
}

fn summary_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Summary> {
    Ok(Summary {
        decision_id: row.get(0)?,
        recorded_at_ms: row.get(1)?,
        taken_at: row.get(2)?,
        service: row.get(3)?,
        version: row.get(4)?,
        policy: row.get(5)?,
        stage: row.get(6)?,
        final_stage: row.get(7)?,
        decision: row.get(8)?,
        summary: row.get(9)?,
        oldest_commit: row.get(10)?,
    })
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
        let shown = self.path.display().to_string();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT state, version FROM trigger_state WHERE key = ?1")
                .map_err(|e| fail(&shown, e))?;
            keys.iter()
                .map(|k| {
                    stmt.query_row([k], |r| {
                        Ok(Versioned {
                            state: r.get(0)?,
                            version: r.get(1)?,
                        })
                    })
                    .optional()
                    .map_err(|e| fail(&shown, e))
                })
                .collect()
        })
    }

    fn answer<'a>(
        &'a self,
        key: &'a super::IdempotencyKey,
    ) -> StoreFuture<'a, Option<StoredAnswer>> {
        let key = key.clone();
        let shown = self.path.display().to_string();
        self.read(move |conn| {
            conn.query_row(
                ANSWER_SQL,
                params![key.token_id, key.policy, key.key],
                answer_row,
            )
            .optional()
            .map_err(|e| fail(&shown, e))
        })
    }

    fn token_key(&self) -> [u8; super::TOKEN_KEY_BYTES] {
        self.token_key
    }

    fn commit(&self, commit: Commit) -> StoreFuture<'_, ()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = serde_json::to_string(&commit.record)
            .map_err(|e| self.unavailable(format!("cannot encode the record: {e}")))
            .and_then(|json| self.send(Job::Commit(Box::new(commit), json, tx)));
        Box::pin(async move {
            sent?;
            rx.await
                .map_err(|_| self.unavailable("the writer thread stopped before committing"))?
        })
    }

    fn decision<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Record>> {
        let id = id.to_string();
        let shown = self.path.display().to_string();
        self.read(move |conn| {
            let json: Option<String> = conn
                .query_row(
                    "SELECT record FROM decisions WHERE decision_id = ?1",
                    [&id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| fail(&shown, e))?;
            json.map(|j| {
                serde_json::from_str(&j).map_err(|e| StoreError::Invalid {
                    store: shown.clone(),
                    message: format!("record `{id}` cannot be read: {e}"),
                })
            })
            .transpose()
        })
    }

    fn list<'a>(&'a self, filter: &'a Filter) -> StoreFuture<'a, Vec<Summary>> {
        let filter = filter.clone();
        let shown = self.path.display().to_string();
        self.read(move |conn| {
            let mut sql = String::from(
                "SELECT decision_id, recorded_at, taken_at, service, version, policy, stage, final_stage, decision, summary, oldest_commit FROM decisions WHERE 1 = 1",
            );
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            let mut push = |clause: &str, v: rusqlite::types::Value| {
                args.push(v);
                sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
            };
            if let Some(s) = &filter.service {
                push(" AND service = ?", s.clone().into());
            }
            if let Some(p) = &filter.policy {
                push(" AND policy = ?", p.clone().into());
            }
            if let Some(d) = &filter.decision {
                push(" AND decision = ?", d.clone().into());
            }
            if let Some(t) = filter.since {
                push(" AND taken_at >= ?", t.into());
            }
            if let Some(t) = filter.until {
                push(" AND taken_at < ?", t.into());
            }
            if let Some(f) = filter.final_stage {
                push(" AND final_stage = ?", i64::from(f).into());
            }
            if let Some(c) = &filter.cursor {
                args.push(c.taken_at.into());
                let t = args.len();
                args.push(c.decision_id.clone().into());
                let id = args.len();
                sql.push_str(&format!(
                    " AND (taken_at < ?{t} OR (taken_at = ?{t} AND decision_id < ?{id}))"
                ));
            }
            args.push(i64::try_from(filter.limit).unwrap_or(i64::MAX).into());
            sql.push_str(&format!(
                " ORDER BY taken_at DESC, decision_id DESC LIMIT ?{}",
                args.len()
            ));
            let mut stmt = conn.prepare(&sql).map_err(|e| fail(&shown, e))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), summary_row)
                .map_err(|e| fail(&shown, e))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(|e| fail(&shown, e))
        })
    }

    fn blob<'a>(&'a self, digest: &'a Digest) -> StoreFuture<'a, Option<Vec<u8>>> {
        let digest = *digest;
        let shown = self.path.display().to_string();
        self.read(move |conn| {
            let found: Option<(String, Vec<u8>)> = conn
                .query_row(
                    "SELECT kind, bytes FROM blobs WHERE digest = ?1",
                    [digest.to_string()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(|e| fail(&shown, e))?;
            found
                .map(|(kind, bytes)| super::verify(&kind, &digest, &bytes).map(|()| bytes))
                .transpose()
        })
    }

    fn prune(&self, before_ms: i64) -> StoreFuture<'_, Pruned> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self.send(Job::Prune(before_ms, tx));
        Box::pin(async move {
            sent?;
            rx.await
                .map_err(|_| self.unavailable("the writer thread stopped before pruning"))?
        })
    }

    fn add_approval(&self, approval: crate::approvals::Approval) -> StoreFuture<'_, ()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self.send(Job::Approve(Box::new(approval), tx));
        Box::pin(async move {
            sent?;
            rx.await.map_err(|_| {
                self.unavailable("the writer thread stopped before recording the approval")
            })?
        })
    }

    fn approvals<'a>(
        &'a self,
        service: &'a str,
        version: &'a str,
    ) -> StoreFuture<'a, Vec<crate::approvals::Approval>> {
        let (service, version) = (service.to_string(), version.to_string());
        let shown = self.path.display().to_string();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT approval FROM approvals WHERE service = ?1 AND version = ?2 ORDER BY at_ms, id LIMIT ?3",
                )
                .map_err(|e| fail(&shown, e))?;
            let rows = stmt
                .query_map(
                    rusqlite::params![
                        service,
                        version,
                        i64::try_from(crate::approvals::MAX_PER_RELEASE).unwrap_or(i64::MAX)
                    ],
                    |r| r.get::<_, String>(0),
                )
                .map_err(|e| fail(&shown, e))?;
            rows.map(|row| {
                let json = row.map_err(|e| fail(&shown, e))?;
                serde_json::from_str(&json).map_err(|e| StoreError::Invalid {
                    store: shown.clone(),
                    message: format!("an approval cannot be read: {e}"),
                })
            })
            .collect()
        })
    }
}

fn fail(shown: &str, e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable {
        store: shown.to_string(),
        message: e.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::{Asked, Blob, BlobKind, StateWrite};

    /// A record of a minimal decision, for store tests.
    pub(crate) fn record(id: &str) -> Record {
        let decision: crate::decision::Decision = serde_json::from_value(serde_json::json!({
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
                schedule: "policy".into(),
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
        let key = super::super::IdempotencyKey {
            token_id: "tok_0123456789abcdef".into(),
            policy: "canary".into(),
            key: "deploy-42".into(),
        };
        assert_eq!(block_on(store.answer(&key)).unwrap(), None);
        let unscoped = super::super::IdempotencyKey {
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
