//! Every DCAP fixture gives the result its README documents, inside its
//! validity window, and fails outside it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use attesta_evidence::dcap::{Collateral, DcapExpected, DcapVerifier, TcbStatus, TeeType};
use attesta_evidence::{Policy, Status, StepId, danger};

fn read(name: &str) -> Vec<u8> {
    let b = common::read(&format!("sgx-tdx/{name}"));
    if name.ends_with(".hex") {
        hex::decode(String::from_utf8(b).unwrap().trim()).unwrap()
    } else {
        b
    }
}

use common::at;

struct Case {
    quote: &'static str,
    collateral: &'static str,
    inside: &'static str,
    before: &'static str,
    after: &'static str,
}

const SGX_V3: Case = Case {
    quote: "phala_sgx_v3_quote.bin",
    collateral: "phala_sgx_v3_collateral.json",
    inside: "2025-07-01T00:00:00Z",
    before: "2025-06-19T10:56:10Z",
    after: "2025-07-19T10:01:19Z",
};
const TDX_V4: Case = Case {
    quote: "phala_tdx_v4_quote.bin",
    collateral: "phala_tdx_v4_collateral.json",
    inside: "2025-07-01T00:00:00Z",
    before: "2025-06-19T10:32:26Z",
    after: "2025-07-19T10:00:36Z",
};
const TDX_V5: Case = Case {
    quote: "phala_tdx_v5_quote_notcbmatch.bin",
    collateral: "phala_tdx_v5_collateral.json",
    inside: "2026-03-01T00:00:00Z",
    before: "2026-02-18T10:58:50Z",
    after: "2026-03-20T10:41:16Z",
};
const TAPPD: Case = Case {
    quote: "phala_tdx_v4_tappd_quote.hex",
    collateral: "phala_tdx_v4_collateral.json",
    inside: "2025-07-01T00:00:00Z",
    before: "2025-06-19T10:32:26Z",
    after: "2025-07-19T10:00:36Z",
};

fn verify(policy: Policy, c: &Case, now: &str) -> attesta_evidence::dcap::DcapVerification {
    let col = Collateral::from_json(&read(c.collateral)).unwrap();
    DcapVerifier::new(policy).verify(&read(c.quote), &col, &DcapExpected::default(), at(now))
}

fn strict() -> Policy {
    Policy::aws_nitro().unwrap()
}

fn all_statuses() -> Policy {
    TcbStatus::ALL
        .into_iter()
        .fold(strict(), danger::accept_tcb_status)
}

#[test]
fn tdx_v4_is_up_to_date_inside_its_window() {
    let v = verify(strict(), &TDX_V4, TDX_V4.inside);
    let q = v.outcome.unwrap_or_else(|e| panic!("{e}\n{}", v.report));
    assert_eq!(q.tee, TeeType::Tdx);
    assert_eq!(q.platform, attesta_evidence::Platform::Tdx);
    assert_eq!(q.tcb_status, TcbStatus::UpToDate);
    assert!(q.advisory_ids.is_empty());
    assert!(v.report.verified);
    let s = v.report.quote.as_ref().unwrap();
    assert_eq!(s.trailing_zeros, 70);
    assert_eq!(s.fmspc.as_deref(), Some("B0C06F000000"));
    assert!(
        v.report
            .step(StepId::TdxModule)
            .unwrap()
            .detail
            .contains("TDX_01")
    );
    for step in &v.report.steps {
        assert_ne!(step.status, Status::Fail, "{step:?}");
    }
}

#[test]
fn sgx_v3_fails_by_default_with_its_status_and_advisories() {
    let v = verify(strict(), &SGX_V3, SGX_V3.inside);
    let e = v.outcome.unwrap_err();
    assert_eq!(e.code(), "tcb_status", "{}", v.report);
    let msg = e.to_string();
    assert!(msg.contains("ConfigurationAndSWHardeningNeeded"), "{msg}");
    assert!(
        msg.contains("INTEL-SA-00289") && msg.contains("INTEL-SA-00615"),
        "{msg}"
    );
    assert_eq!(
        v.report.step(StepId::TcbLevel).unwrap().status,
        Status::Fail
    );
    assert_eq!(
        v.report.step(StepId::QeIdentity).unwrap().status,
        Status::Pass
    );
    let s = v.report.quote.as_ref().unwrap();
    assert_eq!(
        s.tcb_status,
        Some(TcbStatus::ConfigurationAndSWHardeningNeeded)
    );
    assert_eq!(s.qe_tcb_status, Some(TcbStatus::UpToDate));
    // Accepting another status does not help.
    let p = danger::accept_tcb_status(strict(), TcbStatus::OutOfDate);
    assert_eq!(
        verify(p, &SGX_V3, SGX_V3.inside)
            .outcome
            .unwrap_err()
            .code(),
        "tcb_status"
    );
}

