//! Injected time and randomness shared by the dev TEE tests.
#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use attesta_attester::AttestError;
use attesta_attester::dev::{Clock, Entropy};
use attesta_evidence::UnixTime;

/// 2026-01-01T00:00:00Z, in milliseconds.
pub const T0: u64 = 1_767_225_600_000;

/// A clock the test moves.
pub struct TestClock(pub AtomicU64);

impl Clock for TestClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_millis(self.0.load(Ordering::SeqCst))
    }
}

impl TestClock {
    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
}

/// Deterministic entropy: SHA-384 of a counter.
pub struct TestEntropy(pub Mutex<u64>);

impl Entropy for TestEntropy {
    fn fill(&self, dest: &mut [u8]) -> Result<(), AttestError> {
        let mut c = self.0.lock().unwrap();
        for chunk in dest.chunks_mut(48) {
            *c += 1;
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, &c.to_le_bytes());
            chunk.copy_from_slice(&d.as_ref()[..chunk.len()]);
        }
        Ok(())
    }
}
