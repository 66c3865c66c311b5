//! Sealing requests to an attested key set and answers back to the requester.
//!
//! Request: RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20-Poly1305, `info = "attesta/v1 request" ‖ keyset_digest`,
//! AAD = the request header. Response: ChaCha20-Poly1305 under
//! `key ‖ nonce = Export("attesta/v1 response", 44)` of the same context,
//! AAD = response header ‖ SHA-256(request plaintext). Each context seals
//! exactly one request and one response, so a nonce is never reused.
#![deny(clippy::indexing_slicing)]

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hpke::aead::ChaCha20Poly1305 as HpkeChaCha;
use hpke::kdf::HkdfSha256;
use hpke::rand_core::CryptoRng;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use serde_json::value::RawValue;
use zeroize::{Zeroize, Zeroizing};

use crate::envelope::{self, EnvelopeError, MAX_ENVELOPE_LEN};
use crate::keys::{HpkeKem, NodeKeys, PublicKeySet};
use crate::plaintext::{
    ErrorBody, RequestError, RequestPlaintext, ResponseError, ResponsePlaintext,
};
use crate::receipt::{RECEIPT_VERSION, Receipt, ReceiptError, SignedReceipt};
use crate::replay::ReplayGuard;
use crate::{REQUEST_INFO, RESPONSE_EXPORT, UnixTime, sha256};

type EncappedKey = <HpkeKem as hpke::Kem>::EncappedKey;
const EXPORT_LEN: usize = 32 + 12;
/// Error messages in sealed answers are cut to this many bytes.
const MAX_ERROR_MESSAGE: usize = 1024;

fn info(keyset_digest: &[u8; 32]) -> Vec<u8> {
    let mut info = Vec::with_capacity(REQUEST_INFO.len() + 32);
    info.extend_from_slice(REQUEST_INFO);
    info.extend_from_slice(keyset_digest);
    info
}

/// The exported response key and nonce, shared by the two ends of one request.
struct ResponseKey {
    key: Zeroizing<[u8; 32]>,
    nonce: [u8; 12],
    request_digest: [u8; 32],
}

impl ResponseKey {
    fn from_export(mut exported: [u8; EXPORT_LEN], request_digest: [u8; 32]) -> Self {
        let (k, n) = exported.split_at(32);
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(k);
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(n);
        exported.zeroize();
        ResponseKey {
            key,
            nonce,
            request_digest,
        }
    }

    fn aad(&self) -> [u8; envelope::RESPONSE_HEADER_LEN + 32] {
        let mut aad = [0u8; envelope::RESPONSE_HEADER_LEN + 32];
        let (h, d) = aad.split_at_mut(envelope::RESPONSE_HEADER_LEN);
        h.copy_from_slice(&envelope::response_header());
        d.copy_from_slice(&self.request_digest);
        aad
    }

    fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let cipher = ChaCha20Poly1305::new(&Key::from(*self.key));
        let aad = self.aad();
        let ct = cipher
            .encrypt(
                &Nonce::from(self.nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| EnvelopeError::EncryptionFailed)?;
        let mut out = Vec::with_capacity(envelope::RESPONSE_HEADER_LEN + ct.len());
        out.extend_from_slice(&envelope::response_header());
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn open(&self, body: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let env = envelope::parse_response(body)?;
        let cipher = ChaCha20Poly1305::new(&Key::from(*self.key));
        let aad = self.aad();
        cipher
            .decrypt(
                &Nonce::from(self.nonce),
                Payload {
                    msg: env.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| EnvelopeError::DecryptionFailed)
    }
}

// ---------------------------------------------------------------------------
// Client side

/// What a requester keeps to open and check the answer to one sealed request.
pub struct RequestContext {
    response: ResponseKey,
    keyset: PublicKeySet,
    model: String,
    nonce: Vec<u8>,
    plaintext: Vec<u8>,
}

impl std::fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestContext")
            .field("keyset", &self.keyset)
            .field("model", &self.model)
            .field("request_digest", &hex::encode(self.response.request_digest))
            .finish_non_exhaustive()
    }
}

/// An answer that opened and whose receipt verified.
#[derive(Debug, Clone)]
pub struct VerifiedAnswer {
    /// The OpenGradient `output` list, exactly the bytes the receipt digests.
    pub output: Box<RawValue>,
    /// SHA-256 hex of the model file.
    pub model_hash: String,
    /// The verified receipt.
    pub receipt: Box<SignedReceipt>,
}