#[test]
fn sgx_v3_passes_when_its_status_is_accepted() {
    let p = danger::accept_tcb_status(strict(), TcbStatus::ConfigurationAndSWHardeningNeeded);
    let v = verify(p, &SGX_V3, SGX_V3.inside);
    let q = v.outcome.unwrap_or_else(|e| panic!("{e}\n{}", v.report));
    assert_eq!(q.tee, TeeType::Sgx);
    assert_eq!(q.tcb_status, TcbStatus::ConfigurationAndSWHardeningNeeded);
    assert_eq!(q.advisory_ids, vec!["INTEL-SA-00289", "INTEL-SA-00615"]);
    assert!(
        v.report
            .step(StepId::TcbLevel)
            .unwrap()
            .detail
            .contains("INSECURE")
    );
}

#[test]
fn no_matching_tcb_level_fails_even_when_every_status_is_accepted() {
    for c in [&TDX_V5, &TAPPD] {
        for policy in [strict(), all_statuses()] {
            let v = verify(policy, c, c.inside);
            let e = v.outcome.unwrap_err();
            assert_eq!(e.code(), "tcb_level_not_found", "{}: {}", c.quote, v.report);
            // Everything before the TCB match is genuine.
            for step in [
                StepId::PckChain,
                StepId::TcbSigningChain,
                StepId::Crl,
                StepId::Revocation,
                StepId::QuoteSignature,
                StepId::QeReportSignature,
                StepId::AttestationKeyBinding,
                StepId::Fmspc,
                StepId::TcbInfoSignature,
                StepId::QeIdentitySignature,
                StepId::Validity,
                StepId::CollateralValidity,
            ] {
                assert_eq!(
                    v.report.step(step).unwrap().status,
                    Status::Pass,
                    "{}: {step}\n{}",
                    c.quote,
                    v.report
                );
            }
        }
    }
    let v = verify(strict(), &TDX_V5, TDX_V5.inside);
    assert_eq!(v.report.quote.as_ref().unwrap().version, 5);
}

#[test]
fn every_fixture_fails_outside_its_window() {
    for c in [&SGX_V3, &TDX_V4, &TDX_V5, &TAPPD] {
        for (t, code) in [(c.before, "not_yet_valid"), (c.after, "expired")] {
            let v = verify(all_statuses(), c, t);
            let e = v.outcome.unwrap_err();
            assert_eq!(e.code(), code, "{} at {t}: {}", c.quote, v.report);
        }
    }
}

#[test]
fn report_data_is_checked_against_the_expected_binding() {
    let col = Collateral::from_json(&read(TDX_V4.collateral)).unwrap();
    let quote = read(TDX_V4.quote);
    let verifier = DcapVerifier::new(strict());
    let got = verifier
        .verify(&quote, &col, &DcapExpected::default(), at(TDX_V4.inside))
        .outcome
        .unwrap()
        .quote
        .body
        .report_data()
        .to_owned();
    let ok = verifier.verify(
        &quote,
        &col,
        &DcapExpected {
            report_data: Some(got),
        },
        at(TDX_V4.inside),
    );
    assert!(ok.outcome.is_ok());
    let mut wrong = got;
    wrong[63] ^= 1;
    let bad = verifier.verify(
        &quote,
        &col,
        &DcapExpected {
            report_data: Some(wrong),
        },
        at(TDX_V4.inside),
    );
    assert_eq!(bad.outcome.unwrap_err().code(), "report_data_mismatch");
}

