//! Client settings, clock and randomness.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use attesta_evidence::{Policy, UnixTime};
pub use attesta_seal::SharedRng;
use attesta_seal::rand_core::UnwrapErr;

/// A time source.
pub type ClockFn = Arc<dyn Fn() -> UnixTime + Send + Sync>;

/// The RNG handle the client draws nonces and HPKE ephemeral keys from.
pub type RngHandle = Arc<Mutex<dyn SharedRng>>;

/// The system clock.
pub fn system_clock() -> ClockFn {
    Arc::new(|| UnixTime::from_system(std::time::SystemTime::now()))
}

/// The operating system's CSPRNG. (Its failure after start-up aborts, as
/// there is no safe way to continue without randomness.)
pub fn system_rng() -> RngHandle {
    Arc::new(Mutex::new(UnwrapErr(getrandom::SysRng)))
}

/// How a [`crate::Client`] verifies and talks to a node.
#[derive(Clone)]
pub struct ClientConfig {
    /// What evidence must satisfy (roots, measurements, freshness).
    pub policy: Policy,
    /// How long a verified key set is reused before re-attesting.
    pub key_cache_ttl: Duration,
    /// Per HTTP request.
    pub timeout: Duration,
    /// Attestation nonce length in bytes (the node accepts 16..=64).
    pub nonce_len: usize,
    /// Time source.
    pub clock: ClockFn,
    /// Randomness source.
    pub rng: RngHandle,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("policy", &self.policy)
            .field("key_cache_ttl", &self.key_cache_ttl)
            .field("timeout", &self.timeout)
            .field("nonce_len", &self.nonce_len)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// `policy` with a 60 s key cache, 30 s timeout, 32-byte nonces, system clock and RNG.
    pub fn new(policy: Policy) -> Self {
        ClientConfig {
            policy,
            key_cache_ttl: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
            nonce_len: 32,
            clock: system_clock(),
            rng: system_rng(),
        }
    }
}
