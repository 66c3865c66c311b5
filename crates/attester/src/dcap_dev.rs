//! The dev DCAP signer: real-format SGX quotes (v3) and TDX quotes (v4, v5)
//! with their collateral, under a locally generated root instead of Intel's.
//! No hardware backs them; verifiers accept them only through
//! `danger::accept_dcap_dev_root` and report them as `dev (insecure)`.
//!
//! The PKI mirrors Intel's: root → PCK platform CA → PCK leaf (with the SGX
//! extension: FMSPC, PCE-ID, TCB SVNs), root → TCB signing certificate; the
//! root CA CRL and PCK CRL are signed by their issuers.

use std::time::Duration;

use attesta_evidence::UnixTime;
use attesta_evidence::dcap::{
    CollateralJson, EnclaveReport, INTEL_QE_VENDOR_ID, TcbStatus, TdReport, TeeType,
};
use attesta_evidence::pem;
use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SerialNumber,
};

use crate::AttestError;
use crate::dev::{Entropy, dev_err, offset, p256_key, rcgen_key, serial};

/// Common name of the dev root.
const ROOT_CN: &str = "attesta dev SGX root (insecure)";
/// Lifetime of the dev PKI.
const PKI_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
/// Lifetime of the collateral (TCB info, QE identity, CRLs), as Intel's (~30 days).
pub const COLLATERAL_LIFETIME: Duration = Duration::from_secs(30 * 86_400);
const BACKDATE: Duration = Duration::from_secs(60);
/// The dev platform's FMSPC.
pub const DEV_FMSPC: [u8; 6] = [0x00, 0xde, 0x70, 0x00, 0x00, 0x00];
const DEV_PCE_ID: [u8; 2] = [0, 0];
const DEV_COMP_SVNS: [u8; 16] = [7, 7, 2, 2, 3, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0];
const DEV_PCE_SVN: u16 = 13;
const DEV_QE_SVN: u16 = 8;
/// TEE TCB SVN of dev TDs: module ISVSVN 4, major version 1 (`TDX_01`), late microcode 2.
const DEV_TEE_TCB_SVN: [u8; 16] = [4, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// QE ATTRIBUTES (INIT | PROVISIONKEY, as Intel's QE).
const QE_ATTRIBUTES: [u8; 16] = [0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// What an SGX dev quote attests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SgxBody {
    /// MRENCLAVE.
    pub mr_enclave: [u8; 32],
    /// MRSIGNER.
    pub mr_signer: [u8; 32],
    /// ISVPRODID.
    pub isv_prod_id: u16,
    /// ISVSVN.
    pub isv_svn: u16,
    /// REPORTDATA.
    pub report_data: Vec<u8>,
    /// Set ATTRIBUTES.DEBUG.
    pub debug: bool,
}

/// What a TDX dev quote attests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxBody {
    /// MRTD.
    pub mr_td: [u8; 48],
    /// RTMR0..3.
    pub rtmr: [[u8; 48]; 4],
    /// MRCONFIGID.
    pub mr_config_id: [u8; 48],
    /// MROWNER.
    pub mr_owner: [u8; 48],
    /// REPORTDATA.
    pub report_data: Vec<u8>,
    /// Set TDATTRIBUTES.DEBUG.
    pub debug: bool,
}

impl Default for TdxBody {
    fn default() -> Self {
        TdxBody {
            mr_td: [0; 48],
            rtmr: [[0; 48]; 4],
            mr_config_id: [0; 48],
            mr_owner: [0; 48],
            report_data: Vec::new(),
            debug: false,
        }
    }
}

/// What the dev collateral says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollateralSpec {
    /// Status of the platform TCB level the dev PCK matches.
    pub tcb_status: TcbStatus,
    /// Advisory ids of that level.
    pub advisory_ids: Vec<String>,
    /// FMSPC the TCB info is for (the dev PCK's by default).
    pub fmspc: [u8; 6],
    /// List the dev PCK's serial in the PCK CRL.
    pub revoke_pck: bool,
}

