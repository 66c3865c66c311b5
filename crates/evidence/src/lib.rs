//! Attestation evidence and its verification.
//!
//! Pure: no I/O, no clock reads, no randomness. Time is injected as
//! [`UnixTime`]; trust comes from a [`Policy`]. Verifying returns a per-step
//! [`Report`] whatever the outcome, plus a typed [`VerifyError`].
//!
//! ```no_run
//! # use attesta_evidence::*;
//! # fn f(doc: &[u8], nonce: Vec<u8>) -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = NitroVerifier::new(Policy::aws_nitro()?);
//! let v = verifier.verify(doc, &Expected { nonce: Some(nonce), ..Default::default() },
//!                         UnixTime::from_system(std::time::SystemTime::now()));
//! println!("{}", v.report);
//! let verified = v.outcome?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
// Every byte parsed here is untrusted: no index or slice that can panic.
#![deny(clippy::indexing_slicing)]

/// The CBOR decoder the Nitro document parser uses (re-exported: one implementation in the tree).
pub use attesta_cbor as cbor;

pub mod dcap;
pub mod dispatch;
pub mod eif;
pub mod envelope;
mod error;
mod input;
pub mod nitro;
pub mod pem;
mod policy;
mod registry;
mod report;
mod roots;
pub mod snp;
mod time;
pub mod x509;

pub use dispatch::{EvidenceVerification, EvidenceVerifier, VerifiedEvidence};
pub use envelope::{Detected, ENVELOPE_VERSION, Envelope, EnvelopeError, detect};
pub use error::{InputError, Shared, VerifyError};
pub use input::{Encoding, decode_input};
pub use nitro::document::AttestationDocument;
pub use nitro::{Expected, NitroVerifier, Verification, VerifiedDocument};
pub use policy::{DEFAULT_MAX_AGE, DEFAULT_MAX_SKEW, Policy, danger};
pub use registry::{
    MeasurementMatch, PcrDiff, PolicyFile, Registry, RegistryError, Release, SnpRelease,
};
pub use report::{
    DocumentSummary, Report, ReportError, SnpSummary, Status, Step, StepId, record_step,
};
pub use roots::{AWS_NITRO_ROOT_G1_SHA256, RootError, TrustedRoot};
pub use snp::{SnpError, SnpVerification, SnpVerifier, VerifiedReport};
pub use time::UnixTime;

/// The kind of TEE a piece of evidence comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Platform {
    /// AWS Nitro Enclaves (NSM document, AWS root).
    Nitro,
    /// Intel TDX quote (configfs-tsm).
    Tdx,
    /// AMD SEV-SNP report (configfs-tsm).
    SevSnp,
    /// Intel SGX quote (Gramine).
    Sgx,
    /// The dev TEE: Nitro format, local root, no hardware. Never secure.
    Dev,
    /// The dev SEV-SNP variant: real report format, local ARK, no hardware. Never secure.
    DevSnp,
    /// The dev SGX variant: real DCAP quote format, local root, no hardware. Never secure.
    DevSgx,
    /// The dev TDX variant: real DCAP quote format, local root, no hardware. Never secure.
    DevTdx,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Platform::Nitro => "aws-nitro",
            Platform::Tdx => "intel-tdx",
            Platform::SevSnp => "amd-sev-snp",
            Platform::Sgx => "intel-sgx",
            Platform::Dev => "dev (insecure)",
            Platform::DevSnp => "dev-snp (insecure)",
            Platform::DevSgx => "dev-sgx (insecure)",
            Platform::DevTdx => "dev-tdx (insecure)",
        })
    }
}