#[test]
fn collateral_for_another_tee_is_refused() {
    let col = Collateral::from_json(&read(TDX_V4.collateral)).unwrap();
    let v = DcapVerifier::new(all_statuses()).verify(
        &read(SGX_V3.quote),
        &col,
        &DcapExpected::default(),
        at(SGX_V3.inside),
    );
    let e = v.outcome.unwrap_err();
    // The SGX quote's PCK is from the Processor CA: the TDX collateral's PCK CRL is not its issuer's.
    assert!(
        matches!(
            e.code(),
            "crl_signature" | "bad_collateral" | "fmspc_mismatch"
        ),
        "{}",
        v.report
    );
    assert_eq!(
        v.report.step(StepId::Collateral).unwrap().status,
        Status::Fail
    );
}

#[test]
fn measurements_from_the_releases_file_are_enforced() {
    let col = Collateral::from_json(&read(TDX_V4.collateral)).unwrap();
    let quote = read(TDX_V4.quote);
    let now = at(TDX_V4.inside);
    let summary = DcapVerifier::new(strict())
        .verify(&quote, &col, &DcapExpected::default(), now)
        .report
        .quote
        .unwrap();
    let m = &summary.measurements;
    let file = |rtmr3: &str| {
        format!(
            "[[releases]]\nname = \"tdx-v1\"\nplatform = \"tdx\"\n[releases.measurements]\nmrtd = \"{}\"\nrtmr0 = \"{}\"\nrtmr3 = \"{rtmr3}\"\n",
            m["mrtd"], m["rtmr0"]
        )
    };
    let good = attesta_evidence::PolicyFile::parse(&file(&m["rtmr3"])).unwrap();
    assert_eq!(good.registry.dcap_releases().len(), 1);
    let v = DcapVerifier::new(strict().with_measurements(good.registry.clone())).verify(
        &quote,
        &col,
        &DcapExpected::default(),
        now,
    );
    assert_eq!(v.outcome.unwrap().release.as_deref(), Some("tdx-v1"));
    let mut other = m["rtmr3"].clone();
    other.replace_range(0..2, if other.starts_with("00") { "01" } else { "00" });
    let bad = attesta_evidence::PolicyFile::parse(&file(&other)).unwrap();
    let v = DcapVerifier::new(strict().with_measurements(bad.registry)).verify(
        &quote,
        &col,
        &DcapExpected::default(),
        now,
    );
    let e = v.outcome.unwrap_err();
    assert_eq!(e.code(), "measurement_mismatch");
    assert!(e.to_string().contains("rtmr3"), "{e}");
    // An SGX release never matches a TD.
    let sgx = format!(
        "[[releases]]\nname = \"enclave\"\nplatform = \"sgx\"\n[releases.measurements]\nmrenclave = \"{}\"\n",
        "11".repeat(32)
    );
    let sgx = attesta_evidence::PolicyFile::parse(&sgx).unwrap();
    let v = DcapVerifier::new(strict().with_measurements(sgx.registry)).verify(
        &quote,
        &col,
        &DcapExpected::default(),
        now,
    );
    assert_eq!(v.outcome.unwrap_err().code(), "measurement_mismatch");
    // Wrong sizes and unknown names are refused when the file is read.
    for bad in ["mrtd = \"00\"", "mrenclave = \"00\"", "isvsvn = 3"] {
        let text = format!(
            "[[releases]]\nname = \"x\"\nplatform = \"tdx\"\n[releases.measurements]\n{bad}\n"
        );
        assert!(attesta_evidence::PolicyFile::parse(&text).is_err(), "{bad}");
    }
}

#[test]
fn report_encodings_round_trip() {
    for c in [&SGX_V3, &TDX_V4, &TDX_V5] {
        let bytes = read(c.quote);
        let q = attesta_evidence::dcap::Quote::parse(&bytes).unwrap();
        assert_eq!(q.qe_report.to_bytes(), q.qe_report_raw);
        let body = match &q.body {
            attesta_evidence::dcap::Body::Sgx(r) => r.to_bytes().to_vec(),
            attesta_evidence::dcap::Body::Td(r) => r.to_bytes(),
        };
        assert!(q.signed.ends_with(&body), "{}", c.quote);
    }
}
