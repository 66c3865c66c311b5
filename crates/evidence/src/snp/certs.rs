//! X.509 for the AMD SEV PKI: the ARK and ASK/ASVK are RSA-4096 and sign
//! with RSASSA-PSS/SHA-384 (salt 48); the VCEK/VLEK is an EC P-384 key whose
//! extensions carry the product, the TCB it was issued for and (VCEK) the
//! chip id. A dev chain (danger API only) may use ECDSA P-384 at every level.

use aws_lc_rs::signature::{
    ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_FIXED, ParsedPublicKey, RSA_PSS_2048_8192_SHA384,
};
use x509_cert::der::asn1::{Ia5StringRef, OctetStringRef};
use x509_cert::der::{Decode, Encode, oid::ObjectIdentifier};
use x509_cert::ext::pkix::KeyUsages;

use crate::error::VerifyError;
use crate::nitro::certs::{check_window, x509_err};
use crate::snp::report::{Product, SigningKey, Tcb};
use crate::time::UnixTime;
use crate::x509::{EC_PUBLIC_KEY, X509Cert, X509Error};

const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");

/// An ASN.1 object identifier (re-exported for the dev signer).
pub use x509_cert::der::oid::ObjectIdentifier as Oid;

/// AMD's extension arc for VCEK/VLEK certificates.
pub mod oid {
    use x509_cert::der::oid::ObjectIdentifier;
    /// `structVersion`.
    pub const STRUCT_VERSION: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.1");
    /// `productName` (IA5String, e.g. `Milan-B0`).
    pub const PRODUCT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.2");
    /// Bootloader SPL.
    pub const BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
    /// TEE SPL.
    pub const TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
    /// SNP SPL.
    pub const SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
    /// Microcode SPL.
    pub const UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
    /// FMC SPL (Turin and later).
    pub const FMC_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
    /// `hwID`: the 64-byte chip id (VCEK only).
    pub const HW_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");
    /// `cspID`: the cloud provider a VLEK was issued to (VLEK only).
    pub const CSP_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.5");
}

/// How a certificate is signed (decided by the certificate, verified with
/// the algorithm the issuer's key implies; both must agree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SigAlg {
    RsaPssSha384,
    EcdsaSha384,
}

/// What the VCEK/VLEK extensions say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AmdExtensions {
    pub product_name: Option<String>,
    pub hw_id: Option<Vec<u8>>,
    pub csp_id: bool,
    pub bl: Option<u8>,
    pub tee: Option<u8>,
    pub snp: Option<u8>,
    pub ucode: Option<u8>,
    pub fmc: Option<u8>,
}

impl AmdExtensions {
    /// The TCB the certificate was issued for, laid out for `product`.
    pub(crate) fn tcb(&self, product: Product) -> Option<Tcb> {
        Some(Tcb {
            fmc: if product.has_fmc() {
                Some(self.fmc?)
            } else {
                None
            },
            bootloader: self.bl?,
            tee: self.tee?,
            snp: self.snp?,
            microcode: self.ucode?,
        })
    }
}

/// One parsed certificate of an SNP chain.
pub(crate) struct SnpCert {
    pub which: String,
    pub subject: String,
    pub common_name: String,
    pub der: Vec<u8>,
    subject_der: Vec<u8>,
    issuer_der: Vec<u8>,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
    /// For verifying certificates this one issued (RSA-PSS or ECDSA ASN.1).
    issuer_key: ParsedPublicKey,
    /// For verifying a report (ECDSA P-384, fixed `r || s`): endorsement keys only.
    pub report_key: Option<ParsedPublicKey>,
    pub is_ca: bool,
    can_sign_certs: bool,
    sig_alg: SigAlg,
    tbs: Vec<u8>,
    signature: Vec<u8>,
    pub ext: AmdExtensions,
}

impl std::fmt::Debug for SnpCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnpCert")
            .field("which", &self.which)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

fn bad(which: &str, reason: impl Into<String>) -> VerifyError {
    VerifyError::BadCertificate {
        which: which.to_owned(),
        reason: reason.into(),
    }
}

fn small_int(which: &str, name: &'static str, value: &[u8]) -> Result<u8, VerifyError> {
    u8::from_der(value).map_err(|source| {
        x509_err(which)(X509Error::ExtensionValue {
            name,
            expected: "a small INTEGER",
            source,
        })
    })
}

fn parse_amd_extension(
    which: &str,
    ext: &mut AmdExtensions,
    id: ObjectIdentifier,
    value: &[u8],
) -> Result<bool, VerifyError> {
    match id {
        oid::PRODUCT_NAME => {
            let s = Ia5StringRef::from_der(value).map_err(|source| {
                x509_err(which)(X509Error::ExtensionValue {
                    name: "productName",
                    expected: "an IA5String",
                    source,
                })
            })?;
            ext.product_name = Some(s.as_str().to_owned());
        }
        oid::HW_ID => {
            // KDS writes the 64 raw bytes; accept an OCTET STRING wrapper too.
            let raw = match OctetStringRef::from_der(value) {
                Ok(o) if o.as_bytes().len() == 64 => o.as_bytes().to_vec(),
                _ => value.to_vec(),
            };
            ext.hw_id = Some(raw);
        }
        oid::CSP_ID => ext.csp_id = true,
        oid::BL_SPL => ext.bl = Some(small_int(which, "blSPL", value)?),
        oid::TEE_SPL => ext.tee = Some(small_int(which, "teeSPL", value)?),
        oid::SNP_SPL => ext.snp = Some(small_int(which, "snpSPL", value)?),
        oid::UCODE_SPL => ext.ucode = Some(small_int(which, "ucodeSPL", value)?),
        oid::FMC_SPL => ext.fmc = Some(small_int(which, "fmcSPL", value)?),
        _ => return Ok(false),
    }
    Ok(true)
}

