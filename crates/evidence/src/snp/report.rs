//! The SEV-SNP `ATTESTATION_REPORT` structure (SEV-SNP ABI spec, table
//! "ATTESTATION_REPORT Structure"), versions 2, 3 and 5: 1184 bytes,
//! little-endian, ECDSA P-384/SHA-384 signature over bytes `[0, 0x2A0)`
//! with `r` and `s` stored little-endian in 72-byte fields.

use std::fmt;

use crate::snp::error::SnpError;

/// Size of every report version we accept.
pub const REPORT_LEN: usize = 0x4A0;
/// End of the signed region (start of the signature).
pub const SIGNED_LEN: usize = 0x2A0;
/// The only signature algorithm SNP defines: ECDSA P-384 with SHA-384.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;
/// Report versions this parser understands.
pub const SUPPORTED_VERSIONS: [u32; 3] = [2, 3, 5];

/// AMD processor generation: selects the ARK a chain must end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Product {
    /// EPYC 7003 (family 19h, models 00h-0Fh).
    Milan,
    /// EPYC 9004/8004 (family 19h, models 10h-1Fh and A0h-AFh).
    Genoa,
    /// EPYC 9005 (family 1Ah, models 00h-1Fh).
    Turin,
}

impl Product {
    /// Every product, in the order roots are listed.
    pub const ALL: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];

    /// The product of a CPUID family/model pair, if it is one we know.
    pub fn from_cpuid(family: u8, model: u8) -> Option<Self> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Product::Milan),
            (0x19, 0x10..=0x1F | 0xA0..=0xAF) => Some(Product::Genoa),
            (0x1A, 0x00..=0x1F) => Some(Product::Turin),
            _ => None,
        }
    }

    /// The product named by a VCEK/VLEK `productName` extension (`Milan-B0`, `Genoa`, ...).
    pub fn from_name(name: &str) -> Option<Self> {
        let base = name.split('-').next().unwrap_or(name);
        Product::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(base))
    }

    /// `Milan`, `Genoa`, `Turin`: as AMD's certificates spell it.
    pub fn name(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }

    /// Turin and later put an FMC SVN in the TCB and lay it out differently.
    pub fn has_fmc(self) -> bool {
        matches!(self, Product::Turin)
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `TCB_VERSION` (u64) split into its security patch levels. The layout
/// depends on the product, so it is kept raw and decoded per product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct RawTcb(pub u64);

/// The SPLs of a TCB, decoded for one product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Tcb {
    /// Firmware (FMC) SPL: Turin and later only.
    pub fmc: Option<u8>,
    /// Bootloader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// CPU microcode SPL.
    pub microcode: u8,
}

impl RawTcb {
    /// Decodes the SPLs as `product` lays them out.
    pub fn decode(self, product: Product) -> Tcb {
        let b = self.0.to_le_bytes();
        let [b0, b1, b2, b3, _, _, b6, b7] = b;
        if product.has_fmc() {
            Tcb {
                fmc: Some(b0),
                bootloader: b1,
                tee: b2,
                snp: b3,
                microcode: b7,
            }
        } else {
            Tcb {
                fmc: None,
                bootloader: b0,
                tee: b1,
                snp: b6,
                microcode: b7,
            }
        }
    }

    /// The bytes a product's layout leaves reserved are zero.
    pub fn reserved_zero(self, product: Product) -> bool {
        let [_, _, b2, b3, b4, b5, b6, _] = self.0.to_le_bytes();
        if product.has_fmc() {
            b4 == 0 && b5 == 0 && b6 == 0
        } else {
            b2 == 0 && b3 == 0 && b4 == 0 && b5 == 0
        }
    }

    /// Encodes SPLs into `product`'s layout (for the dev signer and tests).
    pub fn encode(tcb: Tcb, product: Product) -> Self {
        let b = if product.has_fmc() {
            [
                tcb.fmc.unwrap_or(0),
                tcb.bootloader,
                tcb.tee,
                tcb.snp,
                0,
                0,
                0,
                tcb.microcode,
            ]
        } else {
            [tcb.bootloader, tcb.tee, 0, 0, 0, 0, tcb.snp, tcb.microcode]
        };
        RawTcb(u64::from_le_bytes(b))
    }
}

