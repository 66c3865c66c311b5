//! Attestation and the sealed channel on the node: the key set made at
//! start, fresh evidence bound to each caller's nonce, and `POST /v1/infer`.

use std::sync::Arc;
use std::time::Instant;

use attesta_attester::{AttestRequest, Attester};
use attesta_content::Cid;
use attesta_engine::og;
use attesta_seal::{AttestationBinding, NodeKeys, ReplayGuard, SealedOutput, UnixTime};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiError;

/// A clock returning Unix time (injected so tests can move it).
pub type Clock = Arc<dyn Fn() -> UnixTime + Send + Sync>;

/// Everything the node needs to prove itself and to open sealed requests.
pub struct Attestation {
    /// The in-memory key set; never written anywhere.
    pub keys: NodeKeys,
    /// The evidence producer chosen at start.
    pub attester: Arc<dyn Attester>,
    /// Remembers accepted requests for the replay window.
    pub replay: ReplayGuard,
    /// Time source for replay windows and receipts.
    pub clock: Clock,
}

impl Attestation {
    /// Binds `nonce` (and the key set) into fresh evidence.
    async fn attest(&self, binding: AttestationBinding) -> Result<Vec<u8>, ApiError> {
        let attester = self.attester.clone();
        let req = AttestRequest {
            nonce: binding.nonce,
            user_data: Some(binding.user_data),
            public_key: Some(binding.public_key),
            report_data: binding.report_data,
        };
        // Producing evidence is a device call or a signature: keep it off the async workers.
        let evidence = tokio::task::spawn_blocking(move || attester.attest(&req))
            .await
            .map_err(|e| ApiError::internal(format!("attestation task failed: {e}")))?
            .map_err(|e| ApiError::internal(format!("producing evidence: {e}")))?;
        Ok(evidence.bytes)
    }
}

/// `?nonce=` of the attestation routes.
#[derive(Deserialize)]
pub struct NonceQuery {
    nonce: Option<String>,
}

fn parse_nonce(q: &NonceQuery, min: usize, max: usize) -> Result<Vec<u8>, ApiError> {
    let text = q.nonce.as_deref().ok_or_else(|| {
        ApiError::bad_request("invalid_nonce", "query parameter `nonce` is required")
    })?;
    let bytes = hex::decode(text)
        .map_err(|e| ApiError::bad_request("invalid_nonce", format!("nonce is not hex: {e}")))?;
    if bytes.len() < min || bytes.len() > max {
        let want = if min == max {
            format!("{min}")
        } else {
            format!("{min}..={max}")
        };
        return Err(ApiError::bad_request(
            "invalid_nonce",
            format!(
                "nonce must be {want} bytes ({} hex characters), got {}",
                want,
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

fn attestation(state: &AppState) -> Result<&Attestation, ApiError> {
    state.attestation.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "attestation_disabled",
            "this node runs without a TEE (--tee none)",
        )
    })
}

/// `GET /enclave/attestation?nonce=<40 hex>`: nitriding's endpoint, byte for byte:
/// the base64 of the raw document and a newline.
pub async fn nitriding(
    State(state): State<Arc<AppState>>,
    Query(q): Query<NonceQuery>,
) -> Result<Response, ApiError> {
    let att = attestation(&state)?;
    let nonce = parse_nonce(&q, 20, 20)?;
    // No TLS inside the node: the certificate-hash slot is zero.
    let mut evidence = att
        .attest(att.keys.nitriding_binding(&nonce, &[0u8; 32]))
        .await?;
    crate::fault::corrupt_evidence(state.fault(), &mut evidence);
    let mut body = base64::engine::general_purpose::STANDARD.encode(&evidence);
    body.push('\n');
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

/// `GET /v1/attestation?nonce=<hex, 16..=64 bytes>`: evidence plus the key set it binds.
pub async fn v1(
    State(state): State<Arc<AppState>>,
    Query(q): Query<NonceQuery>,
) -> Result<Response, ApiError> {
    let att = attestation(&state)?;
    let nonce = parse_nonce(&q, 16, 64)?;
    let mut evidence = att.attest(att.keys.attestation_binding(&nonce)).await?;
    crate::fault::corrupt_evidence(state.fault(), &mut evidence);
    let keyset = att.keys.public();
    let platform = att.attester.platform();
    let platform_id = match platform {
        attesta_attester::Platform::Nitro => "nitro",
        attesta_attester::Platform::Tdx => "tdx",
        attesta_attester::Platform::SevSnp => "sev-snp",
        attesta_attester::Platform::Sgx => "sgx",
        attesta_attester::Platform::Dev => "dev",
        _ => "unknown",
    };
    Ok(axum::Json(serde_json::json!({
        "platform": platform_id,
        "platform_label": platform.to_string(),
        "insecure": platform == attesta_attester::Platform::Dev,
        "evidence": base64::engine::general_purpose::STANDARD.encode(&evidence),
        "keyset": {
            "hpke_pk": hex::encode(keyset.hpke_pk),
            "sign_pk": hex::encode(keyset.sign_pk),
        },
        "keyset_digest": hex::encode(att.keys.keyset_digest()),
        "nonce": hex::encode(&nonce),
    }))
    .into_response())
}

fn sealed(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, attesta_seal::MEDIA_TYPE)],
        body,
    )
        .into_response()
}

