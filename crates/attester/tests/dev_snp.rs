//! The dev-snp TEE: its reports pass the SEV-SNP verifier only through the
//! danger API (reported `dev-snp (insecure)`), and reports it signs with
//! one thing wrong each fail with that thing named: a TCB above the VCEK's,
//! another product's VCEK, debug, a migration agent, another ARK, a flipped
//! byte, a wrong report_data.
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

use attesta_attester::dev::DevOptions;
use attesta_attester::dev_snp::{DEV_TCB, DevSnpAttester, VcekSpec};
use attesta_attester::{AttestRequest, Attester, Platform};
use attesta_evidence::snp::{Product, RawTcb, Tcb, cert_table};
use attesta_evidence::{
    Envelope, EvidenceVerifier, Expected, Policy, Registry, SnpVerifier, UnixTime, VerifyError,
    danger,
};

fn open_with(dir: &std::path::Path, seed: u64, spec: Option<VcekSpec<'_>>) -> DevSnpAttester {
    let exe = dir.join("fake-attesta");
    std::fs::write(&exe, b"#!/bin/sh\necho pretend\n").unwrap();
    let opts = DevOptions {
        data_dir: dir.join("data"),
        executable: exe,
        clock: Arc::new(TestClock(AtomicU64::new(T0))),
        entropy: Arc::new(TestEntropy(Mutex::new(seed))),
    };
    match spec {
        None => DevSnpAttester::open(opts).unwrap(),
        Some(s) => DevSnpAttester::open_with(opts, s).unwrap(),
    }
}

fn now() -> UnixTime {
    UnixTime::from_millis(T0 + 1000)
}

fn verifier(dev: &DevSnpAttester) -> SnpVerifier {
    SnpVerifier::new(danger::accept_snp_dev_root(
        Policy::aws_nitro().unwrap(),
        dev.dev_root().unwrap(),
    ))
}

fn code(r: &Result<attesta_evidence::VerifiedReport, VerifyError>) -> &'static str {
    r.as_ref().err().map_or("pass", VerifyError::code)
}

fn req(report_data: [u8; 64]) -> AttestRequest {
    AttestRequest {
        nonce: vec![1; 16],
        user_data: None,
        public_key: None,
        report_data,
    }
}

#[test]
fn dev_snp_reports_pass_only_through_the_danger_api() {
    let dir = tempfile::tempdir().unwrap();
    let dev = open_with(dir.path(), 1, None);
    assert_eq!(dev.platform(), Platform::DevSnp);
    let ev = dev.attest(&req([9; 64])).unwrap();
    let certs = cert_table::parse(ev.aux.as_deref().unwrap()).unwrap();
    assert_eq!(certs.len(), 3);
    let v = verifier(&dev).verify(
        &ev.bytes,
        &certs,
        &Expected {
            report_data: Some(vec![9; 64]),
            ..Default::default()
        },
        now(),
    );
    let ok = v.outcome.unwrap_or_else(|e| panic!("{e}\n{}", v.report));
    assert_eq!(ok.platform, Platform::DevSnp);
    assert_eq!(ok.product, Product::Milan);
    assert_eq!(ok.report.version, 5);
    assert!(v.report.to_string().contains("dev-snp (insecure)"));
    // Without the danger API the dev ARK is a look-alike root.
    let strict = SnpVerifier::new(Policy::aws_nitro().unwrap());
    assert_eq!(
        code(
            &strict
                .verify(&ev.bytes, &certs, &Expected::default(), now())
                .outcome
        ),
        "untrusted_root"
    );
    // Another node's ARK does not vouch for this one.
    let other_dir = tempfile::tempdir().unwrap();
    let other = open_with(other_dir.path(), 2, None);
    assert_eq!(
        code(
            &verifier(&other)
                .verify(&ev.bytes, &certs, &Expected::default(), now())
                .outcome
        ),
        "untrusted_root"
    );
    // Wrong report data.
    assert_eq!(
        code(
            &verifier(&dev)
                .verify(
                    &ev.bytes,
                    &certs,
                    &Expected {
                        report_data: Some(vec![8; 64]),
                        ..Default::default()
                    },
                    now()
                )
                .outcome
        ),
        "report_data_mismatch"
    );
    // Every byte of the signed region and the signature matters.
    for i in (0..0x2A0 + 144).step_by(3) {
        let mut r = ev.bytes.clone();
        r[i] ^= 0x40;
        let out = verifier(&dev).verify(&r, &certs, &Expected::default(), now());
        assert!(out.outcome.is_err(), "flip at {i:#x} passed");
    }
}

