//! The node's replay memory: every accepted request is accepted once, and
//! the memory is bounded without ever letting an unauthenticated client make
//! genuine requests fail.
//!
//! **Window.** A request is fresh when its `issued_at` (client clock, Unix
//! seconds) lies in `[now − max_age, now + max_skew]` (defaults 60 s and
//! 10 s) *and* above the low-water mark (below). A replay carries the same
//! ciphertext, hence the same `issued_at`, so it can only be accepted while
//! that window is open; the memory need only cover it.
//!
//! **What is remembered.** 16 bytes of SHA-256 of the request's HPKE `enc`
//! (fresh per request; a valid envelope with a chosen `enc` needs its private
//! key, so colliding with someone else's request costs ~2^128 work), filed
//! under the request's `issued_at` second. Whole seconds expire together.
//!
//! **Charged only for requests that will run.** The node opens, validates,
//! resolves the model and parses the inputs first, and calls
//! [`ReplayGuard::check_and_insert`] (atomic: exactly one of two concurrent
//! duplicates wins) right before running the model. Envelopes for a missing
//! model, malformed inputs, or anything that does not decrypt never touch
//! the memory, so filling it costs one real inference per entry.
//!
//! **No `busy` state.** When the memory is full the *oldest* second is
//! forgotten and the low-water mark rises to it: anything issued at or
//! before that second is refused as stale from then on (a forgotten request
//! can never be replayed: fails closed). Every removal — eviction or normal
//! expiry — raises the mark, so the invariant "every accepted request is
//! remembered or lies at or below the mark" holds whatever the clock does.
//! Genuine requests issued now stay above the mark unless an attacker gets
//! `capacity` requests *run* inside one window (~17,000 inferences/s for
//! the default 2^20 entries and 70 s); even then a request only fails in
//! the second its bucket is evicted, and a retry sealed a second later
//! passes. Memory: about 20–40 bytes per entry (≤ ~40 MiB at the default).

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use crate::plaintext::RequestError;
use crate::{UnixTime, sha256};

/// Default oldest accepted `issued_at`, relative to the node clock.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60);
/// Default tolerance for client clocks ahead of the node's.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(10);
/// Default number of remembered requests (see the module doc for the cost).
pub const DEFAULT_CAPACITY: usize = 1 << 20;

/// How long and how much the replay memory remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayConfig {
    /// Oldest accepted `issued_at` is `now − max_age`.
    pub max_age: Duration,
    /// Newest accepted `issued_at` is `now + max_skew`.
    pub max_skew: Duration,
    /// Remembered requests at most; beyond it the oldest second is forgotten.
    pub capacity: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            max_age: DEFAULT_MAX_AGE,
            max_skew: DEFAULT_MAX_SKEW,
            capacity: DEFAULT_CAPACITY,
        }
    }
}

/// What identifies one request to the memory: its claimed issue second and
/// 16 bytes of SHA-256 of its HPKE `enc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplayId {
    issued_at: u64,
    key: [u8; 16],
}

impl ReplayId {
    /// The id of a request with this `enc` and `issued_at`.
    pub fn new(enc: &[u8; 32], issued_at: u64) -> Self {
        let digest = sha256(enc);
        let mut key = [0u8; 16];
        let (head, _) = digest.split_at(16);
        key.copy_from_slice(head);
        ReplayId { issued_at, key }
    }

    /// The claimed issue time (Unix seconds).
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }
}

#[derive(Default)]
struct Memory {
    /// Remembered keys by `issued_at` second.
    seconds: BTreeMap<u64, HashSet<[u8; 16]>>,
    len: usize,
    /// Every forgotten request was issued at or before this second.
    low_water: Option<u64>,
}

impl Memory {
    fn forget_oldest(&mut self) {
        if let Some((second, keys)) = self.seconds.pop_first() {
            self.len = self.len.saturating_sub(keys.len());
            self.low_water = Some(self.low_water.map_or(second, |l| l.max(second)));
        }
    }

    fn expire(&mut self, oldest_fresh: u64) {
        while self
            .seconds
            .first_key_value()
            .is_some_and(|(&s, _)| s < oldest_fresh)
        {
            self.forget_oldest();
        }
    }
}

/// The replay memory. Shareable (`&self` methods, internal lock).
pub struct ReplayGuard {
    config: ReplayConfig,
    memory: Mutex<Memory>,
}

impl std::fmt::Debug for ReplayGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayGuard")
            .field("config", &self.config)
            .field("len", &self.len())
            .field("low_water", &self.low_water_mark())
            .finish()
    }
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::new(ReplayConfig::default())
    }
}

impl ReplayGuard {
    /// An empty memory with `config`.
    pub fn new(config: ReplayConfig) -> Self {
        ReplayGuard {
            config,
            memory: Mutex::new(Memory::default()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> ReplayConfig {
        self.config
    }

    /// Number of remembered requests.
    pub fn len(&self) -> usize {
        self.lock().len
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests issued at or before this second are refused as stale
    /// (`None` until something was forgotten).
    pub fn low_water_mark(&self) -> Option<u64> {
        self.lock().low_water
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        // A panic elsewhere while holding the lock leaves a consistent memory: keep going.
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn window_check(&self, m: &Memory, issued_at: u64, now: UnixTime) -> Result<(), RequestError> {
        let now_s = now.as_secs();
        let by_age = now_s.saturating_sub(self.config.max_age.as_secs());
        let not_before = m
            .low_water
            .map_or(by_age, |l| by_age.max(l.saturating_add(1)));
        let not_after = now_s.saturating_add(self.config.max_skew.as_secs());
        if issued_at < not_before || issued_at > not_after {
            return Err(RequestError::Stale {
                issued_at,
                now: now_s,
                not_before,
                not_after,
            });
        }
        Ok(())
    }

    /// Refuses a request that is outside the window or already accepted;
    /// records nothing. A cheap early check before the node does any work.
    pub fn check(&self, id: &ReplayId, now: UnixTime) -> Result<(), RequestError> {
        let m = self.lock();
        self.window_check(&m, id.issued_at, now)?;
        if m.seconds
            .get(&id.issued_at)
            .is_some_and(|keys| keys.contains(&id.key))
        {
            return Err(RequestError::Replayed);
        }
        Ok(())
    }

    /// Atomically checks the window and the memory and records the request:
    /// call it right before running the request, and only then.
    pub fn check_and_insert(&self, id: &ReplayId, now: UnixTime) -> Result<(), RequestError> {
        let mut m = self.lock();
        self.window_check(&m, id.issued_at, now)?;
        m.expire(now.as_secs().saturating_sub(self.config.max_age.as_secs()));
        if m.seconds
            .get(&id.issued_at)
            .is_some_and(|keys| keys.contains(&id.key))
        {
            return Err(RequestError::Replayed);
        }
        while m.len >= self.config.capacity.max(1) && !m.seconds.is_empty() {
            m.forget_oldest();
        }
        // Forgetting may have raised the mark over this very request: fail closed.
        self.window_check(&m, id.issued_at, now)?;
        m.seconds.entry(id.issued_at).or_default().insert(id.key);
        m.len = m.len.saturating_add(1);
        Ok(())
    }
}
