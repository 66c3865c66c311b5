//! The attested channel between a client and an enclave node.
//!
//! - [`NodeKeys`]: the node's in-memory key set (X25519 HPKE + Ed25519), its
//!   public half [`PublicKeySet`] and the digest bound into attestation evidence;
//! - [`binding`]: how evidence binds a key set and a nonce (Nitro fields,
//!   64-byte report data, the nitriding `user_data` layout);
//! - [`envelope`]: the binary `application/vnd.attesta.sealed` framing;
//! - [`channel`]: sealing requests to an attested key and answers back to the
//!   one requester (RFC 9180 base mode; every answer keyed from the exported
//!   secret *and* fresh node randomness, as OHTTP (RFC 9458) does);
//! - [`receipt`]: Ed25519-signed receipts over a fixed byte layout;
//! - [`stream`]: a sequence of sealed chunks answering one request (LLM
//!   completions), numbered, the last one carrying the receipt; [`frames`]:
//!   the length-prefixed framing of its body;
//! - [`bundle`]: receipt + evidence, verifiable offline;
//! - [`replay`]: the node's bounded replay memory, which cannot deny service.
//!
//! Pure: no I/O, no clock reads, no RNG reads. Time ([`UnixTime`]) and
//! randomness (`&mut impl CryptoRng`) are parameters. The wire format is
//! specified in `docs/PROTOCOL.md` (section "Sealed channel").
#![forbid(unsafe_code)]
// Parsers of untrusted bytes: no indexing that can panic, anywhere in the crate.
#![deny(clippy::indexing_slicing)]

pub mod binding;
pub mod bundle;
pub mod channel;
pub mod envelope;
pub mod frames;
mod hpke_receiver;
mod keys;
pub mod plaintext;
pub mod receipt;
pub mod replay;
pub mod stream;

pub use attesta_evidence::UnixTime;
pub use binding::{AttestationBinding, BindingError};
pub use bundle::{
    BundleChecks, BundleError, BundleReport, BundleVerification, ProofBundle, VerifiedBundle,
};
pub use channel::{
    AcceptedRequest, AnswerError, OpenedRequest, ReceiptOrOutput, Rejected, RequestContext,
    Responder, SealFailure, SealedOutput, VerifiedAnswer, seal_request,
};
pub use envelope::{EnvelopeError, MEDIA_TYPE, VERSION, media_type};
pub use frames::{FrameError, FrameReader};
/// The `rand_core` generation the RNG parameters use (to implement or wrap RNGs).
pub use hpke::rand_core;
pub use hpke::rand_core::CryptoRng;
pub use keys::{KEYSET_ENCODING_LEN, NodeKeys, PublicKeySet, keyset_digest, report_data};
pub use plaintext::{ErrorBody, RequestError, RequestPlaintext, ResponseError, ResponsePlaintext};
pub use receipt::{Receipt, ReceiptError, SignedReceipt};
pub use replay::{ReplayConfig, ReplayGuard};
pub use stream::{
    Chunk, STREAM_MEDIA_TYPE, StreamError, StreamFailure, StreamOpener, StreamSealError,
    StreamSealer, VerifiedStream,
};

/// A CSPRNG that can move between threads (what nodes and clients keep behind a lock).
pub trait SharedRng: CryptoRng + Send {}
impl<T: CryptoRng + Send + ?Sized> SharedRng for T {}

/// Domain of [`keyset_digest`].
pub const KEYSET_DOMAIN: &[u8] = b"attesta/v2/keyset";
/// Domain of [`report_data`].
pub const REPORT_DATA_DOMAIN: &[u8] = b"attesta/v2/report-data";
/// HPKE `info` prefix; the key-set digest follows it.
pub const REQUEST_INFO: &[u8] = b"attesta/v2 request";
/// HPKE exporter context of the per-request response secret.
pub const RESPONSE_EXPORT: &[u8] = b"attesta/v2 response";
/// Prefix of the message an Ed25519 receipt signature covers.
pub const RECEIPT_DOMAIN: &[u8] = b"attesta/v2/receipt";

/// SHA-256, the digest used throughout the protocol.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2_11::Digest;
    sha2_11::Sha256::digest(data).into()
}
