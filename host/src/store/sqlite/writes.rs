//! The statements the writer thread runs: one decision's commit, an
//! approval, a prune. A refusal (stale trigger state, a key already
//! answered, a release at its cap) is [`Error::Store`]; a database failure
//! is [`Error::Sqlite`].

use std::collections::HashSet;

use rusqlite::{Connection, params};

use super::Error;
use crate::base::digest::Digest;
use crate::policy::approvals::Approval;
use crate::store::{Commit, Pruned, StoreError};

/// Writes one decision, its blobs, trigger state and idempotency key, on a
/// connection inside the caller's transaction (a savepoint of the batch).
/// `known` are blobs this writer stored; `written` gets the ones it stores.
pub(super) fn commit(
    conn: &Connection,
    commit: &Commit,
    json: &str,
    known: &HashSet<Digest>,
    written: &mut Vec<Digest>,
) -> Result<(), Error> {
    if let Some(answer) = &commit.idempotency
        && let Some(existing) = super::reads::answer(conn, &answer.key)?
    {
        return Err(StoreError::KeyTaken(Box::new(existing)).into());
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
            return Err(StoreError::Conflict { key: w.key.clone() }.into());
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
    Ok(())
}

/// Records an approval unless its release, or its approver on that release,
/// is at the cap: counted and inserted in one immediate transaction, so
/// neither this writer's batches nor another process can pass it together.
pub(super) fn add_approval(conn: &Connection, approval: &Approval) -> Result<(), Error> {
    let json = serde_json::to_string(approval)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let (release, by_approver): (i64, i64) = tx.query_row(
        "SELECT COUNT(*), COALESCE(SUM(json_extract(approval, '$.approver') = ?3), 0)
         FROM approvals WHERE service = ?1 AND version = ?2",
        params![approval.service, approval.version, approval.approver],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let count = |n: i64| usize::try_from(n).unwrap_or(usize::MAX);
    if let Some(full) = StoreError::approvals_full(approval, count(release), count(by_approver)) {
        return Err(full.into());
    }
    tx.execute(
        "INSERT INTO approvals (id, service, version, at_ms, approval) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            approval.id,
            approval.service,
            approval.version,
            approval.at_ms,
            json
        ],
    )?;
    tx.commit()?;
    Ok(())
}

/// Removes records committed before `before_ms`, old approvals, their
/// idempotency keys and blobs no remaining record references.
pub(super) fn prune(conn: &mut Connection, before_ms: i64) -> Result<Pruned, Error> {
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