/// `POST /v1/infer`: an HPKE-sealed request in, a sealed answer with a signed receipt out.
/// Failures before decryption are plain JSON errors; after it, errors are sealed so
/// relays learn nothing but the status class.
pub async fn infer(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    state.metrics.inflight().inc();
    let resp = infer_inner(&state, body, started).await;
    state.metrics.inflight().dec();
    resp
}

async fn infer_inner(
    state: &Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
    started: Instant,
) -> Response {
    let att = match attestation(state) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let body = match body.map_err(crate::infer::body_error) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let opened = match att.keys.open_request(&body, &att.replay, (att.clock)()) {
        Ok(o) => o,
        Err(rejected) => {
            let status =
                StatusCode::from_u16(rejected.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            let code = rejected.code();
            let (content_type, body) = rejected.into_body();
            let mut resp = (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
            resp.extensions_mut().insert(crate::error::ErrorCode(code));
            return resp;
        }
    };
    let responder = opened.responder;
    let request = opened.request;
    let fail = |e: ApiError, responder: attesta_seal::Responder| {
        let mut resp = sealed(e.status, responder.seal_error(e.code, &e.message));
        resp.extensions_mut()
            .insert(crate::error::ErrorCode(e.code));
        resp
    };
    let cid: Cid = match request.model.parse() {
        Ok(c) => c,
        Err(e) => {
            let err = ApiError::bad_request(
                "invalid_cid",
                format!("model {:?} is not a CID: {e}", request.model),
            );
            return fail(err, responder);
        }
    };
    let inputs = match og::parse_inputs(request.inputs.get()) {
        Ok(i) => i,
        Err(e) => return fail(e.into(), responder),
    };
    let loaded = match state.cache.get(&cid).await {
        Ok(m) => m,
        Err(e) => return fail(e, responder),
    };
    let ran = crate::infer::run_model(state, loaded.clone(), inputs, |outputs, model_hash| {
        let response = og::encode_response(outputs, model_hash);
        serde_json::to_vec(&response.output)
            .map_err(|e| ApiError::internal(format!("encoding output: {e}")))
    })
    .await;
    let output_json = match ran {
        Ok(o) => o,
        Err(e) => return fail(e, responder),
    };
    let engine = state.cache.engine();
    let out = SealedOutput {
        output_json: &output_json,
        model_sha256: loaded.sha256,
        engine: engine.name(),
        engine_version: engine.version(),
    };
    let answer = match responder.seal_output(&att.keys, &out, (att.clock)()) {
        Ok(bytes) => sealed(StatusCode::OK, bytes),
        Err(failure) => {
            tracing::error!(error = %failure, "sealing an answer failed");
            let mut resp = sealed(StatusCode::INTERNAL_SERVER_ERROR, failure.sealed);
            resp.extensions_mut()
                .insert(crate::error::ErrorCode("internal"));
            resp
        }
    };
    crate::fault::before_answer(state.fault()).await;
    state
        .metrics
        .infer_request_seconds(&cid.to_string(), started.elapsed().as_secs_f64());
    answer
}
