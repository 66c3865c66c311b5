//! Full verification (AWS policy, debug allowed, fixed time inside the
//! fixtures' era) must never panic and never pass on mutated input.
#![no_main]

use std::sync::OnceLock;

use attesta_evidence::{Expected, NitroVerifier, Policy, UnixTime, danger};
use libfuzzer_sys::fuzz_target;

fn verifier() -> &'static NitroVerifier {
    static V: OnceLock<NitroVerifier> = OnceLock::new();
    V.get_or_init(|| match Policy::aws_nitro() {
        Ok(p) => NitroVerifier::new(danger::allow_debug(p)),
        Err(e) => panic!("pinned root: {e}"),
    })
}

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes choose the verification time (ms), so the fuzzer can
    // reach the validity and freshness checks of every fixture.
    let (time, doc) = data.split_at(data.len().min(8));
    let mut t = [0u8; 8];
    t.get_mut(..time.len()).map(|s| s.copy_from_slice(time));
    let now = UnixTime::from_millis(u64::from_le_bytes(t) % 4_102_444_800_000);
    let v = verifier().verify(doc, &Expected::default(), now);
    assert_eq!(v.report.verified, v.outcome.is_ok());
    let _ = v.report.to_string();
});
