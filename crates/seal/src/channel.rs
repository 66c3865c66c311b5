//! Sealing requests to an attested key set and answers back to the requester
//! (protocol v2).
//!
//! Request: RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20-Poly1305, `info = "attesta/v2 request" ‖ keyset_digest`,
//! AAD = the request header.
//!
//! Response, keyed as OHTTP (RFC 9458) keys its responses:
//! `secret = Export("attesta/v2 response", 32)` of the request's context;
//! for **every** answer the node draws a fresh 32-byte `response_nonce`,
//! `prk = HKDF-Extract(salt = enc ‖ response_nonce, ikm = secret)`,
//! `key = HKDF-Expand(prk, "key", 32)`, `aead_nonce = HKDF-Expand(prk,
//! "nonce", 12)`; the envelope is `header(version ‖ kind ‖ response_nonce) ‖
//! ChaCha20-Poly1305(key, aead_nonce, plaintext, aad = header ‖
//! SHA-256(request plaintext))`.
//!
//! "A key and nonce seal at most once" holds by construction: nothing on the
//! node side stores an AEAD key. The one function that encrypts answers
//! (`ResponseSecret::seal_fresh`) draws the response nonce itself, derives
//! the key, seals one plaintext and drops the key. A request that reaches
//! the node twice (a replay) therefore never gets a second ciphertext under
//! the key of the first answer. Replays, stale and malformed requests are
//! refused in plaintext JSON anyway ([`Rejected`]): before acceptance nothing
//! is sealed that a relay could mistake for — or swap in as — an answer.

use attesta_evidence::{Policy, Shared};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hpke::aead::ChaCha20Poly1305 as HpkeChaCha;
use hpke::kdf::HkdfSha256;
use hpke::rand_core::CryptoRng;
use hpke::{OpModeS, Serializable};
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use crate::envelope::{self, EnvelopeError, MAX_ENVELOPE_LEN, RESPONSE_NONCE_LEN};
use crate::keys::{HpkeKem, NodeKeys, PublicKeySet};
use crate::plaintext::{
    ErrorBody, RequestError, RequestPlaintext, ResponseError, ResponsePlaintext,
};
use crate::receipt::{RECEIPT_VERSION, Receipt, ReceiptError, SignedReceipt};
use crate::replay::{ReplayGuard, ReplayId};
use crate::{REQUEST_INFO, RESPONSE_EXPORT, UnixTime, sha256};

/// Error messages in sealed answers are cut to this many bytes.
const MAX_ERROR_MESSAGE: usize = 1024;
/// HKDF-Expand labels of the per-answer key and AEAD nonce.
const KEY_LABEL: &[u8] = b"key";
const NONCE_LABEL: &[u8] = b"nonce";

/// The request's HPKE `info`: [`REQUEST_INFO`] ‖ key-set digest.
pub(crate) fn info(keyset_digest: &[u8; 32]) -> Vec<u8> {
    let mut info = Vec::with_capacity(REQUEST_INFO.len() + 32);
    info.extend_from_slice(REQUEST_INFO);
    info.extend_from_slice(keyset_digest);
    info
}

/// One answer's AEAD key and nonce, derived from the request's exported
/// secret, its `enc` and the answer's `response_nonce`.
pub(crate) struct AnswerKey {
    pub(crate) key: Zeroizing<[u8; 32]>,
    pub(crate) nonce: [u8; 12],
}

impl AnswerKey {
    fn derive(
        secret: &[u8; 32],
        enc: &[u8; 32],
        response_nonce: &[u8; RESPONSE_NONCE_LEN],
    ) -> Option<Self> {
        Self::derive_labelled(secret, enc, response_nonce, KEY_LABEL, NONCE_LABEL)
    }

