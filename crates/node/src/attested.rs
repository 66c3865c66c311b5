//! Attestation and the sealed channel on the node: the key set made at
//! start, fresh evidence bound to each caller's nonce, and `POST /v1/infer`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use attesta_attester::{AttestRequest, Attester};
use attesta_content::Cid;
use attesta_engine::og;
use attesta_seal::{AttestationBinding, NodeKeys, ReplayGuard, SealedOutput, SharedRng, UnixTime};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use crate::AppState;
use crate::endorse::Endorsements;
use crate::error::ApiError;

/// A clock returning Unix time (injected so tests can move it).
pub type Clock = Arc<dyn Fn() -> UnixTime + Send + Sync>;

/// The randomness every sealed answer's key is drawn from (injected so tests
/// can pin it; the node passes the OS CSPRNG).
pub type Rng = Arc<Mutex<dyn SharedRng>>;

/// Everything the node needs to prove itself and to open sealed requests.
pub struct Attestation {
    /// The in-memory key set; never written anywhere.
    pub keys: NodeKeys,
    /// The evidence producer chosen at start.
    pub attester: Arc<dyn Attester>,
    /// Completes hardware evidence with the collateral / certificates verifiers need.
    pub endorser: Option<Arc<crate::endorse::Endorser>>,
    /// Remembers accepted requests for the replay window.
    pub replay: ReplayGuard,
    /// Time source for replay windows and receipts.
    pub clock: Clock,
    /// Fresh randomness for every sealed answer (its `response_nonce`).
    pub rng: Rng,
}

impl Attestation {
    /// Binds `nonce` (and the key set) into fresh evidence.
    async fn attest(
        &self,
        binding: AttestationBinding,
    ) -> Result<attesta_attester::Evidence, ApiError> {
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
            .map_err(|e| ApiError::internal_from("attestation task failed", e))?
            .map_err(|e| ApiError::internal_from("producing evidence", e))?;
        Ok(evidence)
    }
}

/// Decodes `%XX` escapes and `+` (application/x-www-form-urlencoded); `None` if malformed.
fn form_decode(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = char::from(bytes.next()?).to_digit(16)?;
                let lo = char::from(bytes.next()?).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// The one `nonce` parameter of a raw query string: missing, repeated or
/// undecodable parameters are JSON `invalid_nonce` errors (axum's `Query`
/// would answer plain text), other parameters are ignored.
fn nonce_param(query: Option<&str>) -> Result<String, ApiError> {
    let invalid = |m: &str| ApiError::bad_request("invalid_nonce", m.to_owned());
    let mut found = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if form_decode(key).as_deref() != Some("nonce") {
            continue;
        }
        if found.is_some() {
            return Err(invalid("query parameter `nonce` is given more than once"));
        }
        found = Some(
            form_decode(value)
                .ok_or_else(|| invalid("query parameter `nonce` is not valid URL encoding"))?,
        );
    }
    found.ok_or_else(|| invalid("query parameter `nonce` is required"))
}

fn parse_nonce(query: Option<&str>, min: usize, max: usize) -> Result<Vec<u8>, ApiError> {
    let text = nonce_param(query)?;
    let bytes = hex::decode(&text)
        .map_err(|e| ApiError::bad_request("invalid_nonce", format!("nonce is not hex: {e}")))?;
    if bytes.len() < min || bytes.len() > max {
        let want = if min == max {
            format!("{min} bytes ({} hex characters)", 2 * min)
        } else {
            format!(
                "{min}..={max} bytes ({}..={} hex characters)",
                2 * min,
                2 * max
            )
        };
        return Err(ApiError::bad_request(
            "invalid_nonce",
            format!("nonce must be {want}, got {} bytes", bytes.len()),
        ));
    }
    Ok(bytes)
}

