//! The dev DCAP signer produces quotes the strict verifier accepts only
//! through the danger API, and every attack on them is a named failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use attesta_attester::dcap_dev::{CollateralSpec, DcapDevSigner, SgxBody, TdxBody};
use attesta_attester::dev::SystemEntropy;
use attesta_evidence::dcap::{
    Collateral, CollateralJson, DcapExpected, DcapRoot, DcapVerification, DcapVerifier, TcbStatus,
    TeeType,
};
use attesta_evidence::{Platform, Policy, Status, StepId, UnixTime, danger};

const NOW: UnixTime = UnixTime::from_secs(1_780_000_000);

fn signer() -> DcapDevSigner {
    DcapDevSigner::generate(&SystemEntropy::default(), NOW).unwrap()
}

fn dev_policy(s: &DcapDevSigner) -> Policy {
    let root = DcapRoot::from_der("anything", s.root_der()).unwrap();
    danger::accept_dcap_dev_root(Policy::aws_nitro().unwrap(), root)
}

fn quotes(s: &DcapDevSigner, report_data: &[u8]) -> Vec<(TeeType, Vec<u8>)> {
    let sgx = SgxBody {
        mr_enclave: [1; 32],
        mr_signer: [2; 32],
        isv_prod_id: 3,
        isv_svn: 4,
        report_data: report_data.to_vec(),
        debug: false,
    };
    let tdx = TdxBody {
        mr_td: [5; 48],
        report_data: report_data.to_vec(),
        ..TdxBody::default()
    };
    vec![
        (TeeType::Sgx, s.sgx_quote(&sgx).unwrap()),
        (TeeType::Tdx, s.tdx_quote(&tdx, 4).unwrap()),
        (TeeType::Tdx, s.tdx_quote(&tdx, 5).unwrap()),
    ]
}

fn check(policy: Policy, q: &[u8], col: &CollateralJson, at: UnixTime) -> DcapVerification {
    let col = Collateral::from_parts(col.clone()).unwrap();
    DcapVerifier::new(policy).verify(q, &col, &DcapExpected::default(), at)
}

fn code(v: &DcapVerification) -> &'static str {
    match &v.outcome {
        Ok(_) => "verified",
        Err(e) => e.code(),
    }
}

#[test]
fn dev_quotes_verify_only_through_the_danger_api_and_say_insecure() {
    let s = signer();
    let binding = [0xab; 64];
    for (tee, q) in quotes(&s, &binding) {
        let col = s.collateral(tee, NOW, &CollateralSpec::default()).unwrap();
        let v = DcapVerifier::new(dev_policy(&s)).verify(
            &q,
            &Collateral::from_parts(col.clone()).unwrap(),
            &DcapExpected {
                report_data: Some(binding),
            },
            NOW,
        );
        let ok = v
            .outcome
            .as_ref()
            .unwrap_or_else(|e| panic!("{e}\n{}", v.report));
        let dev = if tee == TeeType::Sgx {
            Platform::DevSgx
        } else {
            Platform::DevTdx
        };
        assert_eq!(ok.platform, dev);
        assert_eq!(ok.tee, tee);
        assert_eq!(ok.root, "dev (insecure)");
        assert_eq!(v.report.platform, Some(dev));
        assert!(v.report.to_string().contains("(insecure)"));
        assert!(v.report.steps.iter().all(|s| s.status != Status::Fail));
        // The production policy does not know the dev root.
        let strict = check(Policy::aws_nitro().unwrap(), &q, &col, NOW);
        assert_eq!(code(&strict), "untrusted_root", "{}", strict.report);
    }
}

#[test]
fn a_genuine_crl_revokes_and_a_forged_one_is_refused_for_its_signature() {
    let s = signer();
    let mallory = signer(); // same names, other keys: a look-alike PKI
    for (tee, q) in quotes(&s, &[]) {
        let revoked = CollateralSpec {
            revoke_pck: true,
            ..CollateralSpec::default()
        };
        let col = s.collateral(tee, NOW, &revoked).unwrap();
        let v = check(dev_policy(&s), &q, &col, NOW);
        assert_eq!(code(&v), "revoked", "{}", v.report);
        assert_eq!(
            v.report.step(StepId::Revocation).unwrap().status,
            Status::Fail
        );

        let mut forged = s.collateral(tee, NOW, &CollateralSpec::default()).unwrap();
        let later = NOW.saturating_add(std::time::Duration::from_secs(86_400));
        forged.pck_crl = hex::encode(
            mallory
                .crl(false, &[s.pck_serial().to_vec()], NOW, later)
                .unwrap(),
        );
        let v = check(dev_policy(&s), &q, &forged, NOW);
        assert_eq!(code(&v), "crl_signature", "{}", v.report);
        assert_eq!(
            v.report.step(StepId::Revocation).unwrap().status,
            Status::Skipped
        );
        forged.root_ca_crl = hex::encode(mallory.crl(true, &[], NOW, later).unwrap());
        assert_eq!(
            code(&check(dev_policy(&s), &q, &forged, NOW)),
            "crl_signature"
        );
    }
}

