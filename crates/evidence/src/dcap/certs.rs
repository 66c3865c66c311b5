//! X.509 for the Intel SGX PKI: ECDSA P-256 / SHA-256 certificates, the
//! SGX extension of PCK certificates (FMSPC, PCE-ID, TCB SVNs) and CRLs.

use std::collections::BTreeSet;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED, ParsedPublicKey};
use x509_cert::crl::CertificateList;
use x509_cert::der::{Decode, Encode, oid::ObjectIdentifier};
use x509_cert::ext::pkix::KeyUsages;

use super::der::{self, Reader, tag};
use super::error::DcapError;
use super::sigcache::SigCache;
use crate::time::UnixTime;
use crate::x509::{self, Outside, X509Cert, X509Error, secs, tbs_bytes};

const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const PRIME256V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// Intel SGX extension, 1.2.840.113741.1.13.1.
const SGX_EXTENSION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1");
/// Content octets of the SGX extension OID; sub-OIDs extend it.
const SGX_OID_PREFIX: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01];

/// What Intel's SGX extension says about the platform a PCK certifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PckExtension {
    /// FMSPC: family-model-stepping-platform-customSKU.
    pub fmspc: [u8; 6],
    /// PCE id.
    pub pce_id: [u8; 2],
    /// The 16 SGX TCB component SVNs the PCK was issued for.
    pub comp_svns: [u8; 16],
    /// PCE SVN the PCK was issued for.
    pub pce_svn: u16,
    /// CPU SVN the PCK was issued for.
    pub cpu_svn: [u8; 16],
}

/// One parsed certificate with what the checks need.
#[derive(Debug)]
pub(crate) struct DcapCert {
    pub which: String,
    pub subject: String,
    pub subject_der: Vec<u8>,
    pub issuer_der: Vec<u8>,
    pub serial: Vec<u8>,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
    /// Verifies ASN.1 (DER) signatures: certificates and CRLs.
    pub key: ParsedPublicKey,
    /// Verifies raw `r ‖ s` signatures: QE report, TCB info, QE identity.
    pub fixed_key: ParsedPublicKey,
    is_ca: bool,
    path_len: Option<u8>,
    can_sign_certs: bool,
    can_sign_crls: bool,
    tbs: Vec<u8>,
    signature: Vec<u8>,
    /// The SGX extension (PCK certificates only).
    pub sgx: Option<PckExtension>,
}

fn bad(which: &str, reason: impl Into<String>) -> DcapError {
    DcapError::BadCertificate {
        which: which.to_owned(),
        reason: reason.into(),
    }
}

/// Names the certificate an X.509 error is about.
fn x509_err(which: &str) -> impl Fn(X509Error) -> DcapError + '_ {
    move |source| DcapError::Certificate {
        which: which.to_owned(),
        source: Box::new(source),
    }
}

/// Parses a certificate and checks it is ECDSA P-256 / SHA-256.
pub(crate) fn parse(which: &str, der_bytes: &[u8]) -> Result<DcapCert, DcapError> {
    let mut sgx = None;
    let x = X509Cert::parse(der_bytes, x509_err(which), |id, value| {
        if id != SGX_EXTENSION {
            return Ok(false);
        }
        sgx =
            Some(parse_sgx_extension(value).ok_or_else(|| bad(which, "malformed SGX extension"))?);
        Ok(true)
    })?;
    let (cert, t) = (&x.cert, &x.cert.tbs_certificate);
    if cert.signature_algorithm.oid != ECDSA_WITH_SHA256 || t.signature.oid != ECDSA_WITH_SHA256 {
        return Err(bad(
            which,
            format!(
                "signature algorithm {} is not ecdsa-with-SHA256",
                cert.signature_algorithm.oid
            ),
        ));
    }
    if x.ec_curve() != Some(PRIME256V1) {
        return Err(bad(which, "public key is not EC P-256"));
    }
    let key = ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &x.key_bits)
        .map_err(X509Error::key("public key"))
        .map_err(x509_err(which))?;
    let fixed_key = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &x.key_bits)
        .map_err(X509Error::key("public key"))
        .map_err(x509_err(which))?;
    let serial = t.serial_number.as_bytes().to_vec();
    Ok(DcapCert {
        which: which.to_owned(),
        can_sign_certs: x.may(KeyUsages::KeyCertSign),
        can_sign_crls: x.may(KeyUsages::CRLSign),
        subject: x.subject,
        subject_der: x.subject_der,
        issuer_der: x.issuer_der,
        serial,
        not_before: x.not_before,
        not_after: x.not_after,
        key,
        fixed_key,
        is_ca: x.is_ca,
        path_len: x.path_len,
        tbs: x.tbs,
        signature: x.signature,
        sgx,
    })
}

