//! `Idempotency-Key`: a retry with the same key and body gets the same
//! decision (and decision id); the same key with another body is refused.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use crate::digest::Digest;

/// What was answered for a key.
#[derive(Debug, Clone)]
pub(super) struct Stored {
    pub(super) body: Digest,
    pub(super) status: u16,
    pub(super) response: std::sync::Arc<[u8]>,
}

/// The outcome of looking a key up.
pub(super) enum Lookup {
    /// Not seen: evaluate, then [`Idempotency::remember`].
    New,
    /// Seen with this body: answer with the stored response.
    Replay(Stored),
    /// Seen with another body.
    Conflict,
}

/// Remembered keys, least recently used evicted past a count or a byte
/// bound, whichever comes first: a response can be large, so the count
/// alone would not bound memory.
pub(super) struct Idempotency {
    entries: Mutex<Entries>,
    max_bytes: usize,
}

struct Entries {
    lru: lru::LruCache<String, Stored>,
    bytes: usize,
}

fn cost(key: &str, stored: &Stored) -> usize {
    key.len() + stored.response.len() + 96
}

impl Idempotency {
    pub(super) fn new(capacity: usize, max_bytes: usize) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            entries: Mutex::new(Entries {
                lru: lru::LruCache::new(cap),
                bytes: 0,
            }),
            max_bytes,
        }
    }

    pub(super) fn lookup(&self, key: &str, body: Digest) -> Lookup {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match entries.lru.get(key) {
            None => Lookup::New,
            Some(s) if s.body == body => Lookup::Replay(s.clone()),
            Some(_) => Lookup::Conflict,
        }
    }

    /// Stores the answer for `key` and returns the answer to give: a
    /// concurrent first request with the same key and body may have won the
    /// race, and then its answer stands, so every retry sees one decision id.
    pub(super) fn remember(&self, key: String, stored: Stored) -> Stored {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(existing) = entries.lru.get(&key)
            && existing.body == stored.body
        {
            return existing.clone();
        }
        if cost(&key, &stored) > self.max_bytes {
            // Larger than the whole store: answer it, remember nothing.
            return stored;
        }
        entries.bytes += cost(&key, &stored);
        if let Some((old_key, old)) = entries.lru.push(key, stored.clone()) {
            entries.bytes -= cost(&old_key, &old);
        }
        while entries.bytes > self.max_bytes {
            let Some((k, v)) = entries.lru.pop_lru() else {
                break;
            };
            entries.bytes -= cost(&k, &v);
        }
        stored
    }

    /// Bytes held, for tests.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(n: usize) -> Stored {
        Stored {
            body: Digest::of(&n.to_le_bytes()),
            status: 200,
            response: vec![b'x'; 100_000].into(),
        }
    }

    #[test]
    fn stored_responses_stay_under_the_byte_bound() {
        let store = Idempotency::new(10_000, 1 << 20);
        for i in 0..1000 {
            store.remember(format!("key-{i}"), stored(i));
        }
        assert!(store.bytes() <= 1 << 20, "{}", store.bytes());
        assert!(matches!(
            store.lookup("key-999", stored(999).body),
            Lookup::Replay(_)
        ));
        assert!(matches!(store.lookup("key-0", stored(0).body), Lookup::New));
    }

    #[test]
    fn the_count_bound_evicts_and_frees_bytes() {
        let store = Idempotency::new(2, 1 << 30);
        for i in 0..10 {
            store.remember(format!("key-{i}"), stored(i));
        }
        assert_eq!(store.bytes(), 2 * cost("key-9", &stored(9)));
    }
}