/// Why an answer could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// The envelope did not open.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// It opened but is not a documented answer.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// The node answered with an error.
    #[error(transparent)]
    Remote(#[from] ResponseError),
    /// The receipt does not verify or does not match.
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
}

impl AnswerError {
    /// Stable code: the envelope's or receipt's code, `malformed_response`, or the node's code.
    pub fn code(&self) -> &str {
        match self {
            AnswerError::Envelope(e) => e.code(),
            AnswerError::Malformed(_) => "malformed_response",
            AnswerError::Remote(e) => &e.0.code,
            AnswerError::Receipt(e) => e.code(),
        }
    }
}

/// Seals `request` to `keyset`; returns the envelope and the context that opens the answer.
pub fn seal_request(
    keyset: &PublicKeySet,
    request: &RequestPlaintext,
    rng: &mut impl CryptoRng,
) -> Result<(Vec<u8>, RequestContext), EnvelopeError> {
    let plaintext = serde_json::to_vec(request).map_err(|_| EnvelopeError::EncryptionFailed)?;
    let nonce = request
        .nonce_bytes()
        .map_err(|_| EnvelopeError::EncryptionFailed)?;
    seal_request_bytes(keyset, plaintext, request.model.clone(), nonce, rng)
}

/// [`seal_request`] over plaintext bytes already serialised (for test vectors).
pub fn seal_request_bytes(
    keyset: &PublicKeySet,
    plaintext: Vec<u8>,
    model: String,
    nonce: Vec<u8>,
    rng: &mut impl CryptoRng,
) -> Result<(Vec<u8>, RequestContext), EnvelopeError> {
    if plaintext.len() > MAX_ENVELOPE_LEN - envelope::REQUEST_HEADER_LEN - envelope::TAG_LEN {
        return Err(EnvelopeError::TooLarge {
            len: plaintext.len(),
            max: MAX_ENVELOPE_LEN,
        });
    }
    let pk = keyset
        .hpke_public()
        .ok_or(EnvelopeError::InvalidPublicKey)?;
    let digest = keyset.digest();
    let (encapped, mut ctx) = hpke::setup_sender_with_rng::<HpkeChaCha, HkdfSha256, HpkeKem>(
        &OpModeS::Base,
        &pk,
        &info(&digest),
        rng,
    )
    .map_err(|_| EnvelopeError::InvalidPublicKey)?;
    let enc: [u8; 32] = encapped.to_bytes().into();
    let header = envelope::request_header(&digest, &enc);
    let ct = ctx
        .seal(&plaintext, &header)
        .map_err(|_| EnvelopeError::EncryptionFailed)?;
    let mut exported = [0u8; EXPORT_LEN];
    ctx.export(RESPONSE_EXPORT, &mut exported)
        .map_err(|_| EnvelopeError::EncryptionFailed)?;
    let mut body = header;
    body.extend_from_slice(&ct);
    let response = ResponseKey::from_export(exported, sha256(&plaintext));
    Ok((
        body,
        RequestContext {
            response,
            keyset: *keyset,
            model,
            nonce,
            plaintext,
        },
    ))
}

impl RequestContext {
    /// SHA-256 of the request plaintext (what the receipt's `request_digest` must be).
    pub fn request_digest(&self) -> [u8; 32] {
        self.response.request_digest
    }

    /// The request plaintext bytes that were sealed.
    pub fn request_bytes(&self) -> &[u8] {
        &self.plaintext
    }

    /// The key set the request was sealed to.
    pub fn keyset(&self) -> &PublicKeySet {
        &self.keyset
    }

    /// Decrypts a response envelope; no JSON or receipt checks.
    pub fn open_response(&self, body: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        self.response.open(body)
    }

