//! The node's wire errors: every failure is `{"error": {"code", "message"}}`
//! with a status that says whose fault it was.

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
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
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
            _ => ApiError::internal(e.to_string()),
        }
    }
}
