//! Content-Type checks for the POST routes. `/infer` takes only `application/json`, so a
//! browser page on another origin cannot send it a "simple" cross-origin POST (those may
//! only carry form or text bodies); `/v1/infer` takes only the sealed envelope type.

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The media type of `/infer` requests.
pub const JSON: &str = "application/json";

/// Checks that `headers` declare `expected` as the body's media type (parameters such as
/// `charset` are ignored; the comparison is case-insensitive, as RFC 9110 says).
pub fn require(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim());
    match declared {
        Some(t) if t.eq_ignore_ascii_case(expected) => Ok(()),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            match other {
                Some(t) => format!("Content-Type must be {expected}, not {t:?}"),
                None => format!("Content-Type must be {expected}"),
            },
        )),
    }
}

/// Middleware: `/infer` bodies must be JSON.
pub async fn require_json(req: Request, next: Next) -> Response {
    match require(req.headers(), JSON) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Middleware: `/v1/infer` bodies must be sealed envelopes.
pub async fn require_sealed(req: Request, next: Next) -> Response {
    match require(req.headers(), attesta_seal::MEDIA_TYPE) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}
