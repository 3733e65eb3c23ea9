//! Evaluations that leave evidence: the trigger state an evaluation reads
//! from the store, and the record it commits there before it is reported.
//!
//! State is read before the evaluation and written back with the version
//! read, so a store shared by replicas refuses a second, concurrent advance
//! ([`crate::store::StoreError::Conflict`]); the caller then evaluates
//! again over the state that won.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::decision::Decision;
use crate::digest::Digest;
use crate::policy::LoadedPolicy;
use crate::snapshot::Snapshot;
use crate::state::{StateError, StateKey, StateStore};
use crate::store::{
    Asked, Blob, BlobKind, Commit, Record, StateWrite, Store, StoreError, StoredAnswer, Versioned,
};

/// How many times an evaluation is retried when its trigger state was
/// advanced concurrently, before the caller is told to retry later.
pub const MAX_ATTEMPTS: usize = 16;

/// A short random pause before evaluating again after a conflict, growing
/// with the attempt, so evaluations racing for one breaker spread out.
pub fn backoff(attempt: usize) -> std::time::Duration {
    let jitter = u64::try_from(uuid::Uuid::new_v4().as_u128() % 1000).unwrap_or(0);
    let attempt = u64::try_from(attempt.min(10)).unwrap_or(10);
    std::time::Duration::from_micros(500 * attempt + jitter * attempt.max(1))
}

/// The keys of the policy's triggers for the snapshot's service.
pub fn state_keys(loaded: &LoadedPolicy, snapshot: &Snapshot) -> Vec<StateKey> {
    loaded
        .policy
        .triggers
        .iter()
        .map(|t| StateKey {
            policy: loaded.policy.name.to_string(),
            service: snapshot.service.clone(),
            trigger: t.name.to_string(),
        })
        .collect()
}

/// Trigger state read from the store for one evaluation; what the
/// triggers write is collected, with the version each replaces.
#[derive(Debug, Clone, Default)]
pub struct Prefetched {
    read: BTreeMap<String, (String, Option<Versioned>)>,
    writes: Vec<StateWrite>,
    advance: bool,
}

impl Prefetched {
    /// The state `current` holds for `keys` (as [`Store::read_state`]
    /// returned it). Without `advance`, new state is dropped.
    pub fn new(keys: &[StateKey], current: Vec<Option<Versioned>>, advance: bool) -> Self {
        Self {
            read: keys
                .iter()
                .zip(current)
                .map(|(k, v)| (k.to_string(), (k.trigger.clone(), v)))
                .collect(),
            writes: Vec::new(),
            advance,
        }
    }

    /// Reads the state of `keys` from `store`.
    pub async fn load(
        store: &dyn Store,
        keys: &[StateKey],
        advance: bool,
    ) -> Result<Self, StoreError> {
        let names: Vec<String> = keys.iter().map(ToString::to_string).collect();
        let current = store.read_state(&names).await?;
        Ok(Self::new(keys, current, advance))
    }

    /// The version of each trigger's state read, by trigger name.
    pub fn versions(&self) -> BTreeMap<String, i64> {
        self.read
            .values()
            .filter_map(|(trigger, v)| v.as_ref().map(|v| (trigger.clone(), v.version)))
            .collect()
    }

    /// Each trigger's state before the evaluation, hex, by trigger name.
    pub fn state_in(&self) -> BTreeMap<String, String> {
        self.read
            .values()
            .filter_map(|(trigger, v)| v.as_ref().map(|v| (trigger.clone(), hex::encode(&v.state))))
            .collect()
    }
}

impl StateStore for Prefetched {
    fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self
            .read
            .get(&key.to_string())
            .and_then(|(_, v)| v.as_ref().map(|v| v.state.clone())))
    }

    fn put(&mut self, key: &StateKey, state: Vec<u8>) -> Result<(), StateError> {
        if self.advance {
            let name = key.to_string();
            let read = self
                .read
                .get(&name)
                .and_then(|(_, v)| v.as_ref().map(|v| v.version));
            self.writes.push(StateWrite {
                key: name,
                read,
                state,
            });
        }
        Ok(())
    }
}

/// Who asked, for the record.
#[derive(Debug, Clone, Default)]
pub struct Asker {
    pub token_id: Option<String>,
    pub trace_id: Option<String>,
}

/// Gives `decision` its id and builds what committing it writes: the
/// record, every blob it references (the approvals it judged among them),
/// the new trigger state and the idempotency answer (`key`, request body
/// digest), if any.
#[expect(
    clippy::too_many_arguments,
    reason = "one commit's whole input; issue 21 folds these into one evaluation path"
)]
pub fn commit_for(
    decision: &mut Decision,
    loaded: &LoadedPolicy,
    snapshot: &Snapshot,
    approvals: &[crate::approvals::Approval],
    asked: Asked,
    state: Prefetched,
    asker: Asker,
    idempotency: Option<(crate::store::IdempotencyKey, Digest)>,
) -> Commit {
    let id = uuid::Uuid::now_v7().to_string();
    decision.decision_id = Some(id.clone());
    // The snapshot's canonical JSON: its digest is the decision's input
    // digest, so it needs no hashing here and replay can check it.
    let body: Arc<[u8]> = serde_json::to_vec(snapshot).unwrap_or_default().into();
    let mut blobs = vec![
        Blob {
            digest: loaded.digest,
            kind: BlobKind::Policy,
            bytes: Arc::<[u8]>::from(Arc::clone(&loaded.text)),
        },
        Blob {
            digest: decision.digests.input,
            kind: BlobKind::Snapshot,
            bytes: body,
        },
    ];
    if !decision.approvals.is_empty() {
        for approval in approvals {
            let bytes: Arc<[u8]> = approval.canonical().into();
            let digest = Digest::of(&bytes);
            if !blobs.iter().any(|b| b.digest == digest) {
                blobs.push(Blob {
                    digest,
                    kind: BlobKind::Approval,
                    bytes,
                });
            }
        }
    }
    for plugin in loaded.plugins.values() {
        if !blobs.iter().any(|b| b.digest == plugin.digest()) {
            blobs.push(Blob {
                digest: plugin.digest(),
                kind: BlobKind::Plugin,
                bytes: Arc::clone(plugin.bytes()),
            });
        }
    }
    let final_stage = loaded
        .policy
        .stages
        .last()
        .is_some_and(|s| s.name.as_str() == decision.stage);
    let record = Record {
        decision_id: id.clone(),
        recorded_at_ms: crate::store::now_ms(),
        asked,
        policy_text: loaded.digest,
        snapshot_body: decision.digests.input,
        state_in: state.state_in(),
        state_versions: state.versions(),
        final_stage,
        oldest_commit: snapshot.commits.iter().map(|c| c.timestamp).min(),
        trace_id: asker.trace_id,
        token_id: asker.token_id,
        decision: decision.clone(),
    };
    let idempotency = idempotency.map(|(key, body)| StoredAnswer {
        key,
        body,
        status: 200,
        response: serde_json::to_vec(&*decision).unwrap_or_default().into(),
        decision_id: id,
    });
    Commit {
        record,
        blobs,
        state: state.writes,
        idempotency,
    }
}