impl Default for CollateralSpec {
    fn default() -> Self {
        CollateralSpec {
            tcb_status: TcbStatus::UpToDate,
            advisory_ids: Vec::new(),
            fmspc: DEV_FMSPC,
            revoke_pck: false,
        }
    }
}

struct Ca {
    issuer: rcgen::Certificate,
    key: KeyPair,
    der: Vec<u8>,
}

/// Signs dev quotes and collateral. Keys live in memory only.
pub struct DcapDevSigner {
    root: Ca,
    pck_ca: Ca,
    pck_der: Vec<u8>,
    pck_serial: Vec<u8>,
    pck_key: EcdsaKeyPair,
    tcb_der: Vec<u8>,
    tcb_key: EcdsaKeyPair,
    att_key: EcdsaKeyPair,
    qe_mr_signer: [u8; 32],
    rng: SystemRandom,
}

impl std::fmt::Debug for DcapDevSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DcapDevSigner").finish_non_exhaustive()
    }
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "attesta dev (insecure)");
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca_params(cn: &str, from: UnixTime, until: UnixTime) -> Result<CertificateParams, AttestError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = offset(from)?;
    p.not_after = offset(until)?;
    Ok(p)
}

/// DER TLV with a short or long definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

/// `SEQUENCE { OID 1.2.840.113741.1.13.1.<arcs>, value }`.
fn sgx_pair(arcs: &[u8], value: Vec<u8>) -> Vec<u8> {
    let mut oid = vec![0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01];
    oid.extend_from_slice(arcs);
    let mut c = tlv(0x06, &oid);
    c.extend_from_slice(&value);
    tlv(0x30, &c)
}

fn der_uint(v: u16) -> Vec<u8> {
    let b = v.to_be_bytes();
    match b {
        [0, x] if x < 0x80 => tlv(0x02, &[x]),
        [0, x] => tlv(0x02, &[0, x]),
        [h, l] if h < 0x80 => tlv(0x02, &[h, l]),
        [h, l] => tlv(0x02, &[0, h, l]),
    }
}

/// The SGX extension of the dev PCK.
fn sgx_extension(fmspc: &[u8; 6], comp_svns: &[u8; 16], pce_svn: u16) -> Vec<u8> {
    let mut tcb = Vec::new();
    for (i, svn) in (1u8..).zip(comp_svns) {
        tcb.extend(sgx_pair(&[2, i], der_uint(u16::from(*svn))));
    }
    tcb.extend(sgx_pair(&[2, 17], der_uint(pce_svn)));
    tcb.extend(sgx_pair(&[2, 18], tlv(0x04, comp_svns)));
    let mut items = sgx_pair(&[1], tlv(0x04, &[0x5a; 16]));
    items.extend(sgx_pair(&[2], tlv(0x30, &tcb)));
    items.extend(sgx_pair(&[3], tlv(0x04, &DEV_PCE_ID)));
    items.extend(sgx_pair(&[4], tlv(0x04, fmspc)));
    items.extend(sgx_pair(&[5], tlv(0x0a, &[0])));
    tlv(0x30, &items)
}

fn sign(key: &EcdsaKeyPair, rng: &SystemRandom, msg: &[u8]) -> Result<[u8; 64], AttestError> {
    let sig = key
        .sign(rng, msg)
        .map_err(|_| AttestError::Dev("ECDSA signing failed".into()))?;
    <[u8; 64]>::try_from(sig.as_ref()).map_err(|_| AttestError::Dev("signature size".into()))
}

fn rfc3339(t: UnixTime) -> String {
    UnixTime::from_secs(t.as_secs()).to_string()
}

impl DcapDevSigner {
    /// Generates a fresh dev PKI valid from `now` for a year.
    pub fn generate(entropy: &dyn Entropy, now: UnixTime) -> Result<Self, AttestError> {
        Self::generate_with_root(entropy, now, None)
    }

