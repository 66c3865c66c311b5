//! The axon: a miner's host process that speaks the SDK's wire format and relays
//! attesta's synapses to the enclave node. It only relays: `TeeAttestation` to
//! `GET /v1/attestation`, `TeeInference`'s sealed envelope to `POST /v1/infer`, and
//! `TeeCompletion` / `TeeChatCompletion`'s sealed envelope to `POST /v1/completions` /
//! `POST /v1/chat/completions` (the node's sealed stream read whole, bounded, and sent back
//! in one response), so the host never sees a plaintext input or output.
//!
//! Stricter than the SDK's axon, in this order (cheap checks first; nothing is
//! remembered for a request whose signature did not verify):
//! 1. the route names one of our synapses (404 `unknown_synapse`);
//! 2. the dendrite headers parse (400 `invalid_header`; 401 `missing_signature`) and name
//!    this axon's hotkey (401 `wrong_axon_hotkey`);
//! 3. the caller is allowed by policy (403 `caller_not_allowed`);
//! 4. the nonce is fresh (401 `stale_nonce`, `future_nonce`);
//! 5. the body is the synapse's JSON (400 `invalid_synapse`) and its hash equals the signed
//!    `computed_body_hash` (400 `body_hash_mismatch`);
//! 6. the signature verifies (401 `bad_signature`);
//! 7. the nonce is greater than the last one for `hotkey:uuid` (401 `replayed_nonce`;
//!    503 `nonce_store_full`).
//!
//! Every answer is JSON with the lowercase `bt_header_axon_status_code` header a Python
//! dendrite needs to count success. Refusals carry `{"error": {"code", "message"},
//! "message"}` (the SDK reads `message`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};

use crate::keys::{self, Hotkey, Signature};
use crate::nonces::{NonceConfig, NonceError, NonceStore};
use crate::pyrepr::float_repr;
use crate::ss58::AccountId;
use crate::synapse::{Synapse, header as h, signed_message};

/// The node's sealed media type (`attesta_seal::MEDIA_TYPE`; a test pins the two equal).
pub const SEALED_MEDIA_TYPE: &str = "application/vnd.attesta.sealed";

/// The node's sealed stream media type (`attesta_seal::STREAM_MEDIA_TYPE`; a test pins the
/// two equal).
pub const SEALED_STREAM_MEDIA_TYPE: &str = "application/vnd.attesta.sealed-stream";

/// Nanoseconds since the Unix epoch (injected so tests can replay captured nonces).
pub type NanoClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock in nanoseconds.
pub fn system_nanos() -> NanoClock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    })
}

/// Who may call the axon.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallerPolicy {
    /// Only these hotkeys (`--allow-caller`).
    Allow(BTreeSet<AccountId>),
    /// Any hotkey whose signature verifies (`--allow-any-caller`: tests and open subnets).
    AnyCaller,
    /// The subnet's validator-permit holders, refreshed from the chain
    /// (`--chain-endpoint`, `--netuid`), and the hotkeys in `also` (`--allow-caller`).
    Chain {
        /// The permit holders as last read.
        permitted: Arc<crate::chain::callers::PermittedCallers>,
        /// Allowed besides them.
        also: BTreeSet<AccountId>,
    },
}

impl CallerPolicy {
    /// Whether `caller` may call now.
    pub fn allows(&self, caller: &AccountId) -> bool {
        match self {
            CallerPolicy::Allow(set) => set.contains(caller),
            CallerPolicy::AnyCaller => true,
            CallerPolicy::Chain { permitted, also } => {
                also.contains(caller) || permitted.contains(caller)
            }
        }
    }
}

/// What an axon needs.
#[derive(Clone)]
pub struct AxonConfig {
    /// The axon's hotkey (the miner's).
    pub hotkey: Hotkey,
    /// Base URL of the node it relays to, e.g. `http://127.0.0.1:8080`.
    pub node: String,
    /// Who may call.
    pub policy: CallerPolicy,
    /// Nonce windows and memory caps.
    pub nonces: NonceConfig,
    /// Largest request body (the base64 of a sealed request plus the synapse JSON).
    pub max_body_bytes: usize,
    /// Deadline of one relayed call to the node (a language-model call: the whole stream).
    pub node_timeout: Duration,
    /// Largest sealed stream relayed from the node (the answer of one language-model
    /// call, read whole because a synapse answers once); longer ones are refused.
    pub max_stream_bytes: usize,
    /// The clock nonces are judged by.
    pub clock: NanoClock,
}