impl fmt::Display for Tcb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(fmc) = self.fmc {
            write!(f, "fmc {fmc} / ")?;
        }
        write!(
            f,
            "bootloader {} / tee {} / snp {} / microcode {}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

/// Which key signed the report (`flags` bits 2-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SigningKey {
    /// Versioned Chip Endorsement Key: per chip and TCB.
    Vcek,
    /// Versioned Loaded Endorsement Key: per cloud provider and TCB.
    Vlek,
}

impl fmt::Display for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SigningKey::Vcek => "VCEK",
            SigningKey::Vlek => "VLEK",
        })
    }
}

/// The guest policy (`POLICY` field) bits verifiers care about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct GuestPolicy(pub u64);

impl GuestPolicy {
    /// Bit 16: reserved, must be one.
    pub const RESERVED_ONE: u64 = 1 << 16;
    /// Bit 17: SMT allowed.
    pub const SMT: u64 = 1 << 17;
    /// Bit 18: a migration agent may be associated with the guest.
    pub const MIGRATE_MA: u64 = 1 << 18;
    /// Bit 19: the hypervisor may debug the guest (read and write its memory).
    pub const DEBUG: u64 = 1 << 19;
    /// Bit 20: the guest may only run on a single socket.
    pub const SINGLE_SOCKET: u64 = 1 << 20;

    /// Debugging allowed: the host can read the guest's secrets.
    pub fn debug(self) -> bool {
        self.0 & Self::DEBUG != 0
    }

    /// A migration agent may export the guest's memory.
    pub fn migration_agent(self) -> bool {
        self.0 & Self::MIGRATE_MA != 0
    }

    /// SMT (hyper-threading) allowed.
    pub fn smt(self) -> bool {
        self.0 & Self::SMT != 0
    }
}

/// A parsed report. Every field is as the firmware wrote it; nothing here is
/// trusted before the signature and chain checks pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationReport {
    /// Report format version (2, 3 or 5).
    pub version: u32,
    /// Guest SVN from the ID block.
    pub guest_svn: u32,
    /// Guest policy.
    pub policy: GuestPolicy,
    /// Family ID from the ID block.
    pub family_id: [u8; 16],
    /// Image ID from the ID block.
    pub image_id: [u8; 16],
    /// The VMPL the report was requested from.
    pub vmpl: u32,
    /// Signature algorithm (1 = ECDSA P-384/SHA-384).
    pub signature_algo: u32,
    /// TCB the platform runs now.
    pub current_tcb: RawTcb,
    /// Platform info bits (SMT enabled, TSME enabled, ...).
    pub platform_info: u64,
    /// Raw `flags` (author key, mask chip key, signing key).
    pub flags: u32,
    /// Guest-chosen data: our key-set binding.
    pub report_data: [u8; 64],
    /// Launch measurement (SHA-384).
    pub measurement: [u8; 48],
    /// Host-provided data fixed at launch.
    pub host_data: [u8; 32],
    /// SHA-384 of the ID key, if an ID block was used.
    pub id_key_digest: [u8; 48],
    /// SHA-384 of the author key, if any.
    pub author_key_digest: [u8; 48],
    /// Report ID of the guest.
    pub report_id: [u8; 32],
    /// Report ID of the migration agent.
    pub report_id_ma: [u8; 32],
    /// The TCB the VCEK used to sign this report was derived from.
    pub reported_tcb: RawTcb,
    /// CPUID family/model/stepping (v3+; `None` for v2).
    pub cpuid: Option<(u8, u8, u8)>,
    /// Chip identifier (zero when masked or VLEK-signed).
    pub chip_id: [u8; 64],
    /// Committed TCB.
    pub committed_tcb: RawTcb,
    /// Firmware build/minor/major now running.
    pub current_version: (u8, u8, u8),
    /// Committed firmware build/minor/major.
    pub committed_version: (u8, u8, u8),
    /// TCB at launch.
    pub launch_tcb: RawTcb,
    /// v5: launch and current mitigation vectors.
    pub mit_vectors: Option<(u64, u64)>,
    /// Signature `r`, big-endian, 48 bytes.
    pub sig_r: [u8; 48],
    /// Signature `s`, big-endian, 48 bytes.
    pub sig_s: [u8; 48],
    /// Bytes `[0, 0x2A0)`: what the signature covers.
    pub signed: Vec<u8>,
}