    /// Loads the dev root (P-256) from `dir` (creating `cert_file` and
    /// `key_file`, 0600, on first use) and issues a fresh PKI under it, so
    /// the root verifiers pin survives restarts and can be shared by nodes.
    pub fn under_root_in(
        dir: &std::path::Path,
        cert_file: &str,
        key_file: &str,
        entropy: &dyn Entropy,
        now: UnixTime,
    ) -> Result<Self, AttestError> {
        let params = ca_params(ROOT_CN, now, now.saturating_add(PKI_LIFETIME))?;
        let (der, key) = crate::dev::load_or_create_root_with(
            dir, cert_file, key_file, params, now, entropy, p256_key,
        )?;
        Self::generate_with_root(entropy, now, Some((der, key)))
    }

    fn generate_with_root(
        entropy: &dyn Entropy,
        now: UnixTime,
        root: Option<(Vec<u8>, KeyPair)>,
    ) -> Result<Self, AttestError> {
        let from = now.saturating_sub(BACKDATE);
        let until = now.saturating_add(PKI_LIFETIME);
        let ca = |cn: &str, signer: Option<&Ca>| -> Result<Ca, AttestError> {
            let key = rcgen_key(&p256_key(entropy)?)?;
            let mut p = ca_params(cn, from, until)?;
            p.serial_number = Some(serial(entropy)?);
            let cert = match signer {
                None => p.self_signed(&key),
                Some(s) => p.signed_by(&key, &s.issuer, &s.key),
            }
            .map_err(dev_err(cn))?;
            Ok(Ca {
                der: cert.der().to_vec(),
                issuer: cert,
                key,
            })
        };
        let root = match root {
            None => ca(ROOT_CN, None)?,
            // The issuer object only carries the root's name and key into
            // the certificates it signs; the root itself is the DER on disk.
            Some((der, key)) => Ca {
                issuer: ca_params(ROOT_CN, from, until)?
                    .self_signed(&key)
                    .map_err(dev_err(ROOT_CN))?,
                key,
                der,
            },
        };
        let pck_ca = ca("attesta dev PCK platform CA (insecure)", Some(&root))?;
        let leaf = |cn: &str, issuer: &Ca, ext: Option<Vec<u8>>| {
            let key = p256_key(entropy)?;
            let mut p = CertificateParams::default();
            p.distinguished_name = name(cn);
            p.not_before = offset(from)?;
            p.not_after = offset(until)?;
            let sn = serial(entropy)?;
            p.serial_number = Some(sn.clone());
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            if let Some(ext) = ext {
                p.custom_extensions = vec![CustomExtension::from_oid_content(
                    &[1, 2, 840, 113_741, 1, 13, 1],
                    ext,
                )];
            }
            let cert = p
                .signed_by(&rcgen_key(&key)?, &issuer.issuer, &issuer.key)
                .map_err(dev_err(cn))?;
            Ok::<_, AttestError>((cert.der().to_vec(), sn.to_bytes(), key))
        };
        let ext = sgx_extension(&DEV_FMSPC, &DEV_COMP_SVNS, DEV_PCE_SVN);
        let (pck_der, pck_serial, pck_key) =
            leaf("attesta dev PCK (insecure)", &pck_ca, Some(ext))?;
        let (tcb_der, _, tcb_key) = leaf("attesta dev TCB signing (insecure)", &root, None)?;
        let mut qe_mr_signer = [0u8; 32];
        qe_mr_signer.copy_from_slice(
            digest::digest(&digest::SHA256, b"attesta dev quoting enclave").as_ref(),
        );
        Ok(DcapDevSigner {
            root,
            pck_ca,
            pck_der,
            pck_serial,
            pck_key,
            tcb_der,
            tcb_key,
            att_key: p256_key(entropy)?,
            qe_mr_signer,
            rng: SystemRandom::new(),
        })
    }

    /// The dev root (DER): give it to verifiers through the danger API.
    pub fn root_der(&self) -> &[u8] {
        &self.root.der
    }

    /// The dev root as PEM.
    pub fn root_pem(&self) -> String {
        pem::encode_certificate(&self.root.der)
    }

    /// The dev PCK certificate's serial number.
    pub fn pck_serial(&self) -> &[u8] {
        &self.pck_serial
    }

