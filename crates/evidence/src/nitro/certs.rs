//! X.509 certificate parsing and chain checks for the Nitro PKI
//! (ECDSA P-384 with SHA-384 at every level).

use aws_lc_rs::signature::{ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_FIXED, ParsedPublicKey};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::ext::pkix::KeyUsages;

use crate::error::VerifyError;
use crate::time::UnixTime;
use crate::x509::{self, Outside, X509Cert, X509Error};

const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

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

/// Names the certificate an X.509 error is about.
pub(crate) fn x509_err(which: &str) -> impl Fn(X509Error) -> VerifyError + '_ {
    move |source| VerifyError::Certificate {
        which: which.to_owned(),
        source: Box::new(source),
    }
}

/// Parses one certificate and checks it is an ECDSA P-384 / SHA-384 certificate.
pub(crate) fn parse(which: &str, der: &[u8]) -> Result<ParsedCert, VerifyError> {
    let x = X509Cert::parse(der, x509_err(which), |_, _| Ok(false))?;
    let (cert, t) = (&x.cert, &x.cert.tbs_certificate);
    if cert.signature_algorithm.oid != ECDSA_WITH_SHA384 || t.signature.oid != ECDSA_WITH_SHA384 {
        return Err(bad(
            which,
            format!(
                "signature algorithm {} is not ecdsa-with-SHA384",
                cert.signature_algorithm.oid
            ),
        ));
    }
    if x.ec_curve() != Some(SECP384R1) {
        return Err(bad(which, "public key is not EC P-384"));
    }
    let key = ParsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, &x.key_bits)
        .map_err(X509Error::key("public key"))
        .map_err(x509_err(which))?;
    Ok(ParsedCert {
        which: which.to_owned(),
        can_sign_certs: x.may(KeyUsages::KeyCertSign),
        subject: x.subject,
        subject_der: x.subject_der,
        issuer_der: x.issuer_der,
        not_before: x.not_before,
        not_after: x.not_after,
        key,
        is_ca: x.is_ca,
        path_len: x.path_len,
        tbs: x.tbs,
        signature: x.signature,
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
            .map_err(X509Error::key("public key"))
            .map_err(x509_err(&self.which))
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
    x509::check_window(not_before, not_after, now).map_err(|outside| match outside {
        Outside::NotYetValid => VerifyError::CertificateNotYetValid {
            which: which.to_owned(),
            subject: subject.to_owned(),
            not_before: not_before.to_string(),
        },
        Outside::Expired => VerifyError::CertificateExpired {
            which: which.to_owned(),
            subject: subject.to_owned(),
            not_after: not_after.to_string(),
        },
    })
}