impl std::fmt::Debug for AxonConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AxonConfig")
            .field("hotkey", &self.hotkey)
            .field("node", &self.node)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl AxonConfig {
    /// A configuration with default limits (16 MiB bodies and streams, 60 s node deadline).
    pub fn new(hotkey: Hotkey, node: impl Into<String>, policy: CallerPolicy) -> Self {
        AxonConfig {
            hotkey,
            node: node.into().trim_end_matches('/').to_owned(),
            policy,
            nonces: NonceConfig::default(),
            max_body_bytes: 16 << 20,
            node_timeout: Duration::from_secs(60),
            max_stream_bytes: 16 << 20,
            clock: system_nanos(),
        }
    }
}

/// Why the axon could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AxonError {
    /// The node URL is not http(s).
    #[error("node URL {0:?} is not http(s)://")]
    NodeUrl(String),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(#[source] reqwest::Error),
}

struct Axon {
    config: AxonConfig,
    account: AccountId,
    nonces: NonceStore,
    http: reqwest::Client,
}

/// The axon's routes (`POST /TeeAttestation`, `POST /TeeInference`, `POST /TeeCompletion`,
/// `POST /TeeChatCompletion`, `GET /healthz`), to be served by the
/// node's accept loop (`attesta_node::server::serve`) or any axum server.
pub fn router(config: AxonConfig) -> Result<Router, AxonError> {
    if !(config.node.starts_with("http://") || config.node.starts_with("https://")) {
        return Err(AxonError::NodeUrl(config.node.clone()));
    }
    let http = reqwest::Client::builder()
        .timeout(config.node_timeout)
        .build()
        .map_err(AxonError::Http)?;
    let limit = config.max_body_bytes;
    let axon = Arc::new(Axon {
        account: config.hotkey.account(),
        nonces: NonceStore::new(config.nonces.clone()),
        config,
        http,
    });
    Ok(Router::new()
        .route("/healthz", axum::routing::get(healthz))
        .route("/{synapse}", post(handle))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(axon))
}

/// A refusal: status, stable code, message.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: String,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

fn bad(code: &str, message: impl Into<String>) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, code, message)
}

fn unauthorized(code: &str, message: impl Into<String>) -> Refusal {
    Refusal::new(StatusCode::UNAUTHORIZED, code, message)
}

/// Liveness of the axon process itself (not of the node behind it).
async fn healthz() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

async fn not_found() -> Response {
    respond_refusal(
        Refusal::new(
            StatusCode::NOT_FOUND,
            "unknown_synapse",
            "no such synapse; available: TeeAttestation, TeeInference, TeeCompletion, TeeChatCompletion",
        ),
        None,
        Instant::now(),
    )
}

/// The dendrite's headers, parsed.
struct Call {
    caller: AccountId,
    nonce: u64,
    uuid: String,
    signature: Signature,
    body_hash: String,
    timeout: Option<f64>,
    version: Option<u64>,
    ip: Option<String>,
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Refusal> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(|s| Some(s.trim())).map_err(|_| {
            bad(
                "invalid_header",
                format!("header {name} is not visible ASCII"),
            )
        }),
    }
}

fn required<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, Refusal> {
    text(headers, name)?.ok_or_else(|| bad("invalid_header", format!("missing header {name}")))
}