/// Parses one certificate of an SNP chain.
pub(crate) fn parse(which: &str, der: &[u8]) -> Result<SnpCert, VerifyError> {
    let mut ext = AmdExtensions::default();
    let x = X509Cert::parse(der, x509_err(which), |id, value| {
        parse_amd_extension(which, &mut ext, id, value)
    })?;
    let (cert, t) = (&x.cert, &x.cert.tbs_certificate);
    if cert.signature_algorithm != t.signature {
        return Err(bad(which, "outer and inner signature algorithms differ"));
    }
    let sig_alg = match cert.signature_algorithm.oid {
        ECDSA_WITH_SHA384 => SigAlg::EcdsaSha384,
        RSASSA_PSS => {
            let params = cert
                .signature_algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.to_der().ok())
                .unwrap_or_default();
            let sha384 = SHA384.as_bytes();
            if !params.windows(sha384.len()).any(|w| w == sha384) {
                return Err(bad(which, "RSASSA-PSS parameters do not name SHA-384"));
            }
            SigAlg::RsaPssSha384
        }
        other => {
            return Err(bad(
                which,
                format!("signature algorithm {other} is neither RSASSA-PSS nor ecdsa-with-SHA384"),
            ));
        }
    };
    let key_bytes = x.key_bits.as_slice();
    let (issuer_key, report_key) = match t.subject_public_key_info.algorithm.oid {
        RSA_ENCRYPTION | RSASSA_PSS => (
            ParsedPublicKey::new(&RSA_PSS_2048_8192_SHA384, key_bytes)
                .map_err(X509Error::key("RSA public key"))
                .map_err(x509_err(which))?,
            None,
        ),
        EC_PUBLIC_KEY => {
            if x.ec_curve() != Some(SECP384R1) {
                return Err(bad(which, "EC public key is not P-384"));
            }
            (
                ParsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, key_bytes)
                    .map_err(X509Error::key("EC public key"))
                    .map_err(x509_err(which))?,
                Some(
                    ParsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, key_bytes)
                        .map_err(X509Error::key("EC public key"))
                        .map_err(x509_err(which))?,
                ),
            )
        }
        other => {
            return Err(bad(
                which,
                format!("unsupported public key algorithm {other}"),
            ));
        }
    };
    let common_name = t
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == x509_cert::der::oid::db::rfc4519::CN)
        .filter_map(|atv| {
            atv.value
                .decode_as::<x509_cert::der::asn1::Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_owned())
                .or_else(|_| {
                    atv.value
                        .decode_as::<x509_cert::der::asn1::PrintableStringRef<'_>>()
                        .map(|s| s.as_str().to_owned())
                })
                .ok()
        })
        .next_back()
        .unwrap_or_default();
    Ok(SnpCert {
        which: which.to_owned(),
        subject: x.subject.clone(),
        common_name,
        der: der.to_vec(),
        can_sign_certs: x.may(KeyUsages::KeyCertSign),
        subject_der: x.subject_der,
        issuer_der: x.issuer_der,
        not_before: x.not_before,
        not_after: x.not_after,
        issuer_key,
        report_key,
        is_ca: x.is_ca,
        sig_alg,
        tbs: x.tbs,
        signature: x.signature,
        ext,
    })
}

impl SnpCert {
    /// Whether subject and issuer names are equal (a root candidate).
    pub(crate) fn self_issued(&self) -> bool {
        self.subject_der == self.issuer_der
    }

    /// Whether `self`'s subject is `child`'s issuer.
    pub(crate) fn names_issuer_of(&self, child: &SnpCert) -> bool {
        self.subject_der == child.issuer_der
    }

    /// Whether this is an RSA key (AMD's ARK/ASK/ASVK).
    pub(crate) fn is_rsa(&self) -> bool {
        self.report_key.is_none()
    }

    /// VCEK or VLEK, from the subject CN (`SEV-VCEK`, `SEV-VLEK`) or the
    /// extensions that only one kind carries.
    pub(crate) fn endorsement_kind(&self) -> SigningKey {
        if self.common_name.contains("VLEK") || self.ext.csp_id {
            SigningKey::Vlek
        } else {
            SigningKey::Vcek
        }
    }

    /// Checks that `self` issued `child`: names chain, CA with keyCertSign,
    /// signature algorithm matches the key, signature verifies.
    pub(crate) fn check_issued(&self, child: &SnpCert) -> Result<(), VerifyError> {
        let broken = |reason: String| VerifyError::ChainBroken {
            which: child.which.clone(),
            reason,
        };
        if !self.names_issuer_of(child) {
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
        let expected = if self.is_rsa() {
            SigAlg::RsaPssSha384
        } else {
            SigAlg::EcdsaSha384
        };
        if child.sig_alg != expected {
            return Err(broken(format!(
                "signature algorithm does not match the key of {}",
                self.which
            )));
        }
        self.issuer_key
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
}