    /// The schedule with explicit HKDF-Expand labels: single answers use
    /// `"key"`/`"nonce"`, streams their own labels (domain separation).
    pub(crate) fn derive_labelled(
        secret: &[u8; 32],
        enc: &[u8; 32],
        response_nonce: &[u8; RESPONSE_NONCE_LEN],
        key_label: &[u8],
        nonce_label: &[u8],
    ) -> Option<Self> {
        let mut salt = [0u8; 32 + RESPONSE_NONCE_LEN];
        let (e, n) = salt.split_at_mut(32);
        e.copy_from_slice(enc);
        n.copy_from_slice(response_nonce);
        let hk = hkdf::Hkdf::<sha2_11::Sha256>::new(Some(&salt), secret);
        let mut key = Zeroizing::new([0u8; 32]);
        let mut nonce = [0u8; 12];
        hk.expand(key_label, key.as_mut_slice()).ok()?;
        hk.expand(nonce_label, &mut nonce).ok()?;
        Some(AnswerKey { key, nonce })
    }
}

/// The per-request response secret, shared by the two ends of one request.
/// It never seals by itself: every answer derives its own key (see the module doc).
pub(crate) struct ResponseSecret {
    pub(crate) secret: Zeroizing<[u8; 32]>,
    pub(crate) enc: [u8; 32],
    pub(crate) request_digest: [u8; 32],
}

impl ResponseSecret {
    /// `export` is the HPKE context's exporter (RFC 9180 `Export`).
    fn from_export<E>(
        export: impl FnOnce(&[u8], &mut [u8]) -> Result<(), E>,
        enc: [u8; 32],
        request_digest: [u8; 32],
    ) -> Result<Self, E> {
        let mut secret = Zeroizing::new([0u8; 32]);
        export(RESPONSE_EXPORT, secret.as_mut_slice())?;
        Ok(ResponseSecret {
            secret,
            enc,
            request_digest,
        })
    }

    fn aad(&self, header: &[u8; envelope::RESPONSE_HEADER_LEN]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(envelope::RESPONSE_HEADER_LEN + 32);
        aad.extend_from_slice(header);
        aad.extend_from_slice(&self.request_digest);
        aad
    }

