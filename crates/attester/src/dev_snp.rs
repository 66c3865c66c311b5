//! The dev SEV-SNP TEE: reports in the exact SNP format (v5, Milan CPUID,
//! VCEK-signed), with a VCEK and ASK issued by a local dev ARK and handed
//! out in the firmware's certificate table, so nodes without SNP hardware
//! exercise the whole SNP verification path. No hardware backs them:
//! verifiers accept them only through `danger::accept_snp_dev_root` and
//! always report `dev-snp (insecure)`.
//!
//! Layout under the data dir: `dev-snp-ark.pem` (share this with
//! verifiers: `--snp-dev-root`) and `dev-snp-ark.key` (0600). Each start
//! issues a fresh ASK and VCEK (for a random chip id). The launch
//! measurement is SHA-384 of the executable.

use std::sync::Arc;
use std::time::Duration;

use attesta_evidence::snp::cert_table::{self, GUID_ARK, GUID_ASK, GUID_VCEK};
use attesta_evidence::snp::report::{ReportBody, SIGNED_LEN, set_signature};
use attesta_evidence::snp::{Product, RawTcb, SnpDevRoot, SnpVerifier, Tcb, certs::oid};
use attesta_evidence::{Expected, Policy, SnpRelease, UnixTime, danger};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::EcdsaKeyPair;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa,
    KeyUsagePurpose,
};

use crate::dev::{
    BACKDATE, Clock, DevOptions, Entropy, dev_err, load_or_create_root, measure_executable, offset,
    p384_key, rcgen_key, serial,
};
use crate::{AttestError, AttestRequest, Attester, Evidence, Platform};

/// The dev ARK certificate, relative to the data dir.
pub const DEV_SNP_ARK_FILE: &str = "dev-snp-ark.pem";
/// The dev ARK private key (PKCS#8 PEM, 0600), relative to the data dir.
pub const DEV_SNP_ARK_KEY_FILE: &str = "dev-snp-ark.key";
/// Lifetime of the ASK and VCEK issued at each start.
pub const VCEK_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
/// The TCB the dev VCEK is issued for and the reports claim (Milan layout).
pub const DEV_TCB: Tcb = Tcb {
    fmc: None,
    bootloader: 3,
    tee: 0,
    snp: 8,
    microcode: 115,
};
/// Milan's CPUID family/model/stepping, written into v3+ reports.
pub const DEV_CPUID: (u8, u8, u8) = (0x19, 0x01, 0x01);
/// The guest policy the dev reports carry: reserved bit, SMT; no debug, no migration agent.
pub const DEV_POLICY: u64 = 0x3_0000;

/// Produces dev SEV-SNP reports. Never secure.
pub struct DevSnpAttester {
    ark_der: Vec<u8>,
    ask_der: Vec<u8>,
    vcek_der: Vec<u8>,
    vcek_key: EcdsaKeyPair,
    chip_id: [u8; 64],
    measurement: [u8; 48],
    product: Product,
    tcb: Tcb,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for DevSnpAttester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevSnpAttester")
            .field("measurement", &hex::encode(self.measurement))
            .finish_non_exhaustive()
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "attesta");
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

/// A DER INTEGER of a small non-negative value (an SPL extension's content).
fn der_u8(v: u8) -> Vec<u8> {
    if v < 0x80 {
        vec![0x02, 0x01, v]
    } else {
        vec![0x02, 0x02, 0x00, v]
    }
}

fn arcs(o: &attesta_evidence::snp::certs::Oid) -> Vec<u64> {
    o.arcs().map(u64::from).collect()
}

