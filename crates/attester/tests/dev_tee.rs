//! Dev TEE round trip: produce with DevAttester, verify with the very same
//! Nitro verifier; structured mutations signed by the dev key fail with
//! their specific error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use common::{T0, TestClock, TestEntropy};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attesta_attester::dev::{self, Clock, DevAttester, DevOptions};
use attesta_attester::{AttestError, AttestRequest, Attester, Platform};
use attesta_evidence::{
    Expected, NitroVerifier, Policy, Registry, Status, StepId, TrustedRoot, VerifyError, danger,
};

struct Setup {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    exe: std::path::PathBuf,
    clock: Arc<TestClock>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("fake-attesta");
    std::fs::write(&exe, b"#!/bin/sh\necho pretend to be attesta v1\n").unwrap();
    Setup {
        data: dir.path().join("data"),
        exe,
        clock: Arc::new(TestClock(AtomicU64::new(T0))),
        _dir: dir,
    }
}

fn open(s: &Setup, seed: u64) -> DevAttester {
    DevAttester::open(DevOptions {
        data_dir: s.data.clone(),
        executable: s.exe.clone(),
        clock: s.clock.clone(),
        entropy: Arc::new(TestEntropy(Mutex::new(seed))),
    })
    .unwrap()
}

fn req(nonce: &[u8]) -> AttestRequest {
    AttestRequest {
        nonce: nonce.to_vec(),
        user_data: Some(b"ud".to_vec()),
        public_key: Some(vec![7; 32]),
        report_data: [0; 64],
    }
}

fn dev_policy(data: &Path) -> Policy {
    let pem = std::fs::read_to_string(data.join(dev::DEV_ROOT_FILE)).unwrap();
    danger::accept_dev_root(
        Policy::aws_nitro().unwrap(),
        TrustedRoot::from_pem("dev root", &pem).unwrap(),
    )
}

fn expect_nonce(n: &[u8]) -> Expected {
    Expected {
        nonce: Some(n.to_vec()),
        ..Default::default()
    }
}

#[test]
fn round_trip_with_dev_root_and_measurement() {
    let s = setup();
    let a = open(&s, 1);
    assert_eq!(a.platform(), Platform::Dev);
    assert!(a.module_id().starts_with("dev-"));
    let nonce = [0xab; 20];
    let ev = a.attest(&req(&nonce)).unwrap();
    assert_eq!(ev.platform, Platform::Dev);

    // `attesta measure` output, parsed back as a registry.
    let release = dev::release_for_executable(&s.exe, "dev-build").unwrap();
    let registry = Registry::parse(&release.to_toml()).unwrap();
    let v = NitroVerifier::new(dev_policy(&s.data).with_measurements(registry)).verify(
        &ev.bytes,
        &expect_nonce(&nonce),
        s.clock.now(),
    );
    assert!(v.report.verified, "{}", v.report);
    let ok = v.outcome.unwrap();
    assert_eq!(ok.platform, Platform::Dev);
    assert_eq!(ok.release.as_deref(), Some("dev-build"));
    assert_eq!(ok.document.user_data.as_deref(), Some(&b"ud"[..]));
    assert!(
        v.report.to_string().contains("dev (insecure)"),
        "{}",
        v.report
    );
    assert_eq!(serde_json::to_value(&v.report).unwrap()["platform"], "dev");
    // Exactly the Nitro layout: untagged COSE_Sign1 with protected {1: -35}.
    assert_eq!(&ev.bytes[..6], &[0x84, 0x44, 0xa1, 0x01, 0x38, 0x22]);
}

