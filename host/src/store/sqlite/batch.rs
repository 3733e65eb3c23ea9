//! The writer thread: it takes the jobs waiting, applies each commit inside
//! a savepoint of one transaction, and commits that transaction once (group
//! commit), so a batch costs one fsync. Each caller is answered only after
//! that commit.

use std::collections::HashSet;
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{Error, writes};
use crate::base::digest::Digest;
use crate::policy::approvals::Approval;
use crate::store::{Commit, MAX_KNOWN_BLOBS, Pruned, StoreError};

/// Commits taken into one transaction at most.
const MAX_BATCH: usize = 256;

/// What the writer thread is asked to do, with where to send the answer.
pub(super) enum Job {
    /// A commit with its record already serialised, so the one writer
    /// thread spends its time on SQLite only.
    Commit(Box<Commit>, String, oneshot::Sender<Result<(), StoreError>>),
    Prune(i64, oneshot::Sender<Result<Pruned, StoreError>>),
    Approve(Box<Approval>, oneshot::Sender<Result<(), StoreError>>),
}

/// Runs until every sender is dropped: batches waiting commits into one
/// transaction, and runs prunes and approvals as they come.
pub(super) fn run(mut conn: Connection, jobs: &mpsc::Receiver<Job>, shown: &str) {
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
                    let _ = reply.send(writes::prune(&mut conn, before).map_err(|e| e.at(shown)));
                }
                Job::Approve(approval, reply) => {
                    let _ =
                        reply.send(writes::add_approval(&conn, &approval).map_err(|e| e.at(shown)));
                }
            }
        }
        if commits.is_empty() {
            continue;
        }
        let mut written = Vec::new();
        let pending = commits.iter().map(|(c, json, _)| (&**c, json.as_str()));
        match commit_batch(&mut conn, pending, &known_blobs, &mut written) {
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

/// One transaction for the batch, a savepoint per commit: a commit the
/// store refuses is rolled back alone and answered with its refusal. A
/// database failure fails the whole batch (nothing of it was committed).
fn commit_batch<'c>(
    conn: &mut Connection,
    commits: impl Iterator<Item = (&'c Commit, &'c str)>,
    known: &HashSet<Digest>,
    written: &mut Vec<Digest>,
) -> rusqlite::Result<Vec<Result<(), StoreError>>> {
    let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut results = Vec::new();
    for (commit, json) in commits {
        let mut sp = tx.savepoint()?;
        match writes::commit(&sp, commit, json, known, written) {
            Ok(()) => {
                sp.commit()?;
                results.push(Ok(()));
            }
            Err(Error::Store(refused)) => {
                sp.rollback()?;
                drop(sp);
                results.push(Err(refused));
            }
            Err(Error::Sqlite(e)) => return Err(e),
        }
    }
    tx.set_drop_behavior(rusqlite::DropBehavior::Commit);
    tx.commit()?;
    Ok(results)
}
