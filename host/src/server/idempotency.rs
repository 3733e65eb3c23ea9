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

/// Remembered keys, least recently used evicted.
pub(super) struct Idempotency {
    entries: Mutex<lru::LruCache<String, Stored>>,
}

impl Idempotency {
    pub(super) fn new(capacity: usize) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            entries: Mutex::new(lru::LruCache::new(cap)),
        }
    }

    pub(super) fn lookup(&self, key: &str, body: Digest) -> Lookup {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match entries.get(key) {
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
        if let Some(existing) = entries.get(&key)
            && existing.body == stored.body
        {
            return existing.clone();
        }
        entries.put(key, stored.clone());
        stored
    }
}
