//! Collateral parsing (dcap-qvl JSON, raw PCS responses, TCB info, QE
//! identity, CRLs) must never panic.
#![no_main]

use attesta_evidence::dcap::{Collateral, Crl, PcsFiles, QeIdentity, TcbInfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Collateral::from_json(data) {
        // What we serve must read back the same.
        let again = Collateral::from_parts(c.to_json());
        assert!(matches!(again, Ok(ref a) if *a == c));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = TcbInfo::parse(text);
        let _ = QeIdentity::parse(text);
    }
    let _ = Crl::parse(data);
    // Five parts separated by 0xff: the files of a PCS directory.
    let mut parts = data.split(|b| *b == 0xff);
    let (Some(a), Some(b), Some(c), Some(d), Some(e)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let chain = String::from_utf8_lossy(e);
    let _ = Collateral::from_pcs(PcsFiles {
        tcb_info_json: a,
        qe_identity_json: b,
        pck_crl: c,
        root_ca_crl: d,
        tcb_signing_chain_pem: &chain,
    });
});