/// The node's attestation, or 404 `attestation_disabled` without a TEE.
pub(crate) fn attestation(state: &AppState) -> Result<&Attestation, ApiError> {
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
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let att = attestation(&state)?;
    let nonce = parse_nonce(query.as_deref(), 20, 20)?;
    // No TLS inside the node: the certificate-hash slot is zero.
    let mut evidence = att
        .attest(att.keys.nitriding_binding(&nonce, &[0u8; 32]))
        .await?
        .bytes;
    crate::fault::corrupt_evidence(state.fault(), &mut evidence);
    let mut body = base64::engine::general_purpose::STANDARD.encode(&evidence);
    body.push('\n');
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

/// `GET /v1/attestation?nonce=<hex, 16..=64 bytes>`: evidence plus the key set it binds.
pub async fn v1(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let att = attestation(&state)?;
    let nonce = parse_nonce(query.as_deref(), 16, 64)?;
    let produced = att.attest(att.keys.attestation_binding(&nonce)).await?;
    let platform = att.attester.platform();
    let mut endorsements = Endorsements {
        collateral: envelope_collateral(platform, produced.aux.as_deref()),
        certs: envelope_certs(platform, produced.aux.as_deref()),
    };
    if let Some(endorser) = &att.endorser {
        let now = (att.clock)();
        endorsements = endorser
            .complete(platform, &produced.bytes, endorsements, now)
            .await;
    }
    let Endorsements { collateral, certs } = endorsements;
    let mut evidence = produced.bytes;
    crate::fault::corrupt_evidence(state.fault(), &mut evidence);
    let keyset = att.keys.public();
    let mut body = serde_json::json!({
        // The wire id is the enum's serde name (`nitro`, `tdx`, `sev-snp`, `sgx`, `dev`, `dev-snp`, `dev-tdx`).
        "platform": platform,
        "platform_label": platform.to_string(),
        "insecure": matches!(
            platform,
            attesta_attester::Platform::Dev
                | attesta_attester::Platform::DevSnp
                | attesta_attester::Platform::DevTdx
                | attesta_attester::Platform::DevSgx
        ),
        "evidence": base64::engine::general_purpose::STANDARD.encode(&evidence),
        "keyset": {
            "hpke_pk": hex::encode(keyset.hpke_pk),
            "sign_pk": hex::encode(keyset.sign_pk),
        },
        "keyset_digest": hex::encode(att.keys.keyset_digest()),
        "nonce": hex::encode(&nonce),
    });
    if !certs.is_empty() {
        body["certs"] = certs
            .iter()
            .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
            .collect();
    }
    if let Some(collateral) = collateral {
        body["collateral"] = collateral;
    }
    Ok(axum::Json(body).into_response())
}

/// The certificates of the evidence envelope: for SEV-SNP, the VCEK/VLEK
/// (and ASK/ARK) from the certificate table the firmware returned beside
/// the report. A malformed table is logged and sent as none: verifiers then
/// fail closed (`snp_missing_endorsement`).
fn envelope_certs(platform: attesta_attester::Platform, aux: Option<&[u8]>) -> Vec<Vec<u8>> {
    use attesta_attester::Platform;
    match (platform, aux) {
        (Platform::SevSnp | Platform::DevSnp, Some(table)) => {
            attesta_evidence::snp::cert_table::parse(table).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "SEV-SNP certificate table unusable");
                Vec::new()
            })
        }
        _ => Vec::new(),
    }
}

/// The collateral of a DCAP quote (dcap-qvl's `QuoteCollateralV3` JSON),
/// when the attester supplied it beside the quote (the dev TDX TEE does),
/// so verifiers need no network. Unusable JSON is logged and sent as none:
/// verifiers then fail closed (no collateral).
fn envelope_collateral(
    platform: attesta_attester::Platform,
    aux: Option<&[u8]>,
) -> Option<serde_json::Value> {
    use attesta_attester::Platform;
    match (platform, aux) {
        (Platform::Tdx | Platform::DevTdx | Platform::Sgx | Platform::DevSgx, Some(json)) => {
            serde_json::from_slice(json)
                .map_err(|e| tracing::warn!(error = %e, "DCAP collateral unusable"))
                .ok()
        }
        _ => None,
    }
}

/// A request refused before it was accepted: plain JSON no client takes for a verdict.
pub(crate) fn plain_rejection(rejected: attesta_seal::Rejected) -> Response {
    let status = StatusCode::from_u16(rejected.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let code = rejected.code();
    let (content_type, body) = rejected.into_body();
    let mut resp = (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
    resp.extensions_mut().insert(crate::error::ErrorCode(code));
    resp
}

/// The node's sealed verdict `e` on an opened request (or an internal error when it could
/// not be sealed).
pub(crate) fn sealed_verdict(
    e: ApiError,
    sealed_body: Result<Vec<u8>, attesta_seal::EnvelopeError>,
) -> Response {
    let body = match sealed_body {
        Ok(b) => b,
        // The verdict could not be sealed: answer unsealed, as an internal error.
        Err(seal) => {
            tracing::error!(error = %seal, code = e.code, "sealing a verdict failed");
            return ApiError::internal("sealing the answer failed").into_response();
        }
    };
    let mut resp = sealed(e.status, body);
    resp.extensions_mut()
        .insert(crate::error::ErrorCode(e.code));
    resp
}

/// A sealed envelope answer.
pub(crate) fn sealed(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, attesta_seal::MEDIA_TYPE)],
        body,
    )
        .into_response()
}

