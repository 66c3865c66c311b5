//! `attesta measure eif` against an independent computation (tests/eif/eif_pcrs.py) on EIFs
//! built here from synthetic kernels and ramdisks in nitro-cli's layout (kernel, cmdline,
//! metadata, ramdisks, signature), and the PCRs that must (and must not) move when one part
//! of the image changes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;

use attesta_evidence::cbor::Encoder;
use attesta_evidence::eif::{Crc32, HEADER_BYTES, MAX_SECTIONS};
use serde_json::Value;
use support::*;

const AWS_ROOT_PEM: &str = include_str!("../../evidence/src/roots/aws_nitro_root_g1.pem");

/// The parts of an enclave image.
#[derive(Clone)]
struct Image {
    kernel: Vec<u8>,
    cmdline: Vec<u8>,
    ramdisks: Vec<Vec<u8>>,
    metadata: Vec<u8>,
    /// Signing certificate PEM, and whether to write it as serde writes a `Vec<u8>` (an array
    /// of integers, as nitro-cli does) rather than a CBOR byte string.
    signer: Option<(String, bool)>,
}

/// Deterministic filler bytes.
fn bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

impl Image {
    fn base() -> Image {
        Image {
            kernel: bytes(1, 150_000),
            cmdline: b"reboot=k panic=30 pci=off nomodules console=ttyS0 init=/init".to_vec(),
            ramdisks: vec![bytes(2, 70_000), bytes(3, 200_001)],
            metadata: br#"{"ImageName":"attesta","ImageVersion":"1"}"#.to_vec(),
            signer: None,
        }
    }

    fn signature(&self) -> Option<Vec<u8>> {
        let (pem, as_array) = self.signer.as_ref()?;
        let mut e = Encoder::with_capacity(4096);
        e.array(1).map(2).text("signing_certificate");
        if *as_array {
            e.array(pem.len());
            for b in pem.as_bytes() {
                e.uint(u64::from(*b));
            }
        } else {
            e.bytes(pem.as_bytes());
        }
        e.text("signature").bytes(&bytes(9, 100));
        Some(e.into_bytes())
    }

    /// The EIF file, version 4, CRC filled in.
    fn eif(&self) -> Vec<u8> {
        let mut sections: Vec<(u16, &[u8])> =
            vec![(1, &self.kernel), (2, &self.cmdline), (5, &self.metadata)];
        for r in &self.ramdisks {
            sections.push((3, r));
        }
        let sig = self.signature();
        if let Some(s) = &sig {
            sections.push((4, s));
        }
        let mut head = Vec::with_capacity(HEADER_BYTES);
        head.extend_from_slice(b".eif");
        head.extend_from_slice(&4u16.to_be_bytes());
        head.extend_from_slice(&0u16.to_be_bytes());
        head.extend_from_slice(&0u64.to_be_bytes());
        head.extend_from_slice(&0u64.to_be_bytes());
        head.extend_from_slice(&0u16.to_be_bytes());
        head.extend_from_slice(&(sections.len() as u16).to_be_bytes());
        let mut offsets = [0u64; MAX_SECTIONS];
        let mut sizes = [0u64; MAX_SECTIONS];
        let mut body = Vec::new();
        for (i, (kind, data)) in sections.iter().enumerate() {
            offsets[i] = (HEADER_BYTES + body.len()) as u64;
            sizes[i] = data.len() as u64;
            body.extend_from_slice(&kind.to_be_bytes());
            body.extend_from_slice(&0u16.to_be_bytes());
            body.extend_from_slice(&(data.len() as u64).to_be_bytes());
            body.extend_from_slice(data);
        }
        for v in offsets.iter().chain(sizes.iter()) {
            head.extend_from_slice(&v.to_be_bytes());
        }
        head.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(head.len(), HEADER_BYTES - 4);
        let mut crc = Crc32::default();
        crc.update(&head);
        crc.update(&body);
        head.extend_from_slice(&crc.finish().to_be_bytes());
        head.extend_from_slice(&body);
        head
    }
}