    /// Decrypts the answer and verifies its receipt: signed by the attested
    /// key set, over this request, this output, the requested model and nonce.
    pub fn open_verified(&self, body: &[u8]) -> Result<VerifiedAnswer, AnswerError> {
        let plain = self.open_response(body)?;
        let answer: ResponsePlaintext =
            serde_json::from_slice(&plain).map_err(|e| AnswerError::Malformed(e.to_string()))?;
        let (output, model_hash, receipt) = match answer {
            ResponsePlaintext::Error { error } => return Err(ResponseError(error).into()),
            ResponsePlaintext::Output {
                output,
                model_hash,
                receipt,
            } => (output, model_hash, receipt),
        };
        receipt.verify(&self.keyset)?;
        receipt.check_digests(Some(&self.plaintext), Some(output.get().as_bytes()))?;
        let r = &receipt.receipt;
        if r.model_cid != self.model {
            return Err(ReceiptError::ModelMismatch {
                expected: self.model.clone(),
                got: r.model_cid.clone(),
            }
            .into());
        }
        if !hex::decode(&model_hash).is_ok_and(|h| h == r.model_sha256) {
            return Err(ReceiptError::ModelHashMismatch.into());
        }
        if r.nonce != self.nonce {
            return Err(ReceiptError::NonceMismatch.into());
        }
        Ok(VerifiedAnswer {
            output,
            model_hash,
            receipt,
        })
    }
}

// ---------------------------------------------------------------------------
// Node side

/// A request the node opened and accepted.
#[derive(Debug)]
pub struct OpenedRequest {
    /// The validated plaintext.
    pub request: RequestPlaintext,
    /// SHA-256 of the plaintext bytes.
    pub request_digest: [u8; 32],
    /// Seals the one answer to this request.
    pub responder: Responder,
}

/// Seals the single answer to one opened request (consumed on use, so the
/// response key and nonce are used once).
pub struct Responder {
    response: ResponseKey,
    model: String,
    nonce: Vec<u8>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// A request the node refused, with the body to answer.
#[derive(Debug)]
#[non_exhaustive]
pub enum Rejected {
    /// Could not be opened: answer in plaintext JSON (nothing to seal with).
    Envelope(EnvelopeError),
    /// Opened but refused: the answer is sealed to the requester.
    Request {
        /// Why.
        error: RequestError,
        /// The sealed error answer.
        sealed: Vec<u8>,
    },
}

impl Rejected {
    /// Stable wire code.
    pub fn code(&self) -> &'static str {
        match self {
            Rejected::Envelope(e) => e.code(),
            Rejected::Request { error, .. } => error.code(),
        }
    }

    /// HTTP status to answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            Rejected::Envelope(e) => e.http_status(),
            Rejected::Request { error, .. } => error.http_status(),
        }
    }

    /// `(content type, body)` to answer with.
    pub fn into_body(self) -> (&'static str, Vec<u8>) {
        match self {
            Rejected::Envelope(e) => {
                let body = ErrorBody {
                    code: e.code().to_owned(),
                    message: e.to_string(),
                };
                let json =
                    serde_json::to_vec(&serde_json::json!({ "error": body })).unwrap_or_default();
                ("application/json", json)
            }
            Rejected::Request { sealed, .. } => (envelope::MEDIA_TYPE, sealed),
        }
    }
}

/// What the node ran, for the receipt and the answer.
#[derive(Debug, Clone, Copy)]
pub struct SealedOutput<'a> {
    /// The serialised OpenGradient `output` list (digested as is).
    pub output_json: &'a [u8],
    /// SHA-256 of the model file.
    pub model_sha256: [u8; 32],
    /// Engine name.
    pub engine: &'a str,
    /// Engine version.
    pub engine_version: &'a str,
}

/// The node could not build a successful answer; `sealed` is an
/// `internal_error` answer to send instead.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct SealFailure {
    /// Why.
    pub error: ReceiptOrOutput,
    /// The sealed error answer.
    pub sealed: Vec<u8>,
}

/// Why [`Responder::seal_output`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptOrOutput {
    /// A receipt field out of bounds.
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
    /// `output_json` is not JSON.
    #[error("output is not valid JSON: {0}")]
    Output(String),
}

