//! The PCRs an AWS Nitro Enclave image file (EIF) will report, computed from the file alone,
//! exactly as `nitro-cli describe-eif` (and `build-enclave`) report them:
//!
//! - PCR0 = extend(kernel ‖ cmdline ‖ every ramdisk), in file order;
//! - PCR1 = extend(kernel ‖ cmdline ‖ first ramdisk) (the boot ramdisk);
//! - PCR2 = extend(every later ramdisk) (the application);
//! - PCR8 = extend(DER of the signing certificate), only for signed images;
//!
//! where extend(x) = SHA-384(48 zero bytes ‖ SHA-384(x)), a PCR extended once from zero.
//!
//! Layout (big-endian): a 548-byte header (magic `.eif`, version, flags, default memory and
//! CPUs, section count, 32 section offsets, 32 section sizes, CRC-32 of everything after it
//! and of the header without the CRC field), then sections, each a 12-byte header (type,
//! flags, size) and its bytes. The section table in the header must agree with the sections
//! as they follow each other: a loader that trusts the table and one that walks the file must
//! see the same image, or the measurement printed here would not be the one that boots.
//!
//! Written here rather than taken from the `aws-nitro-enclaves-image-format` crate, whose
//! reader pulls in OpenSSL and the AWS SDK (KMS signing) for what is a hash over a file.

use std::io::Read;

use aws_lc_rs::digest;

use crate::cbor::{self, Value};
use crate::registry::Release;

/// Size of the EIF header.
pub const HEADER_BYTES: usize = 548;
/// Size of a section header.
pub const SECTION_HEADER_BYTES: usize = 12;
/// Most sections an EIF header can list.
pub const MAX_SECTIONS: usize = 32;
/// The EIF magic, `.eif`.
pub const MAGIC: [u8; 4] = *b".eif";
/// Oldest and newest format versions understood (CRC since 2, signature 3, metadata 4).
pub const VERSIONS: std::ops::RangeInclusive<u16> = 2..=4;
/// Largest signature section read into memory (a certificate and a COSE signature).
pub const MAX_SIGNATURE_BYTES: u64 = 1 << 20;

/// Section types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SectionKind {
    /// The kernel image.
    Kernel,
    /// The kernel command line.
    Cmdline,
    /// A ramdisk (the first boots, the later ones are the application).
    Ramdisk,
    /// PCR0 signature: signing certificate and COSE_Sign1.
    Signature,
    /// Build metadata (JSON; not measured).
    Metadata,
}

impl SectionKind {
    fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => SectionKind::Kernel,
            2 => SectionKind::Cmdline,
            3 => SectionKind::Ramdisk,
            4 => SectionKind::Signature,
            5 => SectionKind::Metadata,
            _ => return None,
        })
    }
}

/// One section as found in the file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Section {
    /// Its type.
    pub kind: SectionKind,
    /// Offset of its section header in the file.
    pub offset: u64,
    /// Size of its data.
    pub size: u64,
}

