//! Full DCAP verification (pinned Intel root, every TCB status but Revoked
//! accepted, fixture collateral) must never panic and never pass a quote
//! that is not byte-identical to a genuine fixture.
#![no_main]

use std::sync::OnceLock;

use attesta_evidence::dcap::{Collateral, DcapExpected, DcapVerifier, Quote, TcbStatus};
use attesta_evidence::{Policy, UnixTime, danger};
use libfuzzer_sys::fuzz_target;

struct Setup {
    verifier: DcapVerifier,
    collateral: Vec<Collateral>,
    genuine: Vec<Vec<u8>>,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let dir = std::env::var("ATTESTA_FIXTURES").unwrap_or_else(|_| "../shared/fixtures".into());
        let read = |n: &str| {
            std::fs::read(format!("{dir}/sgx-tdx/{n}")).unwrap_or_else(|e| panic!("{n}: {e}"))
        };
        let collateral = ["phala_sgx_v3_collateral.json", "phala_tdx_v4_collateral.json", "phala_tdx_v5_collateral.json"]
            .iter()
            .map(|n| Collateral::from_json(&read(n)).unwrap_or_else(|e| panic!("{n}: {e}")))
            .collect();
        let genuine = ["phala_sgx_v3_quote.bin", "phala_tdx_v4_quote.bin", "phala_tdx_v5_quote_notcbmatch.bin"]
            .iter()
            .map(|n| read(n))
            .collect();
        let policy = match Policy::aws_nitro() {
            Ok(p) => p,
            Err(e) => panic!("pinned roots: {e}"),
        };
        let policy = TcbStatus::ALL.into_iter().fold(policy, danger::accept_tcb_status);
        Setup {
            verifier: DcapVerifier::new(policy),
            collateral,
            genuine,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    // Byte 0 picks the collateral, the next 8 the verification time (ms).
    let s = setup();
    let Some((&pick, rest)) = data.split_first() else { return };
    let (time, quote) = rest.split_at(rest.len().min(8));
    let mut t = [0u8; 8];
    t.get_mut(..time.len()).map(|x| x.copy_from_slice(time));
    let now = UnixTime::from_millis(u64::from_le_bytes(t) % 4_102_444_800_000);
    let Some(col) = s.collateral.get(usize::from(pick) % s.collateral.len()) else { return };
    let v = s.verifier.verify(quote, col, &DcapExpected::default(), now);
    assert_eq!(v.report.verified, v.outcome.is_ok());
    if let Ok(ok) = &v.outcome {
        // What the attestation key signed, and its signature, must be a fixture's.
        let q = &ok.quote;
        assert!(
            s.genuine.iter().filter_map(|g| Quote::parse(g).ok()).any(|g| g.signed == q.signed
                && g.signature == q.signature
                && g.attestation_key == q.attestation_key
                && g.qe_report_raw == q.qe_report_raw),
            "a non-genuine quote passed"
        );
    }
    let _ = v.report.to_string();
});
