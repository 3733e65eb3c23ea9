//! The queries readers run, each on its own connection beside the writer.

use rusqlite::{Connection, OptionalExtension, params};

use super::Error;
use crate::base::digest::Digest;
use crate::policy::approvals::Approval;
use crate::store::{Filter, IdempotencyKey, Record, StoredAnswer, Summary, Versioned};

/// The current state of each key, in order.
pub(super) fn state(conn: &Connection, keys: &[String]) -> Result<Vec<Option<Versioned>>, Error> {
    let mut stmt =
        conn.prepare_cached("SELECT state, version FROM trigger_state WHERE key = ?1")?;
    keys.iter()
        .map(|k| {
            let found = stmt
                .query_row([k], |r| {
                    Ok(Versioned {
                        state: r.get(0)?,
                        version: r.get(1)?,
                    })
                })
                .optional()?;
            Ok(found)
        })
        .collect()
}

/// The answer stored for one scoped key; the writer asks it too, inside
/// the transaction that would store one.
pub(super) fn answer(
    conn: &Connection,
    key: &IdempotencyKey,
) -> rusqlite::Result<Option<StoredAnswer>> {
    conn.prepare_cached(
        "SELECT token_id, policy, key, body, status, response, decision_id FROM idempotency WHERE token_id = ?1 AND policy = ?2 AND key = ?3",
    )?
    .query_row(params![key.token_id, key.policy, key.key], answer_row)
    .optional()
}

fn answer_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredAnswer> {
    let body: String = row.get(3)?;
    let response: Vec<u8> = row.get(5)?;
    Ok(StoredAnswer {
        key: IdempotencyKey {
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

/// One record.
pub(super) fn decision(conn: &Connection, shown: &str, id: &str) -> Result<Option<Record>, Error> {
    let json: Option<String> = conn
        .query_row(
            "SELECT record FROM decisions WHERE decision_id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?;
    let record = json
        .map(|j| crate::store::decode_record(shown, id, &j))
        .transpose()?;
    Ok(record)
}

/// Summaries newest first, at most `filter.limit`.
/// The `WHERE` clause of a listing (without the cursor) and its arguments.
fn filtered(filter: &Filter) -> (String, Vec<rusqlite::types::Value>) {
    let mut sql = String::from(" WHERE 1 = 1");
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
    (sql, args)
}

pub(super) fn list(conn: &Connection, filter: &Filter) -> Result<Vec<Summary>, Error> {
    let (clause, mut args) = filtered(filter);
    let mut sql = format!(
        "SELECT decision_id, recorded_at, taken_at, service, version, policy, stage, final_stage, decision, summary, oldest_commit FROM decisions{clause}"
    );
    // Both orders walk the `decisions_order` index, one of them backwards.
    let (past, order) = if filter.oldest_first {
        (">", "ASC")
    } else {
        ("<", "DESC")
    };
    if let Some(c) = &filter.cursor {
        args.push(c.taken_at.into());
        let t = args.len();
        args.push(c.decision_id.clone().into());
        let id = args.len();
        sql.push_str(&format!(
            " AND (taken_at {past} ?{t} OR (taken_at = ?{t} AND decision_id {past} ?{id}))"
        ));
    }
    args.push(i64::try_from(filter.limit).unwrap_or(i64::MAX).into());
    sql.push_str(&format!(
        " ORDER BY taken_at {order}, decision_id {order} LIMIT ?{}",
        args.len()
    ));
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), summary_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// How many decisions `filter` selects (its cursor and limit aside).
pub(super) fn count(conn: &Connection, filter: &Filter) -> Result<usize, Error> {
    let (clause, args) = filtered(filter);
    let n: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM decisions{clause}"),
        rusqlite::params_from_iter(args),
        |r| r.get(0),
    )?;
    Ok(usize::try_from(n).unwrap_or(0))
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

/// A blob's bytes, checked against its digest.
pub(super) fn blob(conn: &Connection, digest: &Digest) -> Result<Option<Vec<u8>>, Error> {
    let found: Option<(String, Vec<u8>)> = conn
        .query_row(
            "SELECT kind, bytes FROM blobs WHERE digest = ?1",
            [digest.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let bytes = found
        .map(|(kind, bytes)| crate::store::verify(&kind, digest, &bytes).map(|()| bytes))
        .transpose()?;
    Ok(bytes)
}

/// The approvals on record for one release, oldest first.
pub(super) fn approvals(
    conn: &Connection,
    shown: &str,
    service: &str,
    version: &str,
) -> Result<Vec<Approval>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT approval FROM approvals WHERE service = ?1 AND version = ?2 ORDER BY at_ms, id LIMIT ?3",
    )?;
    let rows = stmt.query_map(
        params![
            service,
            version,
            i64::try_from(crate::policy::approvals::MAX_PER_RELEASE).unwrap_or(i64::MAX)
        ],
        |r| r.get::<_, String>(0),
    )?;
    rows.map(|row| Ok(crate::store::decode_approval(shown, &row?)?))
        .collect()
}