fn parse_call(headers: &HeaderMap, axon: &AccountId) -> Result<Call, Refusal> {
    let caller = required(headers, h::DENDRITE_HOTKEY)?;
    let caller = AccountId::from_ss58(caller)
        .map_err(|e| bad("invalid_header", format!("{}: {e}", h::DENDRITE_HOTKEY)))?;
    let nonce = required(headers, h::DENDRITE_NONCE)?
        .parse::<u64>()
        .map_err(|_| {
            bad(
                "invalid_header",
                format!("{} is not an integer", h::DENDRITE_NONCE),
            )
        })?;
    let uuid = required(headers, h::DENDRITE_UUID)?;
    if uuid.is_empty() || uuid.len() > 128 || !uuid.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(
            "invalid_header",
            format!(
                "{} must be 1..=128 visible ASCII characters",
                h::DENDRITE_UUID
            ),
        ));
    }
    let signature = match text(headers, h::DENDRITE_SIGNATURE)? {
        None | Some("") => return Err(unauthorized("missing_signature", "missing signature")),
        Some(s) => Signature::from_header(s).map_err(|e| bad("invalid_header", e.to_string()))?,
    };
    if let Some(addressed) = text(headers, h::AXON_HOTKEY)?
        && addressed != axon.to_ss58()
    {
        return Err(unauthorized(
            "wrong_axon_hotkey",
            format!("this axon's hotkey is {axon}, not {addressed}"),
        ));
    }
    let body_hash = required(headers, h::COMPUTED_BODY_HASH)?.to_ascii_lowercase();
    let timeout = match text(headers, h::TIMEOUT)? {
        None => None,
        Some(t) => Some(
            t.parse::<f64>()
                .ok()
                .filter(|t| t.is_finite() && *t >= 0.0)
                .ok_or_else(|| bad("invalid_header", "timeout is not a non-negative number"))?,
        ),
    };
    let version = match text(headers, h::DENDRITE_VERSION)? {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| bad("invalid_header", "version is not an integer"))?,
        ),
    };
    let ip = text(headers, h::DENDRITE_IP)?
        .filter(|ip| ip.len() <= 64)
        .map(str::to_owned);
    Ok(Call {
        caller,
        nonce,
        uuid: uuid.to_owned(),
        signature,
        body_hash,
        timeout,
        version,
        ip,
    })
}

fn nonce_refusal(e: NonceError) -> Refusal {
    let code = match e {
        NonceError::Stale { .. } => "stale_nonce",
        NonceError::Future { .. } => "future_nonce",
        NonceError::NotIncreasing { .. } => "replayed_nonce",
        NonceError::Full => {
            return Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "nonce_store_full",
                e.to_string(),
            );
        }
    };
    unauthorized(code, e.to_string())
}

async fn handle(
    State(axon): State<Arc<Axon>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let Some(synapse) = Synapse::from_name(&name) else {
        return not_found().await;
    };
    match serve(&axon, synapse, &headers, &body).await {
        Ok((call, fields, out)) => respond_ok(&axon, synapse, &call, fields, out, started),
        Err(r) => respond_refusal(r, Some(&axon.account), started),
    }
}

/// Checks a call and relays it; returns the call, the request fields and the response fields.
async fn serve(
    axon: &Axon,
    synapse: Synapse,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Call, Map<String, Value>, Map<String, Value>), Refusal> {
    let call = parse_call(headers, &axon.account)?;
    if !axon.config.policy.allows(&call.caller) {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "caller_not_allowed",
            format!(
                "Forbidden. Key is blacklisted: {} is not an allowed caller",
                call.caller
            ),
        ));
    }
    let now = (axon.config.clock)();
    axon.nonces
        .check_fresh(call.nonce, call.timeout, now)
        .map_err(nonce_refusal)?;
    let fields: Map<String, Value> = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(bad("invalid_synapse", "the body is not a JSON object")),
        Err(e) => {
            return Err(bad(
                "invalid_synapse",
                format!(
                    "the body is not JSON (line {} column {})",
                    e.line(),
                    e.column()
                ),
            ));
        }
    };
    let field = synapse.hashed_field();
    let value = match fields.get(field) {
        Some(Value::String(s)) => s.as_str(),
        _ => {
            return Err(bad(
                "invalid_synapse",
                format!("{} needs `{field}` as a string", synapse.name()),
            ));
        }
    };
    let computed = synapse.body_hash(value);
    if computed != call.body_hash {
        return Err(bad(
            "body_hash_mismatch",
            "computed_body_hash does not match the body",
        ));
    }
    let message = signed_message(
        call.nonce,
        &call.caller,
        &axon.account,
        &call.uuid,
        &computed,
    );
    keys::verify(&call.caller, message.as_bytes(), &call.signature)
        .map_err(|_| unauthorized("bad_signature", "the signature does not verify"))?;
    axon.nonces
        .accept(&call.caller, &call.uuid, call.nonce, call.timeout, now)
        .map_err(nonce_refusal)?;
    let value = value.to_owned();
    let out = match synapse {
        Synapse::TeeAttestation => relay_attestation(axon, &value).await?,
        Synapse::TeeInference => relay_inference(axon, &value).await?,
        Synapse::TeeCompletion | Synapse::TeeChatCompletion => {
            let route = synapse.completion_route().unwrap_or("/v1/completions");
            relay_completion(axon, route, &value).await?
        }
    };
    Ok((call, fields, out))
}

