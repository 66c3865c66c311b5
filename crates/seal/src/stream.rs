//! Sealed streams: one accepted request answered by a sequence of sealed
//! chunks (LLM completions, token by token), in the style of the single
//! answer of [`crate::channel`].
//!
//! Key schedule, per stream (the node draws one fresh 32-byte
//! `response_nonce` per stream, sent in the stream header):
//! `prk = HKDF-Extract(salt = enc ‖ response_nonce, ikm = secret)`,
//! `key = HKDF-Expand(prk, "stream key", 32)`,
//! `base_nonce = HKDF-Expand(prk, "stream nonce", 12)` (labels distinct
//! from a single answer's, so a stream and an answer never share a key even
//! under the same response nonce). Chunk `i` (u64, from 0) is sealed with
//! ChaCha20-Poly1305 under `nonce = base_nonce XOR i` (i big-endian in the
//! last 8 bytes, as RFC 9180 and TLS 1.3 number their records) and
//! `aad = header ‖ SHA-256(request plaintext) ‖ flag ‖ i` (u64 BE).
//!
//! A chunk frame is `flag(1) ‖ index(8, BE) ‖ ciphertext`; `flag` is
//! [`CHUNK_DATA`], [`CHUNK_FINAL`] (the last chunk: summary and receipt) or
//! [`CHUNK_ERROR`] (the last chunk: the node's error, no receipt). The index
//! and flag travel in the clear so a client can say *what* a relay did, but
//! they only classify errors: the client decrypts with the index it expects
//! and the flag is authenticated, so a relay can neither reorder, drop,
//! duplicate, truncate, turn a data chunk into a last one, nor splice in a
//! chunk of another stream or request undetected.
//!
//! "A key and nonce seal at most once" holds by construction: the node-side
//! [`StreamSealer`] is not `Clone`, owns the counter (it only moves forward,
//! and an exhausted counter is an error, never a wrap), and is consumed by
//! the last chunk ([`StreamSealer::finish`] or [`StreamSealer::fail`]).
//!
//! Receipt: the existing [`Receipt`](crate::Receipt), whose `output_digest`
//! is SHA-256 of the stream *summary*, the JSON
//! `{"chunks": n, "transcript": hex, "output": <node's final JSON>}` the last
//! chunk carries verbatim. `transcript` is SHA-256 over every data chunk's
//! plaintext, length-framed (see [`transcript`]), so the signature covers
//! exactly the bytes the client opened, in order, as well as the final
//! output (completion text, token counts, finish reason): a node cannot
//! stream one completion and sign another, and a proof bundle carrying the
//! summary shows both. The request digest covers every sampling parameter,
//! as they are in the sealed request plaintext.

use attesta_evidence::{Policy, Shared};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hpke::rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2_11::Digest;
use zeroize::Zeroizing;

use crate::channel::{
    AnswerKey, ReceiptOrOutput, RequestContext, Responder, ResponseSecret, SealedOutput, error_json,
};
use crate::envelope::{EnvelopeError, RESPONSE_NONCE_LEN, TAG_LEN, VERSION};
use crate::frames::{FrameError, FrameReader, MAX_FRAME_LEN, encode_frame};
use crate::keys::NodeKeys;
use crate::plaintext::{ErrorBody, ResponseError};
use crate::receipt::{ReceiptError, SignedReceipt};
use crate::{UnixTime, sha256};