/// Parses the SGX extension: a SEQUENCE of `{OID, value}` pairs.
fn parse_sgx_extension(value: &[u8]) -> Option<PckExtension> {
    let outer = Reader::new(value).next_tlv()?;
    if outer.tag != tag::SEQUENCE {
        return None;
    }
    let (mut fmspc, mut pce_id, mut tcb) = (None, None, None);
    let mut items = Reader::new(outer.value);
    while !items.is_empty() {
        let (oid, val) = pair(items.next_tlv()?)?;
        match sub_oid(oid)? {
            [2] => tcb = Some(parse_tcb(val)?),
            [3] => pce_id = Some(fixed::<2>(val, tag::OCTET_STRING)?),
            [4] => fmspc = Some(fixed::<6>(val, tag::OCTET_STRING)?),
            _ => {}
        }
    }
    let (comp_svns, pce_svn, cpu_svn) = tcb?;
    Some(PckExtension {
        fmspc: fmspc?,
        pce_id: pce_id?,
        comp_svns,
        pce_svn,
        cpu_svn,
    })
}

fn parse_tcb(val: der::Tlv<'_>) -> Option<([u8; 16], u16, [u8; 16])> {
    if val.tag != tag::SEQUENCE {
        return None;
    }
    let mut comps = [None::<u8>; 16];
    let (mut pce_svn, mut cpu_svn) = (None, None);
    let mut r = Reader::new(val.value);
    while !r.is_empty() {
        let (oid, v) = pair(r.next_tlv()?)?;
        match sub_oid(oid)? {
            [2, 17] => pce_svn = Some(u16::try_from(integer(v)?).ok()?),
            [2, 18] => cpu_svn = Some(fixed::<16>(v, tag::OCTET_STRING)?),
            [2, n @ 1..=16] => {
                *comps.get_mut(usize::from(*n) - 1)? = Some(u8::try_from(integer(v)?).ok()?);
            }
            _ => {}
        }
    }
    let mut out = [0u8; 16];
    for (o, c) in out.iter_mut().zip(comps) {
        *o = c?;
    }
    Some((out, pce_svn?, cpu_svn?))
}

fn pair(t: der::Tlv<'_>) -> Option<(&[u8], der::Tlv<'_>)> {
    if t.tag != tag::SEQUENCE {
        return None;
    }
    let mut r = Reader::new(t.value);
    let oid = r.next_tlv()?;
    let val = r.next_tlv()?;
    (oid.tag == tag::OID && r.is_empty()).then_some((oid.value, val))
}

/// The arcs after the SGX extension prefix (single-byte arcs only).
fn sub_oid(oid: &[u8]) -> Option<&[u8]> {
    oid.strip_prefix(SGX_OID_PREFIX.as_slice())
        .filter(|rest| rest.iter().all(|b| *b < 0x80))
}

fn integer(t: der::Tlv<'_>) -> Option<u32> {
    matches!(t.tag, tag::INTEGER | tag::ENUMERATED)
        .then(|| der::uint(t.value))
        .flatten()
}

fn fixed<const N: usize>(t: der::Tlv<'_>, want: u8) -> Option<[u8; N]> {
    (t.tag == want)
        .then(|| <[u8; N]>::try_from(t.value).ok())
        .flatten()
}

impl DcapCert {
    /// Checks that `self` issued `child` (`cas_below` CA certificates lie between them and the leaf).
    pub(crate) fn check_issued(
        &self,
        child: &DcapCert,
        cas_below: usize,
        sigs: &SigCache,
    ) -> Result<(), DcapError> {
        let broken = |reason: String| DcapError::ChainBroken {
            which: child.which.clone(),
            reason,
        };
        if child.issuer_der != self.subject_der {
            return Err(broken(format!(
                "issuer is not the subject of {} ({})",
                self.which, self.subject
            )));
        }
        if !self.is_ca || !self.can_sign_certs {
            return Err(broken(format!(
                "{} is not a CA allowed to sign certificates",
                self.which
            )));
        }
        if let Some(max) = self.path_len
            && cas_below > usize::from(max)
        {
            return Err(broken(format!(
                "{} pathLenConstraint {max} exceeded",
                self.which
            )));
        }
        if sigs.verify(&self.key, &child.tbs, &child.signature) {
            Ok(())
        } else {
            Err(broken(format!(
                "signature by {} does not verify",
                self.which
            )))
        }
    }

