//! Mutations of the real DCAP fixtures: every tampered byte in a signed
//! region, a swapped certificate, tampered collateral, truncations. Each is
//! a typed failure, never a pass, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use attesta_evidence::dcap::{Collateral, CollateralJson, DcapExpected, DcapVerifier, Quote};
use attesta_evidence::{Policy, Status, StepId};
use common::at;

const NOW: &str = "2025-07-01T00:00:00Z";

fn read(name: &str) -> Vec<u8> {
    common::read(&format!("sgx-tdx/{name}"))
}

fn verifier() -> DcapVerifier {
    DcapVerifier::new(Policy::aws_nitro().unwrap())
}

fn tdx() -> (Vec<u8>, CollateralJson) {
    let q = read("phala_tdx_v4_quote.bin");
    let c: CollateralJson = serde_json::from_slice(&read("phala_tdx_v4_collateral.json")).unwrap();
    (q, c)
}

fn code(q: &[u8], c: &Collateral) -> &'static str {
    let v = verifier().verify(q, c, &DcapExpected::default(), at(NOW));
    assert_eq!(v.report.verified, v.outcome.is_ok());
    match v.outcome {
        Ok(_) => "verified",
        Err(e) => e.code(),
    }
}

#[test]
fn every_flipped_byte_before_the_pck_chain_fails() {
    let (q, c) = tdx();
    let c = Collateral::from_parts(c).unwrap();
    assert_eq!(code(&q, &c), "verified");
    let pem_at = q.windows(5).position(|w| w == b"-----").unwrap();
    let parsed = Quote::parse(&q).unwrap();
    let signed = parsed.signed.len();
    for i in 0..pem_at {
        let mut m = q.clone();
        m[i] ^= 0x80;
        let got = code(&m, &c);
        let allowed: &[&str] = match i {
            // version, key type, TEE type: the header no longer parses as this quote
            0..=7 => &["malformed_quote"],
            _ if i < signed => &["bad_quote_signature"],
            // signature_data_len, quote signature, attestation key
            _ if i < signed + 4 => &["malformed_quote"],
            _ if i < signed + 4 + 64 => &["bad_quote_signature"],
            _ if i < signed + 4 + 128 => &["bad_quote_signature", "bad_attestation_key"],
            // certification data type and size
            _ if i < signed + 4 + 128 + 6 => &["malformed_quote"],
            // QE report and its signature
            _ if i < signed + 4 + 128 + 6 + 384 + 64 => &["bad_qe_report_signature"],
            // QE auth data length, data, PCK chain type and size
            _ => &["malformed_quote", "attestation_key_binding"],
        };
        assert!(
            allowed.contains(&got),
            "flip at {i}: {got}, expected one of {allowed:?}"
        );
    }
}

#[test]
fn every_truncation_and_non_zero_padding_fails() {
    let (q, c) = tdx();
    let c = Collateral::from_parts(c).unwrap();
    let len = Quote::parse(&q).unwrap().len;
    for cut in (0..len).step_by(3) {
        assert_eq!(code(&q[..cut], &c), "malformed_quote", "cut at {cut}");
    }
    let mut padded = q.clone();
    padded.push(1);
    assert_eq!(code(&padded, &c), "malformed_quote");
}

#[test]
fn a_swapped_pck_chain_fails() {
    let (q, c) = tdx();
    let c = Collateral::from_parts(c).unwrap();
    let sgx = Quote::parse(&read("phala_sgx_v3_quote.bin")).unwrap();
    let own = Quote::parse(&q).unwrap();
    // Replace the PEM in place when the other chain is no longer; pad with NULs.
    let at_pem = q
        .windows(own.pck_chain_pem.len())
        .position(|w| w == own.pck_chain_pem)
        .unwrap();
    assert!(sgx.pck_chain_pem.len() <= own.pck_chain_pem.len());
    let other: Vec<u8> = sgx
        .pck_chain_pem
        .iter()
        .copied()
        .chain(std::iter::repeat(b'\n'))
        .take(own.pck_chain_pem.len())
        .collect();
    let mut m = q.clone();
    m[at_pem..at_pem + other.len()].copy_from_slice(&other);
    let v = verifier().verify(&m, &c, &DcapExpected::default(), at(NOW));
    // The other PCK chain is genuine Intel, but it did not sign this QE
    // report and its CA did not sign this PCK CRL.
    assert_eq!(
        v.report.step(StepId::PckChain).map(|s| s.status),
        Some(Status::Pass)
    );
    assert_eq!(
        v.report.step(StepId::QeReportSignature).map(|s| s.status),
        Some(Status::Fail)
    );
    assert_eq!(v.outcome.unwrap_err().code(), "crl_signature");
}

