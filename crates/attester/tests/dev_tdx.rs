//! The dev-tdx TEE: its quotes, with the collateral it hands out beside
//! them, pass the DCAP verifier only through the danger API (reported
//! `dev-tdx (insecure)`), bind the requested report_data, match the release
//! it reports, and keep verifying after the collateral is reissued.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use common::{T0, TestClock, TestEntropy};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use attesta_attester::dcap_dev::COLLATERAL_LIFETIME;
use attesta_attester::dev::DevOptions;
use attesta_attester::dev_tdx::{DEV_DCAP_ROOT_FILE, DevTdxAttester, release_toml};
use attesta_attester::{AttestRequest, Attester, Platform};
use attesta_evidence::{
    Envelope, EvidenceVerifier, Expected, Policy, PolicyFile, Registry, UnixTime, danger,
};

fn open(dir: &std::path::Path, clock: Arc<TestClock>) -> DevTdxAttester {
    let exe = dir.join("fake-attesta");
    std::fs::write(&exe, b"#!/bin/sh\necho pretend\n").unwrap();
    DevTdxAttester::open(DevOptions {
        data_dir: dir.join("data"),
        executable: exe,
        clock,
        entropy: Arc::new(TestEntropy(Mutex::new(1))),
    })
    .unwrap()
}

fn req(report_data: [u8; 64]) -> AttestRequest {
    AttestRequest {
        nonce: vec![1; 16],
        user_data: None,
        public_key: None,
        report_data,
    }
}

fn envelope(dev: &DevTdxAttester, report_data: [u8; 64]) -> Envelope {
    let ev = dev.attest(&req(report_data)).unwrap();
    assert_eq!(ev.platform, Platform::DevTdx);
    Envelope {
        collateral: Some(serde_json::from_slice(&ev.aux.unwrap()).unwrap()),
        ..Envelope::new(Platform::DevTdx, ev.bytes)
    }
}

#[test]
fn dev_tdx_quotes_pass_only_through_the_danger_api() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TestClock(AtomicU64::new(T0)));
    let dev = open(dir.path(), clock.clone());
    // The root verifiers need is on disk and is the attester's.
    let pem = std::fs::read_to_string(dir.path().join("data").join(DEV_DCAP_ROOT_FILE)).unwrap();
    assert_eq!(pem, dev.root_pem());
    let rd = [0x42; 64];
    let env = envelope(&dev, rd);
    let now = UnixTime::from_millis(T0 + 1000);
    let expected = Expected {
        report_data: Some(rd.to_vec()),
        ..Default::default()
    };

    // Intel's root only: refused.
    let hw = EvidenceVerifier::new(Policy::aws_nitro().unwrap());
    let v = hw.verify(&env, &expected, now);
    assert_eq!(
        v.outcome.as_ref().err().map(|e| e.code()),
        Some("untrusted_root"),
        "{}",
        v.report
    );

    // The release `measure --tee dev-tdx` prints parses and matches.
    let file = PolicyFile::parse(&release_toml(&dev.release("dev-tdx"), "dev-tdx")).unwrap();
    let policy = |reg: Registry| {
        danger::accept_dcap_dev_root(
            Policy::aws_nitro().unwrap().with_measurements(reg),
            dev.dev_root().unwrap(),
        )
    };
    let dev_v = EvidenceVerifier::new(file.apply(policy(Registry::default())));
    let v = dev_v.verify(&env, &expected, now);
    let ok = v.outcome.as_ref().unwrap();
    assert_eq!(ok.platform(), Platform::DevTdx);
    assert!(ok.insecure());
    assert_eq!(ok.release(), Some("dev-tdx"));
    assert_eq!(ok.report_data(), Some(&rd));
    assert!(v.report.to_string().contains("dev-tdx (insecure)"));

    // Another report_data: refused.
    let other = Expected {
        report_data: Some(vec![0x43; 64]),
        ..Default::default()
    };
    let v = dev_v.verify(&env, &other, now);
    assert_eq!(
        v.outcome.err().map(|e| e.code()),
        Some("report_data_mismatch")
    );

    // Another MRTD: refused.
    let mut wrong = dev.release("other");
    wrong.values.get_mut("mrtd").unwrap()[0] ^= 1;
    let v = EvidenceVerifier::new(policy(Registry::default().with_dcap(vec![wrong])))
        .verify(&env, &expected, now);
    assert_eq!(
        v.outcome.err().map(|e| e.code()),
        Some("measurement_mismatch")
    );

    // Claimed as hardware TDX: the dev root verifies, the platform check refuses.
    let claimed = Envelope {
        platform: Platform::Tdx,
        ..env.clone()
    };
    let v = dev_v.verify(&claimed, &expected, now);
    assert_eq!(v.outcome.err().map(|e| e.code()), Some("platform_mismatch"));
}

#[test]
fn collateral_is_reissued_before_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TestClock(AtomicU64::new(T0)));
    let dev = open(dir.path(), clock.clone());
    let first = dev.collateral().unwrap();
    // Well past the first collateral's nextUpdate, the node still serves
    // collateral that verifies at that time.
    let later = T0 + (COLLATERAL_LIFETIME.as_millis() as u64) * 3 / 2;
    let mut at = T0;
    while at < later {
        clock.advance(COLLATERAL_LIFETIME / 4);
        at += COLLATERAL_LIFETIME.as_millis() as u64 / 4;
        let _ = dev.collateral().unwrap();
    }
    let env = envelope(&dev, [0; 64]);
    assert_ne!(env.collateral.as_ref(), Some(&first));
    let v = EvidenceVerifier::new(danger::accept_dcap_dev_root(
        Policy::aws_nitro().unwrap(),
        dev.dev_root().unwrap(),
    ));
    let now = UnixTime::from_millis(at + 1000);
    let r = v.verify(&env, &Expected::default(), now);
    assert!(r.outcome.is_ok(), "{}", r.report);
    // The first collateral, at that time, is expired: the reissue mattered.
    let stale = Envelope {
        collateral: Some(first),
        ..env
    };
    let r = v.verify(&stale, &Expected::default(), now);
    assert!(r.outcome.is_err(), "{}", r.report);
}

#[test]
fn the_root_survives_a_restart_and_is_never_half_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path(), Arc::new(TestClock(AtomicU64::new(T0))));
    let pem = first.root_pem();
    drop(first);
    // Restarted a day later: a new PKI under the same root.
    let again = open(
        dir.path(),
        Arc::new(TestClock(AtomicU64::new(T0 + 86_400_000))),
    );
    assert_eq!(again.root_pem(), pem);
    let v = EvidenceVerifier::new(danger::accept_dcap_dev_root(
        Policy::aws_nitro().unwrap(),
        attesta_evidence::dcap::DcapRoot::from_pem("dev (insecure)", &pem).unwrap(),
    ));
    let r = v.verify(
        &envelope(&again, [1; 64]),
        &Expected::default(),
        UnixTime::from_millis(T0 + 86_401_000),
    );
    assert!(r.outcome.is_ok(), "{}", r.report);
    // The key without its certificate: refused, not silently replaced.
    std::fs::remove_file(dir.path().join("data").join(DEV_DCAP_ROOT_FILE)).unwrap();
    let exe = dir.path().join("fake-attesta");
    let err = DevTdxAttester::open(DevOptions {
        data_dir: dir.path().join("data"),
        executable: exe,
        clock: Arc::new(TestClock(AtomicU64::new(T0))),
        entropy: Arc::new(TestEntropy(Mutex::new(1))),
    })
    .unwrap_err();
    assert!(err.to_string().contains("refusing"), "{err}");
}
