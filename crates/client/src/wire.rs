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
    /// DER certificates the evidence needs (SEV-SNP VCEK/VLEK...), base64; envelope v1 field.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "attesta_evidence::envelope::b64_list"
    )]
    pub certs: Vec<Vec<u8>>,
    /// Platform collateral (DCAP); envelope v1 field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collateral: Option<serde_json::Value>,
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