    /// Checks `now` lies inside the validity window (notAfter inclusive to the second).
    pub(crate) fn check_validity(&self, now: UnixTime) -> Result<(), DcapError> {
        let what = || format!("certificate {} ({})", self.which, self.subject);
        x509::check_window(self.not_before, self.not_after, now).map_err(|outside| match outside {
            Outside::NotYetValid => DcapError::NotYetValid {
                what: what(),
                from: self.not_before.to_string(),
            },
            Outside::Expired => DcapError::Expired {
                what: what(),
                until: self.not_after.to_string(),
            },
        })
    }
}

/// Why CRL bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CrlError {
    /// Not DER of a CertificateList.
    #[error("not a DER CRL")]
    Der(#[source] x509_cert::der::Error),
    /// Signed with another algorithm than ecdsa-with-SHA256.
    #[error("signature algorithm {0} is not ecdsa-with-SHA256")]
    Algorithm(ObjectIdentifier),
    /// No nextUpdate: a CRL must say until when it is authoritative.
    #[error("CRL has no nextUpdate")]
    NoNextUpdate,
    /// The TBS or signature cannot be located.
    #[error("CRL structure is malformed")]
    Layout,
}

/// A parsed CRL; its signature is checked against a named issuer at verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crl {
    issuer_der: Vec<u8>,
    tbs: Vec<u8>,
    signature: Vec<u8>,
    /// thisUpdate.
    pub this_update: UnixTime,
    /// nextUpdate (required: a CRL without one is refused at parse).
    pub next_update: UnixTime,
    revoked: BTreeSet<Vec<u8>>,
}

impl Crl {
    /// Parses a DER CRL signed with ecdsa-with-SHA256.
    pub fn parse(der_bytes: &[u8]) -> Result<Crl, CrlError> {
        let crl = CertificateList::from_der(der_bytes).map_err(CrlError::Der)?;
        let t = &crl.tbs_cert_list;
        if crl.signature_algorithm.oid != ECDSA_WITH_SHA256 || t.signature.oid != ECDSA_WITH_SHA256
        {
            return Err(CrlError::Algorithm(crl.signature_algorithm.oid));
        }
        let next = t.next_update.ok_or(CrlError::NoNextUpdate)?;
        Ok(Crl {
            issuer_der: t.issuer.to_der().map_err(CrlError::Der)?,
            tbs: tbs_bytes(der_bytes).ok_or(CrlError::Layout)?.to_vec(),
            signature: crl.signature.as_bytes().ok_or(CrlError::Layout)?.to_vec(),
            this_update: secs(t.this_update),
            next_update: secs(next),
            revoked: t
                .revoked_certificates
                .iter()
                .flatten()
                .map(|r| r.serial_number.as_bytes().to_vec())
                .collect(),
        })
    }

    /// Checks that `issuer` signed this CRL (name and signature).
    pub(crate) fn check_signed_by(
        &self,
        issuer: &DcapCert,
        which: &str,
        sigs: &SigCache,
    ) -> Result<(), DcapError> {
        let bad = |reason: String| DcapError::CrlSignature {
            which: which.to_owned(),
            reason,
        };
        if self.issuer_der != issuer.subject_der {
            return Err(bad(format!("issuer is not {}", issuer.subject)));
        }
        if !issuer.can_sign_crls {
            return Err(bad(format!("{} may not sign CRLs", issuer.subject)));
        }
        if sigs.verify(&issuer.key, &self.tbs, &self.signature) {
            Ok(())
        } else {
            Err(bad(format!(
                "signature by {} does not verify",
                issuer.subject
            )))
        }
    }

    /// Whether a certificate with this serial is listed.
    pub fn is_revoked(&self, serial: &[u8]) -> bool {
        self.revoked.contains(serial)
    }

    /// Number of revoked serials.
    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }
}