#[test]
fn look_alike_roots_and_foreign_collateral_are_refused() {
    let s = signer();
    let mallory = signer();
    for (tee, q) in quotes(&s, &[]) {
        // Collateral signed by the look-alike PKI.
        let col = mallory
            .collateral(tee, NOW, &CollateralSpec::default())
            .unwrap();
        let v = check(dev_policy(&s), &q, &col, NOW);
        assert_eq!(code(&v), "untrusted_root", "{}", v.report);
        assert_eq!(
            v.report.step(StepId::TcbSigningChain).unwrap().status,
            Status::Fail
        );
        // A quote of the look-alike PKI with the right collateral.
        let (_, mq) = quotes(&mallory, &[])
            .into_iter()
            .find(|(t, _)| *t == tee)
            .unwrap();
        let col = s.collateral(tee, NOW, &CollateralSpec::default()).unwrap();
        let v = check(dev_policy(&s), &mq, &col, NOW);
        assert_eq!(code(&v), "untrusted_root", "{}", v.report);
        assert_eq!(
            v.report.step(StepId::PckChain).unwrap().status,
            Status::Fail
        );
    }
}

#[test]
fn wrong_fmspc_status_debug_and_time_are_named_failures() {
    let s = signer();
    for (tee, q) in quotes(&s, &[]) {
        let wrong = CollateralSpec {
            fmspc: [0x11; 6],
            ..CollateralSpec::default()
        };
        let v = check(
            dev_policy(&s),
            &q,
            &s.collateral(tee, NOW, &wrong).unwrap(),
            NOW,
        );
        assert_eq!(code(&v), "fmspc_mismatch", "{}", v.report);

        let stale = CollateralSpec {
            tcb_status: TcbStatus::OutOfDate,
            advisory_ids: vec!["INTEL-SA-00001".into()],
            ..CollateralSpec::default()
        };
        let col = s.collateral(tee, NOW, &stale).unwrap();
        let v = check(dev_policy(&s), &q, &col, NOW);
        assert_eq!(code(&v), "tcb_status", "{}", v.report);
        assert!(
            v.outcome
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("INTEL-SA-00001")
        );
        let relaxed = danger::accept_tcb_status(dev_policy(&s), TcbStatus::OutOfDate);
        let v = check(relaxed, &q, &col, NOW);
        let ok = v.outcome.unwrap();
        assert_eq!(ok.tcb_status, TcbStatus::OutOfDate);
        assert_eq!(ok.advisory_ids, vec!["INTEL-SA-00001".to_owned()]);
        let revoked = CollateralSpec {
            tcb_status: TcbStatus::Revoked,
            ..CollateralSpec::default()
        };
        let all = TcbStatus::ALL
            .into_iter()
            .fold(dev_policy(&s), danger::accept_tcb_status);
        let v = check(all, &q, &s.collateral(tee, NOW, &revoked).unwrap(), NOW);
        assert_eq!(code(&v), "tcb_status", "Revoked is never accepted");

        let col = s.collateral(tee, NOW, &CollateralSpec::default()).unwrap();
        let year = std::time::Duration::from_secs(400 * 86_400);
        let month = std::time::Duration::from_secs(31 * 86_400);
        assert_eq!(
            code(&check(dev_policy(&s), &q, &col, NOW.saturating_add(month))),
            "expired"
        );
        assert_eq!(
            code(&check(dev_policy(&s), &q, &col, NOW.saturating_add(year))),
            "expired"
        );
        assert_eq!(
            code(&check(dev_policy(&s), &q, &col, NOW.saturating_sub(month))),
            "not_yet_valid"
        );
    }
    let debug = s
        .sgx_quote(&SgxBody {
            debug: true,
            ..SgxBody::default()
        })
        .unwrap();
    let col = s
        .collateral(TeeType::Sgx, NOW, &CollateralSpec::default())
        .unwrap();
    assert_eq!(
        code(&check(dev_policy(&s), &debug, &col, NOW)),
        "debug_mode"
    );
    let allowed = danger::allow_debug(dev_policy(&s));
    assert_eq!(code(&check(allowed, &debug, &col, NOW)), "verified");
    let td = s
        .tdx_quote(
            &TdxBody {
                debug: true,
                ..TdxBody::default()
            },
            4,
        )
        .unwrap();
    let col = s
        .collateral(TeeType::Tdx, NOW, &CollateralSpec::default())
        .unwrap();
    assert_eq!(code(&check(dev_policy(&s), &td, &col, NOW)), "debug_mode");
}

#[test]
fn every_flipped_byte_of_a_dev_quote_is_refused_without_panic() {
    let s = signer();
    for (tee, q) in quotes(&s, &[7; 64]) {
        let col =
            Collateral::from_parts(s.collateral(tee, NOW, &CollateralSpec::default()).unwrap())
                .unwrap();
        let verifier = DcapVerifier::new(dev_policy(&s));
        // Every byte up to the PEM chain, then a stride through the
        // certificates' base64 (the armor lines are not signed: dropping the
        // root's BEGIN line only drops the root, which is pinned anyway).
        let pem_at = q.windows(5).position(|w| w == b"-----").unwrap();
        let in_armor = |i: usize| {
            let line_start = q[..i]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |p| p + 1);
            q.get(line_start) == Some(&b'-')
        };
        let positions = (0..pem_at).chain(
            (pem_at..q.len().saturating_sub(1))
                .step_by(7)
                .filter(|i| !in_armor(*i) && q[*i] != b'\n'),
        );
        for i in positions {
            let mut m = q.clone();
            m[i] ^= 0x01;
            let v = verifier.verify(&m, &col, &DcapExpected::default(), NOW);
            assert!(
                v.outcome.is_err(),
                "flip at {i} of {tee:?} passed: {:?}",
                String::from_utf8_lossy(&q[i.saturating_sub(40)..(i + 40).min(q.len())])
            );
            assert!(!v.report.verified);
        }
    }
}
