//! Replay protection for the axon: a dendrite's nonce (wall-clock nanoseconds) must be
//! fresh and strictly greater than the last one accepted for the same `hotkey:uuid`.
//!
//! Stricter than the SDK's axon, which checks freshness only for the first nonce of an
//! endpoint key and keeps every key forever. Here every nonce must be fresh, so an entry
//! can be forgotten once its last nonce is older than the widest window: any later request
//! at or below it is stale anyway. Memory is bounded by that expiry and by hard caps (total
//! and per caller); when a cap is reached new keys are refused (fail closed), never made
//! room for by forgetting a live entry, which would reopen a replay.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use crate::ss58::AccountId;

/// Windows and caps of the nonce store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceConfig {
    /// Allowed age of a nonce on top of the request's `timeout` (the SDK uses 4 s).
    pub base_window: Duration,
    /// The largest `timeout` honoured when widening the window.
    pub max_timeout: Duration,
    /// How far in the future (sender's clock ahead) a nonce may be.
    pub max_future: Duration,
    /// Endpoint keys remembered at once.
    pub max_entries: usize,
    /// Endpoint keys remembered at once for one caller.
    pub max_entries_per_caller: usize,
}

impl Default for NonceConfig {
    fn default() -> Self {
        NonceConfig {
            base_window: Duration::from_secs(4),
            max_timeout: Duration::from_secs(60),
            max_future: Duration::from_secs(10),
            max_entries: 200_000,
            max_entries_per_caller: 50_000,
        }
    }
}

impl NonceConfig {
    /// The acceptance window for a request with this `timeout` (seconds, as sent).
    pub fn window(&self, timeout_secs: Option<f64>) -> Duration {
        let t = timeout_secs
            .filter(|t| t.is_finite() && *t >= 0.0)
            .map(|t| Duration::from_secs_f64(t.min(self.max_timeout.as_secs_f64())))
            .unwrap_or(Duration::ZERO);
        self.base_window + t.min(self.max_timeout)
    }