impl NodeKeys {
    /// Opens a sealed request: framing, key set, decryption, plaintext
    /// validation, time window and replay check, in that order.
    pub fn open_request(
        &self,
        body: &[u8],
        guard: &ReplayGuard,
        now: UnixTime,
    ) -> Result<OpenedRequest, Rejected> {
        let env = envelope::parse_request(body).map_err(Rejected::Envelope)?;
        let digest = self.keyset_digest();
        if env.keyset_digest != digest {
            return Err(Rejected::Envelope(EnvelopeError::UnknownKeySet {
                got: hex::encode(env.keyset_digest),
            }));
        }
        let encapped = EncappedKey::from_bytes(&env.enc)
            .map_err(|_| Rejected::Envelope(EnvelopeError::DecryptionFailed))?;
        let mut ctx = hpke::setup_receiver::<HpkeChaCha, HkdfSha256, HpkeKem>(
            &OpModeR::Base,
            &self.hpke_sk,
            &encapped,
            &info(&digest),
        )
        .map_err(|_| Rejected::Envelope(EnvelopeError::DecryptionFailed))?;
        let plaintext = ctx
            .open(env.ciphertext, env.header)
            .map_err(|_| Rejected::Envelope(EnvelopeError::DecryptionFailed))?;
        let mut exported = [0u8; EXPORT_LEN];
        ctx.export(RESPONSE_EXPORT, &mut exported)
            .map_err(|_| Rejected::Envelope(EnvelopeError::DecryptionFailed))?;
        let request_digest = sha256(&plaintext);
        let response = ResponseKey::from_export(exported, request_digest);
        let refuse = |error: RequestError, response: ResponseKey| {
            let sealed = seal_error_with(&response, error.code(), &error.to_string());
            Rejected::Request { error, sealed }
        };
        let request = match RequestPlaintext::parse(&plaintext) {
            Ok(r) => r,
            Err(e) => return Err(refuse(e, response)),
        };
        if let Err(e) = guard.check_and_insert(&env.enc, request.issued_at, now) {
            return Err(refuse(e, response));
        }
        let nonce = request.nonce_bytes().unwrap_or_default();
        Ok(OpenedRequest {
            responder: Responder {
                response,
                model: request.model.clone(),
                nonce,
            },
            request,
            request_digest,
        })
    }
}

fn seal_error_with(response: &ResponseKey, code: &str, message: &str) -> Vec<u8> {
    let mut cut = message.len().min(MAX_ERROR_MESSAGE);
    while !message.is_char_boundary(cut) {
        cut = cut.saturating_sub(1);
    }
    let body = ResponsePlaintext::Error {
        error: ErrorBody {
            code: code.to_owned(),
            message: message.get(..cut).unwrap_or_default().to_owned(),
        },
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    // A bounded message cannot exceed the AEAD limit; an empty body fails closed at the client.
    response.seal(&json).unwrap_or_default()
}

impl Responder {
    /// Signs a receipt for `out` at `now` and seals the answer.
    pub fn seal_output(
        self,
        keys: &NodeKeys,
        out: &SealedOutput<'_>,
        now: UnixTime,
    ) -> Result<Vec<u8>, SealFailure> {
        let fail = |error: ReceiptOrOutput| SealFailure {
            sealed: seal_error_with(&self.response, "internal_error", &error.to_string()),
            error,
        };
        let output = std::str::from_utf8(out.output_json)
            .map_err(|e| e.to_string())
            .and_then(|s| RawValue::from_string(s.to_owned()).map_err(|e| e.to_string()))
            .map_err(|e| fail(ReceiptOrOutput::Output(e)))?;
        let receipt = keys
            .sign_receipt(Receipt {
                version: RECEIPT_VERSION,
                keyset_digest: keys.keyset_digest(),
                model_cid: self.model.clone(),
                model_sha256: out.model_sha256,
                request_digest: self.response.request_digest,
                output_digest: sha256(out.output_json),
                engine: out.engine.to_owned(),
                engine_version: out.engine_version.to_owned(),
                issued_at: now.as_secs(),
                nonce: self.nonce.clone(),
            })
            .map_err(|e| fail(e.into()))?;
        let answer = ResponsePlaintext::Output {
            output,
            model_hash: hex::encode(out.model_sha256),
            receipt: Box::new(receipt),
        };
        let json = serde_json::to_vec(&answer)
            .map_err(|e| fail(ReceiptOrOutput::Output(e.to_string())))?;
        self.response
            .seal(&json)
            .map_err(|e| fail(ReceiptOrOutput::Output(e.to_string())))
    }

    /// Seals an error answer (e.g. model not found, inference failed).
    pub fn seal_error(self, code: &str, message: &str) -> Vec<u8> {
        seal_error_with(&self.response, code, message)
    }

    /// The model the request names.
    pub fn model(&self) -> &str {
        &self.model
    }
}
