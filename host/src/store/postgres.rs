//! The shared store for several replicas: PostgreSQL through a connection
//! pool. Decisions are written in batches by one writer task ([`batch`]):
//! one transaction and a few multi-row statements per batch. Trigger state is replaced only at
//! the version read (`UPDATE … WHERE version = $n`), so two replicas cannot
//! both advance one breaker; idempotency keys are a primary key, so a retry
//! landing on another replica finds the stored answer.

mod batch;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::NoTls;

use super::{
    Commit, Filter, Pruned, Record, Store, StoreError, StoreFuture, StoredAnswer, Summary,
    Versioned,
};
use crate::base::digest::Digest;

/// Versioned schema, applied under an advisory lock so replicas starting
/// together migrate once.
const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE decisions (
    decision_id   TEXT PRIMARY KEY,
    recorded_at   BIGINT NOT NULL,
    taken_at      BIGINT NOT NULL,
    service       TEXT NOT NULL,
    version       TEXT NOT NULL,
    policy        TEXT NOT NULL,
    stage         TEXT NOT NULL,
    final_stage   BOOLEAN NOT NULL,
    decision      TEXT NOT NULL,
    summary       TEXT NOT NULL,
    oldest_commit BIGINT,
    -- The digests of the blobs the record references.
    blobs         TEXT[] NOT NULL,
    record        TEXT NOT NULL
);
CREATE INDEX decisions_order ON decisions (taken_at DESC, decision_id DESC);
CREATE INDEX decisions_service ON decisions (service, taken_at DESC);
CREATE INDEX decisions_recorded ON decisions (recorded_at);
CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    kind   TEXT NOT NULL,
    bytes  BYTEA NOT NULL
);
CREATE TABLE trigger_state (
    key     TEXT PRIMARY KEY,
    state   BYTEA NOT NULL,
    version BIGINT NOT NULL
);
CREATE TABLE idempotency (
    key         TEXT PRIMARY KEY,
    body        TEXT NOT NULL,
    status      INTEGER NOT NULL,
    response    BYTEA NOT NULL,
    decision_id TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
);
",
    r"
CREATE TABLE approvals (
    id       TEXT PRIMARY KEY,
    service  TEXT NOT NULL,
    version  TEXT NOT NULL,
    at_ms    BIGINT NOT NULL,
    approval TEXT NOT NULL
);
CREATE INDEX approvals_release ON approvals (service, version, at_ms);
",
    // Idempotency keys scoped to (token id, policy, key); keys stored
    // before have no scope (''), so they stay readable and prunable but
    // answer no caller. And the secret token ids are keyed with.
    r"
ALTER TABLE idempotency ADD COLUMN token_id TEXT NOT NULL DEFAULT '';
ALTER TABLE idempotency ADD COLUMN policy TEXT NOT NULL DEFAULT '';
ALTER TABLE idempotency DROP CONSTRAINT idempotency_pkey;
ALTER TABLE idempotency ADD PRIMARY KEY (token_id, policy, key);
CREATE TABLE token_secret (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    secret BYTEA NOT NULL
);
",
];

/// A listing's filters ($1 to $6: service, policy, decision, since,
/// until, final stage), shared by `list` and `count`.
macro_rules! filtered_sql {
    () => {
        " WHERE ($1::TEXT IS NULL OR service = $1)
           AND ($2::TEXT IS NULL OR policy = $2)
           AND ($3::TEXT IS NULL OR decision = $3)
           AND ($4::BIGINT IS NULL OR taken_at >= $4)
           AND ($5::BIGINT IS NULL OR taken_at < $5)
           AND ($6::BOOLEAN IS NULL OR final_stage = $6)"
    };
}

/// The parameters of [`filtered_sql`], in its order.
fn filtered_params(filter: &Filter) -> [&(dyn tokio_postgres::types::ToSql + Sync); 6] {
    [
        &filter.service,
        &filter.policy,
        &filter.decision,
        &filter.since,
        &filter.until,
        &filter.final_stage,
    ]
}

/// An arbitrary key for `pg_advisory_xact_lock` around migrations.
const MIGRATION_LOCK: i64 = 0x746f_6c6c_6761_7465;