#[test]
fn tampered_collateral_fails() {
    let (q, c) = tdx();
    for i in (0..c.tcb_info.len()).step_by(5) {
        let mut m = c.clone();
        let mut b = m.tcb_info.into_bytes();
        b[i] ^= 0x01;
        let Ok(text) = String::from_utf8(b) else {
            continue;
        };
        m.tcb_info = text;
        if let Ok(col) = Collateral::from_parts(m) {
            assert_eq!(
                code(&q, &col),
                "collateral_signature",
                "tcb_info flip at {i}"
            );
        }
    }
    for i in (0..c.qe_identity.len()).step_by(5) {
        let mut m = c.clone();
        let mut b = m.qe_identity.into_bytes();
        b[i] ^= 0x01;
        let Ok(text) = String::from_utf8(b) else {
            continue;
        };
        m.qe_identity = text;
        if let Ok(col) = Collateral::from_parts(m) {
            assert_eq!(
                code(&q, &col),
                "collateral_signature",
                "qe_identity flip at {i}"
            );
        }
    }
    for field in 0..2 {
        let mut m = c.clone();
        let sig = if field == 0 {
            &mut m.tcb_info_signature
        } else {
            &mut m.qe_identity_signature
        };
        let mut raw = hex::decode(&*sig).unwrap();
        raw[10] ^= 1;
        *sig = hex::encode(raw);
        assert_eq!(
            code(&q, &Collateral::from_parts(m).unwrap()),
            "collateral_signature"
        );
    }
    for crl in 0..2 {
        let mut m = c.clone();
        let field = if crl == 0 {
            &mut m.pck_crl
        } else {
            &mut m.root_ca_crl
        };
        let mut raw = hex::decode(&*field).unwrap();
        let last = raw.len() - 5;
        raw[last] ^= 1; // inside the signature
        *field = hex::encode(raw);
        assert_eq!(
            code(&q, &Collateral::from_parts(m).unwrap()),
            "crl_signature"
        );
    }
    // The SGX collateral (other FMSPC, other CA) for the TDX quote.
    let sgx: CollateralJson =
        serde_json::from_slice(&read("phala_sgx_v3_collateral.json")).unwrap();
    let mut mixed = c.clone();
    mixed.tcb_info = sgx.tcb_info;
    mixed.tcb_info_signature = sgx.tcb_info_signature;
    let got = code(&q, &Collateral::from_parts(mixed).unwrap());
    assert_eq!(got, "bad_collateral", "an SGX TCB info for a TDX quote");
}

#[test]
fn a_warm_verifier_still_refuses_tampering() {
    let (q, c) = tdx();
    let v = verifier();
    let good = Collateral::from_parts(c.clone()).unwrap();
    let now = at(NOW);
    assert!(
        v.verify(&q, &good, &DcapExpected::default(), now)
            .outcome
            .is_ok()
    );
    assert!(v.cached_signatures() >= 7, "{}", v.cached_signatures());
    let mut bad = c.clone();
    let mut raw = hex::decode(&bad.tcb_info_signature).unwrap();
    raw[3] ^= 1;
    bad.tcb_info_signature = hex::encode(raw);
    let bad = Collateral::from_parts(bad).unwrap();
    let r = v.verify(&q, &bad, &DcapExpected::default(), now);
    assert_eq!(r.outcome.unwrap_err().code(), "collateral_signature");
    let mut m = q.clone();
    m[100] ^= 1;
    let r = v.verify(&m, &good, &DcapExpected::default(), now);
    assert_eq!(r.outcome.unwrap_err().code(), "bad_quote_signature");
    assert!(
        v.verify(&q, &good, &DcapExpected::default(), now)
            .outcome
            .is_ok()
    );
    v.clear_cache();
    assert_eq!(v.cached_signatures(), 0);
}
