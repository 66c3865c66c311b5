//! The codec's error type and its wire codes.

use std::sync::Arc;

use thiserror::Error;

use super::MAX_DECIMALS;
use crate::DType;

/// Why an OpenGradient request could not be turned into model inputs.
#[derive(Debug, Error, Clone)]
#[non_exhaustive]
pub enum CodecError {
    /// The body (or the embedded `model_inputs` string) is not the JSON we expect.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The body is not UTF-8.
    #[error("malformed request: body is not UTF-8")]
    NotUtf8(#[source] std::str::Utf8Error),
    /// A part of the request is not the JSON we expect; the parser's error is
    /// kept as the cause (shared, so the error stays cheap to clone).
    #[error("malformed request: {part}: {source}")]
    Json {
        /// Which part failed: `body`, `model_inputs`, `num_inputs`, `string_inputs`.
        part: &'static str,
        /// The JSON parser's error.
        #[source]
        source: Arc<serde_json::Error>,
    },
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
            CodecError::Malformed(_) | CodecError::NotUtf8(_) | CodecError::Json { .. } => {
                "malformed_request"
            }
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

    /// A [`CodecError::Json`] for `part`, keeping the parser's error.
    pub(super) fn json(part: &'static str) -> impl FnOnce(serde_json::Error) -> CodecError {
        move |e| CodecError::Json {
            part,
            source: Arc::new(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::super::parse_request;
    use super::*;

    #[test]
    fn malformed_json_keeps_the_parser_error_as_source() {
        let err = parse_request(b"{\"ipfs_hash\": 1").unwrap_err();
        assert_eq!(err.code(), "malformed_request");
        let source = err.source().expect("the JSON error is kept");
        // Shared so the error stays `Clone`: the source is the `Arc` around it.
        assert!(source.downcast_ref::<Arc<serde_json::Error>>().is_some());
        // The message is the one the wire always carried.
        assert!(
            err.to_string().starts_with("malformed request: body: "),
            "{err}"
        );
        let err = parse_request(b"\xff").unwrap_err();
        assert!(matches!(err, CodecError::NotUtf8(_)));
        assert_eq!(err.to_string(), "malformed request: body is not UTF-8");
        assert!(err.source().is_some());
    }
}
