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
    /// Dev TEE key or certificate handling failed.
    #[error("dev TEE: {0}")]
    Dev(String),
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
