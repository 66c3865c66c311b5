//! Every real Nitro document: passes inside its window, fails with the
//! specific error outside it, and the negatives fail as documented.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use std::time::Duration;

use attesta_evidence::{
    AWS_NITRO_ROOT_G1_SHA256, Expected, NitroVerifier, Platform, Policy, Registry, Status, StepId,
    TrustedRoot, UnixTime, VerifyError, danger, pem,
};
use common::{DOCS, at, fixtures, raw, read};

fn policy() -> Policy {
    Policy::aws_nitro().expect("pinned root loads")
}

fn inside(doc: &common::Doc) -> UnixTime {
    UnixTime::from_millis(doc.timestamp_ms + 30_000)
}

#[test]
fn pinned_root_matches_fixture_and_fingerprint() {
    let root = TrustedRoot::aws_nitro_root_g1().unwrap();
    assert_eq!(root.fingerprint_hex(), AWS_NITRO_ROOT_G1_SHA256);
    let fixture =
        std::fs::read_to_string(fixtures().join("nitro/aws_nitro_enclaves_root_g1.pem")).unwrap();
    assert_eq!(pem::certificates(&fixture).unwrap()[0], root.der());
}

#[test]
fn every_document_verifies_inside_its_window() {
    for doc in &DOCS {
        let p = if doc.debug {
            danger::allow_debug(policy())
        } else {
            policy()
        };
        let v = NitroVerifier::new(p).verify(&read(doc.file), &Expected::default(), inside(doc));
        assert!(v.report.verified, "{}: {}", doc.file, v.report);
        let ok = v.outcome.unwrap();
        assert_eq!(ok.platform, Platform::Nitro);
        assert_eq!(ok.document.timestamp_ms, doc.timestamp_ms);
        assert_eq!(v.report.exit_code(), 0);
        for step in [
            StepId::Input,
            StepId::Cose,
            StepId::Payload,
            StepId::Signature,
            StepId::Chain,
            StepId::Validity,
            StepId::Freshness,
            StepId::Debug,
        ] {
            assert_eq!(
                v.report.step(step).map(|s| s.status),
                Some(Status::Pass),
                "{}: {step}",
                doc.file
            );
        }
        // Any time inside the leaf window with a generous max age also passes.
        let late = at(doc.leaf_not_after);
        let v = NitroVerifier::new(
            if doc.debug {
                danger::allow_debug(policy())
            } else {
                policy()
            }
            .with_max_age(Duration::from_secs(4 * 3600)),
        )
        .verify(&read(doc.file), &Expected::default(), late);
        assert!(v.report.verified, "{}: at notAfter {}", doc.file, v.report);
    }
}

#[test]
fn every_document_fails_a_minute_after_leaf_expiry() {
    for doc in &DOCS {
        let now = at(doc.leaf_not_after).saturating_add(Duration::from_secs(60));
        let v = NitroVerifier::new(danger::allow_debug(policy())).verify(
            &read(doc.file),
            &Expected::default(),
            now,
        );
        match v.outcome {
            Err(VerifyError::CertificateExpired { ref which, .. }) => assert_eq!(which, "leaf"),
            ref other => panic!("{}: expected leaf expiry, got {other:?}", doc.file),
        }
        assert_eq!(
            v.report.step(StepId::Validity).map(|s| s.status),
            Some(Status::Fail)
        );
        assert_eq!(v.report.exit_code(), 1);
    }
}

#[test]
fn every_document_fails_before_not_before() {
    for doc in &DOCS {
        let now = at(doc.not_before).saturating_sub(Duration::from_secs(60));
        let v = NitroVerifier::new(danger::allow_debug(policy())).verify(
            &read(doc.file),
            &Expected::default(),
            now,
        );
        assert!(
            matches!(v.outcome, Err(VerifyError::CertificateNotYetValid { .. })),
            "{}: {:?}",
            doc.file,
            v.outcome
        );
    }
}

#[test]
fn stale_document_fails_freshness_only() {
    let doc = &DOCS[0];
    let now = UnixTime::from_millis(doc.timestamp_ms + 11 * 60_000);
    let v = NitroVerifier::new(policy()).verify(&read(doc.file), &Expected::default(), now);
    assert!(
        matches!(
            v.outcome,
            Err(VerifyError::TooOld {
                age_secs: 660,
                max_age_secs: 300
            })
        ),
        "{:?}",
        v.outcome
    );
    assert_eq!(
        v.report.step(StepId::Chain).map(|s| s.status),
        Some(Status::Pass)
    );
    let early = UnixTime::from_millis(doc.timestamp_ms - 61_000).max(at(doc.not_before));
    let v = NitroVerifier::new(policy().with_max_skew(Duration::ZERO)).verify(
        &read(doc.file),
        &Expected::default(),
        early,
    );
    assert!(
        matches!(v.outcome, Err(VerifyError::FromTheFuture { .. })),
        "{:?}",
        v.outcome
    );
}

