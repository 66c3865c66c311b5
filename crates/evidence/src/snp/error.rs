//! Typed failures of SEV-SNP verification, one variant per check.

use crate::snp::report::{Product, SigningKey, Tcb};

/// Why a SEV-SNP report failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnpError {
    /// Not exactly 1184 bytes.
    #[error("report has {len} bytes; an SNP attestation report has 1184")]
    ReportLength {
        /// Observed length.
        len: usize,
    },
    /// A report version this verifier does not implement.
    #[error("unsupported report version {0} (supported: 2, 3, 5)")]
    UnsupportedVersion(u32),
    /// `signature_algo` other than ECDSA P-384/SHA-384.
    #[error("unsupported signature algorithm {0} (only 1 = ECDSA P-384 SHA-384)")]
    UnsupportedSignatureAlgorithm(u32),
    /// `flags` names a signing key other than VCEK or VLEK (e.g. none).
    #[error("report signing key field {0} names neither the VCEK (0) nor the VLEK (1)")]
    UnsupportedSigningKey(u32),
    /// A VMPL outside 0..=3.
    #[error("VMPL {0} is outside 0..=3")]
    InvalidVmpl(u32),
    /// The signature's 72-byte field has non-zero high bytes.
    #[error("signature component {0} does not fit in 48 bytes")]
    MalformedSignature(&'static str),
    /// CPUID family/model that is no known SNP product.
    #[error("CPUID family {family:#04x} model {model:#04x} is no known SEV-SNP product")]
    UnknownCpuid {
        /// CPUID family.
        family: u8,
        /// CPUID model.
        model: u8,
    },
    /// No endorsement key certificate (VCEK/VLEK) was supplied.
    #[error("no VCEK or VLEK certificate supplied (use --vcek/--certs or the KDS)")]
    MissingEndorsement,
    /// More than one candidate endorsement certificate.
    #[error("{0} candidate VCEK/VLEK certificates supplied; give exactly one")]
    AmbiguousEndorsement(usize),
    /// The certificate's `productName` is missing or unknown.
    #[error("endorsement certificate names no known product ({0})")]
    UnknownProduct(String),
    /// The report's CPUID and the certificate disagree on the product.
    #[error("report CPUID says {report} but the certificate is for {certificate}")]
    ProductMismatch {
        /// From the report's CPUID fields.
        report: Product,
        /// From the certificate.
        certificate: Product,
    },
    /// The product is not one the policy accepts.
    #[error("product {0} is not accepted by the policy")]
    ProductNotAllowed(Product),
    /// The report says VCEK but the certificate is a VLEK, or the reverse.
    #[error("report is signed by the {report} but the certificate is a {certificate}")]
    EndorsementKindMismatch {
        /// From the report's flags.
        report: SigningKey,
        /// From the certificate.
        certificate: SigningKey,
    },
    /// The VCEK's hwID differs from the report's chip_id.
    #[error("VCEK hwID {vcek} differs from the report's chip_id {report}")]
    ChipIdMismatch {
        /// Hex.
        vcek: String,
        /// Hex.
        report: String,
    },
    /// The report claims a TCB the VCEK/VLEK was not issued for.
    #[error(
        "reported TCB ({report}) differs from the TCB the {key} was issued for ({certificate})"
    )]
    TcbMismatch {
        /// VCEK or VLEK.
        key: SigningKey,
        /// From the report.
        report: Tcb,
        /// From the certificate's SPL extensions.
        certificate: Tcb,
    },
    /// Reserved TCB bytes are set.
    #[error("reported TCB {0:#018x} sets bytes the product's layout reserves")]
    TcbReserved(u64),
    /// The guest policy allows debugging: the host can read the guest.
    #[error("guest policy {0:#x} allows debugging (the host can read and change guest memory)")]
    DebugPolicy(u64),
    /// The guest policy allows a migration agent and the policy does not accept that.
    #[error(
        "guest policy {0:#x} allows a migration agent (can export guest memory); refused by default"
    )]
    MigrationAgent(u64),
    /// The guest policy lacks the reserved-one bit: not a firmware-written policy.
    #[error("guest policy {0:#x} has reserved bit 16 clear")]
    PolicyReserved(u64),
    /// The report was requested from another VMPL than the policy requires.
    #[error("report is from VMPL {got}; the policy requires VMPL {required}")]
    VmplMismatch {
        /// Required by the policy.
        required: u32,
        /// In the report.
        got: u32,
    },
    /// `report_data` differs from the expected binding.
    #[error("report_data mismatch: expected {expected}, got {got}")]
    ReportDataMismatch {
        /// Hex.
        expected: String,
        /// Hex.
        got: String,
    },
    /// `host_data` differs from what was expected.
    #[error("host_data mismatch: expected {expected}, got {got}")]
    HostDataMismatch {
        /// Hex.
        expected: String,
        /// Hex.
        got: String,
    },
    /// The report's ECDSA signature does not verify with the VCEK/VLEK.
    #[error("report signature does not verify with the {0}")]
    BadSignature(SigningKey),
    /// The endorsement chain's root is not the pinned ARK of the product.
    #[error(
        "{product} chain ends in a certificate that is not the pinned ARK (SHA-256 {fingerprint})"
    )]
    UntrustedArk {
        /// Product whose ARK was expected.
        product: String,
        /// Hex SHA-256 of the DER of the offered root.
        fingerprint: String,
    },
}

impl SnpError {
    /// A stable machine-readable name (used in JSON reports and exit messages).
    pub fn code(&self) -> &'static str {
        match self {
            SnpError::ReportLength { .. } => "snp_report_length",
            SnpError::UnsupportedVersion(_) => "snp_unsupported_version",
            SnpError::UnsupportedSignatureAlgorithm(_) => "snp_unsupported_signature_algorithm",
            SnpError::UnsupportedSigningKey(_) => "snp_unsupported_signing_key",
            SnpError::InvalidVmpl(_) => "snp_invalid_vmpl",
            SnpError::MalformedSignature(_) => "snp_malformed_signature",
            SnpError::UnknownCpuid { .. } => "snp_unknown_cpuid",
            SnpError::MissingEndorsement => "snp_missing_endorsement",
            SnpError::AmbiguousEndorsement(_) => "snp_ambiguous_endorsement",
            SnpError::UnknownProduct(_) => "snp_unknown_product",
            SnpError::ProductMismatch { .. } => "snp_product_mismatch",
            SnpError::ProductNotAllowed(_) => "snp_product_not_allowed",
            SnpError::EndorsementKindMismatch { .. } => "snp_endorsement_kind_mismatch",
            SnpError::ChipIdMismatch { .. } => "snp_chip_id_mismatch",
            SnpError::TcbMismatch { .. } => "snp_tcb_mismatch",
            SnpError::TcbReserved(_) => "snp_tcb_reserved",
            SnpError::DebugPolicy(_) => "snp_debug_policy",
            SnpError::MigrationAgent(_) => "snp_migration_agent",
            SnpError::PolicyReserved(_) => "snp_policy_reserved",
            SnpError::VmplMismatch { .. } => "snp_vmpl_mismatch",
            SnpError::ReportDataMismatch { .. } => "report_data_mismatch",
            SnpError::HostDataMismatch { .. } => "host_data_mismatch",
            SnpError::BadSignature(_) => "snp_bad_signature",
            SnpError::UntrustedArk { .. } => "untrusted_root",
        }
    }
}