fn field<const N: usize>(b: &[u8], at: usize) -> Result<[u8; N], SnpError> {
    b.get(at..at + N)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(SnpError::ReportLength { len: b.len() })
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, SnpError> {
    field::<4>(b, at).map(u32::from_le_bytes)
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, SnpError> {
    field::<8>(b, at).map(u64::from_le_bytes)
}

/// A 72-byte little-endian signature component as 48 big-endian bytes; the
/// 24 high bytes must be zero (P-384 scalars are 48 bytes).
fn sig_component(b: &[u8], at: usize, name: &'static str) -> Result<[u8; 48], SnpError> {
    let raw = field::<72>(b, at)?;
    let (low, high) = raw.split_at(48);
    if high.iter().any(|&x| x != 0) {
        return Err(SnpError::MalformedSignature(name));
    }
    let mut out = [0u8; 48];
    for (o, i) in out.iter_mut().zip(low.iter().rev()) {
        *o = *i;
    }
    Ok(out)
}

impl AttestationReport {
    /// Parses the 1184 bytes of a report. Checks size, version, signature
    /// algorithm and signing-key field; nothing cryptographic.
    pub fn parse(b: &[u8]) -> Result<Self, SnpError> {
        if b.len() != REPORT_LEN {
            return Err(SnpError::ReportLength { len: b.len() });
        }
        let version = u32_at(b, 0x00)?;
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(SnpError::UnsupportedVersion(version));
        }
        let signature_algo = u32_at(b, 0x34)?;
        if signature_algo != SIG_ALGO_ECDSA_P384_SHA384 {
            return Err(SnpError::UnsupportedSignatureAlgorithm(signature_algo));
        }
        let flags = u32_at(b, 0x48)?;
        let cpuid = if version >= 3 {
            let [fam, model, step] = field::<3>(b, 0x188)?;
            Some((fam, model, step))
        } else {
            None
        };
        let mit_vectors = if version >= 5 {
            Some((u64_at(b, 0x1F8)?, u64_at(b, 0x200)?))
        } else {
            None
        };
        let ver3 = |at| field::<3>(b, at).map(|[build, minor, major]| (build, minor, major));
        let report = AttestationReport {
            version,
            guest_svn: u32_at(b, 0x04)?,
            policy: GuestPolicy(u64_at(b, 0x08)?),
            family_id: field(b, 0x10)?,
            image_id: field(b, 0x20)?,
            vmpl: u32_at(b, 0x30)?,
            signature_algo,
            current_tcb: RawTcb(u64_at(b, 0x38)?),
            platform_info: u64_at(b, 0x40)?,
            flags,
            report_data: field(b, 0x50)?,
            measurement: field(b, 0x90)?,
            host_data: field(b, 0xC0)?,
            id_key_digest: field(b, 0xE0)?,
            author_key_digest: field(b, 0x110)?,
            report_id: field(b, 0x140)?,
            report_id_ma: field(b, 0x160)?,
            reported_tcb: RawTcb(u64_at(b, 0x180)?),
            cpuid,
            chip_id: field(b, 0x1A0)?,
            committed_tcb: RawTcb(u64_at(b, 0x1E0)?),
            current_version: ver3(0x1E8)?,
            committed_version: ver3(0x1EC)?,
            launch_tcb: RawTcb(u64_at(b, 0x1F0)?),
            mit_vectors,
            sig_r: sig_component(b, 0x2A0, "r")?,
            sig_s: sig_component(b, 0x2A0 + 72, "s")?,
            signed: b.get(..SIGNED_LEN).unwrap_or_default().to_vec(),
        };
        report.signing_key()?;
        if report.vmpl > 3 {
            return Err(SnpError::InvalidVmpl(report.vmpl));
        }
        Ok(report)
    }

    /// Which key signed the report, from `flags` bits 2-4.
    pub fn signing_key(&self) -> Result<SigningKey, SnpError> {
        match (self.flags >> 2) & 0b111 {
            0 => Ok(SigningKey::Vcek),
            1 => Ok(SigningKey::Vlek),
            other => Err(SnpError::UnsupportedSigningKey(other)),
        }
    }

    /// `flags` bit 1: the chip id was masked (zero) on request.
    pub fn chip_id_masked(&self) -> bool {
        self.flags & 0b10 != 0
    }

    /// The product the report's CPUID fields name (v3+), if known.
    pub fn cpuid_product(&self) -> Option<Result<Product, SnpError>> {
        self.cpuid.map(|(fam, model, _)| {
            Product::from_cpuid(fam, model).ok_or(SnpError::UnknownCpuid { family: fam, model })
        })
    }

    /// The signature as `r || s`, big-endian (what aws-lc's FIXED format takes).
    pub fn signature_fixed(&self) -> [u8; 96] {
        let mut out = [0u8; 96];
        let (r, s) = out.split_at_mut(48);
        r.copy_from_slice(&self.sig_r);
        s.copy_from_slice(&self.sig_s);
        out
    }
}

/// Writes a report body for the dev signer: the fields a guest controls or
/// the firmware sets, in the exact layout [`AttestationReport::parse`] reads.
/// The signature area is left zero for [`set_signature`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportBody {
    /// Version (2, 3 or 5).
    pub version: u32,
    /// Guest policy.
    pub policy: u64,
    /// VMPL.
    pub vmpl: u32,
    /// `flags` (signing key in bits 2-4).
    pub flags: u32,
    /// Report data.
    pub report_data: [u8; 64],
    /// Launch measurement.
    pub measurement: [u8; 48],
    /// Host data.
    pub host_data: [u8; 32],
    /// Reported, current, committed and launch TCB (one value for all).
    pub tcb: RawTcb,
    /// CPUID family/model/stepping written for v3+.
    pub cpuid: (u8, u8, u8),
    /// Chip id.
    pub chip_id: [u8; 64],
}

fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = out.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

impl ReportBody {
    /// The 1184 report bytes with a zero signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; REPORT_LEN];
        put(&mut b, 0x00, &self.version.to_le_bytes());
        put(&mut b, 0x08, &self.policy.to_le_bytes());
        put(&mut b, 0x30, &self.vmpl.to_le_bytes());
        put(&mut b, 0x34, &SIG_ALGO_ECDSA_P384_SHA384.to_le_bytes());
        for at in [0x38, 0x180, 0x1E0, 0x1F0] {
            put(&mut b, at, &self.tcb.0.to_le_bytes());
        }
        put(&mut b, 0x48, &self.flags.to_le_bytes());
        put(&mut b, 0x50, &self.report_data);
        put(&mut b, 0x90, &self.measurement);
        put(&mut b, 0xC0, &self.host_data);
        if self.version >= 3 {
            let (f, m, s) = self.cpuid;
            put(&mut b, 0x188, &[f, m, s]);
        }
        put(&mut b, 0x1A0, &self.chip_id);
        b
    }
}

/// Writes a big-endian `r || s` P-384 signature into a report's signature
/// field (little-endian, 72-byte components).
pub fn set_signature(report: &mut [u8], fixed_rs: &[u8]) {
    let (r, s) = fixed_rs.split_at(fixed_rs.len().min(48));
    for (k, comp) in [r, s].into_iter().enumerate() {
        let mut le = [0u8; 72];
        for (o, i) in le.iter_mut().zip(comp.iter().rev()) {
            *o = *i;
        }
        put(report, SIGNED_LEN + 72 * k, &le);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcb_layouts_round_trip() {
        let t = Tcb {
            fmc: None,
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
        };
        let raw = RawTcb::encode(t, Product::Milan);
        assert_eq!(raw.0.to_le_bytes(), [3, 0, 0, 0, 0, 0, 8, 115]);
        assert_eq!(raw.decode(Product::Milan), t);
        assert!(raw.reserved_zero(Product::Milan));
        let turin = Tcb { fmc: Some(1), ..t };
        let raw = RawTcb::encode(turin, Product::Turin);
        assert_eq!(raw.decode(Product::Turin), turin);
        assert!(!raw.reserved_zero(Product::Milan));
    }

    #[test]
    fn body_parses_back() {
        let body = ReportBody {
            version: 3,
            policy: 0x30000,
            vmpl: 1,
            flags: 1 << 2,
            report_data: [7; 64],
            measurement: [8; 48],
            host_data: [9; 32],
            tcb: RawTcb(0x7308_0000_0000_0003),
            cpuid: (0x19, 0x01, 0x01),
            chip_id: [0; 64],
        };
        let mut bytes = body.to_bytes();
        set_signature(&mut bytes, &[0x11; 96]);
        let r = AttestationReport::parse(&bytes).unwrap();
        assert_eq!(r.signing_key(), Ok(SigningKey::Vlek));
        assert_eq!(r.cpuid_product(), Some(Ok(Product::Milan)));
        assert_eq!(r.vmpl, 1);
        assert_eq!(r.signature_fixed(), [0x11; 96]);
        assert_eq!(r.measurement, [8; 48]);
        bytes[0] = 4;
        assert_eq!(
            AttestationReport::parse(&bytes),
            Err(SnpError::UnsupportedVersion(4))
        );
    }
}
