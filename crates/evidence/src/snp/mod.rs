//! AMD SEV-SNP attestation reports (v2, v3, v5) and their verification:
//! VCEK/VLEK signature, chain to the product's pinned ARK, reported TCB
//! against the certificate, guest policy, VMPL, measurement, host_data and
//! report_data.

pub mod cert_table;
pub mod certs;
pub mod error;
pub mod report;
pub mod roots;
mod verifier;

pub use error::SnpError;
pub use report::{AttestationReport, Product, RawTcb, SigningKey, Tcb};
pub use roots::{ARK_GENOA_SHA256, ARK_MILAN_SHA256, ARK_TURIN_SHA256, SnpDevRoot, amd_roots};
pub use verifier::{SnpVerification, SnpVerifier, VerifiedReport, decode_report};
