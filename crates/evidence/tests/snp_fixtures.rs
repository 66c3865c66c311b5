//! Real SEV-SNP reports from the fixtures: each verifies inside its
//! certificates' window and fails outside it; every mutation fails with a
//! named error, never a pass or a panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use attesta_evidence::snp::{Product, SigningKey, SnpDevRoot};
use attesta_evidence::{
    Expected, Policy, Registry, SnpRelease, SnpVerifier, Status, StepId, UnixTime, VerifyError,
    danger,
};
use common::{at, read};

struct Fixture {
    report: &'static str,
    cert: &'static str,
    inside: &'static str,
    not_before: &'static str,
    not_after: &'static str,
    key: SigningKey,
    version: u32,
    vmpl: u32,
}

const FIXTURES: [Fixture; 3] = [
    Fixture {
        report: "sev-snp/virtee_milan_v2_report.hex",
        cert: "sev-snp/virtee_milan_v2_vcek.der",
        inside: "2024-06-01T00:00:00Z",
        not_before: "2023-04-03T00:00:00Z",
        not_after: "2030-04-04T00:00:00Z",
        key: SigningKey::Vcek,
        version: 2,
        vmpl: 0,
    },
    Fixture {
        report: "sev-snp/trustee_milan_v2_report.bin",
        cert: "sev-snp/trustee_milan_v2_vcek.der",
        inside: "2024-06-01T00:00:00Z",
        not_before: "2023-01-24T00:00:00Z",
        not_after: "2030-01-25T00:00:00Z",
        key: SigningKey::Vcek,
        version: 2,
        vmpl: 0,
    },
    Fixture {
        report: "sev-snp/trustee_milan_v3_vlek_report.bin",
        cert: "sev-snp/trustee_milan_v3_vlek.der",
        inside: "2025-06-01T00:00:00Z",
        not_before: "2024-12-10T00:00:00Z",
        not_after: "2025-12-11T00:00:00Z",
        key: SigningKey::Vlek,
        version: 3,
        vmpl: 1,
    },
];

fn verifier() -> SnpVerifier {
    SnpVerifier::new(Policy::aws_nitro().unwrap())
}

fn report_bytes(f: &Fixture) -> Vec<u8> {
    let raw = read(f.report);
    if f.report.ends_with(".hex") {
        hex::decode(String::from_utf8(raw).unwrap().trim()).unwrap()
    } else {
        raw
    }
}

fn code(v: &attesta_evidence::SnpVerification) -> &'static str {
    v.outcome.as_ref().err().map_or("pass", VerifyError::code)
}

#[test]
fn every_fixture_verifies_inside_its_window() {
    for f in &FIXTURES {
        let v = verifier().verify(
            &read(f.report),
            &[read(f.cert)],
            &Expected::default(),
            at(f.inside),
        );
        let ok = v
            .outcome
            .as_ref()
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", f.report, v.report));
        assert!(v.report.verified);
        assert_eq!(ok.product, Product::Milan);
        assert_eq!(ok.signing_key, f.key);
        assert_eq!(ok.report.version, f.version);
        assert_eq!(ok.report.vmpl, f.vmpl);
        assert_eq!(ok.root, "ARK-Milan");
        assert_eq!(v.report.platform, Some(attesta_evidence::Platform::SevSnp));
        for step in [
            StepId::Report,
            StepId::Endorsement,
            StepId::Product,
            StepId::Chain,
            StepId::Validity,
            StepId::Signature,
            StepId::Tcb,
            StepId::GuestPolicy,
            StepId::Vmpl,
        ] {
            assert_eq!(
                v.report.step(step).map(|s| s.status),
                Some(Status::Pass),
                "{}: {step}",
                f.report
            );
        }
        // The same report as raw bytes (the .hex one) and as base64 text.
        let b64 = base64_encode(&report_bytes(f));
        let v = verifier().verify(
            b64.as_bytes(),
            &[read(f.cert)],
            &Expected::default(),
            at(f.inside),
        );
        assert!(v.report.verified, "{}: base64\n{}", f.report, v.report);
    }
}

