//! AWS Nitro Enclaves: documents from the Nitro Secure Module (`/dev/nsm`).

use std::path::Path;

use aws_nitro_enclaves_nsm_api::api::{Request, Response};
use aws_nitro_enclaves_nsm_api::driver;
use serde_bytes::ByteBuf;

use crate::{AttestError, AttestRequest, Attester, Evidence, Platform, check_nitro_fields};

/// The NSM device node. The NSM driver crate always opens this path.
pub const NSM_DEVICE: &str = "/dev/nsm";

/// Attests through the NSM; holds the device open for the process lifetime.
pub struct NitroAttester {
    fd: i32,
}

impl NitroAttester {
    /// Opens the NSM. `device` is probed first so a missing device is a
    /// typed error rather than a driver log line.
    pub fn open(device: &Path) -> Result<Self, AttestError> {
        if !device.exists() {
            return Err(AttestError::DeviceMissing {
                path: device.to_owned(),
            });
        }
        if device != Path::new(NSM_DEVICE) {
            return Err(AttestError::Nsm(format!(
                "the NSM driver only opens {NSM_DEVICE}, not {}",
                device.display()
            )));
        }
        let fd = driver::nsm_init();
        if fd < 0 {
            return Err(AttestError::Nsm(format!("cannot open {NSM_DEVICE}")));
        }
        Ok(NitroAttester { fd })
    }
}

impl Drop for NitroAttester {
    fn drop(&mut self) {
        driver::nsm_exit(self.fd);
    }
}

/// The NSM request for `req` (empty nonce means no nonce).
pub fn nsm_request(req: &AttestRequest) -> Result<Request, AttestError> {
    check_nitro_fields(req)?;
    Ok(Request::Attestation {
        user_data: req.user_data.clone().map(ByteBuf::from),
        nonce: (!req.nonce.is_empty()).then(|| ByteBuf::from(req.nonce.clone())),
        public_key: req.public_key.clone().map(ByteBuf::from),
    })
}

impl Attester for NitroAttester {
    fn platform(&self) -> Platform {
        Platform::Nitro
    }

    fn attest(&self, req: &AttestRequest) -> Result<Evidence, AttestError> {
        match driver::nsm_process_request(self.fd, nsm_request(req)?) {
            Response::Attestation { document } => Ok(Evidence {
                platform: Platform::Nitro,
                bytes: document,
                aux: None,
            }),
            Response::Error(code) => Err(AttestError::Nsm(format!("{code:?}"))),
            other => Err(AttestError::Nsm(format!("unexpected response {other:?}"))),
        }
    }
}