/// `POST /v1/infer`: an HPKE-sealed request in, a sealed answer with a signed receipt out.
/// Refusals before the request is accepted (framing, key set, decryption, malformed
/// plaintext, stale, replayed) are plain JSON errors that no client takes for a verdict;
/// the node's verdicts on an opened request are sealed, each under its own fresh key.
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
    let plain = plain_rejection;
    let verdict = sealed_verdict;
    let opened = match att.keys.open_request(&body, &att.replay, (att.clock)()) {
        Ok(o) => o,
        Err(rejected) => return plain(rejected),
    };
    // Checks that can refuse the request run before it is admitted, so
    // refused requests never take room in the replay memory.
    let checked = check_request(state, &opened.request).await;
    let (inputs, loaded) = match checked {
        Ok(c) => c,
        Err(e) => {
            let body = opened.seal_error(e.code, &e.message, &mut *lock_rng(&att.rng));
            return verdict(e, body);
        }
    };
    let accepted = match opened.admit(&att.replay, (att.clock)()) {
        Ok(a) => a,
        Err(rejected) => return plain(rejected),
    };
    let responder = accepted.responder;
    let ran = crate::infer::run_model(state, loaded.clone(), inputs, |outputs, model_hash| {
        let response = og::encode_response(outputs, model_hash);
        serde_json::to_vec(&response.output)
            .map_err(|e| ApiError::internal_from("encoding output", e))
    })
    .await;
    let output_json = match ran {
        Ok(o) => o,
        Err(e) => {
            let body = responder.seal_error(e.code, &e.message, &mut *lock_rng(&att.rng));
            return verdict(e, body);
        }
    };
    let fault = state.fault().map(|f| f.to_string());
    let out = SealedOutput {
        output_json: &output_json,
        model_sha256: loaded.sha256,
        // The engine that loaded this model (it may differ per model).
        engine: loaded.engine,
        engine_version: loaded.engine_version,
        fault: fault.as_deref(),
    };
    let sealed_answer =
        responder.seal_output(&att.keys, &out, (att.clock)(), &mut *lock_rng(&att.rng));
    let answer = match sealed_answer {
        Ok(bytes) => sealed(StatusCode::OK, bytes),
        Err(failure) => {
            tracing::error!(error = %failure, "sealing an answer failed");
            match failure.sealed {
                Ok(body) => {
                    let mut resp = sealed(StatusCode::INTERNAL_SERVER_ERROR, body);
                    resp.extensions_mut()
                        .insert(crate::error::ErrorCode("internal"));
                    resp
                }
                Err(seal) => {
                    tracing::error!(error = %seal, "sealing the internal error failed too");
                    ApiError::internal("sealing the answer failed").into_response()
                }
            }
        }
    };
    crate::fault::before_answer(state.fault()).await;
    state
        .metrics
        .infer_request_seconds(&loaded.cid_text, started.elapsed().as_secs_f64());
    answer
}

/// The answer randomness, locked.
pub(crate) fn lock_rng(rng: &Rng) -> std::sync::MutexGuard<'_, dyn SharedRng + 'static> {
    // The RNG holds no invariant a panic elsewhere could break.
    rng.lock().unwrap_or_else(|p| p.into_inner())
}

/// Everything that can refuse an opened request before it runs: the CID,
/// the inputs, and the model (loaded or fetched).
async fn check_request(
    state: &Arc<AppState>,
    request: &attesta_seal::RequestPlaintext,
) -> Result<(og::ModelInputs, Arc<crate::cache::LoadedModel>), ApiError> {
    let cid: Cid = request.model.parse().map_err(|e| {
        ApiError::bad_request(
            "invalid_cid",
            format!("model {:?} is not a CID: {e}", request.model),
        )
    })?;
    let inputs = og::parse_inputs(request.inputs.get())?;
    let loaded = state.cache.get(&cid).await?;
    Ok((inputs, loaded))
}