    /// Seals one answer under a key derived from fresh randomness drawn here.
    fn seal_fresh(
        &self,
        plaintext: &[u8],
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<Vec<u8>, EnvelopeError> {
        let mut response_nonce = [0u8; RESPONSE_NONCE_LEN];
        rng.fill_bytes(&mut response_nonce);
        let answer = AnswerKey::derive(&self.secret, &self.enc, &response_nonce)
            .ok_or(EnvelopeError::EncryptionFailed)?;
        let header = envelope::response_header(&response_nonce);
        let ct = ChaCha20Poly1305::new(&Key::from(*answer.key))
            .encrypt(
                &Nonce::from(answer.nonce),
                Payload {
                    msg: plaintext,
                    aad: &self.aad(&header),
                },
            )
            .map_err(|_| EnvelopeError::EncryptionFailed)?;
        let mut out = Vec::with_capacity(header.len() + ct.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn open(&self, body: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let env = envelope::parse_response(body)?;
        let answer = AnswerKey::derive(&self.secret, &self.enc, &env.response_nonce)
            .ok_or(EnvelopeError::DecryptionFailed)?;
        let header: [u8; envelope::RESPONSE_HEADER_LEN] = env
            .header
            .try_into()
            .map_err(|_| EnvelopeError::DecryptionFailed)?;
        ChaCha20Poly1305::new(&Key::from(*answer.key))
            .decrypt(
                &Nonce::from(answer.nonce),
                Payload {
                    msg: env.ciphertext,
                    aad: &self.aad(&header),
                },
            )
            .map_err(|_| EnvelopeError::DecryptionFailed)
    }
}

// ---------------------------------------------------------------------------
// Client side

/// What a requester keeps to open and check the answer to one sealed request.
pub struct RequestContext {
    pub(crate) response: ResponseSecret,
    pub(crate) keyset: PublicKeySet,
    pub(crate) model: String,
    pub(crate) nonce: Vec<u8>,
    pub(crate) plaintext: Vec<u8>,
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

/// Why a sealed answer could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// The envelope did not open.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// It opened but is not a documented answer.
    #[error("malformed response: {0}")]
    Malformed(#[source] Shared<serde_json::Error>),
    /// The node's authenticated verdict: it answered this request with an error.
    #[error(transparent)]
    Remote(#[from] ResponseError),
    /// The receipt does not verify, does not match, or declares a fault the policy refuses.
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
    let response =
        ResponseSecret::from_export(|label, out| ctx.export(label, out), enc, sha256(&plaintext))
            .map_err(|_| EnvelopeError::EncryptionFailed)?;
    let mut body = header;
    body.extend_from_slice(&ct);
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
    /// key set, over this request, this output, the requested model and
    /// nonce, and declaring no fault unless `policy` accepts declared faults.
    pub fn open_verified(
        &self,
        body: &[u8],
        policy: &Policy,
    ) -> Result<VerifiedAnswer, AnswerError> {
        let plain = self.open_response(body)?;
        let answer: ResponsePlaintext =
            serde_json::from_slice(&plain).map_err(|e| AnswerError::Malformed(e.into()))?;
        let (output, model_hash, receipt) = match answer {
            ResponsePlaintext::Error { error } => return Err(ResponseError(error).into()),
            ResponsePlaintext::Output {
                output,
                model_hash,
                receipt,
            } => (output, model_hash, receipt),
        };
        self.check_receipt(&receipt, output.get().as_bytes(), &model_hash, policy)?;
        Ok(VerifiedAnswer {
            output,
            model_hash,
            receipt,
        })
    }
}

impl RequestContext {
    /// The checks every answer's receipt passes: signed by the attested key
    /// set, over this request and `output` (the digested bytes), the
    /// requested model (whose hash the answer states as `model_hash`) and
    /// nonce, and declaring no fault unless `policy` accepts declared faults.
    pub(crate) fn check_receipt(
        &self,
        receipt: &SignedReceipt,
        output: &[u8],
        model_hash: &str,
        policy: &Policy,
    ) -> Result<(), ReceiptError> {
        receipt.verify(&self.keyset)?;
        receipt.check_digests(Some(&self.plaintext), Some(output))?;
        let r = &receipt.receipt;
        if r.model_cid != self.model {
            return Err(ReceiptError::ModelMismatch {
                expected: self.model.clone(),
                got: r.model_cid.clone(),
            });
        }
        if !hex::decode(model_hash).is_ok_and(|h| h == r.model_sha256) {
            return Err(ReceiptError::ModelHashMismatch);
        }
        if r.nonce != self.nonce {
            return Err(ReceiptError::NonceMismatch);
        }
        receipt.check_fault(policy)
    }
}

// ---------------------------------------------------------------------------
// Node side

/// A request the node decrypted and validated, not yet accepted: the replay
/// memory has not been charged. It can only be refused (sealed verdict, e.g.
/// `model_not_found`) or [admitted](Self::admit); only an admitted request
/// can be answered with an output and a receipt.
#[derive(Debug)]
pub struct OpenedRequest {
    /// The validated plaintext.
    pub request: RequestPlaintext,
    /// SHA-256 of the plaintext bytes.
    pub request_digest: [u8; 32],
    replay: ReplayId,
    responder: Responder,
}

/// A request that passed the replay memory: run it, then answer through
/// [`Responder`].
#[derive(Debug)]
pub struct AcceptedRequest {
    /// The validated plaintext.
    pub request: RequestPlaintext,
    /// SHA-256 of the plaintext bytes.
    pub request_digest: [u8; 32],
    /// Seals the one answer to this request.
    pub responder: Responder,
}

/// Seals the single answer to one accepted request. Consumed on use; every
/// answer is keyed from fresh randomness (see the module doc).
pub struct Responder {
    pub(crate) response: ResponseSecret,
    pub(crate) model: String,
    pub(crate) nonce: Vec<u8>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// A request the node refused before accepting it. Always answered in
/// plaintext JSON: nothing is sealed for a request that was not accepted,
/// and a client never takes such a refusal as the node's verdict.
#[derive(Debug)]
#[non_exhaustive]
pub enum Rejected {
    /// Could not be opened (framing, version, key set, decryption).
    Envelope(EnvelopeError),
    /// Opened but refused (malformed plaintext, stale, replayed).
    Request(RequestError),
}

impl Rejected {
    /// Stable wire code.
    pub fn code(&self) -> &'static str {
        match self {
            Rejected::Envelope(e) => e.code(),
            Rejected::Request(e) => e.code(),
        }
    }

    /// HTTP status to answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            Rejected::Envelope(e) => e.http_status(),
            Rejected::Request(e) => e.http_status(),
        }
    }

    /// `(content type, body)` to answer with: `application/json`,
    /// `{"error": {"code", "message"}}`.
    pub fn into_body(self) -> (&'static str, Vec<u8>) {
        let message = match &self {
            Rejected::Envelope(e) => e.to_string(),
            Rejected::Request(e) => e.to_string(),
        };
        let body = ErrorBody {
            code: self.code().to_owned(),
            message: cut(&message).to_owned(),
        };
        ("application/json", body.to_json())
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
    /// The fault the node runs with (`--insecure-fault`), declared in the receipt.
    pub fault: Option<&'a str>,
}

impl SealedOutput<'_> {
    /// `output_json` as raw JSON, verbatim (refused when not UTF-8 JSON).
    pub(crate) fn output_raw(&self) -> Result<Box<RawValue>, ReceiptOrOutput> {
        let text = std::str::from_utf8(self.output_json).map_err(ReceiptOrOutput::OutputUtf8)?;
        RawValue::from_string(text.to_owned()).map_err(|e| ReceiptOrOutput::Output(e.into()))
    }
}

/// The node could not build a successful answer; `sealed` is an
/// `internal_error` answer to send instead.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct SealFailure {
    /// Why.
    #[source]
    pub error: ReceiptOrOutput,
    /// The sealed `internal_error` answer, or why even that could not be sealed.
    pub sealed: Result<Vec<u8>, EnvelopeError>,
}

/// Why [`Responder::seal_output`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptOrOutput {
    /// A receipt field out of bounds.
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
    /// `output_json` is not UTF-8.
    #[error("output is not valid JSON: {0}")]
    OutputUtf8(#[source] std::str::Utf8Error),
    /// `output_json` is not JSON.
    #[error("output is not valid JSON: {0}")]
    Output(#[source] Shared<serde_json::Error>),
    /// The answer did not serialise.
    #[error("encoding the answer: {0}")]
    Encode(#[source] Shared<serde_json::Error>),
    /// The AEAD refused the answer (over its length limit).
    #[error(transparent)]
    Seal(#[from] EnvelopeError),
}

impl NodeKeys {
    /// Opens a sealed request: framing, key set, decryption, plaintext
    /// validation, then a read-only check of the time window and the replay
    /// memory (so obvious replays cost nothing more). Records nothing: call
    /// [`OpenedRequest::admit`] right before running the request.
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
        let undecryptable = || Rejected::Envelope(EnvelopeError::DecryptionFailed);
        let (plaintext, exporter) = self
            .receiver
            .open(&env.enc, env.header, env.ciphertext)
            .map_err(|_| undecryptable())?;
        let request_digest = sha256(&plaintext);
        let request = RequestPlaintext::parse(&plaintext).map_err(Rejected::Request)?;
        let replay = ReplayId::new(&env.enc, request.issued_at);
        guard.check(&replay, now).map_err(Rejected::Request)?;
        let response = ResponseSecret::from_export(
            |label, out| exporter.export(label, out).map_err(|_| ()),
            env.enc,
            request_digest,
        )
        .map_err(|_| undecryptable())?;
        let nonce = request.nonce_bytes().map_err(Rejected::Request)?;
        Ok(OpenedRequest {
            responder: Responder {
                response,
                model: request.model.clone(),
                nonce,
            },
            replay,
            request,
            request_digest,
        })
    }
}

impl OpenedRequest {
    /// Charges the replay memory (atomically: of two concurrent copies
    /// exactly one is admitted) and hands out the responder. Call it after
    /// every check that can refuse the request and right before running it.
    pub fn admit(self, guard: &ReplayGuard, now: UnixTime) -> Result<AcceptedRequest, Rejected> {
        guard
            .check_and_insert(&self.replay, now)
            .map_err(Rejected::Request)?;
        Ok(AcceptedRequest {
            request: self.request,
            request_digest: self.request_digest,
            responder: self.responder,
        })
    }

    /// Refuses the request with the node's sealed verdict (e.g.
    /// `model_not_found`, `invalid_input`) without charging the replay memory.
    pub fn seal_error(
        self,
        code: &str,
        message: &str,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<Vec<u8>, EnvelopeError> {
        self.responder.seal_error(code, message, rng)
    }
}

fn cut(message: &str) -> &str {
    let mut end = message.len().min(MAX_ERROR_MESSAGE);
    while !message.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    // `end` is a char boundary within `message`, so `get` always succeeds.
    message.get(..end).unwrap_or_default()
}

pub(crate) fn error_json(code: &str, message: &str) -> Vec<u8> {
    ErrorBody {
        code: code.to_owned(),
        message: cut(message).to_owned(),
    }
    .to_json()
}

impl Responder {
    /// Signs the receipt for this request: `out`'s model and engine fields,
    /// `output_digest` as given (single answers digest `output_json`,
    /// streams their summary).
    pub(crate) fn sign_receipt(
        &self,
        keys: &NodeKeys,
        out: &SealedOutput<'_>,
        output_digest: [u8; 32],
        now: UnixTime,
    ) -> Result<SignedReceipt, ReceiptError> {
        keys.sign_receipt(Receipt {
            version: RECEIPT_VERSION,
            keyset_digest: keys.keyset_digest(),
            model_cid: self.model.clone(),
            model_sha256: out.model_sha256,
            request_digest: self.response.request_digest,
            output_digest,
            engine: out.engine.to_owned(),
            engine_version: out.engine_version.to_owned(),
            issued_at: now.as_secs(),
            nonce: self.nonce.clone(),
            fault: out.fault.unwrap_or_default().to_owned(),
        })
    }

    fn answer_json(
        &self,
        keys: &NodeKeys,
        out: &SealedOutput<'_>,
        now: UnixTime,
    ) -> Result<Vec<u8>, ReceiptOrOutput> {
        let output = out.output_raw()?;
        let receipt = self.sign_receipt(keys, out, sha256(out.output_json), now)?;
        let answer = ResponsePlaintext::Output {
            output,
            model_hash: hex::encode(out.model_sha256),
            receipt: Box::new(receipt),
        };
        serde_json::to_vec(&answer).map_err(|e| ReceiptOrOutput::Encode(e.into()))
    }

    /// Signs a receipt for `out` at `now` and seals the answer under a key
    /// derived from fresh randomness drawn from `rng`.
    pub fn seal_output(
        self,
        keys: &NodeKeys,
        out: &SealedOutput<'_>,
        now: UnixTime,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<Vec<u8>, SealFailure> {
        let sealed = self
            .answer_json(keys, out, now)
            .and_then(|json| Ok(self.response.seal_fresh(&json, rng)?));
        sealed.map_err(|error| SealFailure {
            sealed: self.seal_error("internal_error", &error.to_string(), rng),
            error,
        })
    }

    /// Seals an error answer (e.g. inference failed), the node's verdict.
    /// The message is cut to a bounded length; sealing fails only if the
    /// answer key cannot be derived or the AEAD refuses, and then the caller
    /// learns it rather than sending an empty body.
    pub fn seal_error(
        self,
        code: &str,
        message: &str,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<Vec<u8>, EnvelopeError> {
        self.response.seal_fresh(&error_json(code, message), rng)
    }

    /// The model the request names.
    pub fn model(&self) -> &str {
        &self.model
    }
}