fn base64_encode(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                s.push(T[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[test]
fn every_fixture_fails_outside_its_window() {
    for f in &FIXTURES {
        for (when, want) in [
            (f.not_after, "certificate_expired"),
            ("2100-01-01T00:00:00Z", "certificate_expired"),
            (f.not_before, "certificate_not_yet_valid"),
            ("2020-01-01T00:00:00Z", "certificate_not_yet_valid"),
        ] {
            let v = verifier().verify(
                &read(f.report),
                &[read(f.cert)],
                &Expected::default(),
                at(when),
            );
            assert_eq!(code(&v), want, "{} at {when}\n{}", f.report, v.report);
            assert_eq!(
                v.report.step(StepId::Validity).map(|s| s.status),
                Some(Status::Fail)
            );
        }
    }
}

#[test]
fn virtee_negative_flip_fails_on_the_signature() {
    let f = &FIXTURES[0];
    let mut r = report_bytes(f);
    r[21] ^= 0x80;
    let v = verifier().verify(&r, &[read(f.cert)], &Expected::default(), at(f.inside));
    assert_eq!(code(&v), "snp_bad_signature", "{}", v.report);
}

/// A flipped bit anywhere in the signed region or in the signature never
/// passes; when the report still parses, the signature step names it.
#[test]
fn flipped_bytes_in_every_signed_region_never_pass() {
    for f in &FIXTURES {
        let good = report_bytes(f);
        let cert = read(f.cert);
        let mut n = 0;
        for i in (0..0x2A0 + 144).step_by(1) {
            let mut r = good.clone();
            r[i] ^= 0x01;
            let v = verifier().verify(
                &r,
                std::slice::from_ref(&cert),
                &Expected::default(),
                at(f.inside),
            );
            assert!(!v.report.verified, "{}: flip at {i:#x} passed", f.report);
            if v.report.step(StepId::Signature).is_some() {
                assert_eq!(
                    v.report.step(StepId::Signature).map(|s| s.status),
                    Some(Status::Fail),
                    "{}: flip at {i:#x}\n{}",
                    f.report,
                    v.report
                );
            } else if v.report.step(StepId::Signature).is_none() {
                // Stopped before the signature: the parse or product step names why.
                assert!(code(&v).starts_with("snp_"), "{i:#x}: {}", code(&v));
            }
            n += 1;
        }
        assert!(n > 800);
    }
}

#[test]
fn truncated_and_padded_reports_fail_as_length() {
    let f = &FIXTURES[1];
    let good = report_bytes(f);
    for len in [0usize, 1, 100, 0x2A0, 1183] {
        let v = verifier().verify(
            &good[..len],
            &[read(f.cert)],
            &Expected::default(),
            at(f.inside),
        );
        assert!(!v.report.verified);
    }
    let mut long = good.clone();
    long.push(0);
    let v = verifier().verify(&long, &[read(f.cert)], &Expected::default(), at(f.inside));
    assert_eq!(
        code(&v),
        "input",
        "1185 bytes are neither a report nor hex/base64"
    );
    let hex_long = hex::encode(&long);
    let v = verifier().verify(
        hex_long.as_bytes(),
        &[read(f.cert)],
        &Expected::default(),
        at(f.inside),
    );
    assert_eq!(code(&v), "snp_report_length");
}

#[test]
fn swapped_vcek_is_named() {
    // The trustee VCEK is for another chip and TCB than the virtee report.
    let v = verifier().verify(
        &read(FIXTURES[0].report),
        &[read(FIXTURES[1].cert)],
        &Expected::default(),
        at(FIXTURES[0].inside),
    );
    assert_eq!(code(&v), "snp_chip_id_mismatch", "{}", v.report);
    assert_eq!(
        v.report.step(StepId::Signature).map(|s| s.status),
        Some(Status::Fail)
    );
    // A VCEK for a VLEK-signed report, and the reverse.
    let v = verifier().verify(
        &read(FIXTURES[2].report),
        &[read(FIXTURES[1].cert)],
        &Expected::default(),
        at(FIXTURES[2].inside),
    );
    assert_eq!(code(&v), "snp_endorsement_kind_mismatch", "{}", v.report);
    let v = verifier().verify(
        &read(FIXTURES[1].report),
        &[read(FIXTURES[2].cert)],
        &Expected::default(),
        at(FIXTURES[2].inside),
    );
    assert_eq!(code(&v), "snp_endorsement_kind_mismatch", "{}", v.report);
    // No certificate at all, and two endorsement keys.
    let v = verifier().verify(
        &read(FIXTURES[1].report),
        &[],
        &Expected::default(),
        at(FIXTURES[1].inside),
    );
    assert_eq!(code(&v), "snp_missing_endorsement");
    let v = verifier().verify(
        &read(FIXTURES[1].report),
        &[read(FIXTURES[1].cert), read(FIXTURES[0].cert)],
        &Expected::default(),
        at(FIXTURES[1].inside),
    );
    assert_eq!(code(&v), "snp_ambiguous_endorsement");
    // Garbage in place of the certificate.
    let v = verifier().verify(
        &read(FIXTURES[1].report),
        &[vec![0x30, 0x03, 1, 2, 3]],
        &Expected::default(),
        at(FIXTURES[1].inside),
    );
    assert_eq!(code(&v), "bad_certificate");
}

fn pem_der(rel: &str) -> Vec<u8> {
    attesta_evidence::pem::certificates(&String::from_utf8(read(rel)).unwrap())
        .unwrap()
        .remove(0)
}

#[test]
fn supplied_chain_is_checked_against_the_pinned_ark() {
    let f = &FIXTURES[1];
    let ask = pem_der("sev-snp/roots/milan_ask.pem");
    let ark = pem_der("sev-snp/roots/milan_ark.pem");
    // The genuine chain sent along verifies.
    let v = verifier().verify(
        &read(f.report),
        &[read(f.cert), ask.clone(), ark.clone()],
        &Expected::default(),
        at(f.inside),
    );
    assert!(v.report.verified, "{}", v.report);
    // The Genoa ARK offered as the root of a Milan chain.
    let v = verifier().verify(
        &read(f.report),
        &[
            read(f.cert),
            ask.clone(),
            pem_der("sev-snp/roots/genoa_ark.pem"),
        ],
        &Expected::default(),
        at(f.inside),
    );
    assert_eq!(code(&v), "untrusted_root", "{}", v.report);
    // A byte-altered ARK (same names, broken signature) is not the pinned one.
    let mut bent = ark.clone();
    let last = bent.len() - 1;
    bent[last] ^= 1;
    let v = verifier().verify(
        &read(f.report),
        &[read(f.cert), bent],
        &Expected::default(),
        at(f.inside),
    );
    assert_eq!(code(&v), "untrusted_root", "{}", v.report);
    // A look-alike ARK: the same subject, a key we control.
    let v = verifier().verify(
        &read(f.report),
        &[read(f.cert), lookalike_ark()],
        &Expected::default(),
        at(f.inside),
    );
    assert_eq!(code(&v), "untrusted_root", "{}", v.report);
    // The Genoa ASK as the VCEK's issuer: names do not chain.
    let v = verifier().verify(
        &read(f.report),
        &[read(f.cert), pem_der("sev-snp/roots/genoa_ask.pem")],
        &Expected::default(),
        at(f.inside),
    );
    assert!(
        v.report.verified,
        "the built-in Milan ASK still issues it: {}",
        v.report
    );
    // An ASK sent along for a VLEK is ignored: the VLEK chains through the ASVK only.
    let v = verifier().verify(
        &read(FIXTURES[2].report),
        &[read(FIXTURES[2].cert), ask],
        &Expected::default(),
        at(FIXTURES[2].inside),
    );
    assert!(
        v.report.verified,
        "the built-in ASVK issues the VLEK: {}",
        v.report
    );
}

fn lookalike_ark() -> Vec<u8> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::OrganizationalUnitName, "Engineering");
    p.distinguished_name.push(DnType::CountryName, "US");
    p.distinguished_name
        .push(DnType::LocalityName, "Santa Clara");
    p.distinguished_name.push(DnType::StateOrProvinceName, "CA");
    p.distinguished_name
        .push(DnType::OrganizationName, "Advanced Micro Devices");
    p.distinguished_name.push(DnType::CommonName, "ARK-Milan");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    p.self_signed(&key).unwrap().der().to_vec()
}

#[test]
fn tcb_above_the_vcek_fails_the_tcb_step() {
    // The trustee report: current_tcb ucode 206 but reported_tcb 115, the VCEK's.
    let f = &FIXTURES[1];
    let mut r = report_bytes(f);
    assert_ne!(
        r[0x38 + 7],
        r[0x180 + 7],
        "current and reported TCB differ in this fixture"
    );
    r[0x180 + 7] = r[0x180 + 7].wrapping_add(1);
    let v = verifier().verify(&r, &[read(f.cert)], &Expected::default(), at(f.inside));
    assert!(!v.report.verified);
    let tcb = v.report.step(StepId::Tcb).unwrap();
    assert_eq!(tcb.status, Status::Fail);
    assert!(
        tcb.detail
            .contains("differs from the TCB the VCEK was issued for"),
        "{}",
        tcb.detail
    );
    // Reported TCB only selects the VCEK: current_tcb may differ and still pass.
    assert!(
        verifier()
            .verify(
                &report_bytes(f),
                &[read(f.cert)],
                &Expected::default(),
                at(f.inside)
            )
            .report
            .verified
    );
}

#[test]
fn policy_vmpl_measurement_and_report_data() {
    let f = &FIXTURES[2];
    let r = report_bytes(f);
    let now = at(f.inside);
    let cert = [read(f.cert)];
    let vmpl0 = SnpVerifier::new(Policy::aws_nitro().unwrap().with_snp_vmpl(0));
    assert_eq!(
        code(&vmpl0.verify(&r, &cert, &Expected::default(), now)),
        "snp_vmpl_mismatch"
    );
    let vmpl1 = SnpVerifier::new(Policy::aws_nitro().unwrap().with_snp_vmpl(1));
    assert!(
        vmpl1
            .verify(&r, &cert, &Expected::default(), now)
            .report
            .verified
    );

    let measurement: [u8; 48] = r[0x90..0xC0].try_into().unwrap();
    let host_data: [u8; 32] = r[0xC0..0xE0].try_into().unwrap();
    let release = |m: [u8; 48], h: Option<[u8; 32]>| {
        SnpVerifier::new(Policy::aws_nitro().unwrap().with_measurements(
            Registry::default().with_snp(vec![SnpRelease {
                name: "r".into(),
                measurement: m,
                host_data: h,
            }]),
        ))
    };
    let v = release(measurement, Some(host_data)).verify(&r, &cert, &Expected::default(), now);
    assert!(v.report.verified, "{}", v.report);
    assert_eq!(v.outcome.unwrap().release.as_deref(), Some("r"));
    let mut other = measurement;
    other[0] ^= 1;
    assert_eq!(
        code(&release(other, None).verify(&r, &cert, &Expected::default(), now)),
        "measurement_mismatch"
    );
    let mut other_host = host_data;
    other_host[31] ^= 1;
    assert_eq!(
        code(&release(measurement, Some(other_host)).verify(&r, &cert, &Expected::default(), now)),
        "measurement_mismatch"
    );
    // A Nitro-only registry requires measurements SNP cannot meet: fail closed.
    let nitro_only = SnpVerifier::new(
        Policy::aws_nitro().unwrap().with_measurements(
            Registry::parse(&format!(
                "[[releases]]\nname = \"n\"\n[releases.pcrs]\n0 = \"{}\"\n",
                "aa".repeat(48)
            ))
            .unwrap(),
        ),
    );
    assert_eq!(
        code(&nitro_only.verify(&r, &cert, &Expected::default(), now)),
        "measurement_mismatch"
    );

    let rd = r[0x50..0x90].to_vec();
    let v = verifier().verify(
        &r,
        &cert,
        &Expected {
            report_data: Some(rd.clone()),
            ..Default::default()
        },
        now,
    );
    assert!(v.report.verified);
    let mut wrong = rd;
    wrong[0] ^= 1;
    let v = verifier().verify(
        &r,
        &cert,
        &Expected {
            report_data: Some(wrong),
            ..Default::default()
        },
        now,
    );
    assert_eq!(code(&v), "report_data_mismatch");
}

#[test]
fn embedded_roots_are_the_fixture_roots() {
    let roots = attesta_evidence::snp::amd_roots().unwrap();
    for (product, file, pinned) in [
        (
            Product::Milan,
            "milan",
            attesta_evidence::snp::ARK_MILAN_SHA256,
        ),
        (
            Product::Genoa,
            "genoa",
            attesta_evidence::snp::ARK_GENOA_SHA256,
        ),
        (
            Product::Turin,
            "turin",
            attesta_evidence::snp::ARK_TURIN_SHA256,
        ),
    ] {
        let root = roots.iter().find(|r| r.product == product).unwrap();
        assert_eq!(
            root.ark_der(),
            pem_der(&format!("sev-snp/roots/{file}_ark.pem"))
        );
        assert_eq!(root.fingerprint_hex(), pinned);
    }
}

#[test]
fn a_dev_root_does_not_trust_real_reports_more() {
    // Accepting a dev ARK leaves real chains on the pinned AMD roots.
    let dev = SnpDevRoot::from_der("dev", &lookalike_ark()).unwrap();
    let v = SnpVerifier::new(danger::accept_snp_dev_root(
        Policy::aws_nitro().unwrap(),
        dev,
    ));
    let f = &FIXTURES[0];
    let out = v.verify(
        &read(f.report),
        &[read(f.cert)],
        &Expected::default(),
        at(f.inside),
    );
    assert_eq!(
        out.outcome.unwrap().platform,
        attesta_evidence::Platform::SevSnp
    );
    let _ = UnixTime::from_secs(0);
}

/// One verifier, many reports: a cached certificate set never lets a report
/// skip its own checks, nor a time outside the certificates' window pass.
#[test]
fn cached_chains_keep_every_per_report_check() {
    let v = verifier();
    for f in &FIXTURES {
        let cert = [read(f.cert)];
        for _ in 0..2 {
            let out = v.verify(&read(f.report), &cert, &Expected::default(), at(f.inside));
            assert!(out.report.verified, "{}", out.report);
        }
        let out = v.verify(&read(f.report), &cert, &Expected::default(), at(f.inside));
        assert!(
            out.report
                .step(StepId::Chain)
                .unwrap()
                .detail
                .ends_with("(cached)")
        );
        let out = v.verify(
            &read(f.report),
            &cert,
            &Expected::default(),
            at("2100-01-01T00:00:00Z"),
        );
        assert_eq!(code(&out), "certificate_expired");
        let mut r = report_bytes(f);
        r[0x90] ^= 1;
        let out = v.verify(&r, &cert, &Expected::default(), at(f.inside));
        assert_eq!(code(&out), "snp_bad_signature", "{}", out.report);
    }
    // The cached trustee VCEK with the virtee report: still another chip.
    let out = v.verify(
        &read(FIXTURES[0].report),
        &[read(FIXTURES[1].cert)],
        &Expected::default(),
        at(FIXTURES[0].inside),
    );
    assert_eq!(code(&out), "snp_chip_id_mismatch");
}
