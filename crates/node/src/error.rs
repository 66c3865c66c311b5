//! The node's wire errors: every failure is `{"error": {"code", "message"}}`
//! with a status that says whose fault it was.

use std::error::Error as StdError;
use std::sync::Arc;

use attesta_engine::EngineError;
use attesta_engine::og::CodecError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Marks an error response with its code, for the metrics middleware.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// An error as sent to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (see docs/PROTOCOL.md).
    pub code: &'static str,
    /// Human-readable detail.
    pub message: String,
    /// The error behind an internal fault, kept for logs and callers; never
    /// sent (the wire carries `message` only).
    cause: Option<Arc<dyn StdError + Send + Sync>>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    /// OpenAI's error class, so OpenAI clients classify our errors as theirs.
    #[serde(rename = "type")]
    kind: &'static str,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            cause: None,
        }
    }

    /// 400 with the given code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 422 `model_load_failed`: a verdict on the model file itself (the
    /// same bytes fail again, so the cache remembers it).
    pub fn model_load_failed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "model_load_failed",
            message,
        )
    }

    /// 500: a fault of ours, not of the request.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// 500 for a fault of ours caused by `e`: the answer is the one
    /// [`ApiError::internal`] gives for `"{context}: {e}"`, and `e` is kept
    /// (see [`ApiError::cause`]) and logged with its whole source chain, which
    /// the one-line message would lose.
    pub fn internal_from<E>(context: &str, e: E) -> Self
    where
        E: StdError + Send + Sync + 'static,
    {
        let mut err = Self::internal(format!("{context}: {e}"));
        tracing::error!(error = %chain(&e), "{context}");
        err.cause = Some(Arc::new(e));
        err
    }

    /// The error behind this one, when it was built with [`ApiError::internal_from`].
    pub fn cause(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        self.cause.as_deref()
    }
}

/// `e` and each of its sources, joined by `: `.
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                kind: if self.status.is_server_error() {
                    "server_error"
                } else {
                    "invalid_request_error"
                },
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        resp.extensions_mut().insert(ErrorCode(self.code));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}

impl From<CodecError> for ApiError {
    fn from(e: CodecError) -> Self {
        ApiError::bad_request(e.code(), e.to_string())
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match &e {
            EngineError::Load(_) => ApiError::model_load_failed(e.to_string()),
            EngineError::InvalidInput { .. } => {
                ApiError::bad_request("invalid_input", e.to_string())
            }
            EngineError::MissingInput(_) => ApiError::bad_request("missing_input", e.to_string()),
            EngineError::UnknownInput(_) => ApiError::bad_request("unknown_input", e.to_string()),
            // A request (or the model's arithmetic on it) asked for a tensor over the cap; the
            // engine refused before allocating.
            EngineError::TensorTooLarge(_) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "tensor_too_large",
                e.to_string(),
            ),
            // The graph failed on inputs that matched its declaration: the
            // model cannot serve this request, which is not our fault either.
            EngineError::Run(_) | EngineError::OutOfMemory(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "inference_failed",
                e.to_string(),
            ),
            // Only the executor cancels, and only once the deadline passed (the caller has
            // its timeout answer already) or the caller left.
            EngineError::Cancelled => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", e.to_string())
            }
            _ => ApiError::internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_from_answers_as_before_and_keeps_the_cause() {
        let io = std::io::Error::other("disk on fire");
        let err = ApiError::internal_from("listing the store", io);
        assert_eq!(err.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(err.code, "internal");
        assert_eq!(err.message, "listing the store: disk on fire");
        let cause = err.cause().expect("the cause is kept");
        assert!(cause.downcast_ref::<std::io::Error>().is_some());
        assert!(ApiError::internal("plain").cause().is_none());
    }
}