/// Media type of a sealed stream body.
pub const STREAM_MEDIA_TYPE: &str = "application/vnd.attesta.sealed-stream";
/// Kind byte of a stream header (requests are 1, single answers 2).
pub const KIND_STREAM: u8 = 3;
/// Stream header: version, kind, response nonce.
pub const STREAM_HEADER_LEN: usize = 2 + RESPONSE_NONCE_LEN;
/// Chunk header: flag and big-endian index.
pub const CHUNK_HEADER_LEN: usize = 1 + 8;
/// Flag of a data chunk.
pub const CHUNK_DATA: u8 = 0;
/// Flag of the last chunk of a successful stream (summary and receipt).
pub const CHUNK_FINAL: u8 = 1;
/// Flag of the last chunk of a failed stream (the node's error, no receipt).
pub const CHUNK_ERROR: u8 = 2;
/// Longest chunk plaintext: what fits a frame.
pub const MAX_CHUNK_PLAINTEXT: usize = MAX_FRAME_LEN - CHUNK_HEADER_LEN - TAG_LEN;
/// Domain prefix of the [`transcript`] digest.
pub const TRANSCRIPT_DOMAIN: &[u8] = b"attesta/v2/stream-transcript";
/// HKDF-Expand labels of a stream's key and base nonce.
const KEY_LABEL: &[u8] = b"stream key";
const NONCE_LABEL: &[u8] = b"stream nonce";

/// The running digest of a stream's data chunks:
/// `SHA-256(TRANSCRIPT_DOMAIN ‖ for each data chunk: u64 BE length ‖ plaintext)`.
/// The length framing makes chunk boundaries part of what is signed.
#[derive(Clone)]
pub struct Transcript(sha2_11::Sha256);

impl Default for Transcript {
    fn default() -> Self {
        let mut h = sha2_11::Sha256::new();
        h.update(TRANSCRIPT_DOMAIN);
        Transcript(h)
    }
}

impl std::fmt::Debug for Transcript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcript").finish_non_exhaustive()
    }
}

impl Transcript {
    /// Adds one data chunk's plaintext.
    pub fn update(&mut self, chunk: &[u8]) {
        let len = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        self.0.update(len.to_be_bytes());
        self.0.update(chunk);
    }

    /// The digest so far.
    pub fn digest(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }
}

/// The digest of a whole list of data chunks (see [`Transcript`]).
pub fn transcript<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> [u8; 32] {
    let mut t = Transcript::default();
    for c in chunks {
        t.update(c);
    }
    t.digest()
}

/// What the last chunk's summary says; `output_digest` is SHA-256 of its
/// JSON bytes as carried.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Summary {
    /// Number of data chunks before the last one.
    chunks: u64,
    /// [`Transcript`] digest of the data chunks.
    #[serde(with = "hex::serde")]
    transcript: [u8; 32],
    /// The node's final JSON (completion text, token counts, finish reason).
    output: Box<RawValue>,
}

/// The plaintext of a [`CHUNK_FINAL`] chunk.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FinalChunk {
    summary: Box<RawValue>,
    model_hash: String,
    receipt: Box<SignedReceipt>,
}

/// The plaintext of a [`CHUNK_ERROR`] chunk: `{"error": {"code", "message"}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorChunk {
    error: ErrorBody,
}

/// The stream header: `version ‖ KIND_STREAM ‖ response_nonce`.
pub fn stream_header(response_nonce: &[u8; RESPONSE_NONCE_LEN]) -> [u8; STREAM_HEADER_LEN] {
    let mut h = [0u8; STREAM_HEADER_LEN];
    let (fixed, nonce) = h.split_at_mut(2);
    fixed.copy_from_slice(&[VERSION, KIND_STREAM]);
    nonce.copy_from_slice(response_nonce);
    h
}

/// Parses a stream header frame: its response nonce.
pub fn parse_stream_header(bytes: &[u8]) -> Result<[u8; RESPONSE_NONCE_LEN], EnvelopeError> {
    match bytes.first() {
        None => {
            return Err(EnvelopeError::Truncated {
                len: 0,
                need: STREAM_HEADER_LEN,
            });
        }
        Some(&VERSION) => {}
        Some(&v) => return Err(EnvelopeError::UnsupportedVersion(v)),
    }
    match bytes.get(1) {
        Some(&KIND_STREAM) => {}
        Some(&k) => {
            return Err(EnvelopeError::UnexpectedKind {
                expected: KIND_STREAM,
                got: k,
            });
        }
        None => {}
    }
    if bytes.len() != STREAM_HEADER_LEN {
        return Err(EnvelopeError::Truncated {
            len: bytes.len(),
            need: STREAM_HEADER_LEN,
        });
    }
    bytes
        .get(2..)
        .and_then(|n| <[u8; RESPONSE_NONCE_LEN]>::try_from(n).ok())
        .ok_or(EnvelopeError::Truncated {
            len: bytes.len(),
            need: STREAM_HEADER_LEN,
        })
}

