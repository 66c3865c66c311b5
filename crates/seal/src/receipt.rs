//! Receipts: what the node signs about one answer, in a fixed byte layout.
//!
//! ```text
//! version u8 (=2) ‖ keyset_digest[32] ‖ model_sha256[32] ‖ request_digest[32]
//! ‖ output_digest[32] ‖ issued_at u64 BE ‖ model_cid ‖ engine ‖ engine_version ‖ nonce ‖ fault
//! ```
//! where each variable field is `u16 BE length ‖ bytes`. The signature is
//! Ed25519 over `"attesta/v2/receipt" ‖ encoding`. `fault` names the fault a
//! (dev) node was started with (`--insecure-fault`), empty for none: a node
//! under a fault says so in every signed statement it makes. JSON carries the fields
//! for humans; verification always re-encodes them.

use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};

use attesta_evidence::Policy;

use crate::RECEIPT_DOMAIN;
use crate::keys::{NodeKeys, PublicKeySet};

/// The receipt layout version.
pub const RECEIPT_VERSION: u8 = 2;
/// Longest model CID.
pub const MAX_CID: usize = 256;
/// Longest engine name or version.
pub const MAX_ENGINE: usize = 64;
/// Longest nonce.
pub const MAX_NONCE: usize = 64;
/// Longest declared fault name.
pub const MAX_FAULT: usize = 64;
/// Ed25519 signature length.
pub const SIGNATURE_LEN: usize = 64;
const FIXED_LEN: usize = 1 + 32 * 4 + 8;

/// The signed statement about one answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// Layout version (2).
    pub version: u8,
    /// Digest of the key set that signed it.
    #[serde(with = "hex::serde")]
    pub keyset_digest: [u8; 32],
    /// Model CID as requested.
    pub model_cid: String,
    /// SHA-256 of the model file that ran.
    #[serde(with = "hex::serde")]
    pub model_sha256: [u8; 32],
    /// SHA-256 of the request plaintext bytes.
    #[serde(with = "hex::serde")]
    pub request_digest: [u8; 32],
    /// SHA-256 of the `output` JSON bytes as sent.
    #[serde(with = "hex::serde")]
    pub output_digest: [u8; 32],
    /// Engine name (e.g. `tract`).
    pub engine: String,
    /// Engine version.
    pub engine_version: String,
    /// Node time of signing, Unix seconds.
    pub issued_at: u64,
    /// The request's nonce (empty when it sent none).
    #[serde(with = "hex::serde")]
    pub nonce: Vec<u8>,
    /// The fault the node declared active (e.g. `wrong-output`); empty for none.
    pub fault: String,
}

/// Why a receipt is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// The bytes are not a receipt encoding.
    #[error("malformed receipt: {0}")]
    Malformed(String),
    /// A text field is not UTF-8.
    #[error("malformed receipt: `{field}` is not UTF-8")]
    NotUtf8 {
        /// The field.
        field: &'static str,
        /// The decoder's error.
        #[source]
        source: std::string::FromUtf8Error,
    },
    /// A layout version this implementation does not speak.
    #[error("unsupported receipt version {0}")]
    UnsupportedVersion(u8),
    /// A field is longer than the layout allows.
    #[error("receipt field `{field}` has {len} bytes (max {max})")]
    FieldTooLong {
        /// Field.
        field: &'static str,
        /// Length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The receipt names another key set than the attested one.
    #[error("receipt names key set {got}, attested key set is {expected}")]
    KeySetMismatch {
        /// Hex.
        expected: String,
        /// Hex.
        got: String,
    },
    /// The signature does not verify under the attested signing key.
    #[error("receipt signature does not verify under the attested key")]
    BadSignature,
    /// `request_digest` is not the digest of the request sent.
    #[error("receipt request_digest does not match the request")]
    RequestDigestMismatch,
    /// `output_digest` is not the digest of the output received.
    #[error("receipt output_digest does not match the output")]
    OutputDigestMismatch,
    /// The receipt covers another model than requested.
    #[error("receipt is for model {got}, not {expected}")]
    ModelMismatch {
        /// Requested CID.
        expected: String,
        /// CID in the receipt.
        got: String,
    },
    /// The receipt's `model_sha256` differs from the answer's `model_hash`.
    #[error("receipt model_sha256 differs from the answer's model_hash")]
    ModelHashMismatch,
    /// The receipt's nonce is not the request's.
    #[error("receipt nonce differs from the request nonce")]
    NonceMismatch,
    /// The node declares an active fault and the policy does not accept declared faults.
    #[error(
        "the node declares the fault `{fault}`: its answers may be wrong on purpose (accept only with --accept-declared-faults)"
    )]
    DeclaredFault {
        /// The declared fault.
        fault: String,
    },
}