    /// The PCK chain as the quote carries it (leaf, CA, root; PEM).
    pub fn pck_chain_pem(&self) -> String {
        [&self.pck_der, &self.pck_ca.der, &self.root.der]
            .iter()
            .map(|d| pem::encode_certificate(d))
            .collect()
    }

    fn qe_report(&self, tee: TeeType, auth: &[u8]) -> EnclaveReport {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(self.att_key_xy());
        ctx.update(auth);
        let mut report_data = [0u8; 64];
        report_data[..32].copy_from_slice(ctx.finish().as_ref());
        EnclaveReport {
            cpu_svn: DEV_COMP_SVNS,
            misc_select: 0,
            isv_ext_prod_id: [0; 16],
            attributes: QE_ATTRIBUTES,
            mr_enclave: [0x9e; 32],
            mr_signer: self.qe_mr_signer,
            config_id: [0; 64],
            isv_prod_id: match tee {
                TeeType::Sgx => 1,
                TeeType::Tdx => 2,
            },
            isv_svn: DEV_QE_SVN,
            config_svn: 0,
            isv_family_id: [0; 16],
            report_data,
        }
    }

    fn att_key_xy(&self) -> &[u8] {
        // Uncompressed point 04 ‖ x ‖ y; the quote carries x ‖ y.
        self.att_key
            .public_key()
            .as_ref()
            .get(1..)
            .unwrap_or_default()
    }

    /// An SGX quote v3 over `body`.
    pub fn sgx_quote(&self, body: &SgxBody) -> Result<Vec<u8>, AttestError> {
        let mut attributes = [0u8; 16];
        attributes[0] = if body.debug { 0x07 } else { 0x05 };
        attributes[8] = 0x03;
        let report = EnclaveReport {
            cpu_svn: DEV_COMP_SVNS,
            misc_select: 0,
            isv_ext_prod_id: [0; 16],
            attributes,
            mr_enclave: body.mr_enclave,
            mr_signer: body.mr_signer,
            config_id: [0; 64],
            isv_prod_id: body.isv_prod_id,
            isv_svn: body.isv_svn,
            config_svn: 0,
            isv_family_id: [0; 16],
            report_data: report_data(&body.report_data)?,
        };
        self.quote(3, TeeType::Sgx, &report.to_bytes())
    }

    /// A TDX quote (version 4 with a TDX 1.0 body, or 5 with a TDX 1.5 body) over `body`.
    pub fn tdx_quote(&self, body: &TdxBody, version: u16) -> Result<Vec<u8>, AttestError> {
        let v15 = match version {
            4 => false,
            5 => true,
            v => return Err(AttestError::Dev(format!("TDX quote version {v} (4 or 5)"))),
        };
        let td = TdReport {
            tee_tcb_svn: DEV_TEE_TCB_SVN,
            mr_seam: [0x5e; 48],
            mr_signer_seam: [0; 48],
            seam_attributes: [0; 8],
            td_attributes: [u8::from(body.debug), 0, 0, 0x10, 0, 0, 0, 0],
            xfam: [0xe7, 0x02, 0x06, 0, 0, 0, 0, 0],
            mr_td: body.mr_td,
            mr_config_id: body.mr_config_id,
            mr_owner: body.mr_owner,
            mr_owner_config: [0; 48],
            rtmr: body.rtmr,
            report_data: report_data(&body.report_data)?,
            tee_tcb_svn2: v15.then_some(DEV_TEE_TCB_SVN),
            mr_service_td: v15.then_some([0; 48]),
        };
        self.quote(version, TeeType::Tdx, &td.to_bytes())
    }

