//! The DCAP verification pipeline. Every check runs that can run and is
//! reported as a named step; the first failure in step order decides.
//! Trust comes from the pinned Intel SGX Root CA (by DER fingerprint) and
//! nothing the quote or the collateral says about itself.

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ParsedPublicKey};

use super::certs::{self, DcapCert, PckExtension};
use super::collateral::Collateral;
use super::error::DcapError;
use super::quote::{Body, INTEL_QE_VENDOR_ID, Quote, TeeType};
use super::sigcache::SigCache;
use super::tcb::{TcbStatus, svn_level};
use crate::Platform;
use crate::error::VerifyError;
use crate::pem;
use crate::policy::Policy;
use crate::report::{Report, Status, StepId};
use crate::roots::RootError;
use crate::time::UnixTime;

/// SHA-256 of the DER of the Intel SGX Root CA (CN=Intel SGX Root CA).
pub const INTEL_SGX_ROOT_CA_SHA256: &str =
    "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3";
const INTEL_SGX_ROOT_CA_PEM: &str = include_str!("../roots/intel_sgx_root_ca.pem");

/// A P-256 root the DCAP verifier trusts, identified by its exact DER.
#[derive(Clone)]
pub struct DcapRoot {
    name: String,
    der: Vec<u8>,
    fingerprint: [u8; 32],
    cert: Arc<DcapCert>,
}

impl std::fmt::Debug for DcapRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DcapRoot")
            .field("name", &self.name)
            .field("sha256", &hex::encode(self.fingerprint))
            .finish()
    }
}

impl DcapRoot {
    /// Trusts the certificate with exactly these DER bytes (ECDSA P-256).
    pub fn from_der(name: &str, der: &[u8]) -> Result<Self, RootError> {
        let cert =
            certs::parse(name, der).map_err(|e| RootError::Certificate(VerifyError::from(e)))?;
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(digest::digest(&digest::SHA256, der).as_ref());
        Ok(DcapRoot {
            name: name.to_owned(),
            der: der.to_vec(),
            fingerprint,
            cert: Arc::new(cert),
        })
    }

    /// Trusts the first certificate of a PEM text.
    pub fn from_pem(name: &str, text: &str) -> Result<Self, RootError> {
        let ders = pem::certificates(text)?;
        let der = ders
            .first()
            .ok_or(RootError::Pem(pem::PemError::NoCertificate))?;
        Self::from_der(name, der)
    }

    /// The pinned Intel SGX Root CA, checked against its fingerprint.
    pub fn intel_sgx_root_ca() -> Result<Self, RootError> {
        let root = Self::from_pem("Intel SGX Root CA", INTEL_SGX_ROOT_CA_PEM)?;
        if root.fingerprint_hex() != INTEL_SGX_ROOT_CA_SHA256 {
            return Err(RootError::Fingerprint {
                expected: INTEL_SGX_ROOT_CA_SHA256.to_owned(),
                got: root.fingerprint_hex(),
            });
        }
        Ok(root)
    }

    /// The same root under another report name (dev roots are always `dev (insecure)`).
    pub(crate) fn renamed(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// Name used in reports.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The trusted DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-256 of the DER, lowercase hex.
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint)
    }
}

/// What the caller expects the quote to be bound to. `None` skips a check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DcapExpected {
    /// The 64 report-data bytes (e.g. the node's key-set binding).
    pub report_data: Option<[u8; 64]>,
}

/// A quote that passed every required check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedQuote {
    /// `Sgx` / `Tdx`, or `DevSgx` / `DevTdx` when the chains end at the policy's dev root.
    pub platform: Platform,
    /// SGX or TDX (also for dev quotes).
    pub tee: TeeType,
    /// Name of the root reached.
    pub root: String,
    /// Platform TCB status (accepted by the policy).
    pub tcb_status: TcbStatus,
    /// QE TCB status (accepted by the policy).
    pub qe_tcb_status: TcbStatus,
    /// Advisory ids of every matched level.
    pub advisory_ids: Vec<String>,
    /// The matching release, if measurements were required.
    pub release: Option<String>,
    /// The parsed quote.
    pub quote: Quote,
}

