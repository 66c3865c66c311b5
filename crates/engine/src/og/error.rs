//! The codec's error type and its wire codes.

use thiserror::Error;

use super::MAX_DECIMALS;
use crate::DType;

/// Why an OpenGradient request could not be turned into model inputs.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// The body (or the embedded `model_inputs` string) is not the JSON we expect.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A fixed-point `value` is not an integer or plain decimal.
    #[error("input {input:?}, element {index}: invalid number {text:?}")]
    InvalidNumber {
        /// Input name.
        input: String,
        /// Flat element index.
        index: usize,
        /// The offending JSON text.
        text: String,
    },
    /// `decimals` is negative, not an integer, or above [`MAX_DECIMALS`].
    #[error("input {input:?}, element {index}: decimals {text} out of range 0..={MAX_DECIMALS}")]
    InvalidDecimals {
        /// Input name.
        input: String,
        /// Flat element index.
        index: usize,
        /// The offending JSON text.
        text: String,
    },
    /// The number does not fit the model input's element type.
    #[error("input {input:?}, element {index}: value does not fit {dtype}")]
    OutOfRange {
        /// Input name.
        input: String,
        /// Flat element index.
        index: usize,
        /// Target type.
        dtype: DType,
    },
    /// Element count and shape disagree, or the shape does not fit the model.
    #[error("input {input:?}: {reason}")]
    Shape {
        /// Input name.
        input: String,
        /// What disagrees.
        reason: String,
    },
    /// Numbers sent for a string input or the reverse, or an unsupported dtype.
    #[error("input {input:?}: model expects {expected}, request sent {sent}")]
    TypeMismatch {
        /// Input name.
        input: String,
        /// Model's dtype.
        expected: DType,
        /// What the request carried (`numbers` or `strings`).
        sent: &'static str,
    },
    /// The model has no input with this name.
    #[error("unknown input {0:?}")]
    UnknownInput(String),
    /// The model declares an input the request did not send.
    #[error("missing input {0:?}")]
    MissingInput(String),
    /// The same input name was sent twice.
    #[error("duplicate input {0:?}")]
    DuplicateInput(String),
}

impl CodecError {
    /// Stable machine-readable code for the wire.
    pub fn code(&self) -> &'static str {
        match self {
            CodecError::Malformed(_) => "malformed_request",
            CodecError::InvalidNumber { .. } => "invalid_number",
            CodecError::InvalidDecimals { .. } => "invalid_decimals",
            CodecError::OutOfRange { .. } => "value_out_of_range",
            CodecError::Shape { .. } => "shape_mismatch",
            CodecError::TypeMismatch { .. } => "type_mismatch",
            CodecError::UnknownInput(_) => "unknown_input",
            CodecError::MissingInput(_) => "missing_input",
            CodecError::DuplicateInput(_) => "duplicate_input",
        }
    }
}