#[test]
fn signed_mutations_fail_with_their_named_check() {
    let dir = tempfile::tempdir().unwrap();
    let dev = open_with(dir.path(), 3, None);
    let certs = dev.certs();
    let v = verifier(&dev);
    let check = |body: attesta_evidence::snp::report::ReportBody| {
        let bytes = dev.sign(&body).unwrap();
        v.verify(&bytes, &certs, &Expected::default(), now())
            .outcome
    };
    assert_eq!(code(&check(dev.body([0; 64]))), "pass");
    // A TCB higher than the VCEK's (validly signed by that VCEK).
    let mut b = dev.body([0; 64]);
    b.tcb = RawTcb::encode(
        Tcb {
            microcode: DEV_TCB.microcode + 1,
            ..DEV_TCB
        },
        Product::Milan,
    );
    assert_eq!(code(&check(b)), "snp_tcb_mismatch");
    let mut b = dev.body([0; 64]);
    b.tcb = RawTcb::encode(
        Tcb {
            snp: DEV_TCB.snp + 1,
            ..DEV_TCB
        },
        Product::Milan,
    );
    assert_eq!(code(&check(b)), "snp_tcb_mismatch");
    // Another product's CPUID than the VCEK's (Genoa report, Milan VCEK).
    let mut b = dev.body([0; 64]);
    b.cpuid = (0x19, 0x11, 0x01);
    assert_eq!(code(&check(b)), "snp_product_mismatch");
    // A family no SNP product has.
    let mut b = dev.body([0; 64]);
    b.cpuid = (0x17, 0x31, 0x00);
    assert_eq!(code(&check(b)), "snp_unknown_cpuid");
    // Guest policy: debug, migration agent, reserved bit.
    let mut b = dev.body([0; 64]);
    b.policy |= 1 << 19;
    assert_eq!(code(&check(b.clone())), "snp_debug_policy");
    assert_eq!(
        code(
            &SnpVerifier::new(danger::allow_debug(danger::accept_snp_dev_root(
                Policy::aws_nitro().unwrap(),
                dev.dev_root().unwrap()
            )))
            .verify(&dev.sign(&b).unwrap(), &certs, &Expected::default(), now())
            .outcome
        ),
        "pass"
    );
    let mut b = dev.body([0; 64]);
    b.policy |= 1 << 18;
    assert_eq!(code(&check(b.clone())), "snp_migration_agent");
    assert_eq!(
        code(
            &SnpVerifier::new(danger::accept_snp_migration_agent(
                danger::accept_snp_dev_root(Policy::aws_nitro().unwrap(), dev.dev_root().unwrap())
            ))
            .verify(&dev.sign(&b).unwrap(), &certs, &Expected::default(), now())
            .outcome
        ),
        "pass"
    );
    let mut b = dev.body([0; 64]);
    b.policy = 0x2_0000;
    assert_eq!(code(&check(b)), "snp_policy_reserved");
    // VMPL required by the policy.
    let mut b = dev.body([0; 64]);
    b.vmpl = 2;
    let bytes = dev.sign(&b).unwrap();
    let vmpl0 = SnpVerifier::new(danger::accept_snp_dev_root(
        Policy::aws_nitro().unwrap().with_snp_vmpl(0),
        dev.dev_root().unwrap(),
    ));
    assert_eq!(
        code(
            &vmpl0
                .verify(&bytes, &certs, &Expected::default(), now())
                .outcome
        ),
        "snp_vmpl_mismatch"
    );
    // Claims the VLEK signed it.
    let mut b = dev.body([0; 64]);
    b.flags = 1 << 2;
    assert_eq!(code(&check(b)), "snp_endorsement_kind_mismatch");
    // Another chip's id.
    let mut b = dev.body([0; 64]);
    b.chip_id[0] ^= 1;
    assert_eq!(code(&check(b)), "snp_chip_id_mismatch");
    // Versions 2 and 3 of the same report verify too.
    for version in [2, 3] {
        let mut b = dev.body([0; 64]);
        b.version = version;
        assert_eq!(code(&check(b)), "pass", "v{version}");
    }
}

