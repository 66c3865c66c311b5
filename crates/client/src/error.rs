//! Client failures: transport (retryable), attestation, protocol and crypto
//! (never retried silently).

use attesta_evidence::{Report, VerifyError};
use attesta_seal::channel::AnswerError;
use attesta_seal::{BindingError, EnvelopeError, StreamError};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Could not reach the node, or the connection broke. Retryable.
    #[error("transport: {0}")]
    Transport(String),
    /// The HTTP client could not be built, reach the node, or the connection
    /// broke; the client's error is kept. Retryable, like [`ClientError::Transport`].
    #[error("transport: {0}")]
    Http(#[source] reqwest::Error),
    /// The node did not answer in time. Retryable.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The attestation endpoint refused in plaintext.
    #[error("node answered HTTP {status} `{code}`: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Error code from the body.
        code: String,
        /// Message from the body.
        message: String,
    },
    /// `/v1/infer` answered with something that is not a sealed answer
    /// (e.g. a plaintext `replayed_request` or `unknown_key_set`). Anyone on
    /// the path could have written it, so it is never the node's verdict:
    /// the request failed and nothing is known about its outcome.
    #[error("unauthenticated refusal (may come from a relay): HTTP {status} `{code}`: {message}")]
    Unauthenticated {
        /// HTTP status.
        status: u16,
        /// Code from the body (`http_error` when the body is not a JSON error).
        code: String,
        /// Message from the body.
        message: String,
    },
    /// The evidence failed verification under the policy.
    #[error("attestation failed: {error}")]
    Attestation {
        /// The first failure.
        error: VerifyError,
        /// Every step.
        report: Box<Report>,
    },
    /// The evidence verified but does not bind the announced key set and nonce.
    #[error("key binding failed: {0}")]
    Binding(#[from] BindingError),
    /// Sealing the request failed.
    #[error("sealing: {0}")]
    Seal(#[from] EnvelopeError),
    /// The sealed answer did not open or its receipt did not verify, or it
    /// carried the node's authenticated error verdict ([`AnswerError::Remote`]).
    #[error("answer: {0}")]
    Answer(#[from] AnswerError),
    /// A sealed stream was cut, reordered, tampered with or did not verify,
    /// or it ended with the node's authenticated error ([`StreamError::Remote`]).
    #[error("stream: {0}")]
    Stream(#[from] StreamError),
    /// The node's reply is not the documented shape.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A part of the node's reply did not decode; the decoder's error is kept.
    #[error("protocol: {what}: {source}")]
    Decode {
        /// Which part (`attestation JSON`, `evidence is not base64`, ...).
        what: &'static str,
        /// The decoder's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The caller's input is unusable.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl ClientError {
    /// Whether retrying the same call may succeed: transport failures,
    /// timeouts, overload, and unauthenticated stale/replay/key-set refusals
    /// (a retry seals a fresh request). Security failures never are.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport(_) | ClientError::Http(_) | ClientError::Timeout(_) => true,
            ClientError::Unauthenticated { status, .. } => {
                matches!(*status, 409 | 421 | 429 | 503)
            }
            ClientError::Refused { status, .. } => *status == 503 || *status == 429,
            _ => false,
        }
    }

    /// Whether this is the node's authenticated verdict on the request (a
    /// sealed error answer), as opposed to a failure to get one.
    pub fn is_node_verdict(&self) -> bool {
        matches!(
            self,
            ClientError::Answer(AnswerError::Remote(_))
                | ClientError::Stream(StreamError::Remote(_))
        )
    }

    /// A stable code for logs and scores.
    pub fn code(&self) -> &str {
        match self {
            ClientError::Transport(_) | ClientError::Http(_) => "transport",
            ClientError::Timeout(_) => "timeout",
            ClientError::Refused { code, .. } => code,
            ClientError::Unauthenticated { code, .. } => code,
            ClientError::Attestation { error, .. } => error.code(),
            ClientError::Binding(e) => e.code(),
            ClientError::Seal(e) => e.code(),
            ClientError::Answer(e) => e.code(),
            ClientError::Stream(e) => e.code(),
            ClientError::Protocol(_) | ClientError::Decode { .. } => "protocol",
            ClientError::InvalidInput(_) => "invalid_input",
        }
    }

    /// A [`ClientError::Decode`] for `what`, keeping the decoder's error.
    pub(crate) fn decode<E>(what: &'static str) -> impl FnOnce(E) -> ClientError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        move |e| ClientError::Decode {
            what,
            source: Box::new(e),
        }
    }

    pub(crate) fn from_reqwest(e: reqwest::Error, timeout: std::time::Duration) -> Self {
        if e.is_timeout() {
            ClientError::Timeout(timeout)
        } else {
            ClientError::Http(e)
        }
    }
}