fn node_failure(e: reqwest::Error) -> Refusal {
    if e.is_timeout() {
        Refusal::new(
            StatusCode::GATEWAY_TIMEOUT,
            "node_timeout",
            "the node did not answer in time",
        )
    } else {
        Refusal::new(
            StatusCode::BAD_GATEWAY,
            "node_unreachable",
            format!("the node could not be reached: {e}"),
        )
    }
}

/// The node's plaintext refusal, passed on with its status, code and message.
fn node_refusal(status: u16, body: &[u8]) -> Refusal {
    let status = StatusCode::from_u16(status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let err = parsed.as_ref().and_then(|v| v.get("error"));
    let code = err
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .filter(|c| c.len() <= 64)
        .unwrap_or("node_error");
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(|m| m.chars().take(512).collect::<String>())
        .unwrap_or_else(|| "the node refused the request".into());
    Refusal::new(status, code, message)
}

async fn relay_attestation(axon: &Axon, nonce: &str) -> Result<Map<String, Value>, Refusal> {
    let valid = nonce.len().is_multiple_of(2)
        && (32..=128).contains(&nonce.len())
        && nonce.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return Err(bad("invalid_nonce", "nonce must be hex of 16..=64 bytes"));
    }
    let url = format!("{}/v1/attestation?nonce={nonce}", axon.config.node);
    let resp = axon.http.get(&url).send().await.map_err(node_failure)?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(node_failure)?;
    if status != 200 {
        return Err(node_refusal(status, &body));
    }
    let att: Value = serde_json::from_slice(&body).map_err(|_| {
        Refusal::new(
            StatusCode::BAD_GATEWAY,
            "node_error",
            "the node's attestation is not JSON",
        )
    })?;
    let mut out = Map::new();
    for key in ["platform", "evidence", "keyset"] {
        // Relayed as they are: the evidence, not this host, is what a validator trusts.
        out.insert(key.into(), att.get(key).cloned().unwrap_or(Value::Null));
    }
    Ok(out)
}

async fn relay_inference(axon: &Axon, sealed: &str) -> Result<Map<String, Value>, Refusal> {
    let envelope = B64
        .decode(sealed.trim())
        .map_err(|_| bad("invalid_sealed_request", "sealed_request is not base64"))?;
    let resp = axon
        .http
        .post(format!("{}/v1/infer", axon.config.node))
        .header(header::CONTENT_TYPE, SEALED_MEDIA_TYPE)
        .header(header::ACCEPT, SEALED_MEDIA_TYPE)
        .body(envelope)
        .send()
        .await
        .map_err(node_failure)?;
    let status = resp.status().as_u16();
    let is_sealed = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(SEALED_MEDIA_TYPE));
    let body = resp.bytes().await.map_err(node_failure)?;
    if !is_sealed {
        return Err(node_refusal(status, &body));
    }
    let mut out = Map::new();
    out.insert("sealed_response".into(), Value::String(B64.encode(&body)));
    Ok(out)
}

async fn relay_completion(
    axon: &Axon,
    route: &str,
    sealed: &str,
) -> Result<Map<String, Value>, Refusal> {
    let envelope = B64
        .decode(sealed.trim())
        .map_err(|_| bad("invalid_sealed_request", "sealed_request is not base64"))?;
    let resp = axon
        .http
        .post(format!("{}{route}", axon.config.node))
        .header(header::CONTENT_TYPE, SEALED_MEDIA_TYPE)
        .header(header::ACCEPT, SEALED_STREAM_MEDIA_TYPE)
        .body(envelope)
        .send()
        .await
        .map_err(node_failure)?;
    let status = resp.status().as_u16();
    let media_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    // A synapse answers once: the stream is read to its end, bounded, before answering.
    let limit = axon.config.max_stream_bytes;
    let mut body = Vec::new();
    let mut pieces = resp.bytes_stream();
    while let Some(piece) = futures::StreamExt::next(&mut pieces).await {
        let piece = piece.map_err(node_failure)?;
        if body.len().saturating_add(piece.len()) > limit {
            return Err(Refusal::new(
                StatusCode::BAD_GATEWAY,
                "stream_too_long",
                format!("the node's sealed stream exceeds {limit} bytes"),
            ));
        }
        body.extend_from_slice(&piece);
    }
    // What the body is, as the node declared it; the validator opens and checks it either way.
    let field = match media_type.as_str() {
        SEALED_STREAM_MEDIA_TYPE => "sealed_stream",
        SEALED_MEDIA_TYPE => "sealed_response",
        _ => return Err(node_refusal(status, &body)),
    };
    let mut out = Map::new();
    out.insert(field.into(), Value::String(B64.encode(&body)));
    Ok(out)
}

