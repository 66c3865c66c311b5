//! The Bittensor chain (subtensor) over its JSON-RPC WebSocket API.
//!
//! - [`rpc`]: a JSON-RPC 2.0 client (requests by id, subscriptions, per-call timeout,
//!   message-size cap);
//! - [`metadata`]: the runtime metadata read from the chain at start (V14, V15, V16) and the
//!   lookups a client needs: call indices, storage keys, constants, transaction extensions,
//!   runtime APIs. Nothing is generated from a metadata file;
//! - [`client`], [`neurons`]: a [`ChainClient`] that reads blocks, storage and the subnet's
//!   neurons (`NeuronInfoRuntimeApi_get_neurons_lite`);
//! - [`callers`]: the axon's default callers, the subnet's validator-permit holders;
//! - `standin` (feature `standin`): a JSON-RPC test double for tests and `attesta devnet`;
//! - the write side: [`tlock`] and [`reveal`] (commit-reveal v4 commits and their drand
//!   round), [`extrinsic`] (signed v4 extrinsics), [`calls`] (calls checked against the
//!   metadata), [`submit`] (submission, inclusion, events, dispatch errors by name),
//!   [`weights`] (commit or set weights under the subnet's rules), [`announce`] (a miner's
//!   `serve_axon`, registered and outside the serving rate limit).
//!
//! Every chain answer is untrusted: lengths are bounded by the bytes received, decoders
//! never panic, and the WebSocket message size is capped.

pub mod announce;
pub mod callers;
pub mod calls;
pub mod client;
pub mod extrinsic;
pub mod metadata;
pub mod neurons;
pub mod reveal;
pub mod rpc;
#[cfg(feature = "standin")]
pub mod standin;
pub mod submit;
pub mod tlock;
pub mod value;
pub mod weights;

use std::time::Duration;

pub use client::{ChainClient, RuntimeVersion};
pub use metadata::{Metadata, MetadataError};
pub use neurons::Neuron;
pub use rpc::{RpcClient, RpcConfig, Subscription};

/// Why a chain call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The endpoint is not a `ws://` or `wss://` URL.
    #[error("chain endpoint {url:?}: {reason}")]
    Endpoint {
        /// The endpoint as given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The WebSocket connection could not be opened.
    #[error("connecting to {url}: {source}")]
    Connect {
        /// The endpoint.
        url: String,
        /// The cause.
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// The connection failed while in use.
    #[error("chain connection: {0}")]
    Transport(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    /// The peer closed the connection (or it was closed after an error).
    #[error("chain connection closed")]
    Closed,
    /// No answer within the per-call timeout.
    #[error("{method}: no answer within {after:?}")]
    Timeout {
        /// The JSON-RPC method.
        method: String,
        /// The timeout.
        after: Duration,
    },
    /// The peer sent a message larger than the cap; the connection is closed.
    #[error("chain message over the {limit}-byte cap")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// The node answered with a JSON-RPC error object.
    #[error("{method}: JSON-RPC error {code}: {message}")]
    Rpc {
        /// The JSON-RPC method.
        method: String,
        /// The error code.
        code: i64,
        /// The error message.
        message: String,
        /// The error's `data`, as JSON text, when present.
        data: Option<String>,
    },
    /// The answer is not what the method returns.
    #[error("{method}: unexpected answer: {reason}")]
    BadResponse {
        /// The JSON-RPC method.
        method: String,
        /// What is wrong.
        reason: String,
    },
    /// A JSON answer did not deserialize into the expected shape.
    #[error("{method}: {source}")]
    Json {
        /// The JSON-RPC method.
        method: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The metadata is missing an item or could not be decoded.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// SCALE bytes from the chain did not decode.
    #[error("decoding {what}: {source}")]
    Decode {
        /// What was being decoded.
        what: String,
        /// The cause.
        #[source]
        source: parity_scale_codec::Error,
    },
    /// A subscription's buffer overflowed (the reader was too slow); it was dropped.
    #[error("subscription {id} dropped: more than {capacity} unread notifications")]
    Lagged {
        /// The subscription id.
        id: String,
        /// The buffer size.
        capacity: usize,
    },
}

/// `0x`-prefixed lowercase hex, the chain's encoding of bytes in JSON.
pub fn to_hex(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// Bytes from `0x`-prefixed (or bare) hex; `method` names the call for the error.
pub fn from_hex(text: &str, method: &str) -> Result<Vec<u8>, ChainError> {
    let t = text.strip_prefix("0x").unwrap_or(text);
    hex::decode(t).map_err(|e| ChainError::BadResponse {
        method: method.to_owned(),
        reason: format!("not hex: {e}"),
    })
}

/// A 32-byte hash from hex (block and genesis hashes).
pub fn hash_from_hex(text: &str, method: &str) -> Result<[u8; 32], ChainError> {
    let v = from_hex(text, method)?;
    <[u8; 32]>::try_from(v.as_slice()).map_err(|_| ChainError::BadResponse {
        method: method.to_owned(),
        reason: format!("hash of {} bytes, want 32", v.len()),
    })
}
