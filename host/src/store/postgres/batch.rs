//! The commit writer: one task takes the commits waiting and writes them in
//! one transaction, the decisions and blobs of the whole batch as one
//! multi-row insert each, so a batch costs a handful of round trips and one
//! WAL flush however many decisions it holds. Each caller is answered only
//! after that transaction commits.
//!
//! A commit with conditional writes (an idempotency key, trigger state at a
//! version) runs them inside a savepoint: when its key is taken or its
//! state moved, only that commit is rolled back and refused, as it would
//! have been on its own.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use deadpool_postgres::{Pool, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::base::digest::Digest;
use crate::store::{Commit, IdempotencyKey, MAX_KNOWN_BLOBS, StoreError, StoredAnswer};

/// Commits written in one transaction at most.
const MAX_BATCH: usize = 256;
/// Commits that may wait for the writer before callers wait to queue.
pub(super) const QUEUE: usize = 1024;

/// A commit, its record serialised by the caller (so the one writer spends
/// its time on PostgreSQL), and where to answer.
pub(super) type Job = (Box<Commit>, String, oneshot::Sender<Result<(), StoreError>>);

/// What the writer task needs of the store.
#[derive(Clone)]
pub(super) struct Writer {
    pub(super) pool: Pool,
    pub(super) shown: String,
    /// Blobs known to be stored, so their bytes are not sent again.
    pub(super) known: Arc<Mutex<HashSet<Digest>>>,
}

impl Writer {
    fn fail(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable {
            store: self.shown.clone(),
            message: e.to_string(),
        }
    }

