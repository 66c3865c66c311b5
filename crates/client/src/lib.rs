//! Client of attesta's attested channel.
//!
//! [`Client::infer`] does the whole flow: fetch evidence for a fresh nonce,
//! verify it under the [`Policy`](attesta_evidence::Policy) and the key
//! binding, cache the verified key set for a bounded time, seal the request
//! to it, open the sealed answer, verify the receipt, and return the output
//! with a [`ProofBundle`](attesta_seal::ProofBundle) anyone can check offline.
//!
//! Time and randomness are injectable ([`ClientConfig::clock`],
//! [`ClientConfig::rng`]) so tests are deterministic.
#![forbid(unsafe_code)]

mod client;
mod config;
mod error;
pub mod kds;
pub mod pcs;
mod transport;
mod wire;

pub use client::{Client, CompletionOutcome, InferOutcome, VerifiedNode};
pub use config::{ClientConfig, ClockFn, RngHandle, SharedRng, system_clock, system_rng};
pub use error::ClientError;
pub use pcs::{PcsClient, PcsError};
pub use transport::{
    BodyStream, GatewayTransport, HttpTransport, Reply, StreamFuture, StreamReply, Transport,
    TransportFuture,
};
pub use wire::AttestationResponse;
