//! `GET /v1/nodes` (JSON board), `GET /v1/history` (recent rounds), `GET /metrics`
//! (Prometheus text) and the dashboard page at `/`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::status::Status;

/// The validator's HTTP routes over a shared [`Status`].
pub fn router(status: Arc<Status>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/dashboard", get(dashboard))
        .route("/v1/history", get(history))
        .route("/v1/nodes", get(nodes))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(status)
}

/// The dashboard: one self-contained page (no external scripts, styles or fonts) that
/// polls `/v1/nodes`, `/v1/history` and, when the gateway runs, `/gateway/stats`.
const DASHBOARD: &str = include_str!("dashboard.html");

async fn dashboard() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Everything the page needs comes from this origin.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:",
            ),
        ],
        DASHBOARD,
    )
}

async fn history(State(status): State<Arc<Status>>) -> impl IntoResponse {
    axum::Json(serde_json::json!({ "rounds": status.history() }))
}

async fn nodes(State(status): State<Arc<Status>>) -> impl IntoResponse {
    axum::Json(status.board())
}

async fn metrics(State(status): State<Arc<Status>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        status.render_metrics(),
    )
}

/// Why the board could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Connection or HTTP failure.
    #[error("fetching {url}: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
        /// The HTTP client's error; `None` for an unsuccessful status.
        #[source]
        source: Option<reqwest::Error>,
    },
}

/// Fetches `GET {base}/v1/nodes` (the devnet's view of a validator process).
pub async fn fetch_board(
    client: &reqwest::Client,
    base: &str,
) -> Result<crate::status::Board, FetchError> {
    let url = format!("{}/v1/nodes", base.trim_end_matches('/'));
    let err = |reason: String, source: Option<reqwest::Error>| FetchError::Http {
        url: url.clone(),
        reason,
        source,
    };
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| err(e.to_string(), Some(e)))?;
    if !resp.status().is_success() {
        return Err(err(format!("status {}", resp.status()), None));
    }
    resp.json().await.map_err(|e| err(e.to_string(), Some(e)))
}