/// Result of [`DcapVerifier::verify`]: the report and the outcome.
#[derive(Debug, Clone)]
pub struct DcapVerification {
    /// Every step.
    pub report: Report,
    /// The verified quote, or the first failure in step order.
    pub outcome: Result<VerifiedQuote, VerifyError>,
}

/// Verifies DCAP quotes (SGX v3, TDX v4/v5) against a [`Policy`]: its
/// pinned Intel root (and dev root, if opted in), accepted TCB statuses,
/// debug setting and SGX/TDX releases.
///
/// Remembers the collateral and certificate signatures that verified, so
/// keep and share it (it is `Send + Sync`) rather than rebuilding it per quote.
#[derive(Debug)]
pub struct DcapVerifier {
    policy: Policy,
    sigs: SigCache,
}

/// A certificate chain, checked up to a trusted root.
struct Chain {
    certs: Vec<Arc<DcapCert>>,
    root: Option<(DcapRoot, bool)>,
    result: Result<String, DcapError>,
}

impl Chain {
    fn leaf(&self) -> Option<&DcapCert> {
        self.certs.first().map(|c| &**c)
    }

    fn usable_leaf(&self) -> Option<&DcapCert> {
        self.result.is_ok().then(|| self.leaf()).flatten()
    }
}

/// What the steps found about TCB, for the summary.
#[derive(Default)]
struct TcbFacts {
    platform: Option<TcbStatus>,
    qe: Option<TcbStatus>,
    advisories: BTreeSet<String>,
}

fn skip(report: &mut Report, name: StepId, why: &str) {
    report.push(name, Status::Skipped, why);
}

fn dcap<T>(r: Result<T, DcapError>) -> Result<T, VerifyError> {
    r.map_err(VerifyError::from)
}

impl DcapVerifier {
    /// A verifier for this policy.
    pub fn new(policy: Policy) -> Self {
        DcapVerifier {
            policy,
            sigs: SigCache::default(),
        }
    }

    /// Forgets every remembered signature verification.
    pub fn clear_cache(&self) {
        self.sigs.clear();
    }

