//! `--store memory`: trigger state and idempotency keys in this process,
//! under byte bounds, and no decision log. For one replica that can lose
//! its state on restart, and as the baseline the durable stores are
//! measured against.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use super::{
    Commit, Filter, IdempotencyKey, Pruned, Record, StateWrite, Store, StoreError, StoreFuture,
    StoredAnswer, Summary, TOKEN_KEY_BYTES, Versioned,
};
use crate::base::digest::Digest;

/// Trigger state bytes kept (64 MiB).
pub const DEFAULT_STATE_BYTES: usize = 64 << 20;
/// Idempotency keys remembered.
pub const DEFAULT_KEYS: usize = 10_000;
/// Bytes of stored idempotent responses (64 MiB).
pub const DEFAULT_KEY_BYTES: usize = 64 << 20;

/// State and keys in memory, least recently used evicted past the bounds
/// (with a warning for state: an evicted circuit breaker starts closed).
pub struct MemoryStore {
    state: Mutex<Bounded<Versioned>>,
    keys: Mutex<Bounded<StoredAnswer>>,
    /// Approvals, oldest first; the oldest go past [`MAX_APPROVALS`].
    approvals: Mutex<std::collections::VecDeque<crate::policy::approvals::Approval>>,
    /// This process's secret for token ids.
    token_key: [u8; TOKEN_KEY_BYTES],
}

/// An idempotency key as the in-memory map holds it: its scope and the key,
/// joined by NUL, which none of them can hold (header values are visible
/// ASCII, token ids and policy names are plain words).
fn scoped(key: &IdempotencyKey) -> String {
    format!("{}\0{}\0{}", key.token_id, key.policy, key.key)
}

/// Approvals a memory store keeps.
const MAX_APPROVALS: usize = 100_000;

/// An LRU map bounded by a count and by bytes, whichever comes first.
struct Bounded<V> {
    lru: lru::LruCache<String, V>,
    bytes: usize,
    max_bytes: usize,
    cost: fn(&str, &V) -> usize,
}

impl<V> Bounded<V> {
    /// At most `count` entries (`None`: only the byte bound) and `max_bytes`.
    fn new(count: Option<usize>, max_bytes: usize, cost: fn(&str, &V) -> usize) -> Self {
        Self {
            lru: match count {
                Some(n) => {
                    lru::LruCache::new(NonZeroUsize::new(n.max(1)).unwrap_or(NonZeroUsize::MIN))
                }
                None => lru::LruCache::unbounded(),
            },
            bytes: 0,
            max_bytes,
            cost,
        }
    }

    /// Inserts, then evicts down to the bounds; returns the evicted keys.
    fn put(&mut self, key: String, value: V) -> Vec<String> {
        let mut evicted = Vec::new();
        if (self.cost)(&key, &value) > self.max_bytes {
            return vec![key];
        }
        self.bytes += (self.cost)(&key, &value);
        if let Some((old_key, old)) = self.lru.push(key.clone(), value) {
            self.bytes -= (self.cost)(&old_key, &old);
            if old_key != key {
                evicted.push(old_key);
            }
        }
        while self.bytes > self.max_bytes {
            let Some((k, v)) = self.lru.pop_lru() else {
                break;
            };
            self.bytes -= (self.cost)(&k, &v);
            evicted.push(k);
        }
        evicted
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(DEFAULT_STATE_BYTES, DEFAULT_KEYS, DEFAULT_KEY_BYTES)
    }
}

impl MemoryStore {
    pub fn new(state_bytes: usize, keys: usize, key_bytes: usize) -> Self {
        Self {
            state: Mutex::new(Bounded::new(None, state_bytes, |k, v: &Versioned| {
                k.len() + v.state.len() + 64
            })),
            keys: Mutex::new(Bounded::new(
                Some(keys),
                key_bytes,
                |k, v: &StoredAnswer| k.len() + v.response.len() + 96,
            )),
            approvals: Mutex::default(),
            token_key: super::new_token_key(),
        }
    }

    fn check(&self, writes: &[StateWrite]) -> Result<(), StoreError> {
        let mut state = lock(&self.state);
        for w in writes {
            let current = state.lru.get(&w.key).map(|v| v.version);
            if current != w.read {
                return Err(StoreError::Conflict { key: w.key.clone() });
            }
        }
        Ok(())
    }

    /// Bytes of trigger state held, for tests.
    #[cfg(test)]
    fn state_bytes(&self) -> usize {
        lock(&self.state).bytes
    }
}

impl Store for MemoryStore {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn logs_decisions(&self) -> bool {
        false
    }

