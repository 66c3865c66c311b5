//! One node's side of a round, as the round runner sees it: attest with a
//! nonce, then answer sealed challenges. The production implementation is
//! [`crate::client_channel`] over `attesta-client`; keeping this a trait lets
//! the runner's concurrency and timeout logic be tested on its own.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::challenge::Challenge;
use crate::llm_challenge::{LlmChallenge, StreamedAnswer};
use crate::registry::NodeEntry;
use crate::state::Outcome;

/// What a verified attestation told us.
#[derive(Debug, Clone, PartialEq)]
pub struct Attested {
    /// The fresh nonce the evidence answers.
    pub nonce: Vec<u8>,
    /// Platform shown to humans (`dev (insecure)`, `aws-nitro`).
    pub platform: String,
    /// Measurement verdict (e.g. `matches release `x``, or `not checked`).
    pub measurement: String,
}

/// A verified answer: the channel opened it and the receipt verified
/// against the attested key set with matching request/output digests.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The OpenGradient `output` list.
    pub output: Value,
    /// Model CID the receipt names.
    pub receipt_model_cid: String,
    /// Model SHA-256 (hex) the receipt names.
    pub receipt_model_sha256: String,
    /// Engine the receipt names (picks the challenge's tolerance).
    pub receipt_engine: String,
    /// Request sent → answer received, measured by the validator's client.
    pub latency: Duration,
    /// The proof bundle (receipt + evidence), JSON.
    pub bundle: String,
}

/// Why a probe step failed. Each maps to one [`Outcome`]; none earns credit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// Could not talk to the node (connect, HTTP status, body).
    #[error("transport: {0}")]
    Transport(String),
    /// A request to the node timed out.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The evidence did not verify under the policy.
    #[error("attestation: {reason}")]
    Attestation {
        /// Why.
        reason: String,
        /// Measurement verdict when the document got that far.
        measurement: Option<String>,
        /// Platform the document claimed, if it parsed.
        platform: Option<String>,
    },
    /// The receipt failed to verify or its digests mismatch.
    #[error("receipt: {0}")]
    Receipt(String),
    /// Envelope/protocol failure or an error answer from the node.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl ProbeError {
    /// The attempt outcome this error records.
    pub fn outcome(&self) -> Outcome {
        match self {
            ProbeError::Transport(_) => Outcome::Transport,
            ProbeError::Timeout(_) => Outcome::Timeout,
            ProbeError::Attestation { .. } => Outcome::AttestationFailed,
            ProbeError::Receipt(_) => Outcome::ReceiptInvalid,
            ProbeError::Protocol(_) => Outcome::Protocol,
        }
    }
}

/// The attested channel to one node.
pub trait NodeChannel: Send + Sync {
    /// Fetches and verifies fresh evidence for a new random nonce; later
    /// [`NodeChannel::infer`] calls use the key set it attested.
    fn attest(&self) -> BoxFuture<'_, Result<Attested, ProbeError>>;
    /// Sends one sealed challenge and returns the verified answer.
    fn infer<'a>(&'a self, challenge: &'a Challenge) -> BoxFuture<'a, Result<Answer, ProbeError>>;
    /// Sends one language-model challenge (a greedy completion) through the sealed
    /// channel and returns the answer as streamed, timed, once its receipt verified and is
    /// bound to the challenge; the round checks the tokens. Channels that cannot carry
    /// sealed streams fail it as a protocol error (no credit).
    fn complete<'a>(
        &'a self,
        challenge: &'a LlmChallenge,
    ) -> BoxFuture<'a, Result<StreamedAnswer, ProbeError>> {
        let _ = challenge;
        Box::pin(async {
            Err(ProbeError::Protocol(
                "this channel does not serve language-model challenges".into(),
            ))
        })
    }
}

/// Makes (and may cache) channels per node.
pub trait ChannelFactory: Send + Sync {
    /// The channel for this node (created on first use).
    fn channel(&self, node: &NodeEntry) -> Result<Arc<dyn NodeChannel>, ProbeError>;
}
