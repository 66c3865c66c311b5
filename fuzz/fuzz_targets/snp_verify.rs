//! Full SEV-SNP verification (pinned AMD roots) of a fuzzed report and
//! endorsement certificate at a fuzzer-chosen time: never a panic, and the
//! report's verdict always equals the outcome. Seeds: the fixture reports
//! with their VCEK/VLEK and a time inside their windows.
#![no_main]

use std::sync::OnceLock;

use attesta_evidence::{Expected, Policy, SnpVerifier, UnixTime};
use libfuzzer_sys::fuzz_target;

fn verifier() -> &'static SnpVerifier {
    static V: OnceLock<SnpVerifier> = OnceLock::new();
    V.get_or_init(|| match Policy::aws_nitro() {
        Ok(p) => SnpVerifier::new(p),
        Err(e) => panic!("pinned roots: {e}"),
    })
}

fuzz_target!(|data: &[u8]| {
    // Layout: time (8 bytes LE ms) ‖ cert length (2 bytes LE) ‖ cert DER ‖ report.
    let (time, rest) = data.split_at(data.len().min(8));
    let mut t = [0u8; 8];
    t.get_mut(..time.len()).map(|s| s.copy_from_slice(time));
    let now = UnixTime::from_millis(u64::from_le_bytes(t) % 4_102_444_800_000);
    let (len, rest) = rest.split_at(rest.len().min(2));
    let mut l = [0u8; 2];
    l.get_mut(..len.len()).map(|s| s.copy_from_slice(len));
    let (cert, report) = rest.split_at(rest.len().min(usize::from(u16::from_le_bytes(l))));
    let v = verifier().verify(report, &[cert.to_vec()], &Expected::default(), now);
    assert_eq!(v.report.verified, v.outcome.is_ok());
    let _ = v.report.to_string();
});
