//! SEV-SNP report parsing (and the certificate table beside it) must never
//! panic on any input.
#![no_main]

use attesta_evidence::snp::{AttestationReport, cert_table, decode_report};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((_, bytes)) = decode_report(data)
        && let Ok(r) = AttestationReport::parse(&bytes)
    {
        let _ = r.signing_key();
        let _ = r.cpuid_product();
        let _ = r.signature_fixed();
    }
    let _ = cert_table::parse(data);
});