fn common_headers(
    resp: &mut Response,
    status: StatusCode,
    message: &str,
    started: Instant,
    axon: Option<&AccountId>,
) {
    let hs = resp.headers_mut();
    hs.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    hs.insert(h::AXON_STATUS_CODE, HeaderValue::from(status.as_u16()));
    let msg: String = message
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(512)
        .collect();
    if let Ok(v) = HeaderValue::from_str(&msg) {
        hs.insert(h::AXON_STATUS_MESSAGE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&float_repr(started.elapsed().as_secs_f64())) {
        hs.insert(h::AXON_PROCESS_TIME, v);
    }
    if let Some(a) = axon
        && let Ok(v) = HeaderValue::from_str(&a.to_ss58())
    {
        hs.insert(h::AXON_HOTKEY, v);
    }
}

fn respond_refusal(r: Refusal, axon: Option<&AccountId>, started: Instant) -> Response {
    let body = json!({
        "error": {"code": r.code, "message": r.message},
        "message": r.message,
    });
    let mut resp = (r.status, body.to_string()).into_response();
    common_headers(&mut resp, r.status, &r.message, started, axon);
    resp
}

fn respond_ok(
    axon: &Axon,
    synapse: Synapse,
    call: &Call,
    request: Map<String, Value>,
    out: Map<String, Value>,
    started: Instant,
) -> Response {
    let elapsed = started.elapsed().as_secs_f64();
    let mut body = Map::new();
    body.insert("name".into(), synapse.name().into());
    body.insert(
        "timeout".into(),
        call.timeout.map_or(Value::Null, Value::from),
    );
    body.insert("total_size".into(), 0.into());
    body.insert("header_size".into(), 0.into());
    body.insert(
        "dendrite".into(),
        json!({
            "status_code": null, "status_message": null, "process_time": null,
            "ip": call.ip, "port": null, "version": call.version, "nonce": call.nonce,
            "uuid": call.uuid, "hotkey": call.caller.to_ss58(), "signature": call.signature.to_header(),
        }),
    );
    body.insert(
        "axon".into(),
        json!({
            "status_code": 200, "status_message": "Success", "process_time": elapsed,
            "ip": null, "port": null, "version": null, "nonce": null, "uuid": null,
            "hotkey": axon.account.to_ss58(), "signature": null,
        }),
    );
    body.insert("computed_body_hash".into(), call.body_hash.clone().into());
    // The request field is echoed: a Python synapse requires it to parse the answer.
    let field = synapse.hashed_field();
    body.insert(
        field.into(),
        request.get(field).cloned().unwrap_or(Value::Null),
    );
    for key in synapse.response_fields() {
        body.insert((*key).into(), out.get(*key).cloned().unwrap_or(Value::Null));
    }
    let mut resp = (StatusCode::OK, Value::Object(body).to_string()).into_response();
    common_headers(
        &mut resp,
        StatusCode::OK,
        "Success",
        started,
        Some(&axon.account),
    );
    let hs = resp.headers_mut();
    hs.insert(h::NAME, HeaderValue::from_static(synapse.name()));
    for (name, value) in [
        (h::DENDRITE_NONCE, call.nonce.to_string()),
        (h::DENDRITE_UUID, call.uuid.clone()),
        (h::DENDRITE_HOTKEY, call.caller.to_ss58()),
        (h::COMPUTED_BODY_HASH, call.body_hash.clone()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            hs.insert(name, v);
        }
    }
    resp
}
