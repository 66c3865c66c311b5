//! Proof bundles: dev-TEE evidence end to end, real Nitro evidence, and
//! each way a bundle must fail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use std::error::Error as _;

use attesta_evidence::{
    EvidenceVerifier, Platform, Policy, Status, StepId, UnixTime, danger, decode_input,
};
use attesta_seal::bundle::{BundleChecks, BundleError, ProofBundle};
use attesta_seal::channel::SealedOutput;
use attesta_seal::{NodeKeys, SignedReceipt, seal_request, sha256};
use common::*;

const OUTPUT: &[u8] = br#"[{"name":"y","shape":[1],"result":[42.0],"type":"number"}]"#;

struct Run {
    tee: DevTee,
    node: NodeKeys,
    nonce: Vec<u8>,
    evidence: Vec<u8>,
    request: Vec<u8>,
    receipt: SignedReceipt,
}

fn run() -> Run {
    run_with(None)
}

fn run_with(fault: Option<&str>) -> Run {
    let tee = dev_tee();
    let node = keys(1);
    let nonce = b"client-nonce-0123456789".to_vec();
    let evidence = evidence(&tee, &node, &nonce);
    let (body, ctx) =
        seal_request(node.public(), &request(T0_SECS, None), &mut TestRng::new(2)).unwrap();
    let opened = accept(&node, &body, &guard(), t(T0_SECS));
    let out = SealedOutput {
        output_json: OUTPUT,
        model_sha256: sha256(b"m"),
        engine: "tract",
        engine_version: "0.23.0",
        fault,
    };
    let sealed = opened
        .responder
        .seal_output(&node, &out, t(T0_SECS + 1), &mut TestRng::new(3))
        .unwrap();
    let answer = ctx
        .open_verified(&sealed, &danger::accept_declared_faults(strict()))
        .unwrap();
    Run {
        request: ctx.request_bytes().to_vec(),
        tee,
        node,
        nonce,
        evidence,
        receipt: *answer.receipt,
    }
}

fn bundle(r: &Run) -> ProofBundle {
    ProofBundle::new(
        Platform::Dev,
        &r.evidence,
        &r.nonce,
        *r.node.public(),
        r.receipt.clone(),
    )
}