impl ReceiptError {
    /// Stable wire code.
    pub fn code(&self) -> &'static str {
        match self {
            ReceiptError::Malformed(_) | ReceiptError::NotUtf8 { .. } => "malformed_receipt",
            ReceiptError::UnsupportedVersion(_) => "unsupported_version",
            ReceiptError::FieldTooLong { .. } => "malformed_receipt",
            ReceiptError::KeySetMismatch { .. } => "receipt_key_set_mismatch",
            ReceiptError::BadSignature => "bad_receipt_signature",
            ReceiptError::RequestDigestMismatch => "request_digest_mismatch",
            ReceiptError::OutputDigestMismatch => "output_digest_mismatch",
            ReceiptError::ModelMismatch { .. } => "receipt_model_mismatch",
            ReceiptError::ModelHashMismatch => "receipt_model_hash_mismatch",
            ReceiptError::NonceMismatch => "receipt_nonce_mismatch",
            ReceiptError::DeclaredFault { .. } => "fault_declared",
        }
    }
}

fn put_var(
    out: &mut Vec<u8>,
    field: &'static str,
    bytes: &[u8],
    max: usize,
) -> Result<(), ReceiptError> {
    let len = u16::try_from(bytes.len())
        .ok()
        .filter(|_| bytes.len() <= max)
        .ok_or(ReceiptError::FieldTooLong {
            field,
            len: bytes.len(),
            max,
        })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ReceiptError> {
        let (head, tail) = self
            .0
            .split_at_checked(n)
            .ok_or_else(|| ReceiptError::Malformed(format!("truncated in `{what}`")))?;
        self.0 = tail;
        Ok(head)
    }

    fn array(&mut self, what: &str) -> Result<[u8; 32], ReceiptError> {
        let s = self.take(32, what)?;
        s.try_into()
            .map_err(|_| ReceiptError::Malformed(format!("`{what}`")))
    }

    fn var(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], ReceiptError> {
        let len = self.take(2, field)?;
        let len = usize::from(u16::from_be_bytes([
            len.first().copied().unwrap_or(0),
            len.get(1).copied().unwrap_or(0),
        ]));
        if len > max {
            return Err(ReceiptError::FieldTooLong { field, len, max });
        }
        self.take(len, field)
    }

    fn text(&mut self, field: &'static str, max: usize) -> Result<String, ReceiptError> {
        let b = self.var(field, max)?;
        String::from_utf8(b.to_vec()).map_err(|source| ReceiptError::NotUtf8 { field, source })
    }
}

impl Receipt {
    /// The canonical encoding (fails if a field exceeds its limit).
    pub fn encode(&self) -> Result<Vec<u8>, ReceiptError> {
        if self.version != RECEIPT_VERSION {
            return Err(ReceiptError::UnsupportedVersion(self.version));
        }
        let mut out = Vec::with_capacity(
            FIXED_LEN + 10 + self.model_cid.len() + 64 + self.nonce.len() + self.fault.len(),
        );
        out.push(self.version);
        out.extend_from_slice(&self.keyset_digest);
        out.extend_from_slice(&self.model_sha256);
        out.extend_from_slice(&self.request_digest);
        out.extend_from_slice(&self.output_digest);
        out.extend_from_slice(&self.issued_at.to_be_bytes());
        put_var(&mut out, "model_cid", self.model_cid.as_bytes(), MAX_CID)?;
        put_var(&mut out, "engine", self.engine.as_bytes(), MAX_ENGINE)?;
        put_var(
            &mut out,
            "engine_version",
            self.engine_version.as_bytes(),
            MAX_ENGINE,
        )?;
        put_var(&mut out, "nonce", &self.nonce, MAX_NONCE)?;
        put_var(&mut out, "fault", self.fault.as_bytes(), MAX_FAULT)?;
        Ok(out)
    }

