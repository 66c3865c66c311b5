//! DCAP verifications per second of the real fixture quotes, single
//! thread, collateral parsed once (cached), full strict verification each
//! time (every signature, chain, CRL and TCB match).
//!
//! `cargo run --release -p attesta-evidence --example dcap_bench [seconds-per-quote]`
//! Prints one `key=value` line per quote and a `total` line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use attesta_evidence::dcap::{Collateral, DcapExpected, DcapVerifier, TcbStatus};
use attesta_evidence::{Policy, UnixTime, danger};

/// (quote, collateral, a time inside the window)
const QUOTES: [(&str, &str, u64); 2] = [
    (
        "phala_sgx_v3_quote.bin",
        "phala_sgx_v3_collateral.json",
        1_751_328_000,
    ),
    (
        "phala_tdx_v4_quote.bin",
        "phala_tdx_v4_collateral.json",
        1_751_328_000,
    ),
];

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let budget = Duration::from_secs_f64(secs);
    let dir = std::env::var_os("ATTESTA_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/fixtures"
            ))
        })
        .join("sgx-tdx");
    // dcap-qvl reports the SGX fixture's ConfigurationAndSWHardeningNeeded
    // as a result; accept it here so both sides do the whole verification.
    let policy = danger::accept_tcb_status(
        Policy::aws_nitro().unwrap(),
        TcbStatus::ConfigurationAndSWHardeningNeeded,
    );
    let verifier = DcapVerifier::new(policy);
    let (mut n_total, mut t_total) = (0u64, 0.0f64);
    for (q, c, at) in QUOTES {
        let quote = std::fs::read(dir.join(q)).unwrap_or_else(|e| panic!("{q}: {e}"));
        let col = Collateral::from_json(&std::fs::read(dir.join(c)).unwrap()).unwrap();
        let now = UnixTime::from_secs(at);
        let expected = DcapExpected::default();
        let v = verifier.verify(&quote, &col, &expected, now);
        assert!(v.outcome.is_ok(), "{}", v.report);
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < budget {
            for _ in 0..8 {
                black_box(verifier.verify(black_box(&quote), &col, &expected, now));
            }
            n += 8;
        }
        let t = start.elapsed().as_secs_f64();
        println!("quote={q} per_s={:.1}", n as f64 / t);
        n_total += n;
        t_total += t;
    }
    println!("quote=total per_s={:.1}", n_total as f64 / t_total);
}