/// The VCEK's AMD extensions: product name, the TCB it is issued for, hwID.
fn vcek_extensions(product: &str, tcb: Tcb, chip_id: &[u8; 64]) -> Vec<CustomExtension> {
    let mut name = vec![0x16, u8::try_from(product.len()).unwrap_or(0)];
    name.extend_from_slice(product.as_bytes());
    let mut ext = vec![
        CustomExtension::from_oid_content(&arcs(&oid::PRODUCT_NAME), name),
        CustomExtension::from_oid_content(&arcs(&oid::BL_SPL), der_u8(tcb.bootloader)),
        CustomExtension::from_oid_content(&arcs(&oid::TEE_SPL), der_u8(tcb.tee)),
        CustomExtension::from_oid_content(&arcs(&oid::SNP_SPL), der_u8(tcb.snp)),
        CustomExtension::from_oid_content(&arcs(&oid::UCODE_SPL), der_u8(tcb.microcode)),
        CustomExtension::from_oid_content(&arcs(&oid::HW_ID), chip_id.to_vec()),
    ];
    if let Some(fmc) = tcb.fmc {
        ext.push(CustomExtension::from_oid_content(
            &arcs(&oid::FMC_SPL),
            der_u8(fmc),
        ));
    }
    ext
}

/// What a VCEK is issued for (the dev TEE's, or another one for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VcekSpec<'a> {
    /// `productName`, e.g. `Milan-B0`.
    pub product_name: &'a str,
    /// The TCB in its SPL extensions.
    pub tcb: Tcb,
}

impl DevSnpAttester {
    /// Loads the dev ARK from the data dir (creating it on first start),
    /// measures the executable and issues an ASK and a VCEK.
    pub fn open(opts: DevOptions) -> Result<Self, AttestError> {
        Self::open_with(
            opts,
            VcekSpec {
                product_name: "Milan-B0",
                tcb: DEV_TCB,
            },
        )
    }

    /// As [`DevSnpAttester::open`], with a VCEK issued for `spec` (tests
    /// use this for another product's or another TCB's VCEK).
    pub fn open_with(opts: DevOptions, spec: VcekSpec<'_>) -> Result<Self, AttestError> {
        let now = opts.clock.now();
        let entropy: &dyn Entropy = opts.entropy.as_ref();
        let (ark_der, ark_key) = load_or_create_root(
            &opts.data_dir,
            DEV_SNP_ARK_FILE,
            DEV_SNP_ARK_KEY_FILE,
            ca_params("ARK-Milan (attesta dev, insecure)"),
            now,
            entropy,
        )?;
        let ark = ca_params("ARK-Milan (attesta dev, insecure)")
            .self_signed(&ark_key)
            .map_err(dev_err("dev ARK"))?;
        let window = |mut p: CertificateParams| -> Result<CertificateParams, AttestError> {
            p.not_before = offset(now.saturating_sub(BACKDATE))?;
            p.not_after = offset(now.saturating_add(VCEK_LIFETIME))?;
            p.serial_number = Some(serial(entropy)?);
            Ok(p)
        };
        let ask_key = rcgen_key(&p384_key(entropy)?)?;
        let ask = window(ca_params("SEV-Milan (attesta dev, insecure)"))?
            .signed_by(&ask_key, &ark, &ark_key)
            .map_err(dev_err("dev ASK"))?;
        let mut chip_id = [0u8; 64];
        entropy.fill(&mut chip_id)?;
        let vcek_key = p384_key(entropy)?;
        let mut vp = window(CertificateParams::default())?;
        vp.distinguished_name = dn("SEV-VCEK");
        vp.custom_extensions = vcek_extensions(spec.product_name, spec.tcb, &chip_id);
        let vcek = vp
            .signed_by(&rcgen_key(&vcek_key)?, &ask, &ask_key)
            .map_err(dev_err("dev VCEK"))?;
        let me = DevSnpAttester {
            ark_der,
            ask_der: ask.der().to_vec(),
            vcek_der: vcek.der().to_vec(),
            vcek_key,
            chip_id,
            measurement: measure_executable(&opts.executable)?,
            product: Product::from_name(spec.product_name).unwrap_or(Product::Milan),
            tcb: spec.tcb,
            clock: opts.clock,
        };
        me.self_test()?;
        Ok(me)
    }

    /// The dev ARK as PEM (what verifiers pass to `--snp-dev-root`).
    pub fn ark_pem(&self) -> String {
        attesta_evidence::pem::encode_certificate(&self.ark_der)
    }

