//! Typed failures of DCAP verification, one variant per failed check.

use super::quote::QuoteError;
use super::tcb::TcbStatus;

/// Why a DCAP quote failed verification. Each variant names one check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DcapError {
    /// The quote bytes do not parse.
    #[error("quote: {0}")]
    Quote(#[from] QuoteError),
    /// The collateral does not fit this quote (missing, wrong type or version).
    #[error("collateral: {0}")]
    Collateral(String),
    /// The collateral JSON is not the documented shape.
    #[error("collateral: {0}")]
    CollateralJson(#[source] crate::Shared<serde_json::Error>),
    /// The collateral's parts do not decode (hex, PEM, size).
    #[error("collateral: {0}")]
    CollateralParts(#[source] crate::Shared<super::CollateralError>),
    /// A certificate does not parse or is unsuitable.
    #[error("certificate {which}: {reason}")]
    BadCertificate {
        /// Which certificate.
        which: String,
        /// What is wrong.
        reason: String,
    },
    /// A certificate's X.509 structure is unusable.
    #[error("certificate {which}: {source}")]
    Certificate {
        /// Which certificate.
        which: String,
        /// What is wrong (boxed: rare, and it would double the size of every result).
        #[source]
        source: Box<crate::x509::X509Error>,
    },
    /// A certificate is not issued by the next one up.
    #[error("chain broken at {which}: {reason}")]
    ChainBroken {
        /// The certificate whose issuer check failed.
        which: String,
        /// What failed.
        reason: String,
    },
    /// A chain does not end at a trusted root (checked by DER fingerprint).
    #[error("{chain} does not end at a trusted root (top certificate SHA-256 {fingerprint})")]
    UntrustedRoot {
        /// `PCK chain` or `TCB signing chain`.
        chain: &'static str,
        /// Hex SHA-256 of the top certificate's DER.
        fingerprint: String,
    },
    /// The collateral chains to another root than the quote.
    #[error("the TCB signing chain ends at {tcb}, the PCK chain at {pck}")]
    RootMismatch {
        /// Root of the PCK chain.
        pck: String,
        /// Root of the TCB signing chain.
        tcb: String,
    },
    /// Something is used before its validity window.
    #[error("{what} is not valid before {from}")]
    NotYetValid {
        /// What.
        what: String,
        /// RFC 3339.
        from: String,
    },
    /// Something is used after its validity window.
    #[error("{what} expired at {until}")]
    Expired {
        /// What.
        what: String,
        /// RFC 3339.
        until: String,
    },
    /// A CRL is not signed by its issuer.
    #[error("{which} CRL: {reason}")]
    CrlSignature {
        /// `root CA` or `PCK`.
        which: String,
        /// What failed.
        reason: String,
    },
    /// A certificate is listed in a CRL.
    #[error("certificate {which} (serial {serial}) is revoked")]
    Revoked {
        /// Which certificate.
        which: String,
        /// Hex serial.
        serial: String,
    },
    /// The TCB info or QE identity signature does not verify.
    #[error("{0} signature does not verify with the TCB signing certificate")]
    CollateralSignature(&'static str),
    /// The attestation key is not a valid P-256 point.
    #[error("attestation key is not a valid P-256 public key")]
    AttestationKey,
    /// The quote is not signed by its attestation key.
    #[error("quote signature does not verify with the attestation key")]
    QuoteSignature,
    /// The QE report is not signed by the PCK key.
    #[error("QE report signature does not verify with the PCK certificate")]
    QeReportSignature,
    /// The QE report does not bind the attestation key.
    #[error(
        "QE report data {got} is not SHA-256(attestation key ‖ QE auth data) ‖ zeros ({expected})"
    )]
    AttestationKeyBinding {
        /// Hex.
        expected: String,
        /// Hex.
        got: String,
    },
    /// The PCK leaf has no SGX extension.
    #[error("the PCK certificate carries no SGX extension")]
    NotPck,
    /// The PCK's FMSPC or PCE-ID differ from the TCB info's.
    #[error("{field} mismatch: PCK certificate has {pck}, TCB info has {tcb_info}")]
    PlatformMismatch {
        /// `FMSPC` or `PCE-ID`.
        field: &'static str,
        /// Hex.
        pck: String,
        /// Hex.
        tcb_info: String,
    },
    /// The QE report is not the enclave the QE identity describes.
    #[error("QE identity mismatch in {field}: expected {expected}, got {got}")]
    QeIdentityMismatch {
        /// Field.
        field: &'static str,
        /// Expected (masked) value.
        expected: String,
        /// Value in the QE report (masked).
        got: String,
    },
    /// No TCB level of the QE identity covers the QE's ISVSVN.
    #[error("no QE identity TCB level matches QE ISVSVN {0}")]
    NoQeTcbLevel(u16),
    /// No TCB level of the TCB info is met by the platform's SVNs.
    #[error("TCB level not supported: no TCB info level matches the platform ({0})")]
    NoTcbLevel(String),
    /// A TCB status the policy does not accept.
    #[error("{what} TCB status {status} is not accepted{}", advisories_suffix(.advisories))]
    TcbStatus {
        /// `platform`, `QE` or `TDX module`.
        what: &'static str,
        /// The status.
        status: TcbStatus,
        /// Intel advisory ids of that level.
        advisories: Vec<String>,
    },
    /// The TDX module is not one the TCB info describes.
    #[error("TDX module: {0}")]
    TdxModule(String),
    /// Debug enclave / TD, and the policy refuses debug.
    #[error("debug {0} (attributes allow the host to read its memory)")]
    Debug(&'static str),
    /// No release in the registry matches.
    #[error("measurements match no release: {0}")]
    MeasurementMismatch(String),
    /// report_data differs from the expected binding.
    #[error("report_data mismatch: expected {expected}, got {got}")]
    ReportDataMismatch {
        /// Hex.
        expected: String,
        /// Hex.
        got: String,
    },
}

fn advisories_suffix(a: &[String]) -> String {
    if a.is_empty() {
        String::new()
    } else {
        format!(" (advisories {})", a.join(", "))
    }
}

impl DcapError {
    /// A stable machine-readable name of the failure kind.
    pub fn code(&self) -> &'static str {
        match self {
            DcapError::Quote(_) => "malformed_quote",
            DcapError::Collateral(_)
            | DcapError::CollateralJson(_)
            | DcapError::CollateralParts(_) => "bad_collateral",
            DcapError::BadCertificate { .. } | DcapError::Certificate { .. } => "bad_certificate",
            DcapError::ChainBroken { .. } => "chain_broken",
            DcapError::UntrustedRoot { .. } => "untrusted_root",
            DcapError::RootMismatch { .. } => "root_mismatch",
            DcapError::NotYetValid { .. } => "not_yet_valid",
            DcapError::Expired { .. } => "expired",
            DcapError::CrlSignature { .. } => "crl_signature",
            DcapError::Revoked { .. } => "revoked",
            DcapError::CollateralSignature(_) => "collateral_signature",
            DcapError::AttestationKey => "bad_attestation_key",
            DcapError::QuoteSignature => "bad_quote_signature",
            DcapError::QeReportSignature => "bad_qe_report_signature",
            DcapError::AttestationKeyBinding { .. } => "attestation_key_binding",
            DcapError::NotPck => "not_pck",
            DcapError::PlatformMismatch { .. } => "fmspc_mismatch",
            DcapError::QeIdentityMismatch { .. } => "qe_identity_mismatch",
            DcapError::NoQeTcbLevel(_) => "no_qe_tcb_level",
            DcapError::NoTcbLevel(_) => "tcb_level_not_found",
            DcapError::TcbStatus { .. } => "tcb_status",
            DcapError::TdxModule(_) => "tdx_module",
            DcapError::Debug(_) => "debug_mode",
            DcapError::MeasurementMismatch(_) => "measurement_mismatch",
            DcapError::ReportDataMismatch { .. } => "report_data_mismatch",
        }
    }
}
