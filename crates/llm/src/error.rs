//! The generative engine's errors: what a caller can act on, with the cause kept.

use thiserror::Error;

/// Why loading a model or generating failed.
#[derive(Debug, Error)]
pub enum LlmError {
    /// The GGUF file could not be read or failed validation.
    #[error("GGUF: {0}")]
    Gguf(#[from] attesta_gguf::GgufError),
    /// The model's tokenizer metadata is missing or unsupported.
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] attesta_gguf::TokenizerError),
    /// The architecture is not one this engine runs.
    #[error("unsupported architecture {0:?} (this engine runs llama and qwen2)")]
    UnsupportedArchitecture(String),
    /// A hyper-parameter is missing or out of the range this engine accepts.
    #[error("model metadata: {key}: {reason}")]
    Metadata {
        /// The metadata key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A weight tensor is missing or has the wrong shape or type.
    #[error("tensor {name}: {reason}")]
    Tensor {
        /// The tensor's name in the GGUF file.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The prompt plus the requested tokens do not fit the context or the sequence budget.
    #[error("context overflow: {needed} tokens needed, {limit} available")]
    ContextOverflow {
        /// Tokens the request needs (prompt + completion).
        needed: usize,
        /// Tokens available.
        limit: usize,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} outside the vocabulary of {n_vocab}")]
    TokenOutOfRange {
        /// The offending id.
        id: u32,
        /// Vocabulary size.
        n_vocab: usize,
    },
    /// Reading the model file failed.
    #[error("reading the model: {0}")]
    Io(#[from] std::io::Error),
    /// A tensor operation failed (a node fault: shapes were validated at load).
    #[error("tensor operation: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Shorthand for results of this crate.
pub type Result<T, E = LlmError> = std::result::Result<T, E>;