    /// Runs until every sender is dropped, a batch at a time.
    pub(super) async fn run(self, mut jobs: mpsc::Receiver<Job>) {
        let mut batch = Vec::new();
        while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let (commits, replies): (Vec<(Box<Commit>, String)>, Vec<_>) = batch
                .drain(..)
                .map(|(commit, json, reply)| ((commit, json), reply))
                .unzip();
            let results = match self.write(&commits).await {
                Ok(results) => results,
                Err(e) => {
                    let message = match e {
                        StoreError::Unavailable { message, .. } => message,
                        other => other.to_string(),
                    };
                    commits.iter().map(|_| Err(self.fail(&message))).collect()
                }
            };
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that gave up waiting is not an error here.
                let _ = reply.send(result);
            }
        }
    }

    /// Writes a batch; per commit, whether it was written. An error for the
    /// whole batch (the connection, the final commit) is returned as such.
    async fn write(
        &self,
        commits: &[(Box<Commit>, String)],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut client = self.pool.get().await.map_err(|e| self.fail(e))?;
        let tx = client.transaction().await.map_err(|e| self.fail(e))?;
        let mut results = Vec::with_capacity(commits.len());
        for (commit, _) in commits {
            if commit.idempotency.is_none() && commit.state.is_empty() {
                results.push(Ok(()));
                continue;
            }
            tx.batch_execute("SAVEPOINT one")
                .await
                .map_err(|e| self.fail(e))?;
            let written = self.conditional(&tx, commit).await;
            let end = if written.is_ok() {
                "RELEASE SAVEPOINT one"
            } else {
                "ROLLBACK TO SAVEPOINT one"
            };
            tx.batch_execute(end).await.map_err(|e| self.fail(e))?;
            results.push(written);
        }
        let kept: Vec<&(Box<Commit>, String)> = commits
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .map(|(c, _)| c)
            .collect();
        if kept.is_empty() {
            tx.commit().await.map_err(|e| self.fail(e))?;
            return Ok(results);
        }
        self.insert_decisions(&tx, &kept).await?;
        self.insert_blobs(&tx, &kept).await?;
        tx.commit().await.map_err(|e| self.fail(e))?;
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Snapshots rarely repeat: the cache is bounded, not one per decision.
        if known.len() > MAX_KNOWN_BLOBS {
            known.clear();
        }
        known.extend(
            kept.iter()
                .flat_map(|(c, _)| c.blobs.iter().map(|b| b.digest)),
        );
        Ok(results)
    }

    /// The idempotency key and the trigger state at the versions read.
    async fn conditional(&self, tx: &Transaction<'_>, commit: &Commit) -> Result<(), StoreError> {
        if let Some(a) = &commit.idempotency {
            let inserted = tx
                .execute(
                    "INSERT INTO idempotency (token_id, policy, key, body, status, response, decision_id, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (token_id, policy, key) DO NOTHING",
                    &[&a.key.token_id, &a.key.policy, &a.key.key, &a.body.to_string(), &i32::from(a.status), &&a.response[..], &a.decision_id, &commit.record.recorded_at_ms],
                )
                .await
                .map_err(|e| self.fail(e))?;
            if inserted == 0 {
                return Err(match self.answer_in(tx, &a.key).await? {
                    Some(e) => StoreError::KeyTaken(Box::new(e)),
                    None => StoreError::Conflict {
                        key: a.key.key.clone(),
                    },
                });
            }
        }
        for w in &commit.state {
            let changed = match w.read {
                None => tx
                    .execute(
                        "INSERT INTO trigger_state (key, state, version) VALUES ($1, $2, 1) ON CONFLICT (key) DO NOTHING",
                        &[&w.key, &w.state],
                    )
                    .await,
                Some(v) => tx
                    .execute(
                        "UPDATE trigger_state SET state = $2, version = version + 1 WHERE key = $1 AND version = $3",
                        &[&w.key, &w.state, &v],
                    )
                    .await,
            }
            .map_err(|e| self.fail(e))?;
            if changed == 0 {
                return Err(StoreError::Conflict { key: w.key.clone() });
            }
        }
        Ok(())
    }

    /// The answer stored under `key`, read inside the batch's transaction.
    async fn answer_in(
        &self,
        tx: &Transaction<'_>,
        key: &IdempotencyKey,
    ) -> Result<Option<StoredAnswer>, StoreError> {
        let row = tx
            .query_opt(
                "SELECT body, status, response, decision_id FROM idempotency WHERE token_id = $1 AND policy = $2 AND key = $3",
                &[&key.token_id, &key.policy, &key.key],
            )
            .await
            .map_err(|e| self.fail(e))?;
        row.map(|r| super::stored_answer(key, &r).map_err(|e| self.fail(e)))
            .transpose()
    }

    /// Every kept decision in one statement: a column an array.
    async fn insert_decisions(
        &self,
        tx: &Transaction<'_>,
        kept: &[&(Box<Commit>, String)],
    ) -> Result<(), StoreError> {
        let column = |f: &dyn Fn(&Commit) -> String| -> Vec<String> {
            kept.iter().map(|(c, _)| f(c)).collect()
        };
        let ids = column(&|c| c.record.decision_id.clone());
        let recorded: Vec<i64> = kept.iter().map(|(c, _)| c.record.recorded_at_ms).collect();
        let taken: Vec<i64> = kept
            .iter()
            .map(|(c, _)| c.record.decision.taken_at)
            .collect();
        let services = column(&|c| c.record.decision.service.clone());
        let versions = column(&|c| c.record.decision.version.clone());
        let policies = column(&|c| c.record.decision.policy.clone());
        let stages = column(&|c| c.record.decision.stage.clone());
        let finals: Vec<bool> = kept.iter().map(|(c, _)| c.record.final_stage).collect();
        let decisions = column(&|c| c.record.decision.decision.as_str().to_string());
        // PostgreSQL's text holds no NUL, and a summary quotes plugin
        // reasons: one such reason must not refuse the whole batch. The
        // record keeps the exact text (JSON escapes it).
        let summaries = column(&|c| c.record.decision.summary.replace('\0', "\u{FFFD}"));
        let oldest: Vec<Option<i64>> = kept.iter().map(|(c, _)| c.record.oldest_commit).collect();
        // A row's blob list as one text (digests hold no comma), split back
        // into an array by the statement: arrays of arrays must be square.
        let blobs = column(&|c| {
            c.blobs
                .iter()
                .map(|b| b.digest.to_string())
                .collect::<Vec<_>>()
                .join(",")
        });
        let records: Vec<&str> = kept.iter().map(|(_, json)| json.as_str()).collect();
        tx.execute(
            "INSERT INTO decisions (decision_id, recorded_at, taken_at, service, version, policy, stage, final_stage, decision, summary, oldest_commit, blobs, record)
             SELECT id, rec, tak, svc, ver, pol, stg, fin, dec, summ, old, string_to_array(bl, ','), rcd
             FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bool[], $9::text[], $10::text[], $11::int8[], $12::text[], $13::text[])
               AS t(id, rec, tak, svc, ver, pol, stg, fin, dec, summ, old, bl, rcd)",
            &[&ids, &recorded, &taken, &services, &versions, &policies, &stages, &finals, &decisions, &summaries, &oldest, &blobs, &records],
        )
        .await
        .map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// The blobs the kept decisions reference that are not stored yet, in
    /// one statement. The cache spares sending blobs this replica stored,
    /// but a prune on any replica may have removed one since: one query
    /// says which are still there, so a record never references a blob
    /// that is gone.
    async fn insert_blobs(
        &self,
        tx: &Transaction<'_>,
        kept: &[&(Box<Commit>, String)],
    ) -> Result<(), StoreError> {
        // In digest order: replicas inserting the same new blobs at once
        // take their row locks in one order, so they cannot deadlock.
        let mut blobs = BTreeMap::new();
        for (commit, _) in kept {
            for blob in &commit.blobs {
                blobs.entry(blob.digest.to_string()).or_insert(blob);
            }
        }
        let cached: Vec<String> = {
            let known = self
                .known
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            blobs
                .iter()
                .filter(|(_, b)| known.contains(&b.digest))
                .map(|(d, _)| d.clone())
                .collect()
        };
        let present: HashSet<String> = if cached.is_empty() {
            HashSet::new()
        } else {
            tx.query(
                "SELECT digest FROM blobs WHERE digest = ANY($1)",
                &[&cached],
            )
            .await
            .map_err(|e| self.fail(e))?
            .iter()
            .map(|r| r.get(0))
            .collect()
        };
        let mut digests = Vec::new();
        let mut kinds = Vec::new();
        let mut bytes: Vec<&[u8]> = Vec::new();
        for (digest, blob) in &blobs {
            if present.contains(digest) {
                continue;
            }
            digests.push(digest.clone());
            kinds.push(blob.kind.as_str());
            bytes.push(&blob.bytes[..]);
        }
        if digests.is_empty() {
            return Ok(());
        }
        tx.execute(
            "INSERT INTO blobs (digest, kind, bytes) SELECT * FROM UNNEST($1::text[], $2::text[], $3::bytea[]) ON CONFLICT (digest) DO NOTHING",
            &[&digests, &kinds, &bytes],
        )
        .await
        .map_err(|e| self.fail(e))?;
        Ok(())
    }
}
