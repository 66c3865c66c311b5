//! Proof bundles and the binding helpers: arbitrary JSON and field bytes
//! must be refused with a typed error, never panic.
#![no_main]

use std::sync::OnceLock;

use attesta_evidence::{EvidenceVerifier, Policy};
use attesta_seal::binding::{check_nitro, parse_nitriding_user_data};
use attesta_seal::bundle::{BundleChecks, ProofBundle};
use attesta_seal::PublicKeySet;
use libfuzzer_sys::fuzz_target;

fn verifier() -> Option<&'static EvidenceVerifier> {
    static V: OnceLock<Option<EvidenceVerifier>> = OnceLock::new();
    V.get_or_init(|| Policy::aws_nitro().ok().map(EvidenceVerifier::new)).as_ref()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = ProofBundle::from_json(data) {
        if let Some(v) = verifier() {
            let res = b.verify(v, BundleChecks { request: Some(data), ..Default::default() });
            assert_eq!(res.report.verified, res.outcome.is_ok());
        }
    }
    let _ = PublicKeySet::from_bytes(data);
    let _ = parse_nitriding_user_data(data);
    let third = data.len() / 3;
    let (a, rest) = data.split_at(third);
    let (b, c) = rest.split_at(third);
    let _ = check_nitro(Some(a), Some(b), Some(c), b"nonce");
});
