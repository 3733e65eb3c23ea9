//! The file's schema and connections: opening one, the versioned
//! migrations, and the secret token ids are keyed with.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::Error;
use crate::store::TOKEN_KEY_BYTES;

/// Versioned schema: migration `i` moves `user_version` from `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
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

/// How long a statement waits on a lock held by another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to the file: the writer's (creating it, WAL) or a reader's.
pub(super) fn connect(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
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

/// Applies the migrations the file has not had, each in its own
/// transaction; refuses a file whose schema is newer than this binary's.
pub(super) fn migrate(conn: &Connection, shown: &str) -> Result<(), Error> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    crate::store::check_schema(shown, version, MIGRATIONS.len())?;
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let next = i + 1;
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql} PRAGMA user_version = {next}; COMMIT;"
        ))
        .inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })?;
    }
    Ok(())
}

/// The secret token ids are keyed with: the one stored, or a new one stored
/// now (a process opening the file at the same moment reads the first).
pub(super) fn token_secret(conn: &Connection) -> rusqlite::Result<[u8; TOKEN_KEY_BYTES]> {
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
            [&crate::store::new_token_key()[..]],
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