    fn widest(&self) -> u64 {
        nanos(self.base_window + self.max_timeout)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Why a nonce was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NonceError {
    /// Older than the window allows.
    #[error("nonce is too old: acceptable delta is {window_ms} ms but it is {age_ms} ms old")]
    Stale {
        /// The window.
        window_ms: u64,
        /// The nonce's age.
        age_ms: u64,
    },
    /// Further in the future than allowed.
    #[error("nonce is {ahead_ms} ms in the future (at most {max_ms} ms allowed)")]
    Future {
        /// How far ahead.
        ahead_ms: u64,
        /// The allowance.
        max_ms: u64,
    },
    /// Not greater than the last nonce accepted for this hotkey and uuid (a replay).
    #[error("nonce {nonce} is not greater than the last one accepted for this hotkey and uuid")]
    NotIncreasing {
        /// The refused nonce.
        nonce: u64,
    },
    /// The store is full; the caller should retry later.
    #[error("too many recent requests to remember; retry later")]
    Full,
}

type Key = (AccountId, String);

#[derive(Default)]
struct Inner {
    last: HashMap<Key, u64>,
    per_caller: HashMap<AccountId, usize>,
    /// One entry per key: (the nonce it was queued with, key). Lazily refreshed.
    queue: BinaryHeap<Reverse<(u64, Key)>>,
}

/// The axon's memory of accepted nonces.
pub struct NonceStore {
    config: NonceConfig,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for NonceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceStore")
            .field("config", &self.config)
            .field("entries", &self.len())
            .finish()
    }
}

impl NonceStore {
    /// An empty store.
    pub fn new(config: NonceConfig) -> Self {
        NonceStore {
            config,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.lock().last.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The freshness check alone (no memory): cheap, so it runs before the signature.
    pub fn check_fresh(
        &self,
        nonce: u64,
        timeout_secs: Option<f64>,
        now_ns: u64,
    ) -> Result<(), NonceError> {
        let max_future = nanos(self.config.max_future);
        if nonce > now_ns.saturating_add(max_future) {
            return Err(NonceError::Future {
                ahead_ms: (nonce - now_ns) / 1_000_000,
                max_ms: max_future / 1_000_000,
            });
        }
        let window = nanos(self.config.window(timeout_secs));
        let age = now_ns.saturating_sub(nonce);
        if age > window {
            return Err(NonceError::Stale {
                window_ms: window / 1_000_000,
                age_ms: age / 1_000_000,
            });
        }
        Ok(())
    }

    /// Checks and records a nonce of a request whose signature has verified: fresh,
    /// greater than the last one for `caller:uuid`, and room to remember it. Atomic, so two
    /// copies of one request racing each other cannot both pass.
    pub fn accept(
        &self,
        caller: &AccountId,
        uuid: &str,
        nonce: u64,
        timeout_secs: Option<f64>,
        now_ns: u64,
    ) -> Result<(), NonceError> {
        self.check_fresh(nonce, timeout_secs, now_ns)?;
        let mut inner = self.lock();
        self.expire(&mut inner, now_ns);
        let key = (*caller, uuid.to_owned());
        match inner.last.get_mut(&key) {
            Some(last) if nonce <= *last => Err(NonceError::NotIncreasing { nonce }),
            Some(last) => {
                *last = nonce;
                Ok(())
            }
            None => {
                let mine = inner.per_caller.get(caller).copied().unwrap_or(0);
                if inner.last.len() >= self.config.max_entries
                    || mine >= self.config.max_entries_per_caller
                {
                    return Err(NonceError::Full);
                }
                inner.per_caller.insert(*caller, mine + 1);
                inner.last.insert(key.clone(), nonce);
                inner.queue.push(Reverse((nonce, key)));
                Ok(())
            }
        }
    }

    /// Forgets keys whose last nonce is older than the widest window.
    fn expire(&self, inner: &mut Inner, now_ns: u64) {
        let horizon = now_ns.saturating_sub(self.config.widest());
        while let Some(Reverse((queued, _))) = inner.queue.peek() {
            if *queued >= horizon {
                break;
            }
            let Some(Reverse((_, key))) = inner.queue.pop() else {
                break;
            };
            match inner.last.get(&key).copied() {
                // Used again since it was queued: queue it at its newest nonce.
                Some(last) if last >= horizon => inner.queue.push(Reverse((last, key))),
                Some(_) => {
                    inner.last.remove(&key);
                    if let Some(n) = inner.per_caller.get_mut(&key.0) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            inner.per_caller.remove(&key.0);
                        }
                    }
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn acct(b: u8) -> AccountId {
        AccountId([b; 32])
    }

    #[test]
    fn fresh_increasing_nonces_pass_and_replays_fail() {
        let store = NonceStore::new(NonceConfig::default());
        let now = 1_000_000 * S;
        let a = acct(1);
        store.accept(&a, "u", now - S, Some(12.0), now).unwrap();
        assert_eq!(
            store.accept(&a, "u", now - S, Some(12.0), now),
            Err(NonceError::NotIncreasing { nonce: now - S })
        );
        assert!(store.accept(&a, "u", now - 2 * S, Some(12.0), now).is_err());
        store.accept(&a, "u", now, Some(12.0), now).unwrap();
        // Another uuid or caller has its own sequence.
        store.accept(&a, "v", now - S, Some(12.0), now).unwrap();
        store
            .accept(&acct(2), "u", now - S, Some(12.0), now)
            .unwrap();
    }

    #[test]
    fn windows_follow_the_timeout_and_are_capped() {
        let store = NonceStore::new(NonceConfig::default());
        let now = 1_000_000 * S;
        // 4 s + 12 s timeout: 10 s old passes, 20 s old does not (as the 10.5.0 axon).
        store.check_fresh(now - 10 * S, Some(12.0), now).unwrap();
        assert!(matches!(
            store.check_fresh(now - 20 * S, Some(12.0), now),
            Err(NonceError::Stale {
                window_ms: 16_000,
                ..
            })
        ));
        // A huge timeout does not widen the window past 4 s + 60 s.
        assert!(store.check_fresh(now - 70 * S, Some(1e9), now).is_err());
        assert!(store.check_fresh(now - 5 * S, Some(f64::NAN), now).is_err());
        // 60 s in the future (accepted by the SDK's axon) is refused.
        assert!(matches!(
            store.check_fresh(now + 60 * S, Some(12.0), now),
            Err(NonceError::Future { .. })
        ));
    }

    #[test]
    fn memory_is_bounded_and_expired_keys_are_forgotten() {
        let store = NonceStore::new(NonceConfig {
            max_entries: 3,
            max_entries_per_caller: 2,
            ..NonceConfig::default()
        });
        let mut now = 1_000_000 * S;
        store.accept(&acct(1), "a", now, None, now).unwrap();
        store.accept(&acct(1), "b", now, None, now).unwrap();
        assert_eq!(
            store.accept(&acct(1), "c", now, None, now),
            Err(NonceError::Full)
        );
        store.accept(&acct(2), "a", now, None, now).unwrap();
        assert_eq!(
            store.accept(&acct(3), "a", now, None, now),
            Err(NonceError::Full)
        );
        // Reusing a key keeps it alive; the others expire after the widest window.
        now += 30 * S;
        store.accept(&acct(1), "a", now, None, now).unwrap();
        now += 40 * S;
        store.accept(&acct(3), "a", now, None, now).unwrap();
        assert_eq!(store.len(), 2, "only 1:a (used 40 s ago) and 3:a remain");
        // The forgotten key's old nonce is still refused, now as stale.
        assert!(
            store
                .accept(&acct(1), "b", now - 70 * S, None, now)
                .is_err()
        );
    }
}
