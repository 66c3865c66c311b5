//! Typed failures of evidence verification, one variant per failure kind.

use std::fmt;
use std::sync::Arc;

use crate::cbor::CborError;

/// A cause that is not `Clone` or `Eq` itself (e.g. `serde_json::Error`,
/// `hex::FromHexError`), kept whole inside error enums that are: clones share
/// it, and two causes are equal when they report the same failure (same
/// text), which is what tests and callers compare.
#[derive(Debug)]
pub struct Shared<E>(Arc<E>);

impl<E> Shared<E> {
    /// Wraps `cause`.
    pub fn new(cause: E) -> Self {
        Shared(Arc::new(cause))
    }

    /// The wrapped cause.
    pub fn get(&self) -> &E {
        &self.0
    }
}

impl<E> From<E> for Shared<E> {
    fn from(cause: E) -> Self {
        Shared::new(cause)
    }
}

impl<E> Clone for Shared<E> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<E: fmt::Display> PartialEq for Shared<E> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl<E: fmt::Display> Eq for Shared<E> {}

impl<E: fmt::Display> fmt::Display for Shared<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: std::error::Error> std::error::Error for Shared<E> {
    // Transparent: the wrapped error's own cause chain continues the chain.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Why input bytes could not be turned into a CBOR document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// Nothing to decode.
    #[error("input is empty")]
    Empty,
    /// Neither raw COSE CBOR, base64 nor hex.
    #[error("input is neither raw CBOR (0x84/0x9f/0xd2...), base64 nor hex")]
    UnknownEncoding,
    /// Looked like base64 but did not decode.
    #[error("invalid base64: {0}")]
    Base64(#[source] base64::DecodeError),
    /// Looked like hex but did not decode.
    #[error("invalid hex: {0}")]
    Hex(#[source] Shared<hex::FromHexError>),
}

/// Why a document failed verification. Each variant names one check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The input encoding was not recognised.
    #[error("input: {0}")]
    Input(#[from] InputError),
    /// The bytes are not well-formed CBOR.
    #[error("malformed CBOR: {0}")]
    Cbor(#[source] CborError),
    /// Well-formed CBOR but not a COSE_Sign1 as Nitro produces it.
    #[error("not a COSE_Sign1 document: {0}")]
    NotCoseSign1(String),
    /// The COSE protected header is not CBOR.
    #[error("not a COSE_Sign1 document: protected header: {0}")]
    ProtectedHeader(#[source] CborError),
    /// The protected header names another algorithm than ES384.
    #[error("unsupported COSE algorithm {0} (only ES384 = -35)")]
    UnsupportedAlgorithm(String),
    /// The payload is not a CBOR map of the attestation fields.
    #[error("payload is not an attestation document: {0}")]
    MalformedPayload(String),
    /// The payload is not CBOR.
    #[error("payload is not an attestation document: {0}")]
    PayloadCbor(#[source] CborError),
    /// A required payload field is absent.
    #[error("payload field `{0}` is missing")]
    MissingField(&'static str),
    /// A payload field has the wrong CBOR type.
    #[error("payload field `{field}` must be {expected}")]
    FieldType {
        /// Field name.
        field: String,
        /// Expected type.
        expected: &'static str,
    },
    /// A payload field has a size outside what the format allows.
    #[error("payload field `{field}` has {len} bytes; allowed: {allowed}")]
    FieldSize {
        /// Field name.
        field: String,
        /// Observed length.
        len: usize,
        /// Allowed lengths.
        allowed: &'static str,
    },
    /// A certificate (leaf or cabundle) does not parse or is unsuitable.
    #[error("certificate {which}: {reason}")]
    BadCertificate {
        /// `leaf` or `cabundle[i]`.
        which: String,
        /// What is wrong.
        reason: String,
    },
    /// A certificate's X.509 structure is unusable.
    #[error("certificate {which}: {source}")]
    Certificate {
        /// `leaf`, `cabundle[i]`, the root's name.
        which: String,
        /// What is wrong (boxed: rare, and it would double the size of every result).
        #[source]
        source: Box<crate::x509::X509Error>,
    },
    /// Roots built into this binary do not load (a build defect, kept typed).
    #[error("certificate built-in {which} roots: {source}")]
    BuiltInRoots {
        /// Whose roots (`AMD`).
        which: &'static str,
        /// Why they do not load.
        #[source]
        source: Box<crate::RootError>,
    },
    /// The COSE signature does not verify with the leaf key.
    #[error("COSE signature does not verify with the leaf certificate")]
    BadSignature,
    /// A certificate is not signed by the next one up, or the names do not chain.
    #[error("chain broken at {which}: {reason}")]
    ChainBroken {
        /// The certificate whose issuer check failed.
        which: String,
        /// What failed.
        reason: String,
    },
    /// The chain does not end in a root the policy trusts.
    #[error("untrusted root (SHA-256 {fingerprint})")]
    UntrustedRoot {
        /// Hex SHA-256 of the DER of the top certificate.
        fingerprint: String,
    },
    /// A certificate's notAfter is before the verification time.
    #[error("certificate {which} ({subject}) expired at {not_after}")]
    CertificateExpired {
        /// Position in the chain.
        which: String,
        /// Subject name.
        subject: String,
        /// RFC 3339.
        not_after: String,
    },
    /// A certificate's notBefore is after the verification time.
    #[error("certificate {which} ({subject}) not valid before {not_before}")]
    CertificateNotYetValid {
        /// Position in the chain.
        which: String,
        /// Subject name.
        subject: String,
        /// RFC 3339.
        not_before: String,
    },
    /// The document timestamp is older than the policy's max age.
    #[error("document is {age_secs} s old; max age is {max_age_secs} s")]
    TooOld {
        /// Age at the verification time.
        age_secs: u64,
        /// Policy limit.
        max_age_secs: u64,
    },
    /// The document timestamp lies in the future beyond the allowed skew.
    #[error("document timestamp is {ahead_ms} ms in the future")]
    FromTheFuture {
        /// How far ahead.
        ahead_ms: u64,
    },
    /// PCR0..2 are all zero (enclave in debug mode) and the policy forbids it.
    #[error("debug-mode document (PCR0, PCR1, PCR2 are all zero)")]
    DebugMode,
    /// A dev-root document whose module_id does not start with `dev-`.
    #[error("dev-root document with module_id `{0}` (must start with `dev-`)")]
    DevModuleId(String),
    /// A dev document declares an insecure fault and the policy does not accept that.
    #[error("the node declares the insecure fault `{0}`: its answers may be wrong on purpose")]
    FaultDeclared(String),
    /// A nonce was expected but the document has none.
    #[error("document carries no nonce")]
    NonceMissing,
    /// The document nonce differs from the challenge.
    #[error("nonce mismatch: expected {expected}, got {got}")]
    NonceMismatch {
        /// Hex.
        expected: String,
        /// Hex.
        got: String,
    },
    /// No release in the registry matches the document's PCRs.
    #[error("measurements match no release: {0}")]
    MeasurementMismatch(String),
    /// `user_data` differs from the expected binding.
    #[error("user_data mismatch: expected {expected}, got {got}")]
    UserDataMismatch {
        /// Hex.
        expected: String,
        /// Hex, or `none`.
        got: String,
    },
    /// An Intel DCAP check failed (the inner error names it).
    #[error(transparent)]
    Dcap(#[from] crate::dcap::DcapError),
    /// `public_key` differs from the expected binding.
    #[error("public_key mismatch: expected {expected}, got {got}")]
    PublicKeyMismatch {
        /// Hex.
        expected: String,
        /// Hex, or `none`.
        got: String,
    },
    /// A SEV-SNP specific check failed.
    #[error(transparent)]
    Snp(#[from] crate::snp::SnpError),
    /// The evidence names a platform no verifier is built for (yet).
    #[error("no verifier for platform {0}")]
    UnsupportedPlatform(crate::Platform),
    /// The verified platform differs from the one the envelope claims.
    #[error("envelope claims platform {claimed} but the evidence verified as {verified}")]
    PlatformMismatch {
        /// From the envelope.
        claimed: crate::Platform,
        /// From verification.
        verified: crate::Platform,
    },
}

impl VerifyError {
    /// A stable machine-readable name of the failure kind (used in JSON reports).
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Input(_) => "input",
            VerifyError::Cbor(_) => "malformed_cbor",
            VerifyError::NotCoseSign1(_) | VerifyError::ProtectedHeader(_) => "not_cose_sign1",
            VerifyError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            VerifyError::MalformedPayload(_) | VerifyError::PayloadCbor(_) => "malformed_payload",
            VerifyError::MissingField(_) => "missing_field",
            VerifyError::FieldType { .. } => "field_type",
            VerifyError::FieldSize { .. } => "field_size",
            VerifyError::BadCertificate { .. }
            | VerifyError::Certificate { .. }
            | VerifyError::BuiltInRoots { .. } => "bad_certificate",
            VerifyError::BadSignature => "bad_signature",
            VerifyError::ChainBroken { .. } => "chain_broken",
            VerifyError::UntrustedRoot { .. } => "untrusted_root",
            VerifyError::CertificateExpired { .. } => "certificate_expired",
            VerifyError::CertificateNotYetValid { .. } => "certificate_not_yet_valid",
            VerifyError::TooOld { .. } => "too_old",
            VerifyError::FromTheFuture { .. } => "from_the_future",
            VerifyError::DebugMode => "debug_mode",
            VerifyError::DevModuleId(_) => "dev_module_id",
            VerifyError::FaultDeclared(_) => "fault_declared",
            VerifyError::NonceMissing => "nonce_missing",
            VerifyError::NonceMismatch { .. } => "nonce_mismatch",
            VerifyError::MeasurementMismatch(_) => "measurement_mismatch",
            VerifyError::UserDataMismatch { .. } => "user_data_mismatch",
            VerifyError::PublicKeyMismatch { .. } => "public_key_mismatch",
            VerifyError::Dcap(e) => e.code(),
            VerifyError::Snp(e) => e.code(),
            VerifyError::UnsupportedPlatform(_) => "unsupported_platform",
            VerifyError::PlatformMismatch { .. } => "platform_mismatch",
        }
    }
}