    /// Decodes the canonical encoding; trailing bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, ReceiptError> {
        let mut r = Reader(bytes);
        let version = r.take(1, "version")?.first().copied().unwrap_or(0);
        if version != RECEIPT_VERSION {
            return Err(ReceiptError::UnsupportedVersion(version));
        }
        let keyset_digest = r.array("keyset_digest")?;
        let model_sha256 = r.array("model_sha256")?;
        let request_digest = r.array("request_digest")?;
        let output_digest = r.array("output_digest")?;
        let ts = r.take(8, "issued_at")?;
        let issued_at = u64::from_be_bytes(
            ts.try_into()
                .map_err(|_| ReceiptError::Malformed("`issued_at`".into()))?,
        );
        let model_cid = r.text("model_cid", MAX_CID)?;
        let engine = r.text("engine", MAX_ENGINE)?;
        let engine_version = r.text("engine_version", MAX_ENGINE)?;
        let nonce = r.var("nonce", MAX_NONCE)?.to_vec();
        let fault = r.text("fault", MAX_FAULT)?;
        if !r.0.is_empty() {
            return Err(ReceiptError::Malformed(format!(
                "{} trailing bytes",
                r.0.len()
            )));
        }
        Ok(Receipt {
            version,
            keyset_digest,
            model_cid,
            model_sha256,
            request_digest,
            output_digest,
            engine,
            engine_version,
            issued_at,
            nonce,
            fault,
        })
    }

    /// The exact message the signature covers: domain ‖ encoding.
    pub fn signed_message(&self) -> Result<Vec<u8>, ReceiptError> {
        let enc = self.encode()?;
        let mut msg = Vec::with_capacity(RECEIPT_DOMAIN.len() + enc.len());
        msg.extend_from_slice(RECEIPT_DOMAIN);
        msg.extend_from_slice(&enc);
        Ok(msg)
    }
}

/// A receipt with its Ed25519 signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedReceipt {
    /// The fields.
    pub receipt: Receipt,
    /// Ed25519 signature over `"attesta/v2/receipt" ‖ receipt.encode()`.
    #[serde(with = "hex::serde")]
    pub signature: [u8; SIGNATURE_LEN],
}

impl SignedReceipt {
    /// Binary form: `encoding ‖ signature(64)`.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ReceiptError> {
        let mut out = self.receipt.encode()?;
        out.extend_from_slice(&self.signature);
        Ok(out)
    }

    /// Parses [`SignedReceipt::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ReceiptError> {
        let split = bytes
            .len()
            .checked_sub(SIGNATURE_LEN)
            .ok_or_else(|| ReceiptError::Malformed("shorter than a signature".into()))?;
        let (enc, sig) = bytes.split_at(split);
        Ok(SignedReceipt {
            receipt: Receipt::decode(enc)?,
            signature: sig
                .try_into()
                .map_err(|_| ReceiptError::Malformed("signature".into()))?,
        })
    }

    /// Checks the key-set digest and the signature under `keyset`.
    pub fn verify(&self, keyset: &PublicKeySet) -> Result<(), ReceiptError> {
        let digest = keyset.digest();
        if self.receipt.keyset_digest != digest {
            return Err(ReceiptError::KeySetMismatch {
                expected: hex::encode(digest),
                got: hex::encode(self.receipt.keyset_digest),
            });
        }
        let msg = self.receipt.signed_message()?;
        let vk = keyset.verifying_key().ok_or(ReceiptError::BadSignature)?;
        vk.verify_strict(&msg, &Signature::from_bytes(&self.signature))
            .map_err(|_| ReceiptError::BadSignature)
    }

    /// The declared fault, if any.
    pub fn declared_fault(&self) -> Option<&str> {
        Some(self.receipt.fault.as_str()).filter(|f| !f.is_empty())
    }

    /// Refuses a receipt declaring a fault unless `policy` accepts declared faults.
    pub fn check_fault(&self, policy: &Policy) -> Result<(), ReceiptError> {
        match self.declared_fault() {
            Some(fault) if !policy.accepts_declared_faults() => Err(ReceiptError::DeclaredFault {
                fault: fault.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Checks that the receipt covers exactly these request and output bytes.
    pub fn check_digests(
        &self,
        request: Option<&[u8]>,
        output: Option<&[u8]>,
    ) -> Result<(), ReceiptError> {
        if request.is_some_and(|r| crate::sha256(r) != self.receipt.request_digest) {
            return Err(ReceiptError::RequestDigestMismatch);
        }
        if output.is_some_and(|o| crate::sha256(o) != self.receipt.output_digest) {
            return Err(ReceiptError::OutputDigestMismatch);
        }
        Ok(())
    }
}

impl NodeKeys {
    /// Signs `receipt` (its `keyset_digest` is set to this key set's).
    pub fn sign_receipt(&self, mut receipt: Receipt) -> Result<SignedReceipt, ReceiptError> {
        receipt.keyset_digest = self.keyset_digest();
        let msg = receipt.signed_message()?;
        Ok(SignedReceipt {
            signature: self.sign(&msg),
            receipt,
        })
    }
}