/// One stream's key material, derived from the request's response secret.
struct StreamKey {
    key: Zeroizing<[u8; 32]>,
    base_nonce: [u8; 12],
    header: [u8; STREAM_HEADER_LEN],
    request_digest: [u8; 32],
}

impl StreamKey {
    fn derive(secret: &ResponseSecret, response_nonce: &[u8; RESPONSE_NONCE_LEN]) -> Option<Self> {
        let k = AnswerKey::derive_labelled(
            &secret.secret,
            &secret.enc,
            response_nonce,
            KEY_LABEL,
            NONCE_LABEL,
        )?;
        Some(StreamKey {
            key: k.key,
            base_nonce: k.nonce,
            header: stream_header(response_nonce),
            request_digest: secret.request_digest,
        })
    }

    fn nonce(&self, index: u64) -> [u8; 12] {
        let mut n = self.base_nonce;
        for (b, i) in n.iter_mut().skip(4).zip(index.to_be_bytes()) {
            *b ^= i;
        }
        n
    }

    fn aad(&self, chunk_header: &[u8; CHUNK_HEADER_LEN]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(STREAM_HEADER_LEN + 32 + CHUNK_HEADER_LEN);
        aad.extend_from_slice(&self.header);
        aad.extend_from_slice(&self.request_digest);
        aad.extend_from_slice(chunk_header);
        aad
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(&Key::from(*self.key))
    }
}

fn chunk_header(flag: u8, index: u64) -> [u8; CHUNK_HEADER_LEN] {
    let mut h = [0u8; CHUNK_HEADER_LEN];
    let (f, i) = h.split_at_mut(1);
    f.copy_from_slice(&[flag]);
    i.copy_from_slice(&index.to_be_bytes());
    h
}

// ---------------------------------------------------------------------------
// Node side

/// Why the node could not seal a chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamSealError {
    /// The chunk plaintext does not fit a frame.
    #[error("stream chunk of {len} bytes exceeds the {max} byte limit")]
    ChunkTooLarge {
        /// Plaintext length.
        len: usize,
        /// [`MAX_CHUNK_PLAINTEXT`].
        max: usize,
    },
    /// Every chunk index was used: the stream can only end (never wraps).
    #[error("stream chunk counter exhausted")]
    CounterExhausted,
    /// Key derivation or the AEAD failed.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The final output or a receipt field is invalid.
    #[error(transparent)]
    Answer(#[from] ReceiptOrOutput),
}

impl StreamSealError {
    /// Stable code (logged by the node; a client sees `internal_error`).
    pub fn code(&self) -> &'static str {
        match self {
            StreamSealError::ChunkTooLarge { .. } => "stream_chunk_too_large",
            StreamSealError::CounterExhausted => "stream_counter_exhausted",
            StreamSealError::Envelope(e) => e.code(),
            StreamSealError::Answer(_) => "internal_error",
        }
    }
}

/// [`StreamSealer::finish`] could not build the successful last chunk;
/// `sealed` is an `internal_error` last chunk to send instead.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct StreamFailure {
    /// Why.
    #[source]
    pub error: StreamSealError,
    /// The framed `internal_error` chunk, or why even that could not be sealed.
    pub sealed: Result<Vec<u8>, StreamSealError>,
}

/// The chunk counter: only moves forward, never wraps; the last index is
/// kept for the last chunk, so a stream can always end.
#[derive(Debug)]
struct Counter {
    /// The next index; `None` once every index was used.
    next: Option<u64>,
}

impl Counter {
    fn take(&mut self, last: bool) -> Result<u64, StreamSealError> {
        let index = self.next.ok_or(StreamSealError::CounterExhausted)?;
        if !last && index == u64::MAX {
            return Err(StreamSealError::CounterExhausted);
        }
        self.next = index.checked_add(1);
        Ok(index)
    }
}

