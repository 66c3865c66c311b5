//! `POST /infer`: OpenGradient's request in, OpenGradient's response out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use attesta_content::Cid;
use attesta_engine::og;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::AppState;
use crate::error::ApiError;

/// Runs CPU-bound inference off the async workers, at most `workers` at a time.
pub struct Executor {
    permits: Arc<Semaphore>,
    timeout: Duration,
}

impl Executor {
    /// An executor with `workers` concurrent slots and a per-request deadline.
    pub fn new(workers: usize, timeout: Duration) -> Self {
        Executor {
            permits: Arc::new(Semaphore::new(workers.max(1))),
            timeout,
        }
    }

    /// Runs `job` on the blocking pool once a slot is free. The deadline covers
    /// the wait and the run; a run past it keeps its slot until it finishes,
    /// so timed-out work still counts against capacity.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let permits = self.permits.clone();
        let work = async move {
            let permit = permits
                .acquire_owned()
                .await
                .map_err(|_| ApiError::internal("executor closed"))?;
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                job()
            })
            .await
            .map_err(|e| ApiError::internal(format!("inference task failed: {e}")))?
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "inference did not finish within {} ms",
                    self.timeout.as_millis()
                ),
            )),
        }
    }
}

/// The handler.
pub async fn infer(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    state.metrics.inflight().inc();
    let result = infer_inner(&state, body).await;
    state.metrics.inflight().dec();
    match result {
        Ok((cid, body)) => {
            state
                .metrics
                .infer_request_seconds(&cid, started.elapsed().as_secs_f64());
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn infer_inner(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<(String, Vec<u8>), ApiError> {
    let body = body.map_err(body_error)?;
    let request = og::parse_request(&body)?;
    drop(body);
    let cid: Cid = request.model.parse().map_err(|e| {
        ApiError::bad_request(
            "invalid_cid",
            format!("ipfs_hash {:?} is not a CID: {e}", request.model),
        )
    })?;
    let loaded = state.cache.get(&cid).await?;
    let cid_text = cid.to_string();
    let body = run_model(state, loaded, request.inputs, |outputs, model_hash| {
        let response = og::encode_response(outputs, model_hash);
        serde_json::to_vec(&response)
            .map_err(|e| ApiError::internal(format!("encoding response: {e}")))
    })
    .await?;
    crate::fault::before_answer(state.fault()).await;
    Ok((cid_text, body))
}

/// Converts the inputs for `loaded`, runs it on the executor, applies any
/// configured fault, and encodes the outputs with `encode` (given the outputs
/// and the model file's SHA-256 hex), all off the async workers. Shared by the
/// plaintext and the sealed routes.
pub async fn run_model(
    state: &AppState,
    loaded: std::sync::Arc<crate::cache::LoadedModel>,
    inputs: og::ModelInputs,
    encode: impl FnOnce(&[attesta_engine::NamedTensor], &str) -> Result<Vec<u8>, ApiError>
    + Send
    + 'static,
) -> Result<Vec<u8>, ApiError> {
    let metrics = state.metrics.clone();
    let fault = state.fault();
    state
        .executor
        .run(move || {
            let tensors = og::to_tensors(&inputs, loaded.model.info())?;
            let t0 = Instant::now();
            let mut outputs = loaded.model.run(tensors)?;
            metrics.inference_seconds(&loaded.cid.to_string(), t0.elapsed().as_secs_f64());
            crate::fault::perturb(fault, &mut outputs);
            encode(&outputs, &loaded.sha256_hex)
        })
        .await
}

/// Maps body-reading failures (size limit, broken stream) to wire errors.
pub fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            e.body_text(),
        )
    } else {
        ApiError::bad_request("bad_body", e.body_text())
    }
}
