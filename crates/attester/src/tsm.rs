//! Intel TDX and AMD SEV-SNP guests through Linux configfs-tsm
//! (`Documentation/ABI/testing/configfs-tsm`): write `inblob`, read
//! `outblob`, and use `generation` to detect a concurrent writer.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::quote::{snp_report_data, tdx_report_data};
use crate::{AttestError, AttestRequest, Attester, Evidence, Platform};

/// The configfs-tsm report directory.
pub const TSM_REPORT_DIR: &str = "/sys/kernel/config/tsm/report";
/// Our report entry (created with `mkdir`, reused across restarts).
pub const ENTRY_NAME: &str = "attesta";
/// Attempts before a persistent generation race becomes an error.
pub const MAX_ATTEMPTS: u32 = 4;

/// Attests through one configfs-tsm report entry.
#[derive(Debug)]
pub struct TsmAttester {
    entry: PathBuf,
    platform: Platform,
    // configfs entries are process-wide state: serialise our own users and
    // let `generation` catch everyone else.
    lock: Mutex<()>,
}

impl TsmAttester {
    /// Opens (creating if needed) the report entry under `dir` and reads its provider.
    pub fn open(dir: &Path) -> Result<Self, AttestError> {
        if !dir.is_dir() {
            return Err(AttestError::DeviceMissing {
                path: dir.to_owned(),
            });
        }
        let entry = dir.join(ENTRY_NAME);
        match std::fs::create_dir(&entry) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(AttestError::io("mkdir", &entry)(e)),
        }
        let provider_path = entry.join("provider");
        let provider = std::fs::read_to_string(&provider_path)
            .map_err(AttestError::io("read", &provider_path))?;
        let platform = match provider.trim() {
            "tdx_guest" => Platform::Tdx,
            "sev_guest" => Platform::SevSnp,
            other => return Err(AttestError::UnknownProvider(other.to_owned())),
        };
        Ok(TsmAttester {
            entry,
            platform,
            lock: Mutex::new(()),
        })
    }

    fn generation(&self) -> Result<u64, AttestError> {
        let path = self.entry.join("generation");
        let text = std::fs::read_to_string(&path).map_err(AttestError::io("read", &path))?;
        text.trim().parse().map_err(|_| AttestError::Malformed {
            path,
            reason: format!("generation `{}` is not a number", text.trim()),
        })
    }
}

impl Attester for TsmAttester {
    fn platform(&self) -> Platform {
        self.platform
    }

    fn attest(&self, req: &AttestRequest) -> Result<Evidence, AttestError> {
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let inblob = self.entry.join("inblob");
        let outblob = self.entry.join("outblob");
        for _ in 0..MAX_ATTEMPTS {
            let before = self.generation()?;
            std::fs::write(&inblob, req.report_data).map_err(AttestError::io("write", &inblob))?;
            let out = std::fs::read(&outblob).map_err(AttestError::io("read", &outblob))?;
            // Exactly our one write may have happened in between; anything
            // else means another writer changed inblob and `out` may be theirs.
            if self.generation()? != before.wrapping_add(1) {
                continue;
            }
            let (what, rd) = match self.platform {
                Platform::Tdx => ("TDX quote", tdx_report_data(&out)),
                _ => ("SNP report", snp_report_data(&out)),
            };
            if rd != Some(&req.report_data[..]) {
                return Err(AttestError::ReportDataMismatch(what));
            }
            let auxblob = self.entry.join("auxblob");
            let aux = std::fs::read(&auxblob).ok().filter(|a| !a.is_empty());
            return Ok(Evidence {
                platform: self.platform,
                bytes: out,
                aux,
            });
        }
        Err(AttestError::TsmRace {
            attempts: MAX_ATTEMPTS,
        })
    }
}
