//! Intel SGX through Gramine's pseudo-files: write
//! `/dev/attestation/user_report_data`, read `/dev/attestation/quote`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::quote::sgx_report_data;
use crate::{AttestError, AttestRequest, Attester, Evidence, Platform};

/// Gramine's attestation directory.
pub const GRAMINE_DIR: &str = "/dev/attestation";

/// Attests through Gramine (DCAP or EPID quotes).
#[derive(Debug)]
pub struct GramineAttester {
    dir: PathBuf,
    lock: Mutex<()>,
}

impl GramineAttester {
    /// Checks the interface exists and is not `attestation_type = none`.
    pub fn open(dir: &Path) -> Result<Self, AttestError> {
        let quote = dir.join("quote");
        if !quote.exists() {
            return Err(AttestError::DeviceMissing { path: quote });
        }
        let kind_path = dir.join("attestation_type");
        if let Ok(kind) = std::fs::read_to_string(&kind_path)
            && kind.trim() == "none"
        {
            return Err(AttestError::Malformed {
                path: kind_path,
                reason: "Gramine runs without remote attestation (`none`)".into(),
            });
        }
        Ok(GramineAttester {
            dir: dir.to_owned(),
            lock: Mutex::new(()),
        })
    }
}

impl Attester for GramineAttester {
    fn platform(&self) -> Platform {
        Platform::Sgx
    }

    fn attest(&self, req: &AttestRequest) -> Result<Evidence, AttestError> {
        // The pseudo-files are per-process state: one request at a time.
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let urd = self.dir.join("user_report_data");
        std::fs::write(&urd, req.report_data).map_err(AttestError::io("write", &urd))?;
        let quote_path = self.dir.join("quote");
        let quote = std::fs::read(&quote_path).map_err(AttestError::io("read", &quote_path))?;
        if sgx_report_data(&quote) != Some(&req.report_data[..]) {
            return Err(AttestError::ReportDataMismatch("SGX quote"));
        }
        Ok(Evidence {
            platform: Platform::Sgx,
            bytes: quote,
            aux: None,
        })
    }
}