/// Seals the chunks of one stream. Not `Clone`; every chunk takes the next
/// index and the last chunk consumes it, so no key and nonce seal twice.
pub struct StreamSealer {
    key: StreamKey,
    counter: Counter,
    transcript: Transcript,
    responder: Responder,
}

impl std::fmt::Debug for StreamSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSealer")
            .field("next_index", &self.counter.next)
            .field("model", &self.responder.model)
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// Starts a sealed stream answering this request: draws the stream's
    /// fresh response nonce from `rng` and returns the sealer and the framed
    /// stream header (the body's first frame).
    pub fn start_stream(
        self,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<(StreamSealer, Vec<u8>), StreamSealError> {
        let mut response_nonce = [0u8; RESPONSE_NONCE_LEN];
        rng.fill_bytes(&mut response_nonce);
        let key = StreamKey::derive(&self.response, &response_nonce)
            .ok_or(EnvelopeError::EncryptionFailed)?;
        let header = encode_frame(&key.header).map_err(|_| EnvelopeError::EncryptionFailed)?;
        Ok((
            StreamSealer {
                key,
                counter: Counter { next: Some(0) },
                transcript: Transcript::default(),
                responder: self,
            },
            header,
        ))
    }
}

impl StreamSealer {
    fn seal(&mut self, flag: u8, plaintext: &[u8]) -> Result<Vec<u8>, StreamSealError> {
        if plaintext.len() > MAX_CHUNK_PLAINTEXT {
            return Err(StreamSealError::ChunkTooLarge {
                len: plaintext.len(),
                max: MAX_CHUNK_PLAINTEXT,
            });
        }
        let index = self.counter.take(flag != CHUNK_DATA)?;
        let header = chunk_header(flag, index);
        let ct = self
            .key
            .cipher()
            .encrypt(
                &Nonce::from(self.key.nonce(index)),
                Payload {
                    msg: plaintext,
                    aad: &self.key.aad(&header),
                },
            )
            .map_err(|_| EnvelopeError::EncryptionFailed)?;
        let mut content = Vec::with_capacity(CHUNK_HEADER_LEN + ct.len());
        content.extend_from_slice(&header);
        content.extend_from_slice(&ct);
        encode_frame(&content).map_err(|_| StreamSealError::ChunkTooLarge {
            len: plaintext.len(),
            max: MAX_CHUNK_PLAINTEXT,
        })
    }