#[test]
fn dev_documents_fail_without_the_dev_root() {
    let s = setup();
    let a = open(&s, 2);
    let ev = a.attest(&req(b"n")).unwrap();
    let v = NitroVerifier::new(Policy::aws_nitro().unwrap()).verify(
        &ev.bytes,
        &Expected::default(),
        s.clock.now(),
    );
    assert!(
        matches!(v.outcome, Err(VerifyError::UntrustedRoot { .. })),
        "{:?}",
        v.outcome
    );
    // Another data dir's dev root is just as foreign.
    let other = setup();
    let _ = open(&other, 3);
    let v = NitroVerifier::new(dev_policy(&other.data)).verify(
        &ev.bytes,
        &Expected::default(),
        s.clock.now(),
    );
    assert!(
        matches!(v.outcome, Err(VerifyError::UntrustedRoot { .. })),
        "{:?}",
        v.outcome
    );
}

#[test]
fn another_binary_fails_on_pcr0() {
    let s = setup();
    let a = open(&s, 4);
    let ev = a.attest(&req(b"n")).unwrap();
    let other_exe = s.data.join("other-binary");
    std::fs::write(&other_exe, b"a different build").unwrap();
    let registry = Registry::parse(
        &dev::release_for_executable(&other_exe, "other")
            .unwrap()
            .to_toml(),
    )
    .unwrap();
    let v = NitroVerifier::new(dev_policy(&s.data).with_measurements(registry)).verify(
        &ev.bytes,
        &Expected::default(),
        s.clock.now(),
    );
    match v.outcome {
        Err(VerifyError::MeasurementMismatch(d)) => assert!(d.contains("PCR0 expected"), "{d}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        v.report.step(StepId::Measurements).unwrap().status,
        Status::Fail
    );
}

#[test]
fn root_persists_across_restarts_and_key_is_private() {
    let s = setup();
    let first = open(&s, 5);
    let root = first.root_der().to_vec();
    let key_mode = std::fs::metadata(s.data.join(dev::DEV_ROOT_KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    drop(first);
    let second = open(&s, 99);
    assert_eq!(second.root_der(), &root[..]);
    let ev = second.attest(&req(b"again")).unwrap();
    let v = NitroVerifier::new(dev_policy(&s.data)).verify(
        &ev.bytes,
        &expect_nonce(b"again"),
        s.clock.now(),
    );
    assert!(v.report.verified, "{}", v.report);
    // A half-present root is refused, never silently replaced.
    std::fs::remove_file(s.data.join(dev::DEV_ROOT_KEY_FILE)).unwrap();
    let err = DevAttester::open(DevOptions {
        data_dir: s.data.clone(),
        executable: s.exe.clone(),
        clock: s.clock.clone(),
        entropy: Arc::new(TestEntropy(Mutex::new(6))),
    });
    assert!(matches!(err, Err(AttestError::Dev(_))));
}

#[test]
fn mismatched_key_file_fails_self_test() {
    let s = setup();
    let _ = open(&s, 7);
    let other = setup();
    let _ = open(&other, 8);
    std::fs::copy(
        other.data.join(dev::DEV_ROOT_KEY_FILE),
        s.data.join(dev::DEV_ROOT_KEY_FILE),
    )
    .unwrap();
    let err = DevAttester::open(DevOptions {
        data_dir: s.data.clone(),
        executable: s.exe.clone(),
        clock: s.clock.clone(),
        entropy: Arc::new(TestEntropy(Mutex::new(9))),
    });
    assert!(
        matches!(err, Err(AttestError::DevSelfTest { .. })),
        "{:?}",
        err.err()
    );
    let err = err.err().unwrap();
    let cause = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<attesta_evidence::VerifyError>());
    assert!(cause.is_some(), "the verifier's verdict is kept: {err}");
}

#[test]
fn leaf_is_reissued_before_expiry() {
    let s = setup();
    let a = open(&s, 10);
    let policy = dev_policy(&s.data);
    let first = a.attest(&req(b"1")).unwrap();
    s.clock.advance(Duration::from_secs(2 * 3600 + 50 * 60));
    let second = a.attest(&req(b"2")).unwrap();
    s.clock.advance(Duration::from_secs(3600));
    let third = a.attest(&req(b"3")).unwrap();
    let v = NitroVerifier::new(policy);
    let now = s.clock.now();
    assert!(
        v.verify(&third.bytes, &Expected::default(), now)
            .report
            .verified
    );
    // The first leaf has expired by now; the second is still valid.
    assert!(matches!(
        v.verify(&first.bytes, &Expected::default(), now).outcome,
        Err(VerifyError::CertificateExpired { .. })
    ));
    let leaf = |b: &[u8]| {
        attesta_evidence::AttestationDocument::parse(
            &attesta_evidence::nitro::cose::parse(b).unwrap().payload,
        )
        .unwrap()
        .certificate
    };
    assert_ne!(leaf(&first.bytes), leaf(&second.bytes));
    assert_eq!(leaf(&second.bytes), leaf(&third.bytes));
}

#[test]
fn signed_structured_mutations_fail_with_named_errors() {
    let s = setup();
    let a = open(&s, 11);
    let now = s.clock.now();
    let v = NitroVerifier::new(
        dev_policy(&s.data).with_measurements(Registry::new(vec![a.release("me")])),
    );
    let base = a.document(&req(b"nonce-1"), now).unwrap();
    let check = |doc: &attesta_evidence::AttestationDocument,
                 expected: &Expected,
                 want: fn(&VerifyError) -> bool,
                 what: &str| {
        let bytes = a.sign_document(doc).unwrap();
        let r = v.verify(&bytes, expected, now);
        let e = r
            .outcome
            .as_ref()
            .err()
            .unwrap_or_else(|| panic!("{what}: passed"));
        assert!(want(e), "{what}: {e:?}");
    };
    // Sanity: the unmodified document passes.
    assert!(
        v.verify(
            &a.sign_document(&base).unwrap(),
            &expect_nonce(b"nonce-1"),
            now
        )
        .report
        .verified
    );

    let mut d = base.clone();
    d.pcrs.get_mut(&0).unwrap()[5] ^= 1;
    check(
        &d,
        &Expected::default(),
        |e| matches!(e, VerifyError::MeasurementMismatch(m) if m.contains("PCR0")),
        "pcr0",
    );
    check(
        &base,
        &expect_nonce(b"nonce-2"),
        |e| matches!(e, VerifyError::NonceMismatch { .. }),
        "nonce",
    );
    let mut d = base.clone();
    d.timestamp_ms -= 10 * 60 * 1000;
    check(
        &d,
        &Expected::default(),
        |e| matches!(e, VerifyError::TooOld { age_secs: 600, .. }),
        "too old",
    );
    let mut d = base.clone();
    d.timestamp_ms += 10 * 60 * 1000;
    check(
        &d,
        &Expected::default(),
        |e| matches!(e, VerifyError::FromTheFuture { .. }),
        "future",
    );
    let mut d = base.clone();
    d.module_id = "i-0123456789abcdef0-enc0123456789abcdef".into();
    check(
        &d,
        &Expected::default(),
        |e| matches!(e, VerifyError::DevModuleId(_)),
        "module id",
    );
    let mut d = base.clone();
    for i in 0..3u8 {
        d.pcrs.insert(i, vec![0; 48]);
    }
    check(
        &d,
        &Expected::default(),
        |e| {
            matches!(
                e,
                VerifyError::DebugMode | VerifyError::MeasurementMismatch(_)
            )
        },
        "debug",
    );
    let no_reg = NitroVerifier::new(dev_policy(&s.data));
    assert_eq!(
        no_reg
            .verify(&a.sign_document(&d).unwrap(), &Expected::default(), now)
            .outcome
            .err(),
        Some(VerifyError::DebugMode)
    );
    assert!(
        NitroVerifier::new(danger::allow_debug(dev_policy(&s.data)))
            .verify(&a.sign_document(&d).unwrap(), &Expected::default(), now)
            .report
            .verified
    );
    let mut d = base.clone();
    d.user_data = Some(b"other".to_vec());
    check(
        &d,
        &Expected {
            user_data: Some(b"ud".to_vec()),
            ..Default::default()
        },
        |e| matches!(e, VerifyError::UserDataMismatch { .. }),
        "user_data",
    );
    // Leaf certificate swapped for the root: chain broken / not a leaf key.
    let mut d = base.clone();
    d.certificate = a.root_der().to_vec();
    check(
        &d,
        &Expected::default(),
        |e| {
            matches!(
                e,
                VerifyError::BadSignature | VerifyError::ChainBroken { .. }
            )
        },
        "leaf=root",
    );
    // Root replaced by a foreign self-signed root.
    let other = setup();
    let o = open(&other, 12);
    let mut d = base.clone();
    d.cabundle = vec![o.root_der().to_vec()];
    check(
        &d,
        &Expected::default(),
        |e| matches!(e, VerifyError::UntrustedRoot { .. }),
        "foreign root",
    );
    // Bundle without the root: still chains to the policy's dev root by signature.
    let mut d = base.clone();
    d.cabundle.clear();
    check(
        &d,
        &Expected::default(),
        |e| matches!(e, VerifyError::FieldType { .. }),
        "empty cabundle",
    );
}

#[test]
fn oversized_fields_are_refused() {
    let s = setup();
    let a = open(&s, 13);
    let mut r = req(b"n");
    r.user_data = Some(vec![0; 1025]);
    assert!(matches!(
        a.attest(&r),
        Err(AttestError::TooLarge {
            field: "user_data",
            len: 1025,
            max: 1024
        })
    ));
    r.user_data = None;
    r.nonce = vec![0; 2000];
    assert!(matches!(
        a.attest(&r),
        Err(AttestError::TooLarge { field: "nonce", .. })
    ));
}

fn fault_evidence(s: &Setup, seed: u64, nonce: &[u8]) -> Vec<u8> {
    let mut a = open(s, seed);
    a.declare_insecure_fault("wrong-output").unwrap();
    assert_eq!(a.insecure_fault(), Some("wrong-output"));
    a.attest(&req(nonce)).unwrap().bytes
}

#[test]
fn a_declared_fault_fails_by_default_and_is_named() {
    let s = setup();
    let ev = fault_evidence(&s, 20, b"n");
    let v = NitroVerifier::new(dev_policy(&s.data)).verify(&ev, &expect_nonce(b"n"), s.clock.now());
    assert_eq!(
        v.outcome.as_ref().err(),
        Some(&VerifyError::FaultDeclared("wrong-output".into())),
        "{}",
        v.report
    );
    let step = v.report.step(StepId::DeclaredFault).unwrap();
    assert_eq!(step.status, Status::Fail);
    assert!(step.detail.contains("wrong-output"), "{}", step.detail);
    assert_eq!(v.report.error.as_ref().unwrap().code, "fault_declared");
    let text = v.report.to_string();
    assert!(
        text.contains("fault:      wrong-output (declared; INSECURE)"),
        "{text}"
    );
    let json = serde_json::to_value(&v.report).unwrap();
    assert_eq!(json["document"]["insecure_fault"], "wrong-output");
    // Every other check passed: the fault alone decides.
    assert!(
        v.report
            .steps
            .iter()
            .all(|s| s.name == StepId::DeclaredFault || s.status != Status::Fail),
        "{}",
        v.report
    );
}

#[test]
fn an_opted_in_policy_accepts_a_declared_fault_and_still_reports_it() {
    let s = setup();
    let ev = fault_evidence(&s, 21, b"n");
    let policy = danger::accept_declared_faults(dev_policy(&s.data));
    assert!(policy.accepts_declared_faults());
    let v = NitroVerifier::new(policy).verify(&ev, &expect_nonce(b"n"), s.clock.now());
    let ok = v.outcome.as_ref().unwrap();
    assert_eq!(ok.document.insecure_fault.as_deref(), Some("wrong-output"));
    let step = v.report.step(StepId::DeclaredFault).unwrap();
    assert_eq!(step.status, Status::Pass);
    assert!(step.detail.contains("wrong-output (declared; INSECURE"));
    assert!(v.report.to_string().contains("fault:      wrong-output"));
}

#[test]
fn documents_without_a_fault_keep_the_nitro_layout() {
    let s = setup();
    let a = open(&s, 22);
    assert_eq!(a.insecure_fault(), None);
    let ev = a.attest(&req(b"n")).unwrap();
    let payload = attesta_evidence::nitro::cose::parse(&ev.bytes)
        .unwrap()
        .payload
        .into_owned();
    // A map of exactly NSM's nine fields.
    assert_eq!(payload[0], 0xa9);
    let v = NitroVerifier::new(dev_policy(&s.data)).verify(
        &ev.bytes,
        &Expected::default(),
        s.clock.now(),
    );
    assert!(v.report.verified, "{}", v.report);
    let step = v.report.step(StepId::DeclaredFault).unwrap();
    assert_eq!(
        (step.status, step.detail.as_str()),
        (Status::Pass, "none declared")
    );
}

#[test]
fn a_fault_field_under_a_production_root_is_malformed() {
    let s = setup();
    let ev = fault_evidence(&s, 23, b"n");
    // Trust the dev root as if it were a production (hardware) root.
    let pem = std::fs::read_to_string(s.data.join(dev::DEV_ROOT_FILE)).unwrap();
    let root = TrustedRoot::from_pem("pretend hardware root", &pem).unwrap();
    let policy = danger::trust_root(Policy::aws_nitro().unwrap(), root);
    // Even a policy that accepts declared faults: hardware never declares one.
    for policy in [policy.clone(), danger::accept_declared_faults(policy)] {
        let v = NitroVerifier::new(policy).verify(&ev, &Expected::default(), s.clock.now());
        assert_eq!(v.report.platform, Some(Platform::Nitro));
        assert!(
            matches!(&v.outcome, Err(VerifyError::MalformedPayload(m)) if m.contains("attesta_insecure_fault")),
            "{:?}",
            v.outcome
        );
        assert_eq!(
            v.report.step(StepId::DeclaredFault).unwrap().status,
            Status::Fail
        );
    }
}

#[test]
fn the_fault_declaration_cannot_be_stripped() {
    use attesta_evidence::AttestationDocument;
    use attesta_evidence::nitro::cose;
    let s = setup();
    let ev = fault_evidence(&s, 24, b"n");
    let c = cose::parse(&ev).unwrap();
    let mut doc = AttestationDocument::parse(&c.payload).unwrap();
    assert_eq!(doc.insecure_fault.as_deref(), Some("wrong-output"));
    // A relay removes the field (or renames the fault) and keeps the signature.
    for edit in [None, Some("slow:1".to_string())] {
        doc.insecure_fault = edit;
        let forged = cose::encode_sign1(&c.protected, &doc.encode(), &c.signature);
        let v = NitroVerifier::new(danger::accept_declared_faults(dev_policy(&s.data))).verify(
            &forged,
            &Expected::default(),
            s.clock.now(),
        );
        assert_eq!(v.outcome.err(), Some(VerifyError::BadSignature));
    }
}

#[test]
fn fault_labels_must_be_printable_and_short() {
    let s = setup();
    let mut a = open(&s, 25);
    for bad in ["", "wrong\noutput", "\u{1b}[2J", &"x".repeat(65)] {
        assert!(
            matches!(
                a.declare_insecure_fault(bad),
                Err(AttestError::FaultLabel { .. })
            ),
            "{bad:?}"
        );
    }
    assert_eq!(a.insecure_fault(), None, "a refused label declares nothing");
    a.declare_insecure_fault("slow:250").unwrap();
    assert_eq!(a.insecure_fault(), Some("slow:250"));
}
