//! The one evaluation path: an [`Evaluation`] is evaluated over trigger
//! state, committed to the store with everything needed to replay it, and
//! only then answered. The server, `eval --log`, `tollgate test --log`
//! ([`run`]) and replay ([`Evaluation::evaluate`], [`replay`]) all go through here.
//!
//! State is read before the evaluation and written back with the version
//! read, so a store shared by replicas refuses a second, concurrent advance
//! ([`crate::store::StoreError::Conflict`]); [`run`] then evaluates
//! again over the state that won.

pub mod backtest;
pub mod replay;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::base::digest::Digest;
use crate::evaluate::decision::Decision;
use crate::evaluate::trigger_state::{StateError, StateKey, TriggerState};
use crate::evaluate::{EvalError, Request, evaluate_with};
use crate::policy::LoadedPolicy;
use crate::policy::approvals::Approval;
use crate::snapshot::Snapshot;
use crate::sources::Evidence;
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

    /// The state `held` (a file's, a test case's) has for `keys`, as read,
    /// never to be written back to a store.
    pub fn held(held: &dyn TriggerState, keys: &[StateKey]) -> Result<Self, StateError> {
        let current = keys
            .iter()
            .map(|k| Ok(held.get(k)?.map(|state| Versioned { state, version: 0 })))
            .collect::<Result<Vec<_>, StateError>>()?;
        Ok(Self::new(keys, current, false))
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

impl TriggerState for Prefetched {
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

/// One evaluation, whole: the policy, the snapshot, the approvals on
/// record for its release, what was asked and when it is decided, and who
/// asked. Everything a decision is computed from is here, so the record
/// committed for it can replay it.
#[derive(Clone)]
pub struct Evaluation {
    pub loaded: Arc<LoadedPolicy>,
    pub snapshot: Arc<Snapshot>,
    /// The approvals the store holds for the snapshot's release (empty
    /// when the policy has no approval gates).
    pub approvals: Arc<[Approval]>,
    pub asked: Asked,
    /// When the decision is made, unix seconds (see [`Request::decided_at`]).
    pub decided_at: i64,
    /// Whether `decided_at` was the caller's choice (see [`Request::what_if`]).
    pub what_if: bool,
    pub asker: Asker,
    /// The `Idempotency-Key` in its scope and the digest of the request
    /// body, whose answer the commit stores.
    pub idempotency: Option<(crate::store::IdempotencyKey, Digest)>,
    /// What the snapshot was gathered from, carried into the decision.
    pub evidence: Option<Evidence>,
    /// The snapshot's canonical JSON, made on first use: its digest is the
    /// decision's input digest, and a commit stores it as the snapshot blob,
    /// so it is serialised once per decision.
    pub canonical: OnceLock<Arc<[u8]>>,
}

impl Evaluation {
    /// The snapshot's canonical JSON (see [`Evaluation::canonical`]).
    pub fn canonical(&self) -> &Arc<[u8]> {
        self.canonical.get_or_init(|| {
            serde_json::to_vec(&*self.snapshot)
                .unwrap_or_default()
                .into()
        })
    }

    /// The evaluation's request, as [`evaluate_with`] takes it.
    pub fn request(&self) -> Request<'_> {
        Request {
            stage: self.asked.stage.as_deref(),
            elapsed: self.asked.elapsed(),
            schedule: self.asked.schedule,
            approvals: &self.approvals,
            decided_at: self.decided_at,
            what_if: self.what_if,
            input_digest: Some(Digest::of(self.canonical())),
        }
    }

    /// Evaluates over `state`, with the evidence of what the snapshot was
    /// gathered from: the decision before it is committed.
    pub fn evaluate(&self, state: &mut dyn TriggerState) -> Result<Decision, EvalError> {
        let mut decision = evaluate_with(
            &self.loaded,
            &self.request(),
            Arc::clone(&self.snapshot),
            state,
        )?;
        decision.sources.clone_from(&self.evidence);
        Ok(decision)
    }

    /// The keys of the trigger state this evaluation reads.
    pub fn state_keys(&self) -> Vec<StateKey> {
        state_keys(&self.loaded, &self.snapshot)
    }
}

impl Asked {
    /// What a caller asked: `elapsed` is kept to the millisecond, as
    /// [`Asked::elapsed`] gives it back to the evaluation and to replay.
    pub fn new(
        stage: Option<String>,
        elapsed: Option<Duration>,
        schedule: crate::evaluate::Schedule,
        advance_state: bool,
    ) -> Self {
        Self {
            stage,
            elapsed_ms: elapsed.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            schedule,
            advance_state,
        }
    }

    /// The time already spent in the stage, as asked.
    pub fn elapsed(&self) -> Option<Duration> {
        self.elapsed_ms.map(Duration::from_millis)
    }
}

/// Where the trigger state an evaluation reads comes from.
#[derive(Debug)]
pub enum StateFrom {
    /// The store, read afresh for every attempt; with `advance`, the
    /// triggers' new state is written back with the version read.
    Store { advance: bool },
    /// State the caller holds (a test case's, a `--state` file's): recorded
    /// as read, while the store's is neither read nor written.
    Held(Prefetched),
}

/// What [`run`] answers with.
#[derive(Debug)]
pub enum Committed {
    /// A new decision, committed.
    Fresh(Box<Decision>),
    /// The answer an earlier request with the same idempotency key got
    /// (on this replica or another); nothing new was committed.
    Replayed(StoredAnswer),
}

/// Evaluates, commits, and only then answers: the one path every logged
/// decision takes. `run` evaluates once over the state it is given (the
/// server runs it on a worker, the CLI in place) and hands the state back
/// with what the triggers wrote. When the store's state was advanced
/// concurrently, the evaluation runs again over the state that won, up to
/// [`MAX_ATTEMPTS`] times; a decision is never answered uncommitted.
pub async fn run<E, F, Fut>(
    store: &dyn Store,
    evaluation: Arc<Evaluation>,
    state: StateFrom,
    mut run: F,
) -> Result<Committed, E>
where
    E: From<StoreError>,
    F: FnMut(Arc<Evaluation>, Prefetched) -> Fut,
    Fut: Future<Output = Result<(Decision, Prefetched), E>>,
{
    let keys = evaluation.state_keys();
    let (advance, mut held) = match state {
        StateFrom::Store { advance } => (advance, None),
        StateFrom::Held(p) => (false, Some(p)),
    };
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(backoff(attempt)).await;
        }
        let read = match held.take() {
            Some(p) => p,
            None => Prefetched::load(store, &keys, advance).await?,
        };
        let (mut decision, state) = run(Arc::clone(&evaluation), read).await?;
        let commit = commit_for(&mut decision, &evaluation, state);
        match store.commit(commit).await {
            Ok(()) => return Ok(Committed::Fresh(Box::new(decision))),
            Err(StoreError::Conflict { key }) if advance => {
                tracing::debug!(key = %key, "trigger state advanced concurrently; evaluating again");
            }
            Err(StoreError::KeyTaken(answer)) => return Ok(Committed::Replayed(*answer)),
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict {
        key: keys.first().map(ToString::to_string).unwrap_or_default(),
    }
    .into())
}

/// Gives `decision` its id and builds what committing it writes: the
/// record, every blob it references (the approvals it judged among them),
/// the new trigger state and the idempotency answer, if any.
pub fn commit_for(decision: &mut Decision, evaluation: &Evaluation, state: Prefetched) -> Commit {
    let Evaluation {
        loaded,
        snapshot,
        approvals,
        asked,
        asker,
        idempotency,
        ..
    } = evaluation;
    let id = uuid::Uuid::now_v7().to_string();
    decision.decision_id = Some(id.clone());
    // The snapshot's canonical JSON: its digest is the decision's input
    // digest, so it needs no hashing here and replay can check it.
    let body = Arc::clone(evaluation.canonical());
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
        for approval in approvals.iter() {
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
        asked: asked.clone(),
        policy_text: loaded.digest,
        snapshot_body: decision.digests.input,
        state_in: state.state_in(),
        state_versions: state.versions(),
        final_stage,
        oldest_commit: snapshot.commits.iter().map(|c| c.timestamp).min(),
        trace_id: asker.trace_id.clone(),
        token_id: asker.token_id.clone(),
        decision: decision.clone(),
    };
    let idempotency = idempotency.clone().map(|(key, body)| StoredAnswer {
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
