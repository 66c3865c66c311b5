//! Engine errors.

use thiserror::Error;

/// What went wrong while loading or running a model.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The file is not a model this engine can load (corrupt, hostile,
    /// unsupported operator or domain, over a limit).
    #[error("model cannot be loaded: {0}")]
    Load(String),
    /// An input has the wrong name, type, shape or value.
    #[error("invalid input {input:?}: {reason}")]
    InvalidInput {
        /// Input name (empty when not known at the point of failure).
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An input the model declares was not supplied.
    #[error("missing input {0:?}")]
    MissingInput(String),
    /// An input the model does not declare was supplied.
    #[error("unknown input {0:?}")]
    UnknownInput(String),
    /// A tensor of the request (an input, or one the model would compute
    /// from it) is over [`crate::Limits::max_tensor_bytes`]. Found from
    /// shapes and values before anything of that size is allocated.
    #[error("tensor too large: {0}")]
    TensorTooLarge(#[source] TensorTooLarge),
    /// The backend failed while evaluating the graph on valid inputs.
    #[error("inference failed: {0}")]
    Run(String),
    /// The backend could not allocate memory (onnxruntime's
    /// `std::bad_alloc`, e.g. under the load probe's address-space limit).
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// The caller stopped the run (its deadline passed) before it finished.
    #[error("the run was stopped before it finished")]
    Cancelled,
    /// The backend panicked; the model is unusable.
    #[error("engine fault: {0}")]
    Internal(String),
}

impl EngineError {
    /// True when the caller's request (not the model or the engine) is at fault.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            EngineError::InvalidInput { .. }
                | EngineError::MissingInput(_)
                | EngineError::UnknownInput(_)
                | EngineError::TensorTooLarge(_)
        )
    }

    /// Stable machine-readable code, as in the error table of PROTOCOL.md.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Load(_) => "model_load_failed",
            EngineError::InvalidInput { .. } => "invalid_input",
            EngineError::MissingInput(_) => "missing_input",
            EngineError::UnknownInput(_) => "unknown_input",
            EngineError::TensorTooLarge(_) => "tensor_too_large",
            EngineError::Run(_) | EngineError::OutOfMemory(_) => "inference_failed",
            EngineError::Cancelled => "timeout",
            EngineError::Internal(_) => "internal",
        }
    }
}

/// A tensor whose size, known from shapes and values, is over the cap.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{what} would take {}, over the {cap} byte tensor cap", bytes_text(*.bytes))]
pub struct TensorTooLarge {
    /// Which tensor (operator, node and shape, or input name).
    pub what: String,
    /// Its size in bytes; `None` when the size does not even fit in `u128`.
    pub bytes: Option<u128>,
    /// The cap it exceeds.
    pub cap: usize,
}

fn bytes_text(bytes: Option<u128>) -> String {
    match bytes {
        Some(b) => format!("{b} bytes"),
        None => "more bytes than can be counted".into(),
    }
}
