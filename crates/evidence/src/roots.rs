//! Trusted roots: the pinned AWS Nitro Enclaves Root G1 and explicitly
//! supplied ones (the dev root).

use std::sync::Arc;

use aws_lc_rs::digest;

use crate::error::VerifyError;
use crate::nitro::certs::{self, ParsedCert};
use crate::pem::{self, PemError};

/// SHA-256 of the DER of AWS Nitro Enclaves Root G1, as AWS publishes it.
pub const AWS_NITRO_ROOT_G1_SHA256: &str =
    "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";

/// The AWS Nitro Enclaves Root G1 certificate (CN=aws.nitro-enclaves, P-384,
/// valid 2019-10-28 → 2049-10-28). Public; embedded so trust never depends on
/// what a document's `cabundle[0]` claims.
const AWS_NITRO_ROOT_G1_PEM: &str = include_str!("roots/aws_nitro_root_g1.pem");

/// A root certificate the verifier trusts, identified by its exact DER bytes.
#[derive(Clone)]
pub struct TrustedRoot {
    name: String,
    der: Vec<u8>,
    fingerprint: [u8; 32],
    pub(crate) cert: Arc<ParsedCert>,
}

impl std::fmt::Debug for TrustedRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedRoot")
            .field("name", &self.name)
            .field("sha256", &self.fingerprint_hex())
            .finish()
    }
}

/// Why a root certificate could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RootError {
    /// PEM could not be read.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// The certificate does not parse or is not one this root kind can use.
    #[error("{0}")]
    Certificate(#[source] VerifyError),
    /// The embedded root does not have the pinned fingerprint.
    #[error("root fingerprint {got} differs from the pinned {expected}")]
    Fingerprint {
        /// Pinned.
        expected: String,
        /// Computed.
        got: String,
    },
}

impl TrustedRoot {
    /// Trusts the certificate with exactly these DER bytes.
    pub fn from_der(name: &str, der: &[u8]) -> Result<Self, RootError> {
        let cert = certs::parse(name, der).map_err(RootError::Certificate)?;
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(digest::digest(&digest::SHA256, der).as_ref());
        Ok(TrustedRoot {
            name: name.to_owned(),
            der: der.to_vec(),
            fingerprint,
            cert: Arc::new(cert),
        })
    }

    /// Trusts the first certificate of a PEM text.
    pub fn from_pem(name: &str, pem_text: &str) -> Result<Self, RootError> {
        let ders = pem::certificates(pem_text)?;
        let der = ders
            .first()
            .ok_or(RootError::Pem(PemError::NoCertificate))?;
        Self::from_der(name, der)
    }

    /// The pinned AWS Nitro Enclaves Root G1, checked against its fingerprint.
    pub fn aws_nitro_root_g1() -> Result<Self, RootError> {
        let root = Self::from_pem("AWS Nitro Enclaves Root G1", AWS_NITRO_ROOT_G1_PEM)?;
        if root.fingerprint_hex() != AWS_NITRO_ROOT_G1_SHA256 {
            return Err(RootError::Fingerprint {
                expected: AWS_NITRO_ROOT_G1_SHA256.to_owned(),
                got: root.fingerprint_hex(),
            });
        }
        Ok(root)
    }

    /// Human name used in reports.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The exact DER bytes that are trusted.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-256 of the DER.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// SHA-256 of the DER, lowercase hex.
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint)
    }

    /// The root as a PEM `CERTIFICATE` block.
    pub fn to_pem(&self) -> String {
        pem::encode_certificate(&self.der)
    }
}
