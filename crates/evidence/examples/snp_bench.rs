//! SEV-SNP verifications per second of the fixture reports, single thread,
//! full pipeline (parse, chain to the pinned ARK, signature, TCB, policy):
//! cold (certificate cache cleared before every report) and warm (the
//! VCEK's chain cached, as a validator re-checking a node sees it).
//!
//! `cargo run --release -p attesta-evidence --example snp_bench [seconds]`
//! Prints one `key=value` line per report and a `total` line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use attesta_evidence::{Expected, Policy, SnpVerifier, UnixTime};

/// Report, endorsement key, a time inside its window (Unix seconds).
const REPORTS: [(&str, &str, u64); 3] = [
    (
        "virtee_milan_v2_report.hex",
        "virtee_milan_v2_vcek.der",
        1_717_200_000,
    ),
    (
        "trustee_milan_v2_report.bin",
        "trustee_milan_v2_vcek.der",
        1_717_200_000,
    ),
    (
        "trustee_milan_v3_vlek_report.bin",
        "trustee_milan_v3_vlek.der",
        1_748_736_000,
    ),
];

fn main() {
    let secs: f64 = std::env::args().nth(1).map_or(2.0, |s| s.parse().unwrap());
    let dir = PathBuf::from(
        std::env::var("ATTESTA_FIXTURES").unwrap_or_else(|_| "../shared/fixtures".into()),
    )
    .join("sev-snp");
    let v = SnpVerifier::new(Policy::aws_nitro().unwrap());
    let budget = Duration::from_secs_f64(secs);
    let (mut total_n, mut total_t) = (0u64, 0f64);
    for (rep, cert, at) in REPORTS {
        let report = std::fs::read(dir.join(rep)).unwrap();
        let cert = vec![std::fs::read(dir.join(cert)).unwrap()];
        let now = UnixTime::from_secs(at);
        assert!(
            v.verify(&report, &cert, &Expected::default(), now)
                .report
                .verified,
            "{rep}"
        );
        let run = |cold: bool| {
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < budget {
                if cold {
                    v.clear_cache();
                }
                black_box(v.verify(black_box(&report), &cert, &Expected::default(), now));
                n += 1;
            }
            (n, start.elapsed().as_secs_f64())
        };
        let (cn, ct) = run(true);
        let (n, t) = run(false);
        println!(
            "doc={rep} cold_per_s={:.1} rust_per_s={:.1}",
            cn as f64 / ct,
            n as f64 / t
        );
        total_n += n;
        total_t += t;
    }
    println!("doc=total rust_per_s={:.1}", total_n as f64 / total_t);
}