fn code(b: &ProofBundle, v: &EvidenceVerifier, checks: BundleChecks<'_>) -> &'static str {
    let res = b.verify(v, checks);
    assert!(!res.report.verified);
    assert!(res.report.error.is_some());
    res.outcome.unwrap_err().code()
}

#[test]
fn dev_bundle_verifies_offline_with_digests() {
    let r = run();
    let b = bundle(&r);
    // Through JSON, as written to disk.
    let b = ProofBundle::from_json(&b.to_json().unwrap()).unwrap();
    let checks = BundleChecks {
        request: Some(&r.request),
        output: Some(OUTPUT),
        ..Default::default()
    };
    let res = b.verify(&r.tee.verifier, checks);
    assert!(res.report.verified, "{}", res.report);
    let v = res.outcome.unwrap();
    assert_eq!(v.platform, Platform::Dev);
    assert_eq!(&v.keyset, r.node.public());
    for step in [
        StepId::Bundle,
        StepId::Evidence,
        StepId::Platform,
        StepId::Binding,
        StepId::Keyset,
        StepId::ReceiptSignature,
        StepId::Fault,
        StepId::RequestDigest,
        StepId::OutputDigest,
    ] {
        assert_eq!(
            res.report.step(step).unwrap().status,
            Status::Pass,
            "{step}"
        );
    }
    assert!(res.report.to_string().contains("RECEIPT VERIFIED"));
    // Checked at the evidence's own time by default, so a year later still verifies...
    assert_eq!(b.evidence_time(), Some(UnixTime::from_secs(T0_SECS)));
    // ...but an explicit time after the leaf expired does not.
    let late = BundleChecks {
        at: Some(t(T0_SECS + 4 * 3600)),
        ..Default::default()
    };
    assert_eq!(code(&b, &r.tee.verifier, late), "certificate_expired");
    // Digests are skipped when no bytes are given.
    let res = b.verify(&r.tee.verifier, BundleChecks::default());
    assert_eq!(
        res.report.step(StepId::RequestDigest).unwrap().status,
        Status::Skipped
    );
}

#[test]
fn declared_fault_fails_by_default_and_is_printed_when_accepted() {
    let r = run_with(Some("wrong-output"));
    let b = bundle(&r);
    let res = b.verify(&r.tee.verifier, BundleChecks::default());
    assert!(!res.report.verified);
    assert_eq!(res.outcome.unwrap_err().code(), "fault_declared");
    assert_eq!(res.report.step(StepId::Fault).unwrap().status, Status::Fail);
    assert!(res.report.to_string().contains("wrong-output"));
    let relaxed = EvidenceVerifier::new(danger::accept_declared_faults(
        r.tee.verifier.policy().clone(),
    ));
    let res = b.verify(&relaxed, BundleChecks::default());
    assert!(res.report.verified, "{}", res.report);
    let step = res.report.step(StepId::Fault).unwrap();
    assert_eq!(step.status, Status::Pass);
    assert!(step.detail.contains("wrong-output"), "{}", step.detail);
    assert_eq!(res.outcome.unwrap().fault.as_deref(), Some("wrong-output"));
    // A receipt without a fault says so.
    let clean = bundle(&run());
    let res = clean.verify(&r.tee.verifier, BundleChecks::default());
    assert_eq!(res.report.step(StepId::Fault).unwrap().status, Status::Pass);
    assert_eq!(res.outcome.unwrap().fault, None);
}

#[test]
fn receipt_with_one_byte_changed_fails() {
    let r = run();
    let mut b = bundle(&r);
    b.receipt.receipt.issued_at += 1;
    assert_eq!(
        code(&b, &r.tee.verifier, BundleChecks::default()),
        "bad_receipt_signature"
    );
    let mut b = bundle(&r);
    b.receipt.signature[17] ^= 1;
    assert_eq!(
        code(&b, &r.tee.verifier, BundleChecks::default()),
        "bad_receipt_signature"
    );
}

#[test]
fn receipt_signed_by_a_key_the_evidence_does_not_bind_fails() {
    let r = run();
    let impostor = keys(9);
    // The impostor signs a receipt and the bundle announces its key set, but
    // the evidence binds the genuine one.
    let mut forged = r.receipt.receipt.clone();
    forged.keyset_digest = impostor.keyset_digest();
    let forged = impostor.sign_receipt(forged).unwrap();
    let mut b = bundle(&r);
    b.receipt = forged.clone();
    assert_eq!(
        code(&b, &r.tee.verifier, BundleChecks::default()),
        "receipt_key_set_mismatch"
    );
    b.keyset = *impostor.public();
    assert_eq!(
        code(&b, &r.tee.verifier, BundleChecks::default()),
        "binding_key_set_mismatch"
    );
}

#[test]
fn evidence_whose_nonce_differs_fails() {
    let r = run();
    let mut b = bundle(&r);
    b.attestation_nonce = b"another-nonce".to_vec();
    assert_eq!(
        code(&b, &r.tee.verifier, BundleChecks::default()),
        "nonce_mismatch"
    );
}

#[test]
fn digest_mismatches_and_policy_failures_are_named() {
    let r = run();
    let b = bundle(&r);
    let v = &r.tee.verifier;
    let req = BundleChecks {
        request: Some(b"{}"),
        ..Default::default()
    };
    assert_eq!(code(&b, v, req), "request_digest_mismatch");
    let out = BundleChecks {
        output: Some(b"[]"),
        ..Default::default()
    };
    assert_eq!(code(&b, v, out), "output_digest_mismatch");
    // Without the dev root in the policy, dev evidence is untrusted.
    let strict = EvidenceVerifier::new(Policy::aws_nitro().unwrap());
    assert_eq!(code(&b, &strict, BundleChecks::default()), "untrusted_root");
    let mut nitro_claim = bundle(&r);
    nitro_claim.platform = Platform::Nitro;
    assert_eq!(
        code(&nitro_claim, v, BundleChecks::default()),
        "platform_mismatch"
    );
    // Claimed as TDX, the Nitro document goes to the DCAP verifier: refused, never passed.
    let mut tdx = bundle(&r);
    tdx.platform = Platform::Tdx;
    assert_eq!(code(&tdx, v, BundleChecks::default()), "bad_collateral");
    let mut garbled = bundle(&r);
    garbled.evidence = "!!".into();
    assert_eq!(
        code(&garbled, v, BundleChecks::default()),
        "malformed_bundle"
    );
    let e = garbled
        .verify(v, BundleChecks::default())
        .outcome
        .unwrap_err();
    assert!(matches!(e, BundleError::EvidenceBase64(_)), "{e:?}");
    assert!(e.source().is_some(), "the base64 error is kept");
}

#[test]
fn malformed_bundle_json_fails_closed() {
    let r = run();
    let json = bundle(&r).to_json().unwrap();
    let e = ProofBundle::from_json(&json[..json.len() - 2]).unwrap_err();
    assert!(matches!(e, BundleError::Malformed(_)));
    assert_eq!(e.code(), "malformed_bundle");
    assert!(e.source().is_some(), "the JSON error is kept");
    let mut v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    for old_or_new in [1, 3] {
        v["version"] = serde_json::json!(old_or_new);
        let err = ProofBundle::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(err, BundleError::UnsupportedVersion(old_or_new));
    }
}

/// Real AWS documents verify as evidence at their own time but bind no
/// attesta key set: the bundle fails at the binding step, not before.
#[test]
fn real_nitro_evidence_without_a_key_set_fails_binding() {
    let dir = fixtures().join("nitro");
    let r = run();
    let verifier = EvidenceVerifier::new(Policy::aws_nitro().unwrap());
    let veracruz = std::fs::read(dir.join("veracruz_2022-11-09_euw1.cbor")).unwrap();
    let doc_nonce = {
        let (_, cbor) = decode_input(&veracruz).unwrap();
        let c = attesta_evidence::nitro::cose::parse(&cbor).unwrap();
        attesta_evidence::AttestationDocument::parse(&c.payload)
            .unwrap()
            .nonce
            .unwrap()
    };
    let b = ProofBundle::new(
        Platform::Nitro,
        &veracruz,
        &doc_nonce,
        *r.node.public(),
        r.receipt.clone(),
    );
    assert_eq!(
        b.evidence_time(),
        Some(UnixTime::from_millis(1_668_034_320_696))
    );
    let res = b.verify(&verifier, BundleChecks::default());
    assert_eq!(
        res.report.step(StepId::Evidence).unwrap().status,
        Status::Pass,
        "{}",
        res.report
    );
    assert_eq!(
        res.outcome.unwrap_err().code(),
        "binding_missing_public_key"
    );

    // marlin carries a 32-byte public_key but no nonce.
    let marlin = std::fs::read(dir.join("marlin_2024-02-26_aps1.cbor")).unwrap();
    let b = ProofBundle::new(
        Platform::Nitro,
        &marlin,
        b"",
        *r.node.public(),
        r.receipt.clone(),
    );
    assert_eq!(
        code(&b, &verifier, BundleChecks::default()),
        "nonce_missing"
    );

    // The bad-signature negative fails at the evidence step.
    let bad = std::fs::read(dir.join("negative/veracruz_2022-11-09_bad_sig.cbor")).unwrap();
    let b = ProofBundle::new(
        Platform::Nitro,
        &bad,
        &doc_nonce,
        *r.node.public(),
        r.receipt.clone(),
    );
    assert_eq!(
        code(&b, &verifier, BundleChecks::default()),
        "bad_signature"
    );
}
