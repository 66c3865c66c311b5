//! Typed failures of evidence production.

use std::path::PathBuf;

/// Why evidence could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The TEE device/interface is not there.
    #[error("TEE interface {path} not present")]
    DeviceMissing {
        /// Path probed.
        path: PathBuf,
    },
    /// `--tee auto` found no TEE interface; dev is never chosen silently.
    #[error("no TEE found (probed {probed}); use --tee dev explicitly for the insecure dev TEE")]
    NoTeeFound {
        /// The paths that were probed.
        probed: String,
    },
    /// Reading or writing an interface file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we tried.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A request field exceeds what the platform accepts.
    #[error("{field} has {len} bytes; at most {max} allowed")]
    TooLarge {
        /// Field name.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The Nitro Secure Module answered with an error.
    #[error("NSM error: {0}")]
    Nsm(String),
    /// configfs-tsm kept changing under us (another writer); retried and gave up.
    #[error("configfs-tsm generation changed during {attempts} attempts (concurrent writer)")]
    TsmRace {
        /// Attempts made.
        attempts: u32,
    },
    /// configfs-tsm reports a provider we do not know.
    #[error("unsupported configfs-tsm provider `{0}`")]
    UnknownProvider(String),
    /// The quote/report does not carry the report data we wrote.
    #[error("{0} does not carry the requested report data")]
    ReportDataMismatch(&'static str),
    /// A file had unexpected contents.
    #[error("unexpected contents in {path}: {reason}")]
    Malformed {
        /// Which file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Dev TEE key or certificate handling failed (a reason with no
    /// underlying error, e.g. a signature of the wrong size).
    #[error("dev TEE: {0}")]
    Dev(String),
    /// Generating or loading a dev key or certificate failed.
    #[error("dev TEE: {what}: {source}")]
    DevCertificate {
        /// The key or certificate (file) being handled.
        what: String,
        /// The certificate library's error.
        #[source]
        source: rcgen::Error,
    },
    /// The clock is outside what a certificate validity can express.
    #[error("dev TEE: time out of range: {0}")]
    DevTime(#[source] time::error::ComponentRange),
    /// A dev root certificate file is not PEM.
    #[error("dev TEE: {file}: {source}")]
    DevRootFile {
        /// The file.
        file: String,
        /// The PEM error.
        #[source]
        source: attesta_evidence::pem::PemError,
    },
    /// A root certificate (the dev root, or the built-in AWS root) does not load.
    #[error("dev TEE: {what}: {source}")]
    DevRoot {
        /// Which root.
        what: &'static str,
        /// Why it does not load.
        #[source]
        source: attesta_evidence::RootError,
    },
    /// Our own evidence does not verify against our own root (a key file
    /// that does not belong to the certificate, or a broken dev signer).
    #[error("dev TEE: {what}: {source}")]
    DevSelfTest {
        /// Which self-test, and the likely cause.
        what: &'static str,
        /// The verifier's verdict.
        #[source]
        source: attesta_evidence::VerifyError,
    },
    /// The dev DCAP collateral does not serialise to JSON.
    #[error("dev TEE: collateral: {0}")]
    DevCollateralJson(#[source] serde_json::Error),
    /// The dev DCAP collateral does not parse back (dev-tdx self-test).
    #[error("dev TEE: dev-tdx self-test collateral: {0}")]
    DevCollateral(#[source] attesta_evidence::dcap::CollateralError),
    /// A fault label the dev TEE cannot declare in a document.
    #[error("fault label {label:?} cannot be declared: {source}")]
    FaultLabel {
        /// The rejected label.
        label: String,
        /// Why the document format refuses it.
        #[source]
        source: attesta_evidence::VerifyError,
    },
    /// The entropy source failed.
    #[error("entropy source failed")]
    Entropy,
}

impl AttestError {
    /// Whether retrying the same call may succeed (only concurrency races are).
    pub fn is_retryable(&self) -> bool {
        matches!(self, AttestError::TsmRace { .. })
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| AttestError::Io { op, path, source }
    }
}

/// The built-in AWS Nitro root failed to load (a build defect, kept typed).
pub(crate) fn aws_root(source: attesta_evidence::RootError) -> AttestError {
    AttestError::DevRoot {
        what: "AWS Nitro root",
        source,
    }
}
