//! Bounded deterministic fuzzing of every decoder in `cargo test` (the
//! libFuzzer targets in `fuzz/` go further): random bytes and mutations of
//! valid inputs must be refused with a typed error, never panic or pass.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use attesta_seal::bundle::ProofBundle;
use attesta_seal::channel::SealedOutput;
use attesta_seal::envelope::{parse_request, parse_response};
use attesta_seal::rand_core::Rng;
use attesta_seal::receipt::{Receipt, SignedReceipt};
use attesta_seal::{PublicKeySet, ReplayGuard, RequestPlaintext, seal_request, sha256};
use common::*;

const ROUNDS: usize = 10_000;

fn mutate(rng: &mut TestRng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    let n = 1 + (rng.next_u32() % 4) as usize;
    for _ in 0..n {
        match rng.next_u32() % 4 {
            0 if !v.is_empty() => {
                let i = rng.next_u32() as usize % v.len();
                v[i] ^= 1 << (rng.next_u32() % 8);
            }
            1 if !v.is_empty() => {
                let i = rng.next_u32() as usize % v.len();
                v.truncate(i);
            }
            2 => v.push(rng.next_u32() as u8),
            _ => {
                let i = rng.next_u32() as usize % (v.len() + 1);
                v.insert(i, rng.next_u32() as u8);
            }
        }
    }
    v
}

#[test]
fn envelopes_never_open_when_mutated() {
    let node = keys(1);
    let (req, ctx) =
        seal_request(node.public(), &request(T0_SECS, None), &mut TestRng::new(2)).unwrap();
    let g = guard();
    let opened = accept(&node, &req, &g, t(T0_SECS));
    let out = SealedOutput {
        output_json: b"[]",
        model_sha256: [0; 32],
        engine: "e",
        engine_version: "1",
        fault: None,
    };
    let resp = opened
        .responder
        .seal_output(&node, &out, t(T0_SECS), &mut TestRng::new(3))
        .unwrap();
    let policy = strict();
    let mut rng = TestRng::new(99);
    for _ in 0..ROUNDS {
        let bad = mutate(&mut rng, &req);
        let _ = parse_request(&bad);
        assert!(
            node.open_request(&bad, &ReplayGuard::default(), t(T0_SECS))
                .is_err()
                || bad == req
        );
        let bad = mutate(&mut rng, &resp);
        let _ = parse_response(&bad);
        assert!(ctx.open_verified(&bad, &policy).is_err() || bad == resp);
        let mut noise = vec![0u8; (rng.next_u32() % 200) as usize];
        rng.fill_bytes(&mut noise);
        assert!(
            node.open_request(&noise, &ReplayGuard::default(), t(T0_SECS))
                .is_err()
        );
        assert!(ctx.open_verified(&noise, &policy).is_err());
    }
}

#[test]
fn receipts_decode_canonically_or_not_at_all() {
    let node = keys(1);
    let r = Receipt {
        version: 2,
        keyset_digest: [0; 32],
        model_cid: MODEL.into(),
        model_sha256: sha256(b"m"),
        request_digest: sha256(b"q"),
        output_digest: sha256(b"o"),
        engine: "tract".into(),
        engine_version: "0.23".into(),
        issued_at: T0_SECS,
        nonce: vec![5; 8],
        fault: "wrong-output".into(),
    };
    let signed = node.sign_receipt(r).unwrap().to_bytes().unwrap();
    let mut rng = TestRng::new(7);
    for _ in 0..ROUNDS {
        let bad = mutate(&mut rng, &signed);
        if let Ok(s) = SignedReceipt::from_bytes(&bad) {
            assert_eq!(s.to_bytes().unwrap(), bad, "non-canonical decode");
            assert!(s.verify(node.public()).is_err() || bad == signed);
        }
        if let Ok(rr) = Receipt::decode(&bad) {
            assert_eq!(rr.encode().unwrap(), bad);
        }
    }
}

#[test]
fn json_decoders_refuse_garbage() {
    let mut rng = TestRng::new(11);
    let samples: [&[u8]; 3] = [
        br#"{"model":"Qm","inputs":{"numbers":[]},"request_id":"r","issued_at":1,"nonce":"00"}"#,
        br#"{"version":2,"platform":"dev","evidence":"AA==","attestation_nonce":"00","keyset":{"hpke_pk":"00","sign_pk":"00"},"receipt":{}}"#,
        br#"{"hpke_pk":"0000000000000000000000000000000000000000000000000000000000000000","sign_pk":"0000000000000000000000000000000000000000000000000000000000000000"}"#,
    ];
    for _ in 0..ROUNDS {
        for s in samples {
            let bad = mutate(&mut rng, s);
            let _ = RequestPlaintext::parse(&bad);
            let _ = ProofBundle::from_json(&bad);
            let _ = serde_json::from_slice::<PublicKeySet>(&bad);
            let _ = PublicKeySet::from_bytes(&bad);
        }
    }
}
