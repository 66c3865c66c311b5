//! The X.509 parsing the Nitro, DCAP and SEV-SNP chains share: DER
//! decoding, the exact to-be-signed bytes, names, the validity window,
//! basicConstraints and keyUsage, the public key bits and the signature.
//! Each chain adds its own algorithm, key and extension rules on top.

use aws_lc_rs::error::KeyRejected;
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode, oid::ObjectIdentifier};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};

use crate::Shared;
use crate::time::UnixTime;

/// `id-ecPublicKey`.
pub(crate) const EC_PUBLIC_KEY: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");

/// Why a certificate's X.509 structure is unusable, whatever its chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum X509Error {
    /// Not a DER X.509 certificate.
    #[error("not DER X.509: {0}")]
    Der(#[source] x509_cert::der::Error),
    /// The to-be-signed bytes cannot be located.
    #[error("cannot locate tbsCertificate")]
    NoTbs,
    /// A BIT STRING (`public key`, `signature`) has unused bits.
    #[error("{0} bit string is not octet-aligned")]
    Unaligned(&'static str),
    /// An extension this module reads does not decode.
    #[error("{name}: {source}")]
    Extension {
        /// `basicConstraints` or `keyUsage`.
        name: &'static str,
        /// The decoder's error.
        #[source]
        source: x509_cert::der::Error,
    },
    /// A chain-specific extension value does not decode as its type.
    #[error("{name} is not {expected}: {source}")]
    ExtensionValue {
        /// The extension (`blSPL`, `productName`).
        name: &'static str,
        /// The type it must have.
        expected: &'static str,
        /// The decoder's error.
        #[source]
        source: x509_cert::der::Error,
    },
    /// A critical extension nobody reads (RFC 5280: the certificate must be refused).
    #[error("unsupported critical extension {0}")]
    CriticalExtension(ObjectIdentifier),
    /// A PEM certificate chain does not read.
    #[error("{0}")]
    Pem(#[source] crate::pem::PemError),
    /// The subject or issuer name does not re-encode.
    #[error("{0}")]
    Name(#[source] x509_cert::der::Error),
    /// The public key does not load for the algorithm the chain requires.
    #[error("{what} rejected: {source}")]
    KeyRejected {
        /// `public key`, `RSA public key`, `EC public key`.
        what: &'static str,
        /// The crypto library's verdict.
        #[source]
        source: Shared<KeyRejected>,
    },
}

impl X509Error {
    /// The crypto library refused `what` (a public key).
    pub(crate) fn key(what: &'static str) -> impl FnOnce(KeyRejected) -> X509Error {
        move |e| X509Error::KeyRejected {
            what,
            source: Shared::new(e),
        }
    }
}

/// What every chain reads from a certificate.
pub(crate) struct X509Cert {
    /// The decoded certificate (algorithms, key info, extensions).
    pub cert: Certificate,
    /// The exact to-be-signed bytes (re-encoding could differ).
    pub tbs: Vec<u8>,
    /// The signature bits.
    pub signature: Vec<u8>,
    /// The subject key bits.
    pub key_bits: Vec<u8>,
    /// RFC 4514-ish subject, for messages.
    pub subject: String,
    /// DER of the subject name.
    pub subject_der: Vec<u8>,
    /// DER of the issuer name.
    pub issuer_der: Vec<u8>,
    /// Start of the validity window.
    pub not_before: UnixTime,
    /// End of the validity window (inclusive to the second).
    pub not_after: UnixTime,
    /// basicConstraints cA.
    pub is_ca: bool,
    /// basicConstraints pathLenConstraint.
    pub path_len: Option<u8>,
    /// keyUsage, when present.
    pub key_usage: Option<KeyUsage>,
}

impl X509Cert {
    /// Parses `der`, reading basicConstraints and keyUsage; every other
    /// extension goes to `other`, which says whether it read it. A critical
    /// extension nobody read refuses the certificate. `wrap` turns this
    /// module's errors into the chain's (naming the certificate).
    pub(crate) fn parse<E>(
        der: &[u8],
        wrap: impl Fn(X509Error) -> E,
        other: impl FnMut(ObjectIdentifier, &[u8]) -> Result<bool, E>,
    ) -> Result<X509Cert, E> {
        Self::parse_inner(der, other).map_err(|e| match e {
            Inner::X509(e) => wrap(e),
            Inner::Other(e) => e,
        })
    }

    fn parse_inner<E>(
        der: &[u8],
        mut other: impl FnMut(ObjectIdentifier, &[u8]) -> Result<bool, E>,
    ) -> Result<X509Cert, Inner<E>> {
        let cert = Certificate::from_der(der).map_err(X509Error::Der)?;
        let tbs = tbs_bytes(der).ok_or(X509Error::NoTbs)?.to_vec();
        let t = &cert.tbs_certificate;
        let key_bits = t
            .subject_public_key_info
            .subject_public_key
            .as_bytes()
            .ok_or(X509Error::Unaligned("public key"))?
            .to_vec();
        let signature = cert
            .signature
            .as_bytes()
            .ok_or(X509Error::Unaligned("signature"))?
            .to_vec();
        let mut is_ca = false;
        let mut path_len = None;
        let mut key_usage = None;
        for ext in t.extensions.iter().flatten() {
            let value = ext.extn_value.as_bytes();
            if ext.extn_id == BASIC_CONSTRAINTS {
                let bc =
                    BasicConstraints::from_der(value).map_err(|source| X509Error::Extension {
                        name: "basicConstraints",
                        source,
                    })?;
                is_ca = bc.ca;
                path_len = bc.path_len_constraint;
            } else if ext.extn_id == KEY_USAGE {
                key_usage =
                    Some(
                        KeyUsage::from_der(value).map_err(|source| X509Error::Extension {
                            name: "keyUsage",
                            source,
                        })?,
                    );
            } else if !other(ext.extn_id, value).map_err(Inner::Other)? && ext.critical {
                return Err(X509Error::CriticalExtension(ext.extn_id).into());
            }
        }
        Ok(X509Cert {
            subject: t.subject.to_string(),
            subject_der: t.subject.to_der().map_err(X509Error::Name)?,
            issuer_der: t.issuer.to_der().map_err(X509Error::Name)?,
            not_before: secs(t.validity.not_before),
            not_after: secs(t.validity.not_after),
            tbs,
            signature,
            key_bits,
            is_ca,
            path_len,
            key_usage,
            cert,
        })
    }

    /// Whether keyUsage allows `usage` (an absent keyUsage allows everything).
    pub(crate) fn may(&self, usage: KeyUsages) -> bool {
        self.key_usage.is_none_or(|ku| ku.0.contains(usage))
    }

    /// The named curve of an EC public key (`None` for other key types).
    pub(crate) fn ec_curve(&self) -> Option<ObjectIdentifier> {
        let alg = &self.cert.tbs_certificate.subject_public_key_info.algorithm;
        if alg.oid != EC_PUBLIC_KEY {
            return None;
        }
        alg.parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
    }
}

/// An X.509 time as [`UnixTime`].
pub(crate) fn secs(t: x509_cert::time::Time) -> UnixTime {
    UnixTime::from_secs(t.to_unix_duration().as_secs())
}

/// An error of [`X509Cert::parse`] before the chain names it.
enum Inner<E> {
    X509(X509Error),
    Other(E),
}

impl<E> From<X509Error> for Inner<E> {
    fn from(e: X509Error) -> Self {
        Inner::X509(e)
    }
}

/// Where `now` lies outside a validity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outside {
    /// Before notBefore.
    NotYetValid,
    /// After notAfter.
    Expired,
}

/// Checks `now` lies inside `[not_before, not_after]`, notAfter inclusive
/// to the second (RFC 5280 §4.1.2.5).
pub(crate) fn check_window(
    not_before: UnixTime,
    not_after: UnixTime,
    now: UnixTime,
) -> Result<(), Outside> {
    if now < not_before {
        return Err(Outside::NotYetValid);
    }
    if now.as_millis() >= not_after.as_millis().saturating_add(1000) {
        return Err(Outside::Expired);
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_inclusive_to_the_second() {
        let (nb, na) = (UnixTime::from_secs(10), UnixTime::from_secs(20));
        assert_eq!(
            check_window(nb, na, UnixTime::from_millis(9_999)),
            Err(Outside::NotYetValid)
        );
        assert_eq!(check_window(nb, na, UnixTime::from_secs(10)), Ok(()));
        assert_eq!(check_window(nb, na, UnixTime::from_millis(20_999)), Ok(()));
        assert_eq!(
            check_window(nb, na, UnixTime::from_secs(21)),
            Err(Outside::Expired)
        );
    }

    #[test]
    fn garbage_keeps_the_der_error() {
        let e = X509Cert::parse(b"\x30\x03abc", |e| e, |_, _| Ok(false))
            .err()
            .unwrap();
        assert!(matches!(e, X509Error::Der(_)));
        assert!(std::error::Error::source(&e).is_some());
    }
}