    /// Seals the next data chunk; returns its frame. A chunk over
    /// [`MAX_CHUNK_PLAINTEXT`] is refused before it takes an index.
    pub fn seal_chunk(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, StreamSealError> {
        let frame = self.seal(CHUNK_DATA, plaintext)?;
        self.transcript.update(plaintext);
        Ok(frame)
    }

    /// Chunks sealed so far (all data chunks: the last one consumes the sealer).
    pub fn chunks(&self) -> u64 {
        self.counter.next.unwrap_or(u64::MAX)
    }

    fn final_plaintext(
        &self,
        keys: &NodeKeys,
        out: &SealedOutput<'_>,
        now: UnixTime,
    ) -> Result<Vec<u8>, ReceiptOrOutput> {
        let output = out.output_raw()?;
        let summary = serde_json::to_string(&Summary {
            chunks: self.chunks(),
            transcript: self.transcript.digest(),
            output,
        })
        .map_err(|e| ReceiptOrOutput::Encode(e.into()))?;
        let receipt = self
            .responder
            .sign_receipt(keys, out, sha256(summary.as_bytes()), now)?;
        let last = FinalChunk {
            summary: RawValue::from_string(summary)
                .map_err(|e| ReceiptOrOutput::Encode(e.into()))?,
            model_hash: hex::encode(out.model_sha256),
            receipt: Box::new(receipt),
        };
        serde_json::to_vec(&last).map_err(|e| ReceiptOrOutput::Encode(e.into()))
    }

    /// Ends the stream: signs the receipt over the request, the summary
    /// (data-chunk count, transcript digest, `out.output_json`) and `out`'s
    /// model and engine fields at `now`, and seals the last chunk. On failure
    /// the stream still ends, with a sealed `internal_error` chunk.
    pub fn finish(
        mut self,
        keys: &NodeKeys,
        out: &SealedOutput<'_>,
        now: UnixTime,
    ) -> Result<Vec<u8>, StreamFailure> {
        let sealed = self
            .final_plaintext(keys, out, now)
            .map_err(StreamSealError::from)
            .and_then(|plain| self.seal(CHUNK_FINAL, &plain));
        sealed.map_err(|error| StreamFailure {
            sealed: self.fail("internal_error", &error.to_string()),
            error,
        })
    }

    /// Ends the stream with the node's error (e.g. generation failed
    /// mid-stream): a sealed last chunk that carries no receipt, so a client
    /// can never take it, or the data before it, for an answer.
    pub fn fail(mut self, code: &str, message: &str) -> Result<Vec<u8>, StreamSealError> {
        self.seal(CHUNK_ERROR, &error_json(code, message))
    }
}

// ---------------------------------------------------------------------------
// Client side

/// Why a sealed stream was not accepted. Every variant has a stable
/// [`code`](Self::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The body is not a sequence of frames (oversized or cut frame).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The first frame is not a stream header of this version.
    #[error("stream header: {0}")]
    Header(#[source] EnvelopeError),
    /// A chunk frame is malformed (short, unknown flag, after the last chunk).
    #[error("malformed stream: {0}")]
    Malformed(String),
    /// A chunk was left out (dropped, or a later one moved ahead of it).
    #[error("stream chunk {expected} missing: got chunk {got}")]
    Missing {
        /// The index due.
        expected: u64,
        /// The index received.
        got: u64,
    },
    /// A chunk came again (duplicated, or an earlier one moved behind).
    #[error("stream chunk {got} repeated: chunk {expected} is due")]
    Duplicate {
        /// The index due.
        expected: u64,
        /// The index received.
        got: u64,
    },
    /// The chunk at this index does not open: tampered, or from another
    /// stream or request.
    #[error("stream chunk {index} does not open (tampered, or from another stream or request)")]
    DecryptionFailed {
        /// The index due.
        index: u64,
    },
    /// The body ended before the last chunk.
    #[error("stream truncated after {chunks} chunks: no last chunk")]
    Truncated {
        /// Data chunks opened.
        chunks: u64,
    },
    /// The last chunk opened but is not the documented JSON.
    #[error("malformed response: {0}")]
    Response(#[source] Shared<serde_json::Error>),
    /// The signed summary does not describe the chunks received.
    #[error("stream summary does not match the chunks received: {0}")]
    SummaryMismatch(&'static str),
    /// The node's authenticated verdict: the stream ended with its error.
    #[error(transparent)]
    Remote(#[from] ResponseError),
    /// The receipt does not verify or does not match.
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
}

impl StreamError {
    /// Stable code (see `docs/PROTOCOL.md`, "Sealed streams"); for
    /// [`StreamError::Remote`] the node's code.
    pub fn code(&self) -> &str {
        match self {
            StreamError::Frame(e) => e.code(),
            StreamError::Header(e) => e.code(),
            StreamError::Malformed(_) => "malformed_stream",
            StreamError::Missing { .. } => "missing_chunk",
            StreamError::Duplicate { .. } => "duplicate_chunk",
            StreamError::DecryptionFailed { .. } => "decryption_failed",
            StreamError::Truncated { .. } => "truncated_stream",
            StreamError::Response(_) => "malformed_response",
            StreamError::SummaryMismatch(_) => "stream_summary_mismatch",
            StreamError::Remote(e) => &e.0.code,
            StreamError::Receipt(e) => e.code(),
        }
    }
}

/// What [`StreamOpener::open_chunk`] opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// The stream header (the first frame): keys derived, chunks may follow.
    Header,
    /// A data chunk's plaintext, authenticated and in sequence. Not yet an
    /// answer: only [`StreamOpener::finish`] vouches for the whole stream.
    Data(Vec<u8>),
    /// The last chunk; call [`StreamOpener::finish`] to verify the receipt.
    End,
}

/// A stream that opened completely and whose receipt verified.
#[derive(Debug, Clone)]
pub struct VerifiedStream {
    /// The node's final JSON (completion, token counts, finish reason).
    pub output: Box<RawValue>,
    /// The summary bytes the receipt's `output_digest` covers (what a proof
    /// bundle's verifier needs as the "output").
    pub summary: Box<RawValue>,
    /// Data chunks received.
    pub chunks: u64,
    /// SHA-256 hex of the model file.
    pub model_hash: String,
    /// The verified receipt.
    pub receipt: Box<SignedReceipt>,
}

enum OpenerState {
    AwaitingHeader,
    Open(StreamKey),
    Ended(Vec<u8>),
    Failed(StreamError),
}

/// Opens one sealed stream for the requester: enforces the exact chunk
/// sequence, keeps the transcript digest, and checks the receipt at the end.
/// The first error is final: the opener answers it from then on.
pub struct StreamOpener<'a> {
    ctx: &'a RequestContext,
    state: OpenerState,
    next: u64,
    transcript: Transcript,
    reader: FrameReader,
}

impl std::fmt::Debug for StreamOpener<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamOpener")
            .field("next_index", &self.next)
            .finish_non_exhaustive()
    }
}

