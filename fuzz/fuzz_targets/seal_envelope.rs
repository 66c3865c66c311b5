//! Sealed envelopes: framing, HPKE opening on the node, response opening on
//! the client. Arbitrary bytes must fail closed, never panic.
#![no_main]

use std::sync::OnceLock;

use attesta_seal::channel::{RequestContext, seal_request_bytes};
use attesta_seal::envelope::{parse_request, parse_response};
use attesta_seal::rand_core::{TryCryptoRng, TryRng};
use attesta_evidence::Policy;
use attesta_seal::{NodeKeys, ReplayConfig, ReplayGuard, UnixTime};
use libfuzzer_sys::fuzz_target;

/// Fixed bytes as "randomness": fuzzing needs determinism, not secrecy.
struct Fixed(u8);
impl TryRng for Fixed {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(u32::from(self.0))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(u64::from(self.0))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        dst.fill(self.0);
        Ok(())
    }
}
impl TryCryptoRng for Fixed {}

fn fixture() -> &'static (NodeKeys, RequestContext, Policy) {
    static F: OnceLock<(NodeKeys, RequestContext, Policy)> = OnceLock::new();
    F.get_or_init(|| {
        let keys = NodeKeys::from_secret_bytes(&[1; 32], &[2; 32]);
        let (_, ctx) =
            seal_request_bytes(keys.public(), b"{}".to_vec(), "m".into(), vec![], &mut Fixed(3)).expect("seal");
        (keys, ctx, Policy::aws_nitro().expect("pinned root"))
    })
}

fuzz_target!(|data: &[u8]| {
    let (keys, ctx, policy) = fixture();
    let _ = parse_request(data);
    let _ = parse_response(data);
    // Point the request at this node so the HPKE path runs on fuzzed bytes.
    let mut req = data.to_vec();
    if let Some(d) = req.get_mut(2..34) {
        d.copy_from_slice(&keys.keyset_digest());
    }
    let guard = ReplayGuard::new(ReplayConfig { capacity: 16, ..ReplayConfig::default() });
    if keys.open_request(&req, &guard, UnixTime::from_secs(1_767_225_600)).is_ok() {
        panic!("fuzzed bytes opened as a valid request");
    }
    let _ = ctx.open_verified(data, policy);
});
