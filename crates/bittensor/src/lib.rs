//! Bittensor adapter for attesta: the only crate where sr25519 lives.
//!
//! - [`keys`], [`ss58`], [`wallet`]: hotkeys (sr25519, `substrate` signing context),
//!   SS58 prefix 42, dev URIs (`//Alice`) and the Python wallet's keyfiles on disk;
//! - [`pyrepr`], [`synapse`]: the SDK's wire format (SDK 7.2.0–10.5.0): body hash over
//!   Python `str()` texts, signed headers, attesta's synapses;
//! - [`axon`], [`nonces`]: a strict axon that relays the synapses to the enclave node;
//! - [`dendrite`]: the validator's side of the same calls;
//! - [`chain`]: subtensor's JSON-RPC: metadata, storage, the subnet's neurons.
#![forbid(unsafe_code)]

pub mod axon;
pub mod chain;
pub mod dendrite;
pub mod keys;
pub mod nonces;
pub mod pyrepr;
pub mod ss58;
pub mod synapse;
pub mod wallet;

pub use axon::{AxonConfig, CallerPolicy, router};
pub use dendrite::{AxonTarget, CompletionReply, Dendrite, DendriteError};
pub use keys::{Hotkey, Signature};
pub use ss58::AccountId;
pub use wallet::WalletSpec;
