//! X.509 certificate parsing and chain checks for the Nitro PKI
//! (ECDSA P-384 with SHA-384 at every level).

use aws_lc_rs::signature::{ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_FIXED, ParsedPublicKey};
use x509_cert::Certificate;
use x509_cert::der::{Decode, oid::ObjectIdentifier};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};

use crate::error::VerifyError;
use crate::time::UnixTime;

const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");

/// What the chain checks need from one certificate.
pub(crate) struct ParsedCert {
    /// `leaf`, `cabundle[i]` or the root's name: used in messages.
    pub which: String,
    /// RFC 4514-ish subject, for messages.
    pub subject: String,
    subject_der: Vec<u8>,
    issuer_der: Vec<u8>,
    /// Validity window in milliseconds.
    pub not_before: UnixTime,
    /// Validity window in milliseconds.
    pub not_after: UnixTime,
    /// Public key, parsed once.
    pub key: ParsedPublicKey,
    is_ca: bool,
    path_len: Option<u8>,
    can_sign_certs: bool,
    tbs: Vec<u8>,
    signature: Vec<u8>,
}

fn bad(which: &str, reason: impl Into<String>) -> VerifyError {
    VerifyError::BadCertificate {
        which: which.to_owned(),
        reason: reason.into(),
    }
}

/// Returns the complete first TLV inside the outer SEQUENCE: the exact
/// to-be-signed bytes (re-encoding a parsed structure could differ).
pub(crate) fn tbs_bytes(der: &[u8]) -> Option<&[u8]> {
    let (hdr, len) = tlv_header(der)?;
    let inner = der.get(hdr..hdr.checked_add(len)?)?;
    let (h2, l2) = tlv_header(inner)?;
    inner.get(..h2.checked_add(l2)?)
}

/// Header length and content length of a DER TLV (SEQUENCE only).
fn tlv_header(b: &[u8]) -> Option<(usize, usize)> {
    if *b.first()? != 0x30 {
        return None;
    }
    let first = *b.get(1)?;
    if first < 0x80 {
        return Some((2, usize::from(first)));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let len = b
        .get(2..2 + n)?
        .iter()
        .fold(0usize, |a, x| (a << 8) | usize::from(*x));
    Some((2 + n, len))
}

/// Parses one certificate and checks it is an ECDSA P-384 / SHA-384 certificate.
pub(crate) fn parse(which: &str, der: &[u8]) -> Result<ParsedCert, VerifyError> {
    let cert = Certificate::from_der(der).map_err(|e| bad(which, format!("not DER X.509: {e}")))?;
    let tbs = tbs_bytes(der)
        .ok_or_else(|| bad(which, "cannot locate tbsCertificate"))?
        .to_vec();
    let t = &cert.tbs_certificate;
    if cert.signature_algorithm.oid != ECDSA_WITH_SHA384 || t.signature.oid != ECDSA_WITH_SHA384 {
        return Err(bad(
            which,
            format!(
                "signature algorithm {} is not ecdsa-with-SHA384",
                cert.signature_algorithm.oid
            ),
        ));
    }
    let spki = &t.subject_public_key_info;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if spki.algorithm.oid != EC_PUBLIC_KEY || curve != Some(SECP384R1) {
        return Err(bad(which, "public key is not EC P-384"));
    }
    let point = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| bad(which, "public key bit string is not octet-aligned"))?;
    let key = ParsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, point)
        .map_err(|e| bad(which, format!("public key rejected: {e}")))?;
    let signature = cert
        .signature
        .as_bytes()
        .ok_or_else(|| bad(which, "signature bit string is not octet-aligned"))?
        .to_vec();

    let mut is_ca = false;
    let mut path_len = None;
    let mut can_sign_certs = true;
    for ext in t.extensions.iter().flatten() {
        let value = ext.extn_value.as_bytes();
        if ext.extn_id == BASIC_CONSTRAINTS {
            let bc = BasicConstraints::from_der(value)
                .map_err(|e| bad(which, format!("basicConstraints: {e}")))?;
            is_ca = bc.ca;
            path_len = bc.path_len_constraint;
        } else if ext.extn_id == KEY_USAGE {
            let ku = KeyUsage::from_der(value).map_err(|e| bad(which, format!("keyUsage: {e}")))?;
            can_sign_certs = ku.0.contains(KeyUsages::KeyCertSign);
        } else if ext.critical {
            return Err(bad(
                which,
                format!("unsupported critical extension {}", ext.extn_id),
            ));
        }
    }
    let secs = |t: x509_cert::time::Time| UnixTime::from_secs(t.to_unix_duration().as_secs());
    Ok(ParsedCert {
        which: which.to_owned(),
        subject: t.subject.to_string(),
        subject_der: x509_cert::der::Encode::to_der(&t.subject)
            .map_err(|e| bad(which, e.to_string()))?,
        issuer_der: x509_cert::der::Encode::to_der(&t.issuer)
            .map_err(|e| bad(which, e.to_string()))?,
        not_before: secs(t.validity.not_before),
        not_after: secs(t.validity.not_after),
        key,
        is_ca,
        path_len,
        can_sign_certs,
        tbs,
        signature,
    })
}

impl ParsedCert {
    /// Checks that `self` issued `child`, `cas_below` being the number of CA
    /// certificates between them and the leaf (for pathLenConstraint).
    pub(crate) fn check_issued(
        &self,
        child: &ParsedCert,
        cas_below: usize,
    ) -> Result<(), VerifyError> {
        let broken = |reason: String| VerifyError::ChainBroken {
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
        self.key
            .verify_sig(&child.tbs, &child.signature)
            .map_err(|_| broken(format!("signature by {} does not verify", self.which)))
    }

    /// Checks `now` lies inside the validity window.
    pub(crate) fn check_validity(&self, now: UnixTime) -> Result<(), VerifyError> {
        check_window(
            &self.which,
            &self.subject,
            self.not_before,
            self.not_after,
            now,
        )
    }

    /// The COSE signature key in raw `r || s` form.
    pub(crate) fn cose_key(&self) -> Result<ParsedPublicKey, VerifyError> {
        ParsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, self.key_bytes())
            .map_err(|e| bad(&self.which, format!("public key rejected: {e}")))
    }

    fn key_bytes(&self) -> &[u8] {
        self.key.as_ref()
    }
}

/// Checks `now` lies inside a certificate's validity window (shared by the
/// Nitro and SEV-SNP chains).
pub(crate) fn check_window(
    which: &str,
    subject: &str,
    not_before: UnixTime,
    not_after: UnixTime,
    now: UnixTime,
) -> Result<(), VerifyError> {
    if now < not_before {
        return Err(VerifyError::CertificateNotYetValid {
            which: which.to_owned(),
            subject: subject.to_owned(),
            not_before: not_before.to_string(),
        });
    }
    // notAfter is inclusive to the second (RFC 5280 §4.1.2.5).
    if now.as_millis() >= not_after.as_millis().saturating_add(1000) {
        return Err(VerifyError::CertificateExpired {
            which: which.to_owned(),
            subject: subject.to_owned(),
            not_after: not_after.to_string(),
        });
    }
    Ok(())
}