    /// The dev ARK, DER.
    pub fn ark_der(&self) -> &[u8] {
        &self.ark_der
    }

    /// The dev ARK as a root a policy can accept (danger API).
    pub fn dev_root(&self) -> Result<SnpDevRoot, AttestError> {
        SnpDevRoot::from_der("dev-snp ARK (insecure)", &self.ark_der).map_err(|source| {
            AttestError::DevRoot {
                what: "dev ARK",
                source,
            }
        })
    }

    /// VCEK, ASK and ARK, DER (what the certificate table carries).
    pub fn certs(&self) -> Vec<Vec<u8>> {
        vec![
            self.vcek_der.clone(),
            self.ask_der.clone(),
            self.ark_der.clone(),
        ]
    }

    /// The launch measurement (SHA-384 of the executable).
    pub fn measurement(&self) -> [u8; 48] {
        self.measurement
    }

    /// The registry entry this node matches.
    pub fn release(&self, name: &str) -> SnpRelease {
        SnpRelease {
            name: name.to_owned(),
            measurement: self.measurement,
            host_data: None,
        }
    }

    /// CPUID family/model/stepping of a product (what v3+ reports carry).
    pub fn cpuid(product: Product) -> (u8, u8, u8) {
        match product {
            Product::Genoa => (0x19, 0x11, 0x01),
            Product::Turin => (0x1A, 0x02, 0x00),
            _ => DEV_CPUID,
        }
    }

    /// The body of the report this TEE writes for `report_data`: the
    /// product and TCB its VCEK was issued for.
    pub fn body(&self, report_data: [u8; 64]) -> ReportBody {
        ReportBody {
            version: 5,
            policy: DEV_POLICY,
            vmpl: 0,
            flags: 0,
            report_data,
            measurement: self.measurement,
            host_data: [0; 32],
            tcb: RawTcb::encode(self.tcb, self.product),
            cpuid: Self::cpuid(self.product),
            chip_id: self.chip_id,
        }
    }

    /// Signs any report body with the VCEK (tests build bad reports with it).
    pub fn sign(&self, body: &ReportBody) -> Result<Vec<u8>, AttestError> {
        let mut bytes = body.to_bytes();
        let sig = self
            .vcek_key
            .sign(
                &SystemRandom::new(),
                bytes.get(..SIGNED_LEN).unwrap_or_default(),
            )
            .map_err(|_| AttestError::Dev("signing failed".into()))?;
        set_signature(&mut bytes, sig.as_ref());
        Ok(bytes)
    }

    /// Verifies one of our own reports against our own ARK, so a broken
    /// key or certificate fails at start rather than at every verifier.
    pub fn self_test(&self) -> Result<(), AttestError> {
        let policy = Policy::aws_nitro().map_err(crate::error::aws_root)?;
        let v = SnpVerifier::new(danger::accept_snp_dev_root(policy, self.dev_root()?));
        let report = self.sign(&self.body([0x5a; 64]))?;
        let now: UnixTime = self.clock.now();
        v.verify(&report, &self.certs(), &Expected::default(), now)
            .outcome
            .map(|_| ())
            .map_err(|source| AttestError::DevSelfTest {
                what: "dev-snp self-test",
                source,
            })
    }
}

impl Attester for DevSnpAttester {
    fn platform(&self) -> Platform {
        Platform::DevSnp
    }

    fn attest(&self, req: &AttestRequest) -> Result<Evidence, AttestError> {
        let certs = self.certs();
        let table = cert_table::build(&[
            (GUID_VCEK, certs.first().map_or(&[][..], Vec::as_slice)),
            (GUID_ASK, certs.get(1).map_or(&[][..], Vec::as_slice)),
            (GUID_ARK, certs.get(2).map_or(&[][..], Vec::as_slice)),
        ]);
        Ok(Evidence {
            platform: Platform::DevSnp,
            bytes: self.sign(&self.body(req.report_data))?,
            aux: Some(table),
        })
    }
}
