//! The node's replay window: a request is accepted once, and only within
//! ±`max_skew` of the node clock. Memory is bounded; when full of live
//! entries the guard refuses (fails closed) instead of forgetting.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use crate::UnixTime;
use crate::plaintext::RequestError;

/// Default tolerated difference between client and node clocks.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(120);
/// Default number of remembered requests (~100 bytes each, ~26 MiB in all):
/// with the default skew this sustains ~2,000 sealed requests/s before
/// the guard starts answering `busy`.
pub const DEFAULT_CAPACITY: usize = 1 << 18;

#[derive(Default)]
struct Window {
    by_enc: HashMap<[u8; 32], u64>,
    by_expiry: BTreeSet<(u64, [u8; 32])>,
}

/// Remembers the HPKE `enc` of every accepted request while it could still
/// pass the time check. Shareable (`&self` methods, internal lock).
pub struct ReplayGuard {
    max_skew_secs: u64,
    capacity: usize,
    window: Mutex<Window>,
}

impl std::fmt::Debug for ReplayGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayGuard")
            .field("max_skew_secs", &self.max_skew_secs)
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SKEW, DEFAULT_CAPACITY)
    }
}

impl ReplayGuard {
    /// A guard accepting `issued_at` within ±`max_skew`, remembering at most `capacity` requests.
    pub fn new(max_skew: Duration, capacity: usize) -> Self {
        ReplayGuard {
            max_skew_secs: max_skew.as_secs(),
            capacity,
            window: Mutex::new(Window::default()),
        }
    }

    /// The allowed skew in seconds.
    pub fn max_skew_secs(&self) -> u64 {
        self.max_skew_secs
    }

    /// Number of remembered requests.
    pub fn len(&self) -> usize {
        self.lock().by_enc.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        // A panic elsewhere while holding the lock leaves consistent maps: keep going.
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accepts `enc` once if `issued_at` (Unix seconds) is within the window at `now`.
    pub fn check_and_insert(
        &self,
        enc: &[u8; 32],
        issued_at: u64,
        now: UnixTime,
    ) -> Result<(), RequestError> {
        let now_s = now.as_secs();
        if issued_at.abs_diff(now_s) > self.max_skew_secs {
            return Err(RequestError::Stale {
                issued_at,
                now: now_s,
                max_skew_secs: self.max_skew_secs,
            });
        }
        let mut w = self.lock();
        if w.by_enc.contains_key(enc) {
            return Err(RequestError::Replayed);
        }
        // Drop entries that can no longer pass the time check.
        while let Some(&(exp, e)) = w.by_expiry.first() {
            if exp >= now_s {
                break;
            }
            w.by_expiry.pop_first();
            w.by_enc.remove(&e);
        }
        if w.by_enc.len() >= self.capacity {
            return Err(RequestError::ReplayWindowFull);
        }
        let expiry = issued_at.saturating_add(self.max_skew_secs);
        w.by_enc.insert(*enc, expiry);
        w.by_expiry.insert((expiry, *enc));
        Ok(())
    }
}
