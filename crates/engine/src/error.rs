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
    /// The backend failed while evaluating the graph on valid inputs.
    #[error("inference failed: {0}")]
    Run(String),
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
        )
    }
}
