//! Remembers signatures that verified, so collateral and certificate
//! chains shared by many quotes cost one ECDSA verification each, not one
//! per quote. Only successes are kept, keyed by SHA-256 over the public
//! key, the message and the signature (length-prefixed): a hit is exactly
//! a verification that passed before, so the cache cannot make anything
//! pass that would fail. Quote and QE report signatures are not cached.

use std::collections::HashSet;
use std::sync::Mutex;

use aws_lc_rs::digest;
use aws_lc_rs::signature::ParsedPublicKey;

/// Most remembered verifications; the set is cleared when full.
pub(crate) const CAPACITY: usize = 4096;

/// A bounded set of verified (key, message, signature) digests.
#[derive(Debug, Default)]
pub(crate) struct SigCache {
    seen: Mutex<HashSet<[u8; 32]>>,
}

fn fingerprint(key: &ParsedPublicKey, msg: &[u8], sig: &[u8]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in [key.as_ref(), msg, sig] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl SigCache {
    /// `key.verify_sig(msg, sig)`, answered from memory when it passed before.
    pub(crate) fn verify(&self, key: &ParsedPublicKey, msg: &[u8], sig: &[u8]) -> bool {
        let fp = fingerprint(key, msg, sig);
        if self.seen.lock().is_ok_and(|s| s.contains(&fp)) {
            return true;
        }
        let ok = key.verify_sig(msg, sig).is_ok();
        if ok && let Ok(mut s) = self.seen.lock() {
            if s.len() >= CAPACITY {
                s.clear();
            }
            s.insert(fp);
        }
        ok
    }

    /// Forgets everything.
    pub(crate) fn clear(&self) {
        if let Ok(mut s) = self.seen.lock() {
            s.clear();
        }
    }

    /// Number of remembered verifications.
    pub(crate) fn len(&self) -> usize {
        self.seen.lock().map_or(0, |s| s.len())
    }
}