#[test]
fn another_products_vcek_is_refused() {
    // A VCEK issued as Genoa by the same ARK, for a Milan-CPUID report.
    let dir = tempfile::tempdir().unwrap();
    let dev = open_with(
        dir.path(),
        4,
        Some(VcekSpec {
            product_name: "Genoa",
            tcb: DEV_TCB,
        }),
    );
    let mut milan = dev.body([0; 64]);
    milan.cpuid = DevSnpAttester::cpuid(Product::Milan);
    let out = verifier(&dev).verify(
        &dev.sign(&milan).unwrap(),
        &dev.certs(),
        &Expected::default(),
        now(),
    );
    assert_eq!(code(&out.outcome), "snp_product_mismatch");
    // A VCEK whose TCB is lower than what the reports claim.
    let dir = tempfile::tempdir().unwrap();
    let low = Tcb {
        bootloader: DEV_TCB.bootloader - 1,
        ..DEV_TCB
    };
    let dev = open_with(
        dir.path(),
        5,
        Some(VcekSpec {
            product_name: "Milan-B0",
            tcb: low,
        }),
    );
    let mut claims_more = dev.body([0; 64]);
    claims_more.tcb = RawTcb::encode(DEV_TCB, Product::Milan);
    let out = verifier(&dev).verify(
        &dev.sign(&claims_more).unwrap(),
        &dev.certs(),
        &Expected::default(),
        now(),
    );
    assert_eq!(code(&out.outcome), "snp_tcb_mismatch", "{}", out.report);
}

#[test]
fn envelope_dispatch_checks_measurement_and_platform() {
    let dir = tempfile::tempdir().unwrap();
    let dev = open_with(dir.path(), 6, None);
    let ev = dev.attest(&req([0; 64])).unwrap();
    let env = Envelope::new(Platform::DevSnp, ev.bytes.clone()).with_certs(dev.certs());
    let policy = |reg: Registry| {
        danger::accept_snp_dev_root(
            Policy::aws_nitro().unwrap().with_measurements(reg),
            dev.dev_root().unwrap(),
        )
    };
    let good = Registry::default().with_snp(vec![dev.release("dev-snp")]);
    let v = EvidenceVerifier::new(policy(good.clone())).verify(&env, &Expected::default(), now());
    assert_eq!(
        v.outcome
            .as_ref()
            .map(|e| e.release().map(str::to_owned))
            .ok()
            .flatten()
            .as_deref(),
        Some("dev-snp"),
        "{}",
        v.report
    );
    let mut wrong = dev.release("other");
    wrong.measurement[0] ^= 1;
    let v = EvidenceVerifier::new(policy(Registry::default().with_snp(vec![wrong]))).verify(
        &env,
        &Expected::default(),
        now(),
    );
    assert_eq!(
        v.outcome.err().map(|e| e.code()),
        Some("measurement_mismatch")
    );
    // Claimed as hardware SEV-SNP: the dev ARK verifies, the platform check refuses.
    let hw = Envelope::new(Platform::SevSnp, ev.bytes.clone()).with_certs(dev.certs());
    let v = EvidenceVerifier::new(policy(good.clone())).verify(&hw, &Expected::default(), now());
    assert_eq!(v.outcome.err().map(|e| e.code()), Some("platform_mismatch"));
    // Claimed as TDX/SGX, the report goes to the DCAP verifier: a typed refusal, never a pass.
    for p in [Platform::Tdx, Platform::Sgx] {
        let v = EvidenceVerifier::new(policy(good.clone())).verify(
            &Envelope::new(p, ev.bytes.clone()),
            &Expected::default(),
            now(),
        );
        assert_eq!(v.outcome.err().map(|e| e.code()), Some("bad_collateral"));
        assert!(!v.report.verified);
    }
}