#[test]
fn debug_document_fails_by_default() {
    let doc = &DOCS[1];
    let v = NitroVerifier::new(policy()).verify(&read(doc.file), &Expected::default(), inside(doc));
    assert_eq!(v.outcome.err(), Some(VerifyError::DebugMode));
    // Everything else passed: the report still shows it.
    assert_eq!(
        v.report.step(StepId::Signature).map(|s| s.status),
        Some(Status::Pass)
    );
    let d = v.report.document.unwrap();
    assert!(d.debug);
    assert_eq!(
        (d.nonce_len, d.user_data_len, d.public_key_len),
        (Some(256), Some(91), None)
    );
}

#[test]
fn bad_signature_negative() {
    let doc = &DOCS[0];
    let v = NitroVerifier::new(policy()).verify(
        &read("nitro/negative/veracruz_2022-11-09_bad_sig.cbor"),
        &Expected::default(),
        inside(doc),
    );
    assert_eq!(v.outcome.err(), Some(VerifyError::BadSignature));
    assert_eq!(
        v.report.step(StepId::Chain).map(|s| s.status),
        Some(Status::Pass)
    );
}

#[test]
fn self_signed_negative() {
    let bytes = read("nitro/negative/blocky_selfsigned_synthetic.b64");
    // Its timestamp is in seconds (1713379906): pick a time in its own era.
    let v = NitroVerifier::new(policy()).verify(
        &bytes,
        &Expected::default(),
        UnixTime::from_secs(1_713_379_906),
    );
    assert!(
        matches!(v.outcome, Err(VerifyError::NotCoseSign1(_))),
        "{:?}",
        v.outcome
    );
    assert!(!v.report.verified);
}

#[test]
fn nonce_binding() {
    let doc = &DOCS[0];
    let verifier = NitroVerifier::new(policy());
    let real_nonce = hex::decode(
        verifier
            .verify(&read(doc.file), &Expected::default(), inside(doc))
            .report
            .document
            .unwrap()
            .nonce
            .unwrap(),
    )
    .unwrap();
    let ok = verifier.verify(
        &read(doc.file),
        &Expected {
            nonce: Some(real_nonce.clone()),
            ..Default::default()
        },
        inside(doc),
    );
    assert!(ok.report.verified, "{}", ok.report);
    let mut other = real_nonce;
    other[0] ^= 1;
    let bad = verifier.verify(
        &read(doc.file),
        &Expected {
            nonce: Some(other),
            ..Default::default()
        },
        inside(doc),
    );
    assert!(
        matches!(bad.outcome, Err(VerifyError::NonceMismatch { .. })),
        "{:?}",
        bad.outcome
    );
    // marlin has no nonce at all
    let m = &DOCS[2];
    let missing = verifier.verify(
        &read(m.file),
        &Expected {
            nonce: Some(vec![1; 20]),
            ..Default::default()
        },
        inside(m),
    );
    assert_eq!(missing.outcome.err(), Some(VerifyError::NonceMissing));
}

#[test]
fn user_data_and_public_key_binding() {
    let m = &DOCS[2];
    let v = NitroVerifier::new(policy());
    let doc = v
        .verify(&read(m.file), &Expected::default(), inside(m))
        .outcome
        .unwrap()
        .document;
    let exact = Expected {
        user_data: doc.user_data.clone(),
        public_key: doc.public_key.clone(),
        nonce: None,
        report_data: None,
    };
    assert!(v.verify(&read(m.file), &exact, inside(m)).report.verified);
    let wrong_ud = Expected {
        user_data: Some(b"other".to_vec()),
        ..exact.clone()
    };
    assert!(matches!(
        v.verify(&read(m.file), &wrong_ud, inside(m)).outcome,
        Err(VerifyError::UserDataMismatch { .. })
    ));
    let wrong_pk = Expected {
        public_key: Some(vec![0; 32]),
        ..exact
    };
    assert!(matches!(
        v.verify(&read(m.file), &wrong_pk, inside(m)).outcome,
        Err(VerifyError::PublicKeyMismatch { .. })
    ));
}