    /// Number of remembered signature verifications.
    pub fn cached_signatures(&self) -> usize {
        self.sigs.len()
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn accepts(&self, s: TcbStatus) -> bool {
        s != TcbStatus::Revoked && self.policy.accepted_tcb.contains(&s)
    }

    /// Verifies raw quote bytes with their collateral at time `now`.
    pub fn verify(
        &self,
        quote: &[u8],
        collateral: &Collateral,
        expected: &DcapExpected,
        now: UnixTime,
    ) -> DcapVerification {
        let mut report = Report::new(now);
        let outcome = self.run(&mut report, quote, collateral, expected, now);
        report.finish(outcome.as_ref().err());
        DcapVerification { report, outcome }
    }

    fn trusted(&self, der: &[u8]) -> Option<(DcapRoot, bool)> {
        if self.policy.dcap_root.der() == der {
            return Some((self.policy.dcap_root.clone(), false));
        }
        self.policy
            .dcap_dev_root
            .as_ref()
            .filter(|r| r.der() == der)
            .map(|r| (r.clone(), true))
    }

    /// Walks `ders` (leaf first) to a trusted root. The root is found by
    /// exact DER, or as the issuer of the top certificate; never trusted
    /// because a certificate claims to be it.
    fn chain(&self, label: &'static str, ders: &[Vec<u8>]) -> Chain {
        let mut certs = Vec::with_capacity(ders.len() + 1);
        let mut root = None;
        for (i, der) in ders.iter().enumerate() {
            if let Some(r) = self.trusted(der) {
                certs.push(Arc::clone(&r.0.cert));
                root = Some(r);
                break;
            }
            let which = match i {
                0 => format!("{label} leaf"),
                n => format!("{label}[{n}]"),
            };
            match certs::parse(&which, der) {
                Ok(c) => certs.push(Arc::new(c)),
                Err(e) => {
                    return Chain {
                        certs,
                        root: None,
                        result: Err(e),
                    };
                }
            }
        }
        let Some(top) = certs.last().map(Arc::clone) else {
            return Chain {
                certs,
                root: None,
                result: Err(DcapError::BadCertificate {
                    which: label.to_owned(),
                    reason: "no certificates".into(),
                }),
            };
        };
        if root.is_none() {
            let cas = certs.len().saturating_sub(1);
            root = [Some((self.policy.dcap_root.clone(), false))]
                .into_iter()
                .chain([self.policy.dcap_dev_root.clone().map(|r| (r, true))])
                .flatten()
                .find(|(r, _)| r.cert.check_issued(&top, cas, &self.sigs).is_ok());
            match &root {
                Some((r, _)) => certs.push(Arc::clone(&r.cert)),
                None => {
                    let top_der = ders.last().map(Vec::as_slice).unwrap_or_default();
                    return Chain {
                        certs,
                        root: None,
                        result: Err(DcapError::UntrustedRoot {
                            chain: label,
                            fingerprint: hex::encode(digest::digest(&digest::SHA256, top_der)),
                        }),
                    };
                }
            }
        }
        let links = certs.windows(2).enumerate().try_for_each(|(k, w)| match w {
            [child, parent] => parent.check_issued(child, k, &self.sigs),
            _ => Ok(()),
        });
        let result = links.map(|()| {
            let name = root.as_ref().map(|(r, _)| r.name()).unwrap_or_default();
            format!(
                "leaf -> {} intermediate(s) -> {name}",
                certs.len().saturating_sub(2)
            )
        });
        Chain {
            certs,
            root,
            result,
        }
    }

    fn run(
        &self,
        report: &mut Report,
        bytes: &[u8],
        col: &Collateral,
        expected: &DcapExpected,
        now: UnixTime,
    ) -> Result<VerifiedQuote, VerifyError> {
        let quote = match Quote::parse(bytes) {
            Ok(q) => q,
            Err(e) => {
                let e = VerifyError::from(DcapError::Quote(e));
                report.push(StepId::Quote, Status::Fail, e.to_string());
                return Err(e);
            }
        };
        let mut detail = format!(
            "{} quote v{}, {} bytes",
            match quote.tee() {
                TeeType::Sgx => "SGX",
                TeeType::Tdx => "TDX",
            },
            quote.header.version,
            quote.len
        );
        if quote.trailing_zeros > 0 {
            detail.push_str(&format!(
                ", {} trailing zero bytes (tolerated)",
                quote.trailing_zeros
            ));
        }
        if quote.header.qe_vendor_id != INTEL_QE_VENDOR_ID {
            detail.push_str(", non-Intel QE vendor id");
        }
        report.push(StepId::Quote, Status::Pass, detail);
        let mut facts = TcbFacts::default();
        let mut first: Option<VerifyError> = None;
        let mut keep = |report: &mut Report, name: StepId, r: Result<String, DcapError>| {
            if let Some(e) = report.record(name, dcap(r)) {
                first.get_or_insert(e);
            }
        };

        // Certificate chains.
        let pck_ders = match pem::certificates(&String::from_utf8_lossy(&quote.pck_chain_pem)) {
            Ok(d) => d,
            Err(e) => {
                let e = DcapError::Certificate {
                    which: "PCK chain".into(),
                    source: Box::new(crate::x509::X509Error::Pem(e)),
                };
                keep(report, StepId::PckChain, Err(e));
                Vec::new()
            }
        };
        let pck = self.chain("PCK chain", &pck_ders);
        if !pck_ders.is_empty() {
            keep(report, StepId::PckChain, pck.result.clone());
        }
        let tcb_chain = self.chain("TCB signing chain", &col.tcb_info_chain);
        let qe_chain = self.chain("QE identity signing chain", &col.qe_identity_chain);
        let signing = tcb_chain.result.clone().and(qe_chain.result.clone());
        let signing = signing.and_then(|d| match (&pck.root, &tcb_chain.root, &qe_chain.root) {
            (Some((p, _)), Some((t, _)), Some((q, _)))
                if p.der() != t.der() || p.der() != q.der() =>
            {
                Err(DcapError::RootMismatch {
                    pck: p.name().to_owned(),
                    tcb: if p.der() != t.der() {
                        t.name()
                    } else {
                        q.name()
                    }
                    .to_owned(),
                })
            }
            _ => Ok(d),
        });
        keep(report, StepId::TcbSigningChain, signing);
        if let Some((root, dev)) = &pck.root {
            report.root = Some(root.name().to_owned());
            report.platform = Some(platform_of(quote.tee(), *dev));
        }
        let validity = pck
            .certs
            .iter()
            .chain(&tcb_chain.certs)
            .chain(&qe_chain.certs)
            .try_for_each(|c| c.check_validity(now))
            .map(|()| "every certificate is valid at the verification time".to_owned());
        keep(report, StepId::Validity, validity);

        // CRLs and revocation.
        let pck_issuer = pck.certs.get(1).filter(|_| pck.result.is_ok());
        let root_cert = pck.root.as_ref().map(|(r, _)| &r.cert);
        match (root_cert, pck_issuer) {
            (Some(root), Some(issuer)) => {
                let crls = col
                    .root_ca_crl
                    .check_signed_by(root, "root CA", &self.sigs)
                    .and_then(|()| col.pck_crl.check_signed_by(issuer, "PCK", &self.sigs))
                    .map(|()| {
                        format!(
                            "root CA CRL signed by {}, PCK CRL signed by {}",
                            root.subject, issuer.subject
                        )
                    });
                let crl_ok = crls.is_ok();
                keep(report, StepId::Crl, crls);
                if crl_ok {
                    keep(
                        report,
                        StepId::Revocation,
                        self.revocation(col, &pck, &tcb_chain),
                    );
                } else {
                    skip(report, StepId::Revocation, "CRLs not trusted");
                }
            }
            _ => {
                skip(report, StepId::Crl, "PCK chain not trusted");
                skip(report, StepId::Revocation, "PCK chain not trusted");
            }
        }

        // Collateral signatures.
        let tcb_signer = tcb_chain.usable_leaf();
        let qe_signer = qe_chain.usable_leaf();
        match tcb_signer {
            Some(s) => keep(
                report,
                StepId::TcbInfoSignature,
                self.sigs
                    .verify(
                        &s.fixed_key,
                        col.tcb_info_text.as_bytes(),
                        &col.tcb_info_signature,
                    )
                    .then(|| format!("signed by {}", s.subject))
                    .ok_or(DcapError::CollateralSignature("TCB info")),
            ),
            None => skip(
                report,
                StepId::TcbInfoSignature,
                "TCB signing chain not trusted",
            ),
        }
        match qe_signer {
            Some(s) => keep(
                report,
                StepId::QeIdentitySignature,
                self.sigs
                    .verify(
                        &s.fixed_key,
                        col.qe_identity_text.as_bytes(),
                        &col.qe_identity_signature,
                    )
                    .then(|| format!("signed by {}", s.subject))
                    .ok_or(DcapError::CollateralSignature("QE identity")),
            ),
            None => skip(
                report,
                StepId::QeIdentitySignature,
                "TCB signing chain not trusted",
            ),
        }

        // After the signatures: the dates mean something only once signed.
        keep(
            report,
            StepId::CollateralValidity,
            collateral_validity(col, now),
        );

        // The quote itself.
        keep(report, StepId::QuoteSignature, quote_signature(&quote));
        match pck.usable_leaf() {
            Some(leaf) => keep(
                report,
                StepId::QeReportSignature,
                leaf.fixed_key
                    .verify_sig(&quote.qe_report_raw, &quote.qe_report_signature)
                    .map(|()| "QE report signed by the PCK key".to_owned())
                    .map_err(|_| DcapError::QeReportSignature),
            ),
            None => skip(report, StepId::QeReportSignature, "PCK chain not trusted"),
        }
        keep(report, StepId::AttestationKeyBinding, key_binding(&quote));

        // Platform identity and TCB.
        let ext = pck.leaf().map(|l| l.sgx.clone().ok_or(DcapError::NotPck));
        keep(report, StepId::Collateral, collateral_kind(&quote, col));
        match &ext {
            Some(Ok(ext)) => keep(report, StepId::Fmspc, fmspc(ext, col)),
            Some(Err(e)) => keep(report, StepId::Fmspc, Err(e.clone())),
            None => skip(report, StepId::Fmspc, "no PCK certificate"),
        }
        keep(
            report,
            StepId::QeIdentity,
            self.qe_identity(&quote, col, &mut facts),
        );
        match &ext {
            Some(Ok(ext)) => keep(
                report,
                StepId::TcbLevel,
                self.tcb_level(&quote, ext, col, &mut facts),
            ),
            _ => skip(report, StepId::TcbLevel, "no PCK SGX extension"),
        }
        match &quote.body {
            Body::Td(td) => keep(
                report,
                StepId::TdxModule,
                self.tdx_module(td, col, &mut facts),
            ),
            Body::Sgx(_) => skip(report, StepId::TdxModule, "SGX quote"),
        }
        keep(report, StepId::Debug, self.debug(&quote.body));
        let release = if self.policy.measurements.is_empty() {
            skip(
                report,
                StepId::Measurements,
                "no measurements required by the policy",
            );
            None
        } else {
            let m = self
                .policy
                .measurements
                .check_dcap(&quote.body)
                .map_err(DcapError::MeasurementMismatch);
            let name = m.as_ref().ok().cloned();
            keep(
                report,
                StepId::Measurements,
                m.map(|n| format!("matches release `{n}`")),
            );
            name
        };
        match &expected.report_data {
            None => skip(report, StepId::ReportData, "not requested"),
            Some(want) => {
                let got = quote.body.report_data();
                keep(
                    report,
                    StepId::ReportData,
                    if got == want {
                        Ok("matches the expected binding".into())
                    } else {
                        Err(DcapError::ReportDataMismatch {
                            expected: hex::encode(want),
                            got: hex::encode(got),
                        })
                    },
                );
            }
        }
        report.quote = Some(super::QuoteSummary::of(
            &quote,
            ext.as_ref().and_then(|e| e.as_ref().ok()),
            facts.platform,
            facts.qe,
            facts.advisories.iter().cloned().collect(),
        ));
        match (first, pck.root, facts.platform, facts.qe) {
            (Some(e), ..) => Err(e),
            (None, Some((root, dev)), Some(tcb_status), Some(qe_tcb_status)) => {
                let tee = quote.tee();
                Ok(VerifiedQuote {
                    platform: platform_of(tee, dev),
                    tee,
                    root: root.name().to_owned(),
                    tcb_status,
                    qe_tcb_status,
                    advisory_ids: facts.advisories.into_iter().collect(),
                    release,
                    quote,
                })
            }
            // Unreachable: every passing path sets root and both statuses.
            _ => Err(DcapError::Collateral("incomplete verification".into()).into()),
        }
    }

    fn revocation(&self, col: &Collateral, pck: &Chain, tcb: &Chain) -> Result<String, DcapError> {
        let check = |c: &DcapCert, crl: &certs::Crl| {
            if crl.is_revoked(&c.serial) {
                Err(DcapError::Revoked {
                    which: c.which.clone(),
                    serial: hex::encode(&c.serial),
                })
            } else {
                Ok(())
            }
        };
        if let Some(leaf) = pck.leaf() {
            check(leaf, &col.pck_crl)?;
        }
        // Intermediates (not the leaf, not the root) against the root CA CRL.
        let len = pck.certs.len();
        for c in pck.certs.iter().take(len.saturating_sub(1)).skip(1) {
            check(c, &col.root_ca_crl)?;
        }
        let len = tcb.certs.len();
        for c in tcb.certs.iter().take(len.saturating_sub(1)) {
            check(c, &col.root_ca_crl)?;
        }
        Ok(format!(
            "PCK not among {} revoked serials, CAs and TCB signer not among {}",
            col.pck_crl.len(),
            col.root_ca_crl.len()
        ))
    }

    fn qe_identity(
        &self,
        quote: &Quote,
        col: &Collateral,
        facts: &mut TcbFacts,
    ) -> Result<String, DcapError> {
        let id = &col.qe_identity;
        let qe = &quote.qe_report;
        let mismatch = |field, expected: String, got: String| {
            Err(DcapError::QeIdentityMismatch {
                field,
                expected,
                got,
            })
        };
        if qe.mr_signer != id.mrsigner {
            return mismatch(
                "mrsigner",
                hex::encode(id.mrsigner),
                hex::encode(qe.mr_signer),
            );
        }
        if qe.isv_prod_id != id.isvprodid {
            return mismatch(
                "isvprodid",
                id.isvprodid.to_string(),
                qe.isv_prod_id.to_string(),
            );
        }
        let misc = qe.misc_select & id.miscselect_mask;
        if misc != id.miscselect & id.miscselect_mask {
            return mismatch(
                "miscselect",
                format!("{:08x}", id.miscselect & id.miscselect_mask),
                format!("{misc:08x}"),
            );
        }
        let masked = |a: &[u8; 16]| -> Vec<u8> {
            a.iter()
                .zip(&id.attributes_mask)
                .map(|(x, m)| x & m)
                .collect()
        };
        if masked(&qe.attributes) != masked(&id.attributes) {
            return mismatch(
                "attributes",
                hex::encode(masked(&id.attributes)),
                hex::encode(masked(&qe.attributes)),
            );
        }
        let level =
            svn_level(&id.tcb_levels, qe.isv_svn).ok_or(DcapError::NoQeTcbLevel(qe.isv_svn))?;
        facts.qe = Some(level.status);
        facts.advisories.extend(level.advisory_ids.iter().cloned());
        self.status("QE", level.status, &level.advisory_ids)?;
        Ok(format!(
            "{} ISVSVN {}: {} ({})",
            id.id, qe.isv_svn, level.status, level.tcb_date
        ))
    }

    fn tcb_level(
        &self,
        quote: &Quote,
        ext: &PckExtension,
        col: &Collateral,
        facts: &mut TcbFacts,
    ) -> Result<String, DcapError> {
        let tee_svn = match &quote.body {
            Body::Td(td) => Some(&td.tee_tcb_svn),
            Body::Sgx(_) => None,
        };
        let level = col
            .tcb_info
            .matching_level(&ext.comp_svns, ext.pce_svn, tee_svn)
            .ok_or_else(|| {
                DcapError::NoTcbLevel(format!(
                    "PCK SVNs {:?}, PCE SVN {}{}",
                    ext.comp_svns,
                    ext.pce_svn,
                    tee_svn
                        .map_or_else(String::new, |s| format!(", TEE TCB SVN {}", hex::encode(s)))
                ))
            })?;
        facts.platform = Some(level.status);
        facts.advisories.extend(level.advisory_ids.iter().cloned());
        self.status("platform", level.status, &level.advisory_ids)?;
        Ok(format!(
            "{}{} ({}){}",
            level.status,
            if level.status == TcbStatus::UpToDate {
                ""
            } else {
                " (accepted by --accept-tcb; INSECURE)"
            },
            level.tcb_date,
            if level.advisory_ids.is_empty() {
                String::new()
            } else {
                format!(", advisories {}", level.advisory_ids.join(", "))
            }
        ))
    }

    fn tdx_module(
        &self,
        td: &super::quote::TdReport,
        col: &Collateral,
        facts: &mut TcbFacts,
    ) -> Result<String, DcapError> {
        let [isvsvn, version, ..] = td.tee_tcb_svn;
        let info = &col.tcb_info;
        let module = if version == 0 {
            info.tdx_module.as_ref().ok_or_else(|| {
                DcapError::TdxModule("TCB info has no tdxModule for module version 0".into())
            })?
        } else {
            let id = format!("TDX_{version:02X}");
            info.tdx_module_identities
                .iter()
                .find(|m| m.id == id)
                .ok_or_else(|| DcapError::TdxModule(format!("TCB info has no identity {id}")))?
        };
        if td.mr_signer_seam != module.mrsigner {
            return Err(DcapError::TdxModule(format!(
                "MRSIGNERSEAM {} is not {}",
                hex::encode(td.mr_signer_seam),
                hex::encode(module.mrsigner)
            )));
        }
        let masked = |a: &[u8; 8]| -> Vec<u8> {
            a.iter()
                .zip(&module.attributes_mask)
                .map(|(x, m)| x & m)
                .collect()
        };
        if masked(&td.seam_attributes) != masked(&module.attributes) {
            return Err(DcapError::TdxModule(format!(
                "SEAMATTRIBUTES {} do not match {} under mask {}",
                hex::encode(td.seam_attributes),
                hex::encode(module.attributes),
                hex::encode(module.attributes_mask)
            )));
        }
        if version == 0 {
            return Ok("module version 0 matches tdxModule".into());
        }
        let level = svn_level(&module.tcb_levels, u16::from(isvsvn)).ok_or_else(|| {
            DcapError::TdxModule(format!("no TCB level of {} for ISVSVN {isvsvn}", module.id))
        })?;
        facts.advisories.extend(level.advisory_ids.iter().cloned());
        self.status("TDX module", level.status, &level.advisory_ids)?;
        Ok(format!(
            "{} ISVSVN {isvsvn}: {} ({})",
            module.id, level.status, level.tcb_date
        ))
    }

    fn status(
        &self,
        what: &'static str,
        status: TcbStatus,
        advisories: &[String],
    ) -> Result<(), DcapError> {
        if self.accepts(status) {
            Ok(())
        } else {
            Err(DcapError::TcbStatus {
                what,
                status,
                advisories: advisories.to_vec(),
            })
        }
    }

    fn debug(&self, body: &Body) -> Result<String, DcapError> {
        let (debug, what) = match body {
            Body::Sgx(r) => (r.is_debug(), "enclave"),
            Body::Td(r) => (r.is_debug(), "TD"),
        };
        match (debug, self.policy.allow_debug) {
            (false, _) => Ok(format!("production {what}")),
            (true, true) => Ok(format!("debug {what}, allowed by policy (INSECURE)")),
            (true, false) => Err(DcapError::Debug(what)),
        }
    }
}

/// The platform a verified quote stands for: dev roots never pass as hardware.
fn platform_of(tee: TeeType, dev: bool) -> Platform {
    match (tee, dev) {
        (TeeType::Sgx, false) => Platform::Sgx,
        (TeeType::Tdx, false) => Platform::Tdx,
        (TeeType::Sgx, true) => Platform::DevSgx,
        (TeeType::Tdx, true) => Platform::DevTdx,
    }
}

fn quote_signature(quote: &Quote) -> Result<String, DcapError> {
    let mut point = [0u8; 65];
    point[0] = 0x04;
    if let Some(dst) = point.get_mut(1..) {
        dst.copy_from_slice(&quote.attestation_key);
    }
    let key = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .map_err(|_| DcapError::AttestationKey)?;
    key.verify_sig(&quote.signed, &quote.signature)
        .map(|()| "header and body signed by the attestation key".to_owned())
        .map_err(|_| DcapError::QuoteSignature)
}

fn key_binding(quote: &Quote) -> Result<String, DcapError> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&quote.attestation_key);
    ctx.update(&quote.qe_auth_data);
    let mut want = [0u8; 64];
    if let Some(dst) = want.get_mut(..32) {
        dst.copy_from_slice(ctx.finish().as_ref());
    }
    if quote.qe_report.report_data == want {
        Ok("QE report data = SHA-256(attestation key ‖ QE auth data) ‖ zeros".into())
    } else {
        Err(DcapError::AttestationKeyBinding {
            expected: hex::encode(want),
            got: hex::encode(quote.qe_report.report_data),
        })
    }
}