/// A named change to an image and the PCRs it must move.
type Edit = (&'static str, fn(&mut Image), &'static [&'static str]);

/// Rewrites the CRC of an edited EIF.
fn fix_crc(eif: &mut [u8]) {
    let mut crc = Crc32::default();
    crc.update(&eif[..HEADER_BYTES - 4]);
    crc.update(&eif[HEADER_BYTES..]);
    eif[HEADER_BYTES - 4..HEADER_BYTES].copy_from_slice(&crc.finish().to_be_bytes());
}

/// `attesta measure eif --json`: the PCRs, or the error text.
fn ours(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let out = attesta()
        .args(["measure", "eif", "--json", path.to_str().unwrap()])
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Measurements"]["HashAlgorithm"], "Sha384 { ... }");
    Ok(v["Measurements"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("PCR"))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect())
}

/// The independent Python computation.
fn theirs(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let out = std::process::Command::new(python())
        .arg(workspace().join("tests/eif/eif_pcrs.py"))
        .arg(path)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

fn measure_both(dir: &Path, name: &str, image: &Image) -> BTreeMap<String, String> {
    let path = dir.join(format!("{name}.eif"));
    std::fs::write(&path, image.eif()).unwrap();
    let a = ours(&path).unwrap();
    let b = theirs(&path).unwrap();
    assert_eq!(a, b, "{name}: attesta and the independent script disagree");
    a
}

fn changed(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

#[test]
fn eif_pcrs_match_an_independent_computation_and_move_with_their_parts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = Image::base();
    let m = measure_both(d, "base", &base);
    assert_eq!(
        m.keys().collect::<Vec<_>>(),
        ["PCR0", "PCR1", "PCR2"],
        "unsigned: no PCR8"
    );

    // More shapes: one ramdisk only (PCR2 of nothing), three ramdisks, empty cmdline,
    // sections that straddle the reader's buffer, signed in both encodings.
    let mut one = base.clone();
    one.ramdisks.truncate(1);
    measure_both(d, "one-ramdisk", &one);
    let mut three = base.clone();
    three.ramdisks.push(bytes(4, 65_536 * 2 + 1));
    let m3 = measure_both(d, "three", &three);
    assert_eq!(changed(&m, &m3), ["PCR0", "PCR2"]);
    let mut empty = base.clone();
    empty.cmdline.clear();
    measure_both(d, "empty-cmdline", &empty);
    let mut signed = base.clone();
    signed.signer = Some((AWS_ROOT_PEM.to_owned(), true));
    let ms = measure_both(d, "signed", &signed);
    assert_eq!(changed(&m, &ms), ["PCR8"], "signing adds PCR8 only");
    let mut signed_bytes = signed.clone();
    signed_bytes.signer = Some((AWS_ROOT_PEM.to_owned(), false));
    assert_eq!(measure_both(d, "signed-bytes", &signed_bytes), ms);

    // Exactly the expected registers move.
    let cases: [Edit; 5] = [
        ("kernel", |i| i.kernel[77] ^= 1, &["PCR0", "PCR1"]),
        ("cmdline", |i| i.cmdline.push(b' '), &["PCR0", "PCR1"]),
        ("boot-ramdisk", |i| i.ramdisks[0][5] ^= 1, &["PCR0", "PCR1"]),
        (
            "app-ramdisk",
            |i| i.ramdisks[1][199_999] ^= 1,
            &["PCR0", "PCR2"],
        ),
        ("metadata", |i| i.metadata.push(b' '), &[]),
    ];
    for (name, edit, expected) in cases {
        let mut img = base.clone();
        edit(&mut img);
        let mi = measure_both(d, name, &img);
        assert_eq!(changed(&m, &mi), expected, "changing the {name}");
    }
    let mut other_signer = signed.clone();
    let other_pem = attesta_evidence::pem::encode_certificate(&{
        let mut der = attesta_evidence::pem::certificates(AWS_ROOT_PEM).unwrap()[0].clone();
        let last = der.len() - 1;
        der[last] ^= 1;
        der
    });
    other_signer.signer = Some((other_pem, true));
    assert_eq!(
        changed(&ms, &measure_both(d, "other-signer", &other_signer)),
        ["PCR8"]
    );

    // The default output is a registry entry the verifier reads, naming the same values.
    let toml = run_ok(&["measure", "eif", d.join("signed.eif").to_str().unwrap()]);
    let registry = attesta_evidence::Registry::parse(&toml).unwrap();
    let release = &registry.releases()[0];
    assert_eq!(release.name, "signed");
    for (i, k) in [(0u8, "PCR0"), (1, "PCR1"), (2, "PCR2"), (8, "PCR8")] {
        assert_eq!(hex::encode(&release.pcrs[&i]), ms[k], "{k}");
    }
}

#[test]
fn malformed_eifs_are_refused_not_measured() {
    let dir = tempfile::tempdir().unwrap();
    let good = Image::base().eif();
    let kernel_data = HEADER_BYTES + 12;
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();

    let mut flipped = good.clone();
    flipped[kernel_data + 10] ^= 1;
    cases.push(("flipped", flipped, "CRC mismatch"));
    cases.push(("truncated", good[..good.len() - 7].to_vec(), "truncated"));
    cases.push((
        "header-only",
        good[..HEADER_BYTES - 1].to_vec(),
        "truncated",
    ));
    let mut magic = good.clone();
    magic[0] = b'x';
    cases.push(("magic", magic, "bad magic"));
    let mut version = good.clone();
    version[5] = 5;
    fix_crc(&mut version);
    cases.push(("version", version, "version 5"));
    // The table claims the kernel is elsewhere: a table-driven loader would boot other bytes.
    let mut table = good.clone();
    table[28 + 7] ^= 0x10;
    fix_crc(&mut table);
    cases.push(("table", table, "section table"));
    // Bytes after the last section form a section the table does not list.
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xaa]);
    fix_crc(&mut trailing);
    cases.push(("trailing", trailing, "section table"));
    let mut unknown = good.clone();
    unknown[HEADER_BYTES + 1] = 9;
    fix_crc(&mut unknown);
    cases.push(("unknown-section", unknown, "unknown EIF section type 9"));

    for (name, bytes, why) in cases {
        let path = dir.path().join(format!("{name}.eif"));
        std::fs::write(&path, bytes).unwrap();
        let err = ours(&path).expect_err(name);
        assert!(err.contains(why), "{name}: {err}");
    }
    // The independent script agrees that a flipped byte breaks the image.
    let path = dir.path().join("flipped.eif");
    assert!(theirs(&path).is_err());
}

#[test]
fn every_truncation_and_bit_flip_is_refused_without_panicking() {
    let mut small = Image::base();
    small.kernel = bytes(5, 100);
    small.ramdisks = vec![bytes(6, 50), bytes(7, 60)];
    small.signer = Some((AWS_ROOT_PEM.to_owned(), true));
    let eif = small.eif();
    assert!(attesta_evidence::eif::measure(&eif[..]).is_ok());
    for len in 0..eif.len() {
        assert!(
            attesta_evidence::eif::measure(&eif[..len]).is_err(),
            "truncated to {len}"
        );
    }
    // The CRC covers every byte but its own field, and a flip there breaks the match: no
    // single-bit change yields a measurement.
    let mut flipped = eif.clone();
    for pos in 0..eif.len() {
        for bit in 0..8 {
            flipped[pos] ^= 1 << bit;
            assert!(
                attesta_evidence::eif::measure(&flipped[..]).is_err(),
                "bit {bit} of byte {pos}"
            );
            flipped[pos] ^= 1 << bit;
        }
    }
}

/// `attesta measure --tee tsm|gramine|nitro` reads the running hardware TEE; where there is
/// none (this machine) it fails with the missing device named, exit 1, and never prints a
/// dev entry in its place.
#[test]
fn measuring_absent_hardware_fails_and_never_falls_back_to_dev() {
    for (tee, device) in [
        ("tsm", "/sys/kernel/config/tsm/report"),
        ("gramine", "/dev/attestation"),
        ("nitro", "/dev/nsm"),
    ] {
        if Path::new(device).exists() {
            continue;
        }
        let out = attesta().args(["measure", "--tee", tee]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{tee}: {err}");
        assert!(out.stdout.is_empty(), "{tee} printed an entry");
        assert!(err.contains(device), "{tee}: {err}");
    }
}