impl RequestContext {
    /// An opener for a sealed stream answering this request. Several streams
    /// for one request (a node retry) each get their own opener.
    pub fn stream_opener(&self) -> StreamOpener<'_> {
        StreamOpener {
            ctx: self,
            state: OpenerState::AwaitingHeader,
            next: 0,
            transcript: Transcript::default(),
            reader: FrameReader::default(),
        }
    }
}

impl StreamOpener<'_> {
    /// Opens one frame's content (without its length prefix): the first is
    /// the header, then chunks in order.
    pub fn open_chunk(&mut self, frame: &[u8]) -> Result<Chunk, StreamError> {
        let result = self.step(frame);
        if let Err(e) = &result {
            self.state = OpenerState::Failed(e.clone());
        }
        result
    }

    fn step(&mut self, frame: &[u8]) -> Result<Chunk, StreamError> {
        let key = match &self.state {
            OpenerState::Failed(e) => return Err(e.clone()),
            OpenerState::Ended(_) => {
                return Err(StreamError::Malformed(
                    "a frame after the last chunk".into(),
                ));
            }
            OpenerState::AwaitingHeader => {
                let nonce = parse_stream_header(frame).map_err(StreamError::Header)?;
                let key = StreamKey::derive(&self.ctx.response, &nonce)
                    .ok_or(StreamError::Header(EnvelopeError::DecryptionFailed))?;
                self.state = OpenerState::Open(key);
                return Ok(Chunk::Header);
            }
            OpenerState::Open(key) => key,
        };
        let (header, ciphertext) = frame
            .split_first_chunk::<CHUNK_HEADER_LEN>()
            .filter(|(_, ct)| ct.len() >= TAG_LEN)
            .ok_or_else(|| {
                StreamError::Malformed(format!("a chunk frame of {} bytes", frame.len()))
            })?;
        let (&flag, index) = header
            .split_first()
            .ok_or_else(|| StreamError::Malformed("empty chunk header".into()))?;
        let got = u64::from_be_bytes(
            index
                .try_into()
                .map_err(|_| StreamError::Malformed("chunk index".into()))?,
        );
        if !matches!(flag, CHUNK_DATA | CHUNK_FINAL | CHUNK_ERROR) {
            return Err(StreamError::Malformed(format!("unknown chunk flag {flag}")));
        }
        let expected = self.next;
        if got > expected {
            return Err(StreamError::Missing { expected, got });
        }
        if got < expected {
            return Err(StreamError::Duplicate { expected, got });
        }
        // Decrypt under the index *expected*; the clear one only classified errors.
        let plain = key
            .cipher()
            .decrypt(
                &Nonce::from(key.nonce(expected)),
                Payload {
                    msg: ciphertext,
                    aad: &key.aad(&chunk_header(flag, expected)),
                },
            )
            .map_err(|_| StreamError::DecryptionFailed { index: expected })?;
        match flag {
            CHUNK_DATA => {
                self.next = expected.checked_add(1).ok_or_else(|| {
                    StreamError::Malformed("a data chunk at the last index".into())
                })?;
                self.transcript.update(&plain);
                Ok(Chunk::Data(plain))
            }
            CHUNK_FINAL => {
                self.state = OpenerState::Ended(plain);
                Ok(Chunk::End)
            }
            _ => {
                let e: ErrorChunk =
                    serde_json::from_slice(&plain).map_err(|e| StreamError::Response(e.into()))?;
                Err(ResponseError(e.error).into())
            }
        }
    }

    /// Feeds body bytes as they arrive; returns what the complete frames
    /// among them opened to (see [`FrameReader`] for the memory bound).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Chunk>, StreamError> {
        self.reader.push(bytes);
        let mut out = Vec::new();
        loop {
            let frame = match self.reader.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(out),
                Err(e) => {
                    let e = StreamError::from(e);
                    self.state = OpenerState::Failed(e.clone());
                    return Err(e);
                }
            };
            out.push(self.open_chunk(&frame)?);
        }
    }

    /// Data chunks opened so far.
    pub fn chunks(&self) -> u64 {
        self.next
    }

    /// At the end of the body: the stream must have ended with its last
    /// chunk (else [`StreamError::Truncated`]), whose summary must describe
    /// the chunks opened and whose receipt must verify as a single answer's
    /// does (attested key set, this request, the summary bytes, model, nonce,
    /// no declared fault unless `policy` accepts them).
    pub fn finish(self, policy: &Policy) -> Result<VerifiedStream, StreamError> {
        let last = match self.state {
            OpenerState::Failed(e) => return Err(e),
            OpenerState::AwaitingHeader | OpenerState::Open(_) => {
                return Err(StreamError::Truncated { chunks: self.next });
            }
            OpenerState::Ended(last) => last,
        };
        self.reader.finish()?;
        let last: FinalChunk =
            serde_json::from_slice(&last).map_err(|e| StreamError::Response(e.into()))?;
        let summary: Summary = serde_json::from_str(last.summary.get())
            .map_err(|e| StreamError::Response(e.into()))?;
        self.ctx.check_receipt(
            &last.receipt,
            last.summary.get().as_bytes(),
            &last.model_hash,
            policy,
        )?;
        if summary.chunks != self.next {
            return Err(StreamError::SummaryMismatch("chunk count"));
        }
        if summary.transcript != self.transcript.digest() {
            return Err(StreamError::SummaryMismatch("transcript digest"));
        }
        Ok(VerifiedStream {
            output: summary.output,
            summary: last.summary,
            chunks: self.next,
            model_hash: last.model_hash,
            receipt: last.receipt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_never_wraps_and_keeps_the_last_index_for_the_last_chunk() {
        let mut c = Counter {
            next: Some(u64::MAX - 1),
        };
        assert_eq!(c.take(false), Ok(u64::MAX - 1));
        assert_eq!(c.take(false), Err(StreamSealError::CounterExhausted));
        assert_eq!(c.next, Some(u64::MAX), "a refused chunk takes no index");
        assert_eq!(c.take(true), Ok(u64::MAX));
        assert_eq!(c.take(true), Err(StreamSealError::CounterExhausted));
    }

    #[test]
    fn nonce_is_base_xor_big_endian_index() {
        let k = StreamKey {
            key: Zeroizing::new([0; 32]),
            base_nonce: [0xff; 12],
            header: [0; STREAM_HEADER_LEN],
            request_digest: [0; 32],
        };
        assert_eq!(k.nonce(0), [0xff; 12]);
        assert_eq!(
            k.nonce(0x0102),
            [
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xfd
            ]
        );
    }
}
