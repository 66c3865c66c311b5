//! Verified certificate chains, keyed by their exact bytes, so a known chain
//! costs one signature check instead of five.

use std::sync::Mutex;

use attesta_cache::Lru;

use aws_lc_rs::signature::ParsedPublicKey;

use crate::Platform;
use crate::time::UnixTime;

/// Default bound on cached chains (a Nitro leaf lives ~3 h; a validator sees
/// one leaf per enclave).
pub(crate) const DEFAULT_CAPACITY: usize = 1024;

/// What a verified chain proved.
#[derive(Clone)]
pub(crate) struct ChainFacts {
    /// Latest notBefore in the chain.
    pub not_before: UnixTime,
    /// Earliest notAfter in the chain (inclusive second).
    pub not_after: UnixTime,
    /// COSE (raw r||s) key of the leaf.
    pub leaf_key: ParsedPublicKey,
    /// Platform of the root reached.
    pub platform: Platform,
    /// Name of the root reached.
    pub root: String,
    /// Human summary for the report.
    pub detail: String,
}

/// Facts about a verified chain that hold only inside its validity window.
pub(crate) trait Window {
    /// Latest notBefore and earliest notAfter (inclusive second) of the chain.
    fn window(&self) -> (UnixTime, UnixTime);

    fn valid_at(&self, now: UnixTime) -> bool {
        let (not_before, not_after) = self.window();
        now >= not_before && now.as_millis() < not_after.as_millis().saturating_add(1000)
    }
}

impl Window for ChainFacts {
    fn window(&self) -> (UnixTime, UnixTime) {
        (self.not_before, self.not_after)
    }
}

/// Verified chains (Nitro and SEV-SNP), bounded, valid only inside their window.
pub(crate) struct ChainCache<F = ChainFacts> {
    capacity: usize,
    map: Mutex<Lru<Vec<u8>, F>>,
}

/// The exact bytes of leaf + cabundle, length-prefixed so that different
/// splits of the same bytes cannot collide.
pub(crate) fn key(leaf: &[u8], cabundle: &[Vec<u8>]) -> Vec<u8> {
    let total =
        leaf.len() + cabundle.iter().map(Vec::len).sum::<usize>() + 8 * (cabundle.len() + 1);
    let mut k = Vec::with_capacity(total);
    for c in std::iter::once(leaf).chain(cabundle.iter().map(Vec::as_slice)) {
        k.extend_from_slice(&(c.len() as u64).to_le_bytes());
        k.extend_from_slice(c);
    }
    k
}

impl<F: Window + Clone> ChainCache<F> {
    pub(crate) fn new(capacity: usize) -> Self {
        ChainCache {
            capacity,
            map: Mutex::new(Lru::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru<Vec<u8>, F>> {
        // A panic elsewhere while holding the lock cannot leave a half-written
        // entry (inserts are single calls), so a poisoned map is still sound.
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A cached chain, only if every certificate is valid at `now`.
    pub(crate) fn get(&self, key: &[u8], now: UnixTime) -> Option<F> {
        self.lock().get(key).filter(|f| f.valid_at(now)).cloned()
    }

    /// Caches `facts`; when full, chains no longer valid go first, then the least
    /// recently used.
    pub(crate) fn insert(&self, key: Vec<u8>, facts: F, now: UnixTime) {
        if self.capacity == 0 {
            return;
        }
        let mut map = self.lock();
        if map.len() >= self.capacity {
            map.retain(|_, f| f.valid_at(now));
        }
        while map.len() >= self.capacity && map.pop_lru(|_, _| false).is_some() {}
        let bytes = key.len();
        map.insert(key, facts, bytes);
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}
