//! Envelope parsing, format detection and the platform dispatch must never
//! panic, and a random envelope must never verify.
#![no_main]

use std::sync::OnceLock;

use attesta_evidence::{Envelope, EvidenceVerifier, Expected, Policy, UnixTime, detect};
use libfuzzer_sys::fuzz_target;

fn verifier() -> &'static EvidenceVerifier {
    static V: OnceLock<EvidenceVerifier> = OnceLock::new();
    V.get_or_init(|| match Policy::aws_nitro() {
        Ok(p) => EvidenceVerifier::new(p),
        Err(e) => panic!("pinned roots: {e}"),
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = detect(data);
    if let Ok(env) = Envelope::from_json(data) {
        let v = verifier().verify(&env, &Expected::default(), UnixTime::from_secs(1_700_000_000));
        assert_eq!(v.report.verified, v.outcome.is_ok());
        let _ = env.to_json();
    }
});