/// Why a file is not an EIF whose measurement can be stated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EifError {
    /// Reading the file failed.
    #[error("reading the EIF: {0}")]
    Io(#[source] std::io::Error),
    /// The file does not start with `.eif`.
    #[error("not an EIF (bad magic)")]
    Magic,
    /// A format version this reader does not know.
    #[error("EIF version {0} is not supported (supported: 2 to 4)")]
    Version(u16),
    /// The file ends inside a header or a section.
    #[error("the EIF is truncated inside {0}")]
    Truncated(&'static str),
    /// A section type outside the format.
    #[error("unknown EIF section type {0}")]
    UnknownSection(u16),
    /// More sections than a header can list.
    #[error("the EIF has more than {MAX_SECTIONS} sections")]
    TooManySections,
    /// The header's section table disagrees with the sections in the file.
    #[error("the EIF header's section table does not match its sections: {0}")]
    SectionTable(String),
    /// The CRC-32 in the header does not match the contents.
    #[error("EIF CRC mismatch: header says {expected:08x}, contents give {computed:08x}")]
    Crc {
        /// From the header.
        expected: u32,
        /// Over the file.
        computed: u32,
    },
    /// A section every bootable image has is missing or repeated.
    #[error("the EIF must have exactly one {0} section")]
    Required(&'static str),
    /// No ramdisk at all.
    #[error("the EIF has no ramdisk")]
    NoRamdisk,
    /// The signature section is larger than [`MAX_SIGNATURE_BYTES`].
    #[error("the EIF signature section is {0} bytes, more than allowed")]
    SignatureTooLarge(u64),
    /// The signature section is not the expected CBOR.
    #[error("the EIF signature section is malformed: {0}")]
    Signature(&'static str),
    /// The signature section's CBOR does not decode.
    #[error("the EIF signature section is not CBOR")]
    SignatureCbor(#[source] cbor::CborError),
    /// The signing certificate is not PEM.
    #[error("the EIF signing certificate is not PEM")]
    SignaturePem(#[source] crate::pem::PemError),
}

/// What `measure` found: the PCRs and the facts they were computed from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EifMeasurement {
    /// Format version.
    pub version: u16,
    /// Built for aarch64 (else x86_64).
    pub aarch64: bool,
    /// Default enclave memory as stored in the header (nitro-cli leaves it 0).
    pub default_mem: u64,
    /// Default vCPUs as stored in the header (nitro-cli leaves it 0).
    pub default_cpus: u64,
    /// The sections in file order.
    pub sections: Vec<Section>,
    /// PCR0: kernel, cmdline and every ramdisk.
    #[serde(with = "hex48")]
    pub pcr0: [u8; 48],
    /// PCR1: kernel, cmdline and the boot ramdisk.
    #[serde(with = "hex48")]
    pub pcr1: [u8; 48],
    /// PCR2: the application ramdisks.
    #[serde(with = "hex48")]
    pub pcr2: [u8; 48],
    /// PCR8: the signing certificate, for signed images.
    #[serde(with = "hex48opt")]
    pub pcr8: Option<[u8; 48]>,
}

mod hex48 {
    pub(crate) fn serialize<S: serde::Serializer>(v: &[u8; 48], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
}

mod hex48opt {
    pub(crate) fn serialize<S: serde::Serializer>(
        v: &Option<[u8; 48]>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&hex::encode(v)),
            None => s.serialize_none(),
        }
    }
}

impl EifMeasurement {
    /// The registry entry that accepts exactly this image: PCR0, PCR1, PCR2 and, when
    /// signed, PCR8.
    pub fn release(&self, name: &str) -> Release {
        let mut pcrs = std::collections::BTreeMap::new();
        pcrs.insert(0, self.pcr0.to_vec());
        pcrs.insert(1, self.pcr1.to_vec());
        pcrs.insert(2, self.pcr2.to_vec());
        if let Some(p) = self.pcr8 {
            pcrs.insert(8, p.to_vec());
        }
        Release {
            name: name.to_owned(),
            pcrs,
        }
    }

    /// The `Measurements` object as `nitro-cli describe-eif` prints it (also a registry
    /// input: `{"Measurements": {...}}`).
    pub fn describe_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("HashAlgorithm".into(), "Sha384 { ... }".into());
        m.insert("PCR0".into(), hex::encode(self.pcr0).into());
        m.insert("PCR1".into(), hex::encode(self.pcr1).into());
        m.insert("PCR2".into(), hex::encode(self.pcr2).into());
        if let Some(p) = self.pcr8 {
            m.insert("PCR8".into(), hex::encode(p).into());
        }
        serde_json::json!({ "EifVersion": self.version, "Measurements": m })
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`), the EIF's checksum.
#[derive(Debug, Clone, Copy)]
pub struct Crc32(u32);

impl Default for Crc32 {
    fn default() -> Self {
        Crc32(0xffff_ffff)
    }
}

impl Crc32 {
    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        let mut c = self.0;
        for b in data {
            c ^= u32::from(*b);
            for _ in 0..8 {
                c = (c >> 1) ^ (0xedb8_8320 & 0u32.wrapping_sub(c & 1));
            }
        }
        self.0 = c;
    }

    /// The checksum of everything added.
    pub fn finish(self) -> u32 {
        !self.0
    }
}

/// extend(x) = SHA-384(0^48 ‖ SHA-384(x)), given SHA-384(x)'s context.
fn extend(ctx: digest::Context) -> [u8; 48] {
    let inner = ctx.finish();
    let mut outer = digest::Context::new(&digest::SHA384);
    outer.update(&[0u8; 48]);
    outer.update(inner.as_ref());
    let mut out = [0u8; 48];
    out.copy_from_slice(outer.finish().as_ref());
    out
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        a.copy_from_slice(s);
    }
    u16::from_be_bytes(a)
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

/// Fills `buf` from `r`; `Ok(false)` on a clean end of file before the first byte.
fn read_full(r: &mut impl Read, buf: &mut [u8], what: &'static str) -> Result<bool, EifError> {
    let mut got = 0;
    while got < buf.len() {
        let n = match r.read(buf.get_mut(got..).unwrap_or_default()) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(EifError::Io(e)),
        };
        if n == 0 {
            return if got == 0 {
                Ok(false)
            } else {
                Err(EifError::Truncated(what))
            };
        }
        got += n;
    }
    Ok(true)
}

/// The header fields the measurement needs.
struct Header {
    version: u16,
    flags: u16,
    default_mem: u64,
    default_cpus: u64,
    num_sections: u16,
    offsets: [u64; MAX_SECTIONS],
    sizes: [u64; MAX_SECTIONS],
    crc: u32,
}

fn parse_header(h: &[u8; HEADER_BYTES]) -> Result<Header, EifError> {
    if h.get(..4) != Some(&MAGIC[..]) {
        return Err(EifError::Magic);
    }
    let version = be_u16(h, 4);
    if !VERSIONS.contains(&version) {
        return Err(EifError::Version(version));
    }
    let mut offsets = [0u64; MAX_SECTIONS];
    let mut sizes = [0u64; MAX_SECTIONS];
    for (i, (o, z)) in offsets.iter_mut().zip(sizes.iter_mut()).enumerate() {
        *o = be_u64(h, 28 + 8 * i);
        *z = be_u64(h, 28 + 8 * MAX_SECTIONS + 8 * i);
    }
    Ok(Header {
        version,
        flags: be_u16(h, 6),
        default_mem: be_u64(h, 8),
        default_cpus: be_u64(h, 16),
        num_sections: be_u16(h, 26),
        offsets,
        sizes,
        crc: be_u32(h, HEADER_BYTES - 4),
    })
}

/// Reads an EIF from `r` (streaming: memory stays bounded whatever the image size) and
/// computes its PCRs. Fails closed on anything `nitro-cli` would not boot the same way:
/// unknown versions or sections, a wrong CRC, a section table that disagrees with the file,
/// bytes after the last section, a missing kernel, cmdline or ramdisk.
pub fn measure(mut r: impl Read) -> Result<EifMeasurement, EifError> {
    let mut head = [0u8; HEADER_BYTES];
    if !read_full(&mut r, &mut head, "the header")? {
        return Err(EifError::Truncated("the header"));
    }
    let header = parse_header(&head)?;
    let mut crc = Crc32::default();
    crc.update(head.get(..HEADER_BYTES - 4).unwrap_or_default());

    let mut image = digest::Context::new(&digest::SHA384);
    let mut boot = digest::Context::new(&digest::SHA384);
    let mut app = digest::Context::new(&digest::SHA384);
    let mut cert: Option<[u8; 48]> = None;
    let mut sections: Vec<Section> = Vec::new();
    let mut offset = HEADER_BYTES as u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut sh = [0u8; SECTION_HEADER_BYTES];
        if !read_full(&mut r, &mut sh, "a section header")? {
            break;
        }
        crc.update(&sh);
        let raw_kind = be_u16(&sh, 0);
        let kind = SectionKind::from_u16(raw_kind).ok_or(EifError::UnknownSection(raw_kind))?;
        let size = be_u64(&sh, 4);
        if sections.len() == MAX_SECTIONS {
            return Err(EifError::TooManySections);
        }
        let ramdisks = sections
            .iter()
            .filter(|s| s.kind == SectionKind::Ramdisk)
            .count();
        sections.push(Section { kind, offset, size });
        if kind == SectionKind::Signature {
            if size > MAX_SIGNATURE_BYTES {
                return Err(EifError::SignatureTooLarge(size));
            }
            let mut data = vec![0u8; usize::try_from(size).unwrap_or(0)];
            if !read_full(&mut r, &mut data, "the signature section")? {
                return Err(EifError::Truncated("the signature section"));
            }
            crc.update(&data);
            cert = Some(signing_certificate_pcr(&data)?);
        } else {
            let mut left = size;
            while left > 0 {
                let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
                let chunk = buf.get_mut(..n).unwrap_or_default();
                if !read_full(&mut r, chunk, "a section")? {
                    return Err(EifError::Truncated("a section"));
                }
                crc.update(chunk);
                match kind {
                    SectionKind::Kernel | SectionKind::Cmdline => {
                        image.update(chunk);
                        boot.update(chunk);
                    }
                    SectionKind::Ramdisk => {
                        image.update(chunk);
                        if ramdisks == 0 {
                            boot.update(chunk);
                        } else {
                            app.update(chunk);
                        }
                    }
                    SectionKind::Metadata | SectionKind::Signature => {}
                }
                left -= n as u64;
            }
        }
        offset = offset
            .checked_add(SECTION_HEADER_BYTES as u64)
            .and_then(|o| o.checked_add(size))
            .ok_or(EifError::Truncated("a section"))?;
    }

    check_table(&header, &sections)?;
    let computed = crc.finish();
    if computed != header.crc {
        return Err(EifError::Crc {
            expected: header.crc,
            computed,
        });
    }
    for (kind, name) in [
        (SectionKind::Kernel, "kernel"),
        (SectionKind::Cmdline, "cmdline"),
    ] {
        if sections.iter().filter(|s| s.kind == kind).count() != 1 {
            return Err(EifError::Required(name));
        }
    }
    if sections
        .iter()
        .filter(|s| s.kind == SectionKind::Signature)
        .count()
        > 1
    {
        return Err(EifError::Required("signature"));
    }
    if !sections.iter().any(|s| s.kind == SectionKind::Ramdisk) {
        return Err(EifError::NoRamdisk);
    }
    Ok(EifMeasurement {
        version: header.version,
        aarch64: header.flags & 1 == 1,
        default_mem: header.default_mem,
        default_cpus: header.default_cpus,
        sections,
        pcr0: extend(image),
        pcr1: extend(boot),
        pcr2: extend(app),
        pcr8: cert,
    })
}

/// The header's table must list exactly the sections found, in file order.
fn check_table(header: &Header, sections: &[Section]) -> Result<(), EifError> {
    if usize::from(header.num_sections) != sections.len() {
        return Err(EifError::SectionTable(format!(
            "header lists {} sections, the file has {}",
            header.num_sections,
            sections.len()
        )));
    }
    for (i, s) in sections.iter().enumerate() {
        let (o, z) = (
            header.offsets.get(i).copied().unwrap_or(0),
            header.sizes.get(i).copied().unwrap_or(0),
        );
        if (o, z) != (s.offset, s.size) {
            return Err(EifError::SectionTable(format!(
                "entry {i} says offset {o} size {z}, the file has offset {} size {}",
                s.offset, s.size
            )));
        }
    }
    let unused_clear = (sections.len()..MAX_SECTIONS)
        .all(|i| header.offsets.get(i) == Some(&0) && header.sizes.get(i) == Some(&0));
    if !unused_clear {
        return Err(EifError::SectionTable(
            "entries past the section count are not zero".into(),
        ));
    }
    Ok(())
}

/// PCR8 from the signature section: a CBOR array whose first element is a map with
/// `signing_certificate` (PEM, as a byte string or an array of byte values, which is how
/// serde writes a `Vec<u8>`) and `signature` (COSE_Sign1 over PCR0, not checked here).
fn signing_certificate_pcr(data: &[u8]) -> Result<[u8; 48], EifError> {
    let v = cbor::decode(data).map_err(EifError::SignatureCbor)?;
    let Value::Array(items) = v else {
        return Err(EifError::Signature("not an array"));
    };
    let Some(Value::Map(first)) = items.first() else {
        return Err(EifError::Signature("no signature entry"));
    };
    let field = |name: &str| {
        first
            .iter()
            .find(|(k, _)| matches!(k, Value::Text(t) if t == name))
            .map(|(_, v)| v)
    };
    let pem = bytes_of(
        field("signing_certificate").ok_or(EifError::Signature("no signing_certificate"))?,
    )?;
    if field("signature").is_none() {
        return Err(EifError::Signature("no signature"));
    }
    let text =
        std::str::from_utf8(&pem).map_err(|_| EifError::Signature("certificate not text"))?;
    let ders = crate::pem::certificates(text).map_err(EifError::SignaturePem)?;
    let der = ders.first().ok_or(EifError::Signature("no certificate"))?;
    let mut ctx = digest::Context::new(&digest::SHA384);
    ctx.update(der);
    Ok(extend(ctx))
}

fn bytes_of(v: &Value<'_>) -> Result<Vec<u8>, EifError> {
    match v {
        Value::Bytes(b) => Ok(b.to_vec()),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::Uint(n) => u8::try_from(*n).map_err(|_| EifError::Signature("byte > 255")),
                _ => Err(EifError::Signature("byte array holds a non-integer")),
            })
            .collect(),
        _ => Err(EifError::Signature("certificate is not bytes")),
    }
}
