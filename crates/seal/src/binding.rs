//! How evidence binds a key set and the caller's nonce, and how a verifier
//! checks it.
//!
//! - Nitro-format evidence: `public_key` = [`PublicKeySet::to_bytes`],
//!   `user_data` = keyset digest (32 bytes) or the nitriding 68-byte layout
//!   with the digest in the app-key slot, `nonce` = the caller's nonce.
//! - Report-data evidence (TDX, SEV-SNP, SGX): `report_data` =
//!   [`report_data`]`(keyset_digest, nonce)`; the key set travels beside it.

use crate::keys::{NodeKeys, PublicKeySet, report_data};

/// Length of the nitriding `user_data` layout.
pub const NITRIDING_USER_DATA_LEN: usize = 68;
/// The multihash prefix (sha2-256, 32 bytes) nitriding puts before each hash.
const MULTIHASH_SHA256: [u8; 2] = [0x12, 0x20];

/// The fields a node asks its attester to bind (maps one-to-one onto
/// `attesta_attester::AttestRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationBinding {
    /// The caller's nonce, verbatim.
    pub nonce: Vec<u8>,
    /// Nitro `user_data`.
    pub user_data: Vec<u8>,
    /// Nitro `public_key`.
    pub public_key: Vec<u8>,
    /// Report data for TDX/SNP/SGX.
    pub report_data: [u8; 64],
}

impl NodeKeys {
    /// What to bind into evidence for `/v1/attestation` (user_data = digest).
    pub fn attestation_binding(&self, nonce: &[u8]) -> AttestationBinding {
        let digest = self.keyset_digest();
        AttestationBinding {
            nonce: nonce.to_vec(),
            user_data: digest.to_vec(),
            public_key: self.public().to_bytes().to_vec(),
            report_data: report_data(&digest, nonce),
        }
    }

    /// The same for nitriding's `/enclave/attestation`: `user_data` in the
    /// 68-byte layout, `tls_cert_sha256` zero when serving plain HTTP.
    pub fn nitriding_binding(
        &self,
        nonce: &[u8],
        tls_cert_sha256: &[u8; 32],
    ) -> AttestationBinding {
        let mut b = self.attestation_binding(nonce);
        b.user_data = nitriding_user_data(tls_cert_sha256, &self.keyset_digest()).to_vec();
        b
    }
}

/// Builds `0x12 0x20 ‖ tls_cert_sha256 ‖ 0x12 0x20 ‖ app_key_hash`.
pub fn nitriding_user_data(
    tls_cert_sha256: &[u8; 32],
    app_key_hash: &[u8; 32],
) -> [u8; NITRIDING_USER_DATA_LEN] {
    let mut out = [0u8; NITRIDING_USER_DATA_LEN];
    let mut pos = 0;
    for part in [
        &MULTIHASH_SHA256[..],
        tls_cert_sha256,
        &MULTIHASH_SHA256[..],
        app_key_hash,
    ] {
        if let Some(dst) = out.get_mut(pos..pos + part.len()) {
            dst.copy_from_slice(part);
        }
        pos += part.len();
    }
    out
}

/// Parses the nitriding layout into `(tls_cert_sha256, app_key_hash)`.
pub fn parse_nitriding_user_data(user_data: &[u8]) -> Option<([u8; 32], [u8; 32])> {
    if user_data.len() != NITRIDING_USER_DATA_LEN {
        return None;
    }
    let (p1, rest) = user_data.split_at(2);
    let (tls, rest) = rest.split_at(32);
    let (p2, app) = rest.split_at(2);
    if p1 != MULTIHASH_SHA256 || p2 != MULTIHASH_SHA256 {
        return None;
    }
    Some((tls.try_into().ok()?, app.try_into().ok()?))
}

/// Why evidence does not bind the key set and nonce it should.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    /// The evidence carries no `public_key`.
    #[error("evidence carries no public_key (no key set bound)")]
    MissingPublicKey,
    /// `public_key` is not a key-set encoding.
    #[error("public_key is not an attesta key set ({len} bytes)")]
    MalformedKeySet {
        /// Observed length.
        len: usize,
    },
    /// `user_data` does not carry the key set's digest.
    #[error("user_data does not bind the key set (expected digest {expected})")]
    UserDataMismatch {
        /// Hex digest of the key set in `public_key`.
        expected: String,
    },
    /// The evidence carries no nonce.
    #[error("evidence carries no nonce")]
    MissingNonce,
    /// The evidence nonce is not the caller's.
    #[error("evidence nonce {got} differs from the challenge {expected}")]
    NonceMismatch {
        /// Hex.
        expected: String,
        /// Hex.
        got: String,
    },
    /// `report_data` is not `SHA-512(domain ‖ keyset_digest ‖ nonce)`.
    #[error("report_data does not bind this key set and nonce")]
    ReportDataMismatch,
    /// The key set announced beside the evidence differs from the bound one.
    #[error("announced key set differs from the key set the evidence binds")]
    KeySetMismatch,
}

impl BindingError {
    /// Stable wire code.
    pub fn code(&self) -> &'static str {
        match self {
            BindingError::MissingPublicKey => "binding_missing_public_key",
            BindingError::MalformedKeySet { .. } => "binding_malformed_key_set",
            BindingError::UserDataMismatch { .. } => "binding_user_data_mismatch",
            BindingError::MissingNonce => "binding_missing_nonce",
            BindingError::NonceMismatch { .. } => "binding_nonce_mismatch",
            BindingError::ReportDataMismatch => "binding_report_data_mismatch",
            BindingError::KeySetMismatch => "binding_key_set_mismatch",
        }
    }
}

/// Checks the binding of Nitro-format evidence and returns the bound key set.
///
/// `user_data` may be the bare 32-byte digest or the nitriding layout with
/// the digest in the app-key slot.
pub fn check_nitro(
    doc_public_key: Option<&[u8]>,
    doc_user_data: Option<&[u8]>,
    doc_nonce: Option<&[u8]>,
    expected_nonce: &[u8],
) -> Result<PublicKeySet, BindingError> {
    let pk = doc_public_key.ok_or(BindingError::MissingPublicKey)?;
    let keyset =
        PublicKeySet::from_bytes(pk).ok_or(BindingError::MalformedKeySet { len: pk.len() })?;
    let digest = keyset.digest();
    let bound = match doc_user_data {
        Some(ud) if ud == digest => true,
        Some(ud) => parse_nitriding_user_data(ud).is_some_and(|(_, app)| app == digest),
        None => false,
    };
    if !bound {
        return Err(BindingError::UserDataMismatch {
            expected: hex::encode(digest),
        });
    }
    check_nonce(doc_nonce, expected_nonce)?;
    Ok(keyset)
}

/// Checks report-data evidence: `report_data` must bind `keyset` and `nonce`.
pub fn check_report_data(
    doc_report_data: &[u8],
    keyset: &PublicKeySet,
    expected_nonce: &[u8],
) -> Result<PublicKeySet, BindingError> {
    if doc_report_data != report_data(&keyset.digest(), expected_nonce) {
        return Err(BindingError::ReportDataMismatch);
    }
    Ok(*keyset)
}

fn check_nonce(doc_nonce: Option<&[u8]>, expected: &[u8]) -> Result<(), BindingError> {
    match doc_nonce {
        None => Err(BindingError::MissingNonce),
        Some(n) if n == expected => Ok(()),
        Some(n) => Err(BindingError::NonceMismatch {
            expected: hex::encode(expected),
            got: hex::encode(n),
        }),
    }
}
