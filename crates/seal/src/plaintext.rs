//! The JSON carried inside sealed envelopes.

use attesta_evidence::Shared;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::receipt::SignedReceipt;

/// Longest accepted `request_id`, in bytes.
pub const MAX_REQUEST_ID: usize = 128;
/// Longest accepted `nonce`, in bytes (after hex decoding).
pub const MAX_NONCE: usize = 64;

/// A sealed request's plaintext.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestPlaintext {
    /// Model CID.
    pub model: String,
    /// The OpenGradient `model_inputs` object (`{"numbers": [..], "strings": [..]}`),
    /// kept as raw JSON so the engine's codec reads exactly what was sent.
    pub inputs: Box<RawValue>,
    /// Chosen by the client, echoed nowhere but the client's own records.
    pub request_id: String,
    /// Client time, Unix seconds (replay window).
    pub issued_at: u64,
    /// Optional client nonce (hex), copied into the receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl RequestPlaintext {
    /// Parses and validates the decrypted bytes (not the time window).
    pub fn parse(bytes: &[u8]) -> Result<Self, RequestError> {
        let req: RequestPlaintext =
            serde_json::from_slice(bytes).map_err(|e| RequestError::Json(e.into()))?;
        req.validate()?;
        Ok(req)
    }

    /// Field limits: model and request id present and bounded, nonce hex ≤ 64 bytes.
    pub fn validate(&self) -> Result<(), RequestError> {
        if self.model.is_empty() || self.model.len() > crate::receipt::MAX_CID {
            return Err(RequestError::Malformed(
                "`model` must be a CID of 1..=256 bytes".into(),
            ));
        }
        if self.request_id.len() > MAX_REQUEST_ID {
            return Err(RequestError::Malformed(format!(
                "`request_id` is longer than {MAX_REQUEST_ID} bytes"
            )));
        }
        self.nonce_bytes().map(|_| ())
    }

    /// The decoded nonce (empty when absent).
    pub fn nonce_bytes(&self) -> Result<Vec<u8>, RequestError> {
        let Some(n) = &self.nonce else {
            return Ok(Vec::new());
        };
        let bytes = hex::decode(n).map_err(|e| RequestError::Nonce(e.into()))?;
        if bytes.len() > MAX_NONCE {
            return Err(RequestError::Malformed(format!(
                "`nonce` is longer than {MAX_NONCE} bytes"
            )));
        }
        Ok(bytes)
    }
}

/// Why a decrypted request was refused. Always answered in plaintext JSON:
/// the request was not accepted, so nothing is sealed for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Not the documented JSON, or a field out of bounds.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// Not JSON of the documented shape.
    #[error("malformed request: {0}")]
    Json(#[source] Shared<serde_json::Error>),
    /// `nonce` is not hex.
    #[error("malformed request: `nonce`: {0}")]
    Nonce(#[source] Shared<hex::FromHexError>),
    /// `issued_at` is outside the node's acceptance window.
    #[error(
        "request issued at {issued_at} is outside the node's window {not_before}..={not_after} (node clock {now}); seal a new request"
    )]
    Stale {
        /// Claimed issue time (Unix seconds).
        issued_at: u64,
        /// Node time (Unix seconds).
        now: u64,
        /// Oldest accepted issue time.
        not_before: u64,
        /// Newest accepted issue time.
        not_after: u64,
    },
    /// This exact request (same HPKE `enc`) was already accepted.
    #[error("replayed request: this envelope was already accepted")]
    Replayed,
}

impl RequestError {
    /// Stable wire code.
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::Malformed(_) | RequestError::Json(_) | RequestError::Nonce(_) => {
                "malformed_request"
            }
            RequestError::Stale { .. } => "stale_request",
            RequestError::Replayed => "replayed_request",
        }
    }

    /// HTTP status of the (plaintext) refusal.
    pub fn http_status(&self) -> u16 {
        match self {
            RequestError::Malformed(_) | RequestError::Json(_) | RequestError::Nonce(_) => 400,
            RequestError::Stale { .. } | RequestError::Replayed => 409,
        }
    }
}

/// A sealed answer's plaintext: outputs with a receipt, or an error.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged, try_from = "WireResponse")]
pub enum ResponsePlaintext {
    /// Success.
    Output {
        /// The OpenGradient `output` list, verbatim as digested in the receipt.
        output: Box<RawValue>,
        /// SHA-256 hex of the model file.
        model_hash: String,
        /// The signed receipt.
        receipt: Box<SignedReceipt>,
    },
    /// The node's authenticated verdict on an opened request.
    Error {
        /// What went wrong.
        error: ErrorBody,
    },
}

/// `{"code", "message"}` of an error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable code from the error table.
    pub code: String,
    /// Human message.
    pub message: String,
}

impl ErrorBody {
    /// `{"error": {"code", "message"}}` as JSON bytes. Built through `serde_json::Value`,
    /// whose printing cannot fail, so an error answer can never come out empty.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::json!({ "error": { "code": self.code, "message": self.message } })
            .to_string()
            .into_bytes()
    }
}

/// A sealed (so authenticated) answer that carried an error from the node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node answered `{}`: {}", .0.code, .0.message)]
pub struct ResponseError(pub ErrorBody);

/// The deserialisation form: serde's untagged enums cannot carry `RawValue`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireResponse {
    output: Option<Box<RawValue>>,
    model_hash: Option<String>,
    receipt: Option<Box<SignedReceipt>>,
    error: Option<ErrorBody>,
}

impl TryFrom<WireResponse> for ResponsePlaintext {
    type Error = String;

    fn try_from(w: WireResponse) -> Result<Self, String> {
        match w {
            WireResponse {
                output: Some(output),
                model_hash: Some(model_hash),
                receipt: Some(receipt),
                error: None,
            } => Ok(ResponsePlaintext::Output {
                output,
                model_hash,
                receipt,
            }),
            WireResponse {
                output: None,
                model_hash: None,
                receipt: None,
                error: Some(error),
            } => Ok(ResponsePlaintext::Error { error }),
            _ => Err("expected {output, model_hash, receipt} or {error}".into()),
        }
    }
}