    fn quote(&self, version: u16, tee: TeeType, body: &[u8]) -> Result<Vec<u8>, AttestError> {
        let mut q = Vec::with_capacity(6000);
        q.extend_from_slice(&version.to_le_bytes());
        q.extend_from_slice(&2u16.to_le_bytes());
        q.extend_from_slice(&(if tee == TeeType::Tdx { 0x81u32 } else { 0 }).to_le_bytes());
        q.extend_from_slice(&DEV_QE_SVN.to_le_bytes());
        q.extend_from_slice(&DEV_PCE_SVN.to_le_bytes());
        q.extend_from_slice(&INTEL_QE_VENDOR_ID);
        q.extend_from_slice(&[0u8; 20]);
        if version == 5 {
            let body_type: u16 = if tee == TeeType::Sgx { 1 } else { 3 };
            q.extend_from_slice(&body_type.to_le_bytes());
            q.extend_from_slice(&len32(body.len())?.to_le_bytes());
        }
        q.extend_from_slice(body);
        let signature = sign(&self.att_key, &self.rng, &q)?;
        let auth: Vec<u8> = (0u8..32).collect();
        let qe = self.qe_report(tee, &auth).to_bytes();
        let qe_sig = sign(&self.pck_key, &self.rng, &qe)?;
        let mut chain = self.pck_chain_pem().into_bytes();
        chain.push(0);
        let mut cert = Vec::new();
        cert.extend_from_slice(&qe);
        cert.extend_from_slice(&qe_sig);
        cert.extend_from_slice(&len16(auth.len())?.to_le_bytes());
        cert.extend_from_slice(&auth);
        cert.extend_from_slice(&5u16.to_le_bytes());
        cert.extend_from_slice(&len32(chain.len())?.to_le_bytes());
        cert.extend_from_slice(&chain);
        let mut sig = Vec::new();
        sig.extend_from_slice(&signature);
        sig.extend_from_slice(self.att_key_xy());
        if version == 3 {
            sig.extend_from_slice(&cert);
        } else {
            sig.extend_from_slice(&6u16.to_le_bytes());
            sig.extend_from_slice(&len32(cert.len())?.to_le_bytes());
            sig.extend_from_slice(&cert);
        }
        q.extend_from_slice(&len32(sig.len())?.to_le_bytes());
        q.extend_from_slice(&sig);
        Ok(q)
    }

