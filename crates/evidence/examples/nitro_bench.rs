//! Verifications per second of the real Nitro fixtures, single thread:
//! cold (new chain every time), warm (chain cached) and the floor (one
//! P-384 verify of the same COSE signature with aws-lc-rs).
//!
//! `cargo run --release -p attesta-evidence --example nitro_bench [seconds-per-mode]`
//! Prints one `key=value` line per document and a `total` line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use attesta_evidence::nitro::cose;
use attesta_evidence::{Expected, NitroVerifier, Policy, UnixTime, danger, decode_input};
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED, ParsedPublicKey};

const DOCS: [(&str, u64); 3] = [
    ("veracruz_2022-11-09_euw1.cbor", 1_668_034_320_696),
    ("evervault_2023-09-18_debug.b64", 1_695_049_410_860),
    ("marlin_2024-02-26_aps1.cbor", 1_708_930_921_439),
];

/// Runs `f` repeatedly for about `budget`; returns calls per second.
fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    for _ in 0..20 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let budget = Duration::from_secs_f64(secs);
    let dir = attesta_test_support::fixture("nitro");
    let policy = danger::allow_debug(Policy::aws_nitro().unwrap());
    let (mut cold_t, mut warm_t, mut floor_t) = (0.0, 0.0, 0.0);
    for (file, ts) in DOCS {
        let input = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let raw = decode_input(&input).unwrap().1.into_owned();
        let now = UnixTime::from_millis(ts + 30_000);
        let expected = Expected::default();

        let cold_verifier = NitroVerifier::new(policy.clone());
        let cold = rate(budget, || {
            cold_verifier.clear_cache();
            let v = cold_verifier.verify(black_box(&raw), &expected, now);
            assert!(v.outcome.is_ok());
        });
        let warm_verifier = NitroVerifier::new(policy.clone());
        let warm = rate(budget, || {
            let v = warm_verifier.verify(black_box(&raw), &expected, now);
            assert!(v.outcome.is_ok());
        });
        // The floor: the one signature check every document needs.
        let doc = warm_verifier
            .verify(&raw, &expected, now)
            .outcome
            .unwrap()
            .document;
        let leaf = x509_spki_point(&doc.certificate);
        let key = ParsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, leaf).unwrap();
        let c = cose::parse(&raw).unwrap();
        let msg = cose::sig_structure(&c.protected, &c.payload);
        let floor = rate(budget, || {
            key.verify_sig(black_box(&msg), black_box(&c.signature))
                .unwrap();
        });
        println!("doc={file} cold_per_s={cold:.0} warm_per_s={warm:.0} floor_per_s={floor:.0}");
        cold_t += 1.0 / cold;
        warm_t += 1.0 / warm;
        floor_t += 1.0 / floor;
    }
    let n = DOCS.len() as f64;
    println!(
        "doc=total cold_per_s={:.0} warm_per_s={:.0} floor_per_s={:.0}",
        n / cold_t,
        n / warm_t,
        n / floor_t
    );
}

/// The uncompressed P-384 point of a certificate: the last 97 bytes of its
/// SubjectPublicKeyInfo, found as the 0x04-prefixed BIT STRING after the
/// secp384r1 OID (good enough for a benchmark over known certificates).
fn x509_spki_point(cert: &[u8]) -> Vec<u8> {
    let oid = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00];
    let at = cert
        .windows(oid.len())
        .position(|w| w == oid)
        .expect("P-384 SPKI");
    cert[at + oid.len()..at + oid.len() + 97].to_vec()
}