    fn read_state<'a>(&'a self, keys: &'a [String]) -> StoreFuture<'a, Vec<Option<Versioned>>> {
        let mut state = lock(&self.state);
        let found = keys.iter().map(|k| state.lru.get(k).cloned()).collect();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn answer<'a>(&'a self, key: &'a IdempotencyKey) -> StoreFuture<'a, Option<StoredAnswer>> {
        let found = lock(&self.keys).lru.get(&scoped(key)).cloned();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn token_key(&self) -> [u8; TOKEN_KEY_BYTES] {
        self.token_key
    }

    fn commit(&self, commit: Commit) -> StoreFuture<'_, ()> {
        let result = (|| {
            if let Some(answer) = &commit.idempotency
                && let Some(existing) = lock(&self.keys).lru.get(&scoped(&answer.key))
            {
                return Err(StoreError::KeyTaken(Box::new(existing.clone())));
            }
            self.check(&commit.state)?;
            let mut state = lock(&self.state);
            for w in commit.state {
                let version = w.read.unwrap_or(0) + 1;
                for k in state.put(
                    w.key,
                    Versioned {
                        state: w.state,
                        version,
                    },
                ) {
                    tracing::warn!(key = %k, "trigger state evicted: the in-memory bound is reached");
                }
            }
            drop(state);
            if let Some(answer) = commit.idempotency {
                lock(&self.keys).put(scoped(&answer.key), answer);
            }
            Ok(())
        })();
        Box::pin(std::future::ready(result))
    }

    fn decision<'a>(&'a self, _id: &'a str) -> StoreFuture<'a, Option<Record>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    fn list<'a>(&'a self, _filter: &'a Filter) -> StoreFuture<'a, Vec<Summary>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    fn count<'a>(&'a self, _filter: &'a Filter) -> StoreFuture<'a, usize> {
        Box::pin(std::future::ready(Ok(0)))
    }

    fn blob<'a>(&'a self, _digest: &'a Digest) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    fn prune(&self, _before_ms: i64) -> StoreFuture<'_, Pruned> {
        Box::pin(std::future::ready(Ok(Pruned::default())))
    }

    fn add_approval(&self, approval: crate::policy::approvals::Approval) -> StoreFuture<'_, ()> {
        let mut all = lock(&self.approvals);
        let same = |a: &&crate::policy::approvals::Approval| {
            a.service == approval.service && a.version == approval.version
        };
        let release = all.iter().filter(same).count();
        let by_approver = all
            .iter()
            .filter(same)
            .filter(|a| a.approver == approval.approver)
            .count();
        let result = match StoreError::approvals_full(&approval, release, by_approver) {
            Some(full) => Err(full),
            None => {
                if all.len() >= MAX_APPROVALS {
                    all.pop_front();
                }
                all.push_back(approval);
                Ok(())
            }
        };
        Box::pin(std::future::ready(result))
    }

    fn approvals<'a>(
        &'a self,
        service: &'a str,
        version: &'a str,
    ) -> StoreFuture<'a, Vec<crate::policy::approvals::Approval>> {
        let found = lock(&self.approvals)
            .iter()
            .filter(|a| a.service == service && a.version == version)
            .take(crate::policy::approvals::MAX_PER_RELEASE)
            .cloned()
            .collect();
        Box::pin(std::future::ready(Ok(found)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(key: &str, read: Option<i64>, bytes: usize) -> StateWrite {
        StateWrite {
            key: key.into(),
            read,
            state: vec![0u8; bytes],
        }
    }

    fn commit_state(writes: Vec<StateWrite>) -> Commit {
        Commit {
            record: crate::store::sqlite::tests::record("x"),
            blobs: Vec::new(),
            state: writes,
            idempotency: None,
        }
    }

    fn block_on<T>(f: StoreFuture<'_, T>) -> Result<T, StoreError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| StoreError::Invalid {
                store: "test".into(),
                message: e.to_string(),
            })?
            .block_on(f)
    }

    #[test]
    fn trigger_state_stays_under_its_byte_bound() {
        let store = MemoryStore::new(1 << 20, 10, 1 << 20);
        for i in 0..2000 {
            block_on(store.commit(commit_state(vec![write(&format!("k{i}"), None, 64 << 10)])))
                .unwrap();
        }
        assert!(store.state_bytes() <= 1 << 20, "{}", store.state_bytes());
        let keys = vec!["k1999".to_string(), "k0".to_string()];
        let found = block_on(store.read_state(&keys)).unwrap();
        assert!(found[0].is_some(), "the newest state is kept");
        assert!(found[1].is_none(), "the oldest state is evicted");
    }

    #[test]
    fn a_stale_version_is_a_conflict() {
        let store = MemoryStore::new(1 << 20, 10, 1 << 20);
        block_on(store.commit(commit_state(vec![write("k", None, 1)]))).unwrap();
        let e = block_on(store.commit(commit_state(vec![write("k", None, 1)]))).unwrap_err();
        assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
        block_on(store.commit(commit_state(vec![write("k", Some(1), 1)]))).unwrap();
    }
}