    /// A CRL signed by the dev root (`root`) or the dev PCK CA, listing `revoked`.
    pub fn crl(
        &self,
        by_root: bool,
        revoked: &[Vec<u8>],
        this_update: UnixTime,
        next_update: UnixTime,
    ) -> Result<Vec<u8>, AttestError> {
        let ca = if by_root { &self.root } else { &self.pck_ca };
        let params = CertificateRevocationListParams {
            this_update: offset(this_update)?,
            next_update: offset(next_update)?,
            crl_number: SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| {
                    Ok(RevokedCertParams {
                        serial_number: SerialNumber::from_slice(s),
                        revocation_time: offset(this_update)?,
                        reason_code: None,
                        invalidity_date: None,
                    })
                })
                .collect::<Result<_, AttestError>>()?,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&ca.issuer, &ca.key)
            .map_err(dev_err("CRL"))?;
        Ok(crl.der().to_vec())
    }

    /// Collateral for `tee`, issued at `now` and valid for [`COLLATERAL_LIFETIME`].
    pub fn collateral(
        &self,
        tee: TeeType,
        now: UnixTime,
        spec: &CollateralSpec,
    ) -> Result<CollateralJson, AttestError> {
        let now = UnixTime::from_secs(now.as_secs());
        let next = now.saturating_add(COLLATERAL_LIFETIME);
        let (issue, until) = (rfc3339(now), rfc3339(next));
        let comps = |v: &[u8; 16]| {
            v.iter()
                .map(|s| format!("{{\"svn\":{s}}}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let advisories = spec
            .advisory_ids
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(",");
        let (id, qe_id, extra_tcb, module) = match tee {
            TeeType::Sgx => ("SGX", "QE", String::new(), String::new()),
            TeeType::Tdx => {
                let mut need = DEV_TEE_TCB_SVN;
                need[0] = 0;
                need[1] = 0;
                let zero = "00".repeat(48);
                (
                    "TDX",
                    "TD_QE",
                    format!(",\"tdxtcbcomponents\":[{}]", comps(&need)),
                    format!(
                        ",\"tdxModule\":{{\"mrsigner\":\"{zero}\",\"attributes\":\"0000000000000000\",\"attributesMask\":\"FFFFFFFFFFFFFFFF\"}},\"tdxModuleIdentities\":[{{\"id\":\"TDX_01\",\"mrsigner\":\"{zero}\",\"attributes\":\"0000000000000000\",\"attributesMask\":\"FFFFFFFFFFFFFFFF\",\"tcbLevels\":[{{\"tcb\":{{\"isvsvn\":{}}},\"tcbDate\":\"{issue}\",\"tcbStatus\":\"UpToDate\"}}]}}]",
                        DEV_TEE_TCB_SVN[0]
                    ),
                )
            }
        };
        let tcb_info = format!(
            "{{\"id\":\"{id}\",\"version\":3,\"issueDate\":\"{issue}\",\"nextUpdate\":\"{until}\",\"fmspc\":\"{}\",\"pceId\":\"{}\",\"tcbType\":0,\"tcbEvaluationDataNumber\":1{module},\"tcbLevels\":[{{\"tcb\":{{\"sgxtcbcomponents\":[{}],\"pcesvn\":{DEV_PCE_SVN}{extra_tcb}}},\"tcbDate\":\"{issue}\",\"tcbStatus\":\"{}\",\"advisoryIDs\":[{advisories}]}}]}}",
            hex::encode_upper(spec.fmspc),
            hex::encode_upper(DEV_PCE_ID),
            comps(&DEV_COMP_SVNS),
            spec.tcb_status,
        );
        let qe_identity = format!(
            "{{\"id\":\"{qe_id}\",\"version\":2,\"issueDate\":\"{issue}\",\"nextUpdate\":\"{until}\",\"tcbEvaluationDataNumber\":1,\"miscselect\":\"00000000\",\"miscselectMask\":\"FFFFFFFF\",\"attributes\":\"{}\",\"attributesMask\":\"FBFFFFFFFFFFFFFF0000000000000000\",\"mrsigner\":\"{}\",\"isvprodid\":{},\"tcbLevels\":[{{\"tcb\":{{\"isvsvn\":{DEV_QE_SVN}}},\"tcbDate\":\"{issue}\",\"tcbStatus\":\"UpToDate\"}}]}}",
            hex::encode_upper(QE_ATTRIBUTES),
            hex::encode_upper(self.qe_mr_signer),
            if tee == TeeType::Sgx { 1 } else { 2 },
        );
        let revoked = if spec.revoke_pck {
            vec![self.pck_serial.clone()]
        } else {
            Vec::new()
        };
        let chain = format!(
            "{}{}",
            pem::encode_certificate(&self.tcb_der),
            pem::encode_certificate(&self.root.der)
        );
        Ok(CollateralJson {
            pck_crl_issuer_chain: format!(
                "{}{}",
                pem::encode_certificate(&self.pck_ca.der),
                pem::encode_certificate(&self.root.der)
            ),
            root_ca_crl: hex::encode(self.crl(true, &[], now, next)?),
            pck_crl: hex::encode(self.crl(false, &revoked, now, next)?),
            tcb_info_issuer_chain: chain.clone(),
            tcb_info_signature: hex::encode(sign(&self.tcb_key, &self.rng, tcb_info.as_bytes())?),
            tcb_info,
            qe_identity_issuer_chain: chain,
            qe_identity_signature: hex::encode(sign(
                &self.tcb_key,
                &self.rng,
                qe_identity.as_bytes(),
            )?),
            qe_identity,
        })
    }
}

fn report_data(v: &[u8]) -> Result<[u8; 64], AttestError> {
    if v.len() > 64 {
        return Err(AttestError::TooLarge {
            field: "report_data",
            len: v.len(),
            max: 64,
        });
    }
    let mut out = [0u8; 64];
    out[..v.len()].copy_from_slice(v);
    Ok(out)
}

fn len32(n: usize) -> Result<u32, AttestError> {
    u32::try_from(n).map_err(|_| AttestError::Dev("length overflows u32".into()))
}

fn len16(n: usize) -> Result<u16, AttestError> {
    u16::try_from(n).map_err(|_| AttestError::Dev("length overflows u16".into()))
}