#[test]
fn measurements_from_registry() {
    let doc = &DOCS[0];
    let v = NitroVerifier::new(policy());
    let summary = v
        .verify(&read(doc.file), &Expected::default(), inside(doc))
        .report
        .document
        .unwrap();
    let json = format!(
        r#"[{{"EnclaveName":"veracruz","Measurements":{{"HashAlgorithm":"Sha384 {{ ... }}","PCR0":"{}","PCR1":"{}","PCR2":"{}"}}}}]"#,
        summary.pcrs[&0], summary.pcrs[&1], summary.pcrs[&2]
    );
    let reg = Registry::parse(&json).unwrap();
    let ok = NitroVerifier::new(policy().with_measurements(reg)).verify(
        &read(doc.file),
        &Expected::default(),
        inside(doc),
    );
    assert_eq!(ok.outcome.unwrap().release.as_deref(), Some("veracruz"));

    let mut pcr2 = summary.pcrs[&2].clone();
    pcr2.replace_range(0..2, if &pcr2[0..2] == "00" { "11" } else { "00" });
    let other = json.replace(&summary.pcrs[&2], &pcr2);
    let bad = NitroVerifier::new(policy().with_measurements(Registry::parse(&other).unwrap()))
        .verify(&read(doc.file), &Expected::default(), inside(doc));
    match bad.outcome {
        Err(VerifyError::MeasurementMismatch(detail)) => {
            assert!(
                detail.contains("PCR2 expected") && detail.contains(&pcr2),
                "{detail}"
            );
            assert!(!detail.contains("PCR0"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn report_serialises_and_displays() {
    let doc = &DOCS[2];
    let v = NitroVerifier::new(policy()).verify(&read(doc.file), &Expected::default(), inside(doc));
    let json = serde_json::to_value(&v.report).unwrap();
    assert_eq!(json["verified"], true);
    assert_eq!(json["platform"], "nitro");
    assert_eq!(
        json["document"]["module_id"],
        "i-0df237f0418feb41e-enc018d1c7ef94eb110"
    );
    assert_eq!(json["steps"][0]["name"], "input");
    let text = v.report.to_string();
    assert!(
        text.contains("aws-nitro") && text.contains("VERIFIED") && text.contains("PCR0"),
        "{text}"
    );
    let expired = NitroVerifier::new(policy()).verify(
        &read(doc.file),
        &Expected::default(),
        UnixTime::from_secs(2_000_000_000),
    );
    let json = serde_json::to_value(&expired.report).unwrap();
    assert_eq!(json["error"]["code"], "certificate_expired");
}

#[test]
fn chain_cache_hits_and_expires() {
    let doc = &DOCS[0];
    let v = NitroVerifier::new(policy());
    assert!(
        v.verify(&read(doc.file), &Expected::default(), inside(doc))
            .report
            .verified
    );
    assert_eq!(v.cached_chains(), 1);
    let warm = v.verify(&read(doc.file), &Expected::default(), inside(doc));
    assert!(
        warm.report
            .step(StepId::Chain)
            .unwrap()
            .detail
            .contains("cached"),
        "{}",
        warm.report
    );
    // Past the leaf's notAfter the cache must not answer: the full path reports expiry.
    let late = at(doc.leaf_not_after).saturating_add(Duration::from_secs(60));
    assert!(matches!(
        v.verify(&read(doc.file), &Expected::default(), late)
            .outcome,
        Err(VerifyError::CertificateExpired { .. })
    ));
    // A cached chain from one policy never leaks to a verifier without that root.
    let no_aws = NitroVerifier::new(danger::replace_roots(policy(), vec![]));
    assert!(matches!(
        no_aws
            .verify(&read(doc.file), &Expected::default(), inside(doc))
            .outcome,
        Err(VerifyError::UntrustedRoot { .. })
    ));
}

#[test]
fn every_encoding_is_accepted_and_garbage_rejected() {
    let doc = &DOCS[0];
    let raw_bytes = raw(doc);
    let v = NitroVerifier::new(policy());
    let b64 = base64_encode(&raw_bytes);
    for input in [
        raw_bytes.clone(),
        b64.into_bytes(),
        hex::encode(&raw_bytes).into_bytes(),
    ] {
        assert!(
            v.verify(&input, &Expected::default(), inside(doc))
                .report
                .verified
        );
    }
    let r = v.verify(b"this is not a document", &Expected::default(), inside(doc));
    assert!(matches!(r.outcome, Err(VerifyError::Input(_))));
    assert_eq!(r.report.steps.len(), 1);
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    let s = base64::engine::general_purpose::STANDARD.encode(b);
    // wrapped at 76 columns with a trailing newline, as `base64` prints it
    s.as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned() + "\n")
        .collect()
}

#[test]
fn policy_file_applies_debug_and_max_age() {
    let doc = &DOCS[1];
    let summary = NitroVerifier::new(danger::allow_debug(policy()))
        .verify(&read(doc.file), &Expected::default(), inside(doc))
        .report
        .document
        .unwrap();
    let text = format!(
        "allow_debug = true\nmax_age_secs = 3600\n[[releases]]\nname = \"ev\"\n[releases.pcrs]\n3 = \"{}\"\n",
        summary.pcrs[&3]
    );
    let file = attesta_evidence::PolicyFile::parse(&text).unwrap();
    let late = UnixTime::from_millis(doc.timestamp_ms + 50 * 60_000);
    let v = NitroVerifier::new(file.apply(policy())).verify(
        &read(doc.file),
        &Expected::default(),
        late,
    );
    assert!(v.report.verified, "{}", v.report);
    assert_eq!(v.outcome.unwrap().release.as_deref(), Some("ev"));
    // Without the file's relaxations the same document fails on debug mode first.
    let strict = attesta_evidence::PolicyFile {
        allow_debug: None,
        ..file
    };
    let v = NitroVerifier::new(strict.apply(policy())).verify(
        &read(doc.file),
        &Expected::default(),
        inside(doc),
    );
    assert_eq!(v.outcome.err(), Some(VerifyError::DebugMode));
}