/// The PostgreSQL store.
pub struct PgStore {
    pool: Pool,
    shown: String,
    /// What the commit writer needs, shared with it.
    writer: batch::Writer,
    /// The queue to the commit writer, started by the first commit (and
    /// again if it stopped) on the runtime that makes it.
    jobs: std::sync::Mutex<Option<mpsc::Sender<batch::Job>>>,
    /// The secret token ids are keyed with, shared by every replica.
    token_key: [u8; super::TOKEN_KEY_BYTES],
}

/// The URL with its password hidden, for logs and errors.
fn shown(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl PgStore {
    /// Connects a pool to `url` and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let shown = shown(url);
        let unavailable = |message: String| StoreError::Unavailable {
            store: shown.clone(),
            message,
        };
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| unavailable(format!("invalid URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .wait_timeout(Some(std::time::Duration::from_secs(5)))
            .create_timeout(Some(std::time::Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| unavailable(e.to_string()))?;
        let writer = batch::Writer {
            pool: pool.clone(),
            shown: shown.clone(),
            known: std::sync::Arc::default(),
        };
        let mut store = Self {
            pool,
            shown,
            writer,
            jobs: std::sync::Mutex::default(),
            token_key: [0; super::TOKEN_KEY_BYTES],
        };
        store.migrate().await?;
        store.token_key = store.token_secret().await?;
        Ok(store)
    }

    /// The secret token ids are keyed with: the one stored, or a new one
    /// stored now (the first replica to start wins; the others read it).
    async fn token_secret(&self) -> Result<[u8; super::TOKEN_KEY_BYTES], StoreError> {
        let client = self.client().await?;
        let stored = client
            .query_opt("SELECT 1 FROM token_secret WHERE id = 1", &[])
            .await
            .map_err(|e| self.fail(e))?;
        if stored.is_none() {
            client
                .execute(
                    "INSERT INTO token_secret (id, secret) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
                    &[&&super::new_token_key()[..]],
                )
                .await
                .map_err(|e| self.fail(e))?;
        }
        let secret: Vec<u8> = client
            .query_one("SELECT secret FROM token_secret WHERE id = 1", &[])
            .await
            .map_err(|e| self.fail(e))?
            .get(0);
        secret.try_into().map_err(|_| StoreError::Invalid {
            store: self.shown.clone(),
            message: "the token secret is not 32 bytes".into(),
        })
    }

    fn fail(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable {
            store: self.shown.clone(),
            message: crate::base::text::first_line(&e.to_string()).into_owned(),
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| self.fail(e))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.fail(e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| self.fail(e))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS tollgate_schema (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await
        .map_err(|e| self.fail(e))?;
        let version: i32 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM tollgate_schema", &[])
            .await
            .map_err(|e| self.fail(e))?
            .get(0);
        super::check_schema(&self.shown, i64::from(version), MIGRATIONS.len())?;
        for (i, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(version).unwrap_or(0))
        {
            tx.batch_execute(sql).await.map_err(|e| self.fail(e))?;
            let next = i32::try_from(i + 1).unwrap_or(i32::MAX);
            tx.execute(
                "INSERT INTO tollgate_schema (version, applied_at) VALUES ($1, $2)",
                &[&next, &super::now_ms()],
            )
            .await
            .map_err(|e| self.fail(e))?;
        }
        tx.commit().await.map_err(|e| self.fail(e))
    }

    /// Hands `commit` to the writer and waits until its batch committed.
    async fn apply(&self, commit: Commit) -> Result<(), StoreError> {
        let json = serde_json::to_string(&commit.record).map_err(|e| self.fail(e))?;
        let jobs = {
            let mut jobs = self
                .jobs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match &*jobs {
                Some(send) if !send.is_closed() => send.clone(),
                // None yet, or the last one stopped (its task panicked, or
                // its runtime ended): start a writer on this runtime.
                _ => {
                    let (send, receive) = mpsc::channel(batch::QUEUE);
                    tokio::spawn(self.writer.clone().run(receive));
                    jobs.insert(send).clone()
                }
            }
        };
        let (reply, answer) = oneshot::channel();
        jobs.send((Box::new(commit), json, reply))
            .await
            .map_err(|_| self.fail("the commit writer stopped"))?;
        answer
            .await
            .map_err(|_| self.fail("the commit writer stopped"))?
    }

    async fn answer_of(
        &self,
        key: &super::IdempotencyKey,
    ) -> Result<Option<StoredAnswer>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT body, status, response, decision_id FROM idempotency WHERE token_id = $1 AND policy = $2 AND key = $3",
                &[&key.token_id, &key.policy, &key.key],
            )
            .await
            .map_err(|e| self.fail(e))?;
        row.map(|r| stored_answer(key, &r).map_err(|e| self.fail(e)))
            .transpose()
    }
}

/// An idempotency row (`body, status, response, decision_id`) as the
/// answer stored under `key`.
fn stored_answer(
    key: &super::IdempotencyKey,
    row: &tokio_postgres::Row,
) -> Result<StoredAnswer, <Digest as std::str::FromStr>::Err> {
    let body: String = row.get(0);
    let status: i32 = row.get(1);
    let response: Vec<u8> = row.get(2);
    Ok(StoredAnswer {
        key: key.clone(),
        body: body.parse()?,
        status: u16::try_from(status).unwrap_or(500),
        response: response.into(),
        decision_id: row.get(3),
    })
}

impl Store for PgStore {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn logs_decisions(&self) -> bool {
        true
    }

    fn read_state<'a>(&'a self, keys: &'a [String]) -> StoreFuture<'a, Vec<Option<Versioned>>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT key, state, version FROM trigger_state WHERE key = ANY($1)",
                    &[&keys],
                )
                .await
                .map_err(|e| self.fail(e))?;
            let mut found: std::collections::HashMap<String, Versioned> = rows
                .into_iter()
                .map(|r| {
                    (
                        r.get::<_, String>(0),
                        Versioned {
                            state: r.get(1),
                            version: r.get(2),
                        },
                    )
                })
                .collect();
            Ok(keys.iter().map(|k| found.remove(k)).collect())
        })
    }

    fn answer<'a>(
        &'a self,
        key: &'a super::IdempotencyKey,
    ) -> StoreFuture<'a, Option<StoredAnswer>> {
        Box::pin(self.answer_of(key))
    }

    fn token_key(&self) -> [u8; super::TOKEN_KEY_BYTES] {
        self.token_key
    }

    fn commit(&self, commit: Commit) -> StoreFuture<'_, ()> {
        Box::pin(self.apply(commit))
    }

    fn decision<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Record>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT record FROM decisions WHERE decision_id = $1",
                    &[&id],
                )
                .await
                .map_err(|e| self.fail(e))?;
            row.map(|r| super::decode_record(&self.shown, id, r.get(0)))
                .transpose()
        })
    }

    fn list<'a>(&'a self, filter: &'a Filter) -> StoreFuture<'a, Vec<Summary>> {
        Box::pin(async move {
            let client = self.client().await?;
            let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
            let (cursor_t, cursor_id) = filter
                .cursor
                .as_ref()
                .map(|c| (Some(c.taken_at), Some(c.decision_id.clone())))
                .unwrap_or_default();
            // Both orders walk the `decisions_order` index, one backwards.
            let sql = if filter.oldest_first {
                concat!(
                    "SELECT decision_id, recorded_at, taken_at, service, version, policy, stage, final_stage, decision, summary, oldest_commit FROM decisions",
                    filtered_sql!(),
                    " AND ($7::BIGINT IS NULL OR taken_at > $7 OR (taken_at = $7 AND decision_id > $8))
                     ORDER BY taken_at ASC, decision_id ASC LIMIT $9"
                )
            } else {
                concat!(
                    "SELECT decision_id, recorded_at, taken_at, service, version, policy, stage, final_stage, decision, summary, oldest_commit FROM decisions",
                    filtered_sql!(),
                    " AND ($7::BIGINT IS NULL OR taken_at < $7 OR (taken_at = $7 AND decision_id < $8))
                     ORDER BY taken_at DESC, decision_id DESC LIMIT $9"
                )
            };
            let rows = client
                .query(
                    sql,
                    &[
                        &filtered_params(filter)[..],
                        &[&cursor_t, &cursor_id, &limit],
                    ]
                    .concat(),
                )
                .await
                .map_err(|e| self.fail(e))?;
            Ok(rows
                .into_iter()
                .map(|r| Summary {
                    decision_id: r.get(0),
                    recorded_at_ms: r.get(1),
                    taken_at: r.get(2),
                    service: r.get(3),
                    version: r.get(4),
                    policy: r.get(5),
                    stage: r.get(6),
                    final_stage: r.get(7),
                    decision: r.get(8),
                    summary: r.get(9),
                    oldest_commit: r.get(10),
                })
                .collect())
        })
    }

    fn count<'a>(&'a self, filter: &'a Filter) -> StoreFuture<'a, usize> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_one(
                    concat!("SELECT COUNT(*) FROM decisions", filtered_sql!()),
                    &filtered_params(filter),
                )
                .await
                .map_err(|e| self.fail(e))?;
            Ok(usize::try_from(row.get::<_, i64>(0)).unwrap_or(0))
        })
    }

    fn blob<'a>(&'a self, digest: &'a Digest) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT kind, bytes FROM blobs WHERE digest = $1",
                    &[&digest.to_string()],
                )
                .await
                .map_err(|e| self.fail(e))?;
            row.map(|r| {
                let kind: String = r.get(0);
                let bytes: Vec<u8> = r.get(1);
                super::verify(&kind, digest, &bytes).map(|()| bytes)
            })
            .transpose()
        })
    }

    fn prune(&self, before_ms: i64) -> StoreFuture<'_, Pruned> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| self.fail(e))?;
            let decisions = tx
                .execute(
                    "DELETE FROM decisions WHERE recorded_at < $1",
                    &[&before_ms],
                )
                .await
                .map_err(|e| self.fail(e))?;
            let keys = tx
                .execute(
                    "DELETE FROM idempotency WHERE recorded_at < $1",
                    &[&before_ms],
                )
                .await
                .map_err(|e| self.fail(e))?;
            // Decisions keep the approvals they read, as blobs they reference.
            tx.execute("DELETE FROM approvals WHERE at_ms < $1", &[&before_ms])
                .await
                .map_err(|e| self.fail(e))?;
            let blobs = tx
                .execute(
                    "DELETE FROM blobs WHERE digest NOT IN (SELECT DISTINCT unnest(blobs) FROM decisions)",
                    &[],
                )
                .await
                .map_err(|e| self.fail(e))?;
            tx.commit().await.map_err(|e| self.fail(e))?;
            self.writer
                .known
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
            Ok(Pruned {
                decisions,
                blobs,
                idempotency_keys: keys,
            })
        })
    }

    /// Counts and inserts under a transaction-scoped advisory lock on the
    /// release, so replicas recording at once cannot pass the caps together.
    fn add_approval(&self, approval: crate::policy::approvals::Approval) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let json = serde_json::to_string(&approval).map_err(|e| self.fail(e))?;
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| self.fail(e))?;
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1 || E'\\n' || $2, 7))",
                &[&approval.service, &approval.version],
            )
            .await
            .map_err(|e| self.fail(e))?;
            let row = tx
                .query_one(
                    "SELECT COUNT(*), COUNT(*) FILTER (WHERE approval::jsonb ->> 'approver' = $3)
                     FROM approvals WHERE service = $1 AND version = $2",
                    &[&approval.service, &approval.version, &approval.approver],
                )
                .await
                .map_err(|e| self.fail(e))?;
            let count = |n: i64| usize::try_from(n).unwrap_or(usize::MAX);
            if let Some(full) =
                StoreError::approvals_full(&approval, count(row.get(0)), count(row.get(1)))
            {
                return Err(full);
            }
            tx.execute(
                "INSERT INTO approvals (id, service, version, at_ms, approval) VALUES ($1, $2, $3, $4, $5)",
                &[&approval.id, &approval.service, &approval.version, &approval.at_ms, &json],
            )
            .await
            .map_err(|e| self.fail(e))?;
            tx.commit().await.map_err(|e| self.fail(e))?;
            Ok(())
        })
    }

    fn approvals<'a>(
        &'a self,
        service: &'a str,
        version: &'a str,
    ) -> StoreFuture<'a, Vec<crate::policy::approvals::Approval>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT approval FROM approvals WHERE service = $1 AND version = $2 ORDER BY at_ms, id LIMIT $3",
                    &[
                        &service,
                        &version,
                        &i64::try_from(crate::policy::approvals::MAX_PER_RELEASE).unwrap_or(i64::MAX),
                    ],
                )
                .await
                .map_err(|e| self.fail(e))?;
            rows.iter()
                .map(|row| super::decode_approval(&self.shown, row.get(0)))
                .collect()
        })
    }
}
