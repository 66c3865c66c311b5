//! The JSON of `GET /v1/attestation`.

use attesta_evidence::Platform;
use attesta_seal::PublicKeySet;
use serde::{Deserialize, Serialize};

/// `GET /v1/attestation?nonce=<hex>` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationResponse {
    /// `nitro`, `tdx`, `sev-snp`, `sgx` or `dev`.
    pub platform: Platform,
    /// Evidence bytes, base64.
    pub evidence: String,
    /// The key set the evidence binds (hex keys).
    pub keyset: PublicKeySet,
    /// The nonce echoed (hex).
    pub nonce: String,
}

/// `{"error": {"code", "message"}}` of a plaintext refusal.
#[derive(Debug, Deserialize)]
pub(crate) struct PlainError {
    pub(crate) error: attesta_seal::ErrorBody,
}