fn collateral_kind(quote: &Quote, col: &Collateral) -> Result<String, DcapError> {
    let (tcb_id, qe_id) = match quote.tee() {
        TeeType::Sgx => ("SGX", "QE"),
        TeeType::Tdx => ("TDX", "TD_QE"),
    };
    let (t, q) = (&col.tcb_info, &col.qe_identity);
    if t.id != tcb_id || t.version != 3 {
        return Err(DcapError::Collateral(format!(
            "TCB info is {} v{}; this quote needs {tcb_id} v3",
            t.id, t.version
        )));
    }
    if q.id != qe_id || q.version != 2 {
        return Err(DcapError::Collateral(format!(
            "QE identity is {} v{}; this quote needs {qe_id} v2",
            q.id, q.version
        )));
    }
    Ok(format!(
        "TCB info {tcb_id} v3 (evaluation data {}), QE identity {qe_id} v2",
        t.tcb_evaluation_data_number
    ))
}

fn fmspc(ext: &PckExtension, col: &Collateral) -> Result<String, DcapError> {
    let t = &col.tcb_info;
    if ext.fmspc != t.fmspc {
        return Err(DcapError::PlatformMismatch {
            field: "FMSPC",
            pck: hex::encode_upper(ext.fmspc),
            tcb_info: hex::encode_upper(t.fmspc),
        });
    }
    if ext.pce_id != t.pce_id {
        return Err(DcapError::PlatformMismatch {
            field: "PCE-ID",
            pck: hex::encode_upper(ext.pce_id),
            tcb_info: hex::encode_upper(t.pce_id),
        });
    }
    Ok(format!(
        "FMSPC {} and PCE-ID {} match the TCB info",
        hex::encode_upper(ext.fmspc),
        hex::encode_upper(ext.pce_id)
    ))
}

fn collateral_validity(col: &Collateral, now: UnixTime) -> Result<String, DcapError> {
    let windows = [
        (
            "root CA CRL",
            col.root_ca_crl.this_update,
            col.root_ca_crl.next_update,
        ),
        ("PCK CRL", col.pck_crl.this_update, col.pck_crl.next_update),
        (
            "TCB info",
            col.tcb_info.issue_date,
            col.tcb_info.next_update,
        ),
        (
            "QE identity",
            col.qe_identity.issue_date,
            col.qe_identity.next_update,
        ),
    ];
    let mut until = UnixTime::from_millis(u64::MAX);
    for (what, from, to) in windows {
        if now < from {
            return Err(DcapError::NotYetValid {
                what: what.to_owned(),
                from: from.to_string(),
            });
        }
        if now > to {
            return Err(DcapError::Expired {
                what: what.to_owned(),
                until: to.to_string(),
            });
        }
        until = until.min(to);
    }
    Ok(format!(
        "CRLs, TCB info and QE identity current until {until}"
    ))
}
