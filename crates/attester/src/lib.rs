//! Attestation evidence producers, one trait for every TEE.
//!
//! - [`nitro`]: AWS Nitro Enclaves through `/dev/nsm`;
//! - [`tsm`]: Intel TDX and AMD SEV-SNP guests through Linux configfs-tsm;
//! - [`gramine`]: Intel SGX through Gramine's `/dev/attestation`;
//! - [`dev`]: the insecure dev TEE (Nitro format, local root) for everywhere else;
//! - [`dev_snp`] / [`dev_tdx`]: insecure dev SEV-SNP / TDX TEEs (real formats, local roots).
//!
//! [`select`] picks one at start; `Auto` probes the devices and never falls
//! back to dev silently.
#![forbid(unsafe_code)]

mod error;
mod quote;

pub mod dcap_dev;
pub mod dev;
pub mod dev_snp;
pub mod dev_tdx;
pub mod gramine;
pub mod nitro;
pub mod tsm;

use std::path::PathBuf;
use std::str::FromStr;

pub use attesta_evidence::Platform;
pub use error::AttestError;

/// What the caller wants bound into the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestRequest {
    /// The challenge nonce (Nitro/dev carry it verbatim).
    pub nonce: Vec<u8>,
    /// Application data (Nitro/dev `user_data`).
    pub user_data: Option<Vec<u8>>,
    /// Key material (Nitro/dev `public_key`).
    pub public_key: Option<Vec<u8>>,
    /// The 64-byte report data (TDX/SNP/SGX), e.g. SHA-512 over key set and nonce.
    pub report_data: [u8; 64],
}

/// Evidence as produced by the TEE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// Which TEE produced it.
    pub platform: Platform,
    /// The document / quote / report bytes.
    pub bytes: Vec<u8>,
    /// Auxiliary data (configfs-tsm `auxblob`, e.g. SNP certificates), if any.
    pub aux: Option<Vec<u8>>,
}

/// Produces fresh evidence on each call.
pub trait Attester: Send + Sync {
    /// The platform this attester speaks for.
    fn platform(&self) -> Platform;
    /// Fresh evidence bound to `req`.
    fn attest(&self, req: &AttestRequest) -> Result<Evidence, AttestError>;
}

/// The `--tee` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeeKind {
    /// Probe the devices; error if none.
    Auto,
    /// `/dev/nsm`.
    Nitro,
    /// configfs-tsm.
    Tsm,
    /// Gramine `/dev/attestation`.
    Gramine,
    /// The insecure dev TEE.
    Dev,
    /// The insecure dev SEV-SNP TEE (real report format, local ARK).
    DevSnp,
    /// The insecure dev TDX TEE (real DCAP quote format and collateral, local root).
    DevTdx,
}

impl FromStr for TeeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(TeeKind::Auto),
            "nitro" => Ok(TeeKind::Nitro),
            "tsm" => Ok(TeeKind::Tsm),
            "gramine" => Ok(TeeKind::Gramine),
            "dev" => Ok(TeeKind::Dev),
            "dev-snp" => Ok(TeeKind::DevSnp),
            "dev-tdx" => Ok(TeeKind::DevTdx),
            other => Err(format!(
                "unknown TEE `{other}` (auto|nitro|tsm|gramine|dev|dev-snp|dev-tdx)"
            )),
        }
    }
}

/// Where the TEE interfaces live (configurable so tests can point elsewhere).
#[derive(Debug, Clone)]
pub struct SelectOptions {
    /// NSM device, normally `/dev/nsm`.
    pub nsm_device: PathBuf,
    /// configfs-tsm report directory, normally `/sys/kernel/config/tsm/report`.
    pub tsm_dir: PathBuf,
    /// Gramine attestation directory, normally `/dev/attestation`.
    pub gramine_dir: PathBuf,
    /// Settings of the dev TEE (required for `TeeKind::Dev`).
    pub dev: Option<dev::DevOptions>,
}

impl Default for SelectOptions {
    fn default() -> Self {
        SelectOptions {
            nsm_device: PathBuf::from(nitro::NSM_DEVICE),
            tsm_dir: PathBuf::from(tsm::TSM_REPORT_DIR),
            gramine_dir: PathBuf::from(gramine::GRAMINE_DIR),
            dev: None,
        }
    }
}

/// Builds the attester for `kind`.
pub fn select(kind: TeeKind, opts: SelectOptions) -> Result<Box<dyn Attester>, AttestError> {
    match kind {
        TeeKind::Nitro => Ok(Box::new(nitro::NitroAttester::open(&opts.nsm_device)?)),
        TeeKind::Tsm => Ok(Box::new(tsm::TsmAttester::open(&opts.tsm_dir)?)),
        TeeKind::Gramine => Ok(Box::new(gramine::GramineAttester::open(&opts.gramine_dir)?)),
        TeeKind::Dev => {
            let dev = opts
                .dev
                .ok_or_else(|| AttestError::Dev("dev TEE needs a data directory".into()))?;
            Ok(Box::new(dev::DevAttester::open(dev)?))
        }
        TeeKind::DevSnp => {
            let dev = opts
                .dev
                .ok_or_else(|| AttestError::Dev("dev-snp TEE needs a data directory".into()))?;
            Ok(Box::new(dev_snp::DevSnpAttester::open(dev)?))
        }
        TeeKind::DevTdx => {
            let dev = opts
                .dev
                .ok_or_else(|| AttestError::Dev("dev-tdx TEE needs a data directory".into()))?;
            Ok(Box::new(dev_tdx::DevTdxAttester::open(dev)?))
        }
        TeeKind::Auto => {
            if opts.nsm_device.exists() {
                return select(TeeKind::Nitro, opts);
            }
            if opts.tsm_dir.is_dir() {
                return select(TeeKind::Tsm, opts);
            }
            if opts.gramine_dir.join("quote").exists() {
                return select(TeeKind::Gramine, opts);
            }
            Err(AttestError::NoTeeFound {
                probed: format!(
                    "{}, {}, {}",
                    opts.nsm_device.display(),
                    opts.tsm_dir.display(),
                    opts.gramine_dir.join("quote").display()
                ),
            })
        }
    }
}

/// Nitro's limit on each of `nonce`, `user_data` and `public_key`.
pub const MAX_NITRO_FIELD: usize = attesta_evidence::nitro::document::MAX_USER_FIELD;

pub(crate) fn check_nitro_fields(req: &AttestRequest) -> Result<(), AttestError> {
    for (field, v) in [
        ("nonce", Some(&req.nonce)),
        ("user_data", req.user_data.as_ref()),
        ("public_key", req.public_key.as_ref()),
    ] {
        if let Some(v) = v
            && v.len() > MAX_NITRO_FIELD
        {
            return Err(AttestError::TooLarge {
                field,
                len: v.len(),
                max: MAX_NITRO_FIELD,
            });
        }
    }
    Ok(())
}
