//! The validator as a gateway for users' requests (docs/PROTOCOL.md, "Gateway").
//!
//! Requests go to a node the validator's own rounds verified (attested, its
//! measurement accepted, scored), chosen in proportion to its score, skipping
//! nodes that just failed a user, retrying elsewhere a bounded number of times.
//!
//! - **Sealed** (the default for attesta clients): `GET /v1/route?nonce=…`
//!   answers which node to use and that node's own attestation for the
//!   client's nonce; the client verifies it, seals to the node's key set and
//!   sends `POST /v1/nodes/{id}/infer`, which is relayed as ciphertext. The
//!   gateway never sees a plaintext and is trusted only for availability.
//! - **Plaintext-compatible**: `POST /infer` takes OpenGradient's body; the
//!   gateway attests the node under the validator's policy, seals, verifies
//!   the receipt and answers the output with its proof bundle. For clients
//!   that trust the validator. The same for language models on OpenAI's own
//!   routes ([`openai`]: `/v1/chat/completions`, `/v1/completions`,
//!   `/v1/models`), so OpenAI's clients work unchanged.
//!
//! Admission ([`limits`]): API keys when configured, a token bucket per
//! client, a bound on requests in flight and waiting (429 / 503 with
//! `Retry-After`), a body size cap.

pub mod limits;
mod openai;
pub mod pick;
mod relay;

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attesta_client::{Client, ClientConfig, ClientError, RngHandle};
use attesta_evidence::{Policy, UnixTime};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::round::Clock;
use crate::runner::ValidatorRng;
use crate::status::Status;
use limits::{LimitConfig, Limiter, Refusal};
use pick::{Pick, Picker};
use relay::{NodeRelay, RelayFailure, read_capped};

/// Largest attestation answer taken from a node (evidence, certificates, collateral).
const MAX_ATTESTATION_BYTES: usize = 1 << 20;
/// Largest answer relayed from a node: a sealed envelope is at most 64 MiB (PROTOCOL.md).
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// The sealed envelopes' media type (the node's `/v1/infer`).
const SEALED: &str = attesta_seal::MEDIA_TYPE;

/// `[validator.gateway]`: serving users' requests.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Serve the gateway routes on the validator's listener.
    pub enabled: bool,
    /// Accepted API keys (`Authorization: Bearer <key>`); empty: open to everyone.
    pub api_keys: Vec<String>,
    /// Sustained requests per second per client (its API key when keys are configured, else its address).
    pub rate_per_client: f64,
    /// Requests a client may send at once.
    pub burst_per_client: u32,
    /// Requests relayed at once.
    pub max_inflight: usize,
    /// Requests waiting for a slot before 503.
    pub max_queue: usize,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Nodes tried for one request.
    pub attempts: usize,
    /// How long a node that failed a user request is skipped, in seconds.
    pub failure_cooldown_secs: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        let l = LimitConfig::default();
        GatewayConfig {
            enabled: false,
            api_keys: Vec::new(),
            rate_per_client: l.rate_per_client,
            burst_per_client: l.burst_per_client,
            max_inflight: l.max_inflight,
            max_queue: l.max_queue,
            max_body_bytes: 16 << 20,
            attempts: 3,
            failure_cooldown_secs: 30,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeResultLabels {
    node: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatusLabels {
    route: String,
    status: u16,
}

/// The gateway's Prometheus metrics (`attesta_gateway_*`).
struct GatewayMetrics {
    registry: Registry,
    requests: Family<RouteStatusLabels, Counter>,
    relayed: Family<NodeResultLabels, Counter>,
    relay_seconds: Histogram,
    traffic: Mutex<Traffic>,
}

impl GatewayMetrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("attesta_gateway");
        let requests = Family::<RouteStatusLabels, Counter>::default();
        registry.register(
            "requests",
            "Gateway requests by route and status",
            requests.clone(),
        );
        let relayed = Family::<NodeResultLabels, Counter>::default();
        registry.register(
            "relayed",
            "Requests relayed to each node, by result (ok, refused, failed)",
            relayed.clone(),
        );
        let relay_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "relay_seconds",
            "Time from relaying a request to the node's answer",
            relay_seconds.clone(),
        );
        GatewayMetrics {
            registry,
            requests,
            relayed,
            relay_seconds,
            traffic: Mutex::new(Traffic::default()),
        }
    }

    fn relayed(&self, node: &str, result: &str) {
        self.relayed
            .get_or_create(&NodeResultLabels {
                node: node.to_owned(),
                result: result.to_owned(),
            })
            .inc();
        if let Ok(mut t) = self.traffic.lock() {
            let n = t.per_node.entry(node.to_owned()).or_default();
            match result {
                "ok" => n.ok += 1,
                "refused" => n.refused += 1,
                _ => n.failed += 1,
            }
        }
    }
}

/// Requests a node served for the gateway, by result.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NodeTraffic {
    /// Answered.
    pub ok: u64,
    /// Refused as the request's fault (node verdicts such as `invalid_input`).
    pub refused: u64,
    /// Failed (unreachable, timed out, failed verification).
    pub failed: u64,
}

/// Totals for the dashboard (`GET /gateway/stats`); rates come from polling deltas.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    /// Requests answered by the gateway (all routes).
    pub requests: u64,
    /// Of those, answered with a 4xx or 5xx.
    pub errors: u64,
    /// Relays and plaintext requests per node.
    pub per_node: std::collections::BTreeMap<String, NodeTraffic>,
}

/// What the gateway needs from the validator.
pub struct GatewayParts {
    /// The board the rounds keep (who is verified, scores).
    pub status: Arc<Status>,
    /// The validator's attestation policy (plaintext mode verifies under it).
    pub policy: Policy,
    /// Per-request timeout towards nodes.
    pub node_timeout: Duration,
    /// Time source of the plaintext mode's client.
    pub clock: Arc<dyn Clock>,
    /// Randomness for node choice.
    pub rng: ValidatorRng,
    /// Randomness for the plaintext mode's nonces and HPKE keys.
    pub client_rng: RngHandle,
}

/// The gateway's state.
pub struct Gateway {
    cfg: GatewayConfig,
    parts_status: Arc<Status>,
    policy: Policy,
    node_timeout: Duration,
    clock: Arc<dyn Clock>,
    client_rng: RngHandle,
    rng: Mutex<ValidatorRng>,
    picker: Picker,
    limiter: Limiter,
    http: reqwest::Client,
    relay: NodeRelay,
    clients: Mutex<HashMap<(String, String), Arc<Client>>>,
    metrics: GatewayMetrics,
}

impl Gateway {
    /// A gateway over the validator's board.
    pub fn new(cfg: GatewayConfig, parts: GatewayParts) -> Result<Arc<Self>, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(parts.node_timeout)
            .build()?;
        let limiter = Limiter::new(LimitConfig {
            rate_per_client: cfg.rate_per_client,
            burst_per_client: cfg.burst_per_client,
            max_inflight: cfg.max_inflight,
            max_queue: cfg.max_queue,
            ..LimitConfig::default()
        });
        Ok(Arc::new(Gateway {
            picker: Picker::new(Duration::from_secs(cfg.failure_cooldown_secs)),
            limiter,
            cfg,
            parts_status: parts.status,
            policy: parts.policy,
            node_timeout: parts.node_timeout,
            clock: parts.clock,
            client_rng: parts.client_rng,
            rng: Mutex::new(parts.rng),
            relay: NodeRelay::new(http.clone(), parts.node_timeout)?,
            http,
            clients: Mutex::new(HashMap::new()),
            metrics: GatewayMetrics::new(),
        }))
    }

    /// Prometheus text of the gateway's metrics.
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.metrics.registry);
        out
    }

    fn pick(&self, tried: &BTreeSet<String>, llm: Option<&str>) -> Option<Pick> {
        let board = self.parts_status.board();
        let mut rng = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.picker
            .pick(&board, tried, Instant::now(), llm, &mut *rng)
    }

    /// Sends one request to verified nodes (serving the language model `llm` when given)
    /// in turn, at most `attempts` of them, until one answers (its pick and answer) or the
    /// failure is the request's own (the node's authenticated verdict, passed on with its
    /// status). `attempt` does the work on the picked node through the gateway's verifying
    /// client. `committed` says whether the user already got part of an answer: then a
    /// node's failure ends the request instead of trying another node, so nobody is
    /// answered twice. Feeds the picker and the per-node metrics; never looks at plaintext.
    async fn with_failover<T, Fut>(
        &self,
        llm: Option<&str>,
        committed: &(dyn Fn() -> bool + Sync),
        mut attempt: impl FnMut(Arc<Client>) -> Fut,
    ) -> Result<(Pick, T), GwError>
    where
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut tried = BTreeSet::new();
        let mut last = None;
        for _ in 0..self.cfg.attempts.max(1) {
            let Some(pick) = self.pick(&tried, llm) else {
                break;
            };
            tried.insert(pick.id.clone());
            let client = self
                .client_for(&pick)
                .map_err(|e| GwError::new(500, "client", e.to_string()))?;
            let started = Instant::now();
            let e = match attempt(Arc::clone(&client)).await {
                Ok(answer) => {
                    self.picker.succeeded(&pick.id);
                    self.metrics.relayed(&pick.id, "ok");
                    self.metrics
                        .relay_seconds
                        .observe(started.elapsed().as_secs_f64());
                    return Ok((pick, answer));
                }
                Err(e) => e,
            };
            // The node's authenticated verdict that the request itself is at fault (unknown
            // model, bad inputs, context overflow): the same on any node, so it is the answer.
            if let Some(verdict) = request_fault(&e) {
                self.picker.succeeded(&pick.id);
                self.metrics.relayed(&pick.id, "refused");
                return Err(verdict);
            }
            if let ClientError::InvalidInput(m) = e {
                return Err(GwError::new(400, "invalid_input", m));
            }
            tracing::warn!(node = %pick.id, error = %e, "gateway: node failed a user request");
            self.picker.failed(&pick.id, Instant::now());
            self.metrics.relayed(&pick.id, "failed");
            client.forget_node();
            if committed() {
                return Err(GwError::new(
                    502,
                    "answer_not_verified",
                    format!(
                        "node `{}` failed after its answer began ({}); the partial answer is not verified",
                        pick.id,
                        e.code()
                    ),
                ));
            }
            last = Some(format!("{}: {}", pick.id, e.code()));
        }
        Err(GwError {
            retry_after: Some(Duration::from_secs(5)),
            ..GwError::new(
                503,
                "no_node_available",
                match last {
                    Some(l) => format!("no verified node answered (last: {l})"),
                    None => "no verified node is available".to_owned(),
                },
            )
        })
    }

    fn node_url(&self, id: &str) -> Option<String> {
        self.parts_status.node_url(id)
    }

    /// Authentication and per-client rate: the client key on success.
    fn check_client(&self, headers: &HeaderMap, peer: SocketAddr) -> Result<String, GwError> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let client = if self.cfg.api_keys.is_empty() {
            // An open gateway keys by address only: a bearer nobody issued must not mint a
            // fresh bucket per request.
            peer.ip().to_string()
        } else {
            match bearer {
                Some(k) if self.cfg.api_keys.iter().any(|a| constant_eq(a, k)) => {
                    format!("key:{k}")
                }
                Some(_) => {
                    return Err(GwError::new(
                        401,
                        "invalid_api_key",
                        "the API key is not accepted",
                    ));
                }
                None => {
                    return Err(GwError::new(
                        401,
                        "missing_api_key",
                        "this gateway needs `Authorization: Bearer <API key>`",
                    ));
                }
            }
        };
        self.limiter
            .check_rate(&client, Instant::now())
            .map_err(GwError::refused)?;
        Ok(client)
    }

    fn client_for(&self, pick: &Pick) -> Result<Arc<Client>, ClientError> {
        let key = (pick.id.clone(), pick.url.clone());
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = clients.get(&key) {
            return Ok(Arc::clone(c));
        }
        let clock = Arc::clone(&self.clock);
        let config = ClientConfig {
            policy: self.policy.clone(),
            key_cache_ttl: Duration::from_secs(60),
            timeout: self.node_timeout,
            nonce_len: 32,
            clock: Arc::new(move || UnixTime::from_system(clock.now())),
            rng: Arc::clone(&self.client_rng),
        };
        let client = Arc::new(Client::new(&pick.url, config)?);
        // Nodes come and go with the registry; the map is bounded by it.
        if clients.len() > 4096 {
            clients.clear();
        }
        clients.insert(key, Arc::clone(&client));
        Ok(client)
    }
}

fn constant_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// A gateway refusal: HTTP status, stable code (the gateway's own, or a node's verdict
/// passed on), message, and `Retry-After` when it helps.
#[derive(Debug)]
struct GwError {
    status: u16,
    code: Cow<'static, str>,
    message: String,
    retry_after: Option<Duration>,
}

impl GwError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        GwError {
            status,
            code: Cow::Borrowed(code),
            message: message.into(),
            retry_after: None,
        }
    }

    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// `self` as a response with `body`, `Retry-After` included.
    fn respond_with(&self, body: Vec<u8>) -> Response {
        let mut resp = (
            self.status(),
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }

    fn refused(r: Refusal) -> Self {
        match r {
            Refusal::RateLimited(wait) => GwError {
                retry_after: Some(wait),
                ..GwError::new(429, "rate_limited", "too many requests from this client")
            },
            Refusal::Overloaded(wait) => GwError {
                retry_after: Some(wait),
                ..GwError::new(503, "overloaded", "the gateway is at capacity")
            },
        }
    }
}

impl IntoResponse for GwError {
    fn into_response(self) -> Response {
        let body = attesta_seal::plaintext::ErrorBody {
            code: self.code.clone().into_owned(),
            message: self.message.clone(),
        }
        .to_json();
        self.respond_with(body)
    }
}

/// A body that could not be read: over the cap (413) or broken off (400), as JSON.
fn body_error(e: &BytesRejection) -> GwError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        GwError::new(
            413,
            "body_too_large",
            "the request body is over the gateway's limit",
        )
    } else {
        GwError::new(400, "bad_body", e.body_text())
    }
}

/// The gateway's routes (merge them into the validator's router).
pub fn router(gw: Arc<Gateway>) -> Router {
    let limit = gw.cfg.max_body_bytes;
    Router::new()
        .route("/v1/route", get(route))
        .route("/v1/nodes/{id}/infer", post(relay))
        .route("/v1/nodes/{id}/v1/completions", post(relay_completions))
        .route("/v1/nodes/{id}/v1/chat/completions", post(relay_chat))
        .route("/infer", post(plaintext_infer))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/models", get(openai::models))
        .route("/gateway/metrics", get(metrics))
        .route("/gateway/stats", get(stats))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(gw)
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        gw.render_metrics(),
    )
}

fn count(gw: &Gateway, route: &str, resp: &Response) {
    let status = resp.status().as_u16();
    gw.metrics
        .requests
        .get_or_create(&RouteStatusLabels {
            route: route.to_owned(),
            status,
        })
        .inc();
    if let Ok(mut t) = gw.metrics.traffic.lock() {
        t.requests += 1;
        if status >= 400 {
            t.errors += 1;
        }
    }
}

async fn stats(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    let traffic = gw
        .metrics
        .traffic
        .lock()
        .map(|t| t.clone())
        .unwrap_or_default();
    let mut v = serde_json::to_value(traffic).unwrap_or_default();
    v["enabled"] = serde_json::Value::Bool(true);
    axum::Json(v)
}

/// The `nonce` (hex, 16..=64 bytes) and optional `model` of a route request.
fn route_query(query: Option<&str>) -> Result<(String, Option<String>), GwError> {
    let mut nonce = None;
    let mut model = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("nonce", v)) => nonce = Some(v.to_owned()),
            Some(("model", v)) => model = Some(v.to_owned()),
            _ => {}
        }
    }
    let nonce = nonce.ok_or_else(|| {
        GwError::new(
            400,
            "invalid_nonce",
            "`nonce` (hex, 16..=64 bytes) is required",
        )
    })?;
    let ok = hex::decode(&nonce).is_ok_and(|b| (16..=64).contains(&b.len()));
    if !ok {
        return Err(GwError::new(
            400,
            "invalid_nonce",
            "`nonce` must be 16..=64 bytes (32..=128 hex characters)",
        ));
    }
    if let Some(m) = &model
        && m.parse::<attesta_content::Cid>().is_err()
    {
        return Err(GwError::new(
            400,
            "invalid_model",
            format!("`model` {m:?} is not a CID"),
        ));
    }
    Ok((nonce, model))
}

/// `GET /v1/route?nonce=<hex>[&model=<cid>]`: a verified node and its attestation for this nonce.
async fn route(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let resp = route_inner(&gw, peer, &headers, query.as_deref())
        .await
        .unwrap_or_else(IntoResponse::into_response);
    count(&gw, "route", &resp);
    resp
}

async fn route_inner(
    gw: &Gateway,
    peer: SocketAddr,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response, GwError> {
    gw.check_client(headers, peer)?;
    let (nonce, _model) = route_query(query)?;
    let _slot = gw.limiter.admit().await.map_err(GwError::refused)?;
    let mut tried = BTreeSet::new();
    for _ in 0..gw.cfg.attempts.max(1) {
        let Some(pick) = gw.pick(&tried, None) else {
            break;
        };
        tried.insert(pick.id.clone());
        let url = format!(
            "{}/v1/attestation?nonce={nonce}",
            pick.url.trim_end_matches('/')
        );
        let answer = match gw.http.get(&url).send().await {
            Ok(r) if r.status().is_success() => read_capped(r, MAX_ATTESTATION_BYTES)
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()),
            _ => None,
        };
        match answer {
            Some(attestation) => {
                gw.picker.succeeded(&pick.id);
                let body = serde_json::json!({
                    "node": {"id": pick.id, "url": pick.url, "insecure": pick.insecure},
                    "attestation": attestation,
                });
                return Ok(axum::Json(body).into_response());
            }
            None => {
                tracing::warn!(node = %pick.id, "gateway: attestation for a route failed");
                gw.picker.failed(&pick.id, Instant::now());
            }
        }
    }
    Err(GwError {
        retry_after: Some(Duration::from_secs(5)),
        ..GwError::new(
            503,
            "no_node_available",
            "no verified node answered; retry later",
        )
    })
}

/// What a relay route forwards to: the node's `/v1/infer` (one sealed answer, read under
/// the cap) or one of its language-model routes (a sealed stream, passed on as it arrives).
#[derive(Clone, Copy)]
enum RelayRoute {
    Infer,
    Stream(&'static str),
}

/// `POST /v1/nodes/{id}/infer`: the sealed envelope relayed to that node, its answer back verbatim.
async fn relay(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    relay_to(gw, peer, id, headers, body, RelayRoute::Infer).await
}

/// `POST /v1/nodes/{id}/v1/completions`: a sealed language-model request relayed to that
/// node, its sealed stream back as it arrives.
async fn relay_completions(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let route = RelayRoute::Stream("/v1/completions");
    relay_to(gw, peer, id, headers, body, route).await
}

/// `POST /v1/nodes/{id}/v1/chat/completions`: as [`relay_completions`], for chats.
async fn relay_chat(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let route = RelayRoute::Stream("/v1/chat/completions");
    relay_to(gw, peer, id, headers, body, route).await
}

async fn relay_to(
    gw: Arc<Gateway>,
    peer: SocketAddr,
    id: String,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    route: RelayRoute,
) -> Response {
    let resp = match body {
        Ok(body) => relay_inner(&gw, peer, &id, &headers, body, route).await,
        Err(e) => Err(body_error(&e)),
    }
    .unwrap_or_else(IntoResponse::into_response);
    count(&gw, "relay", &resp);
    resp
}

async fn relay_inner(
    gw: &Gateway,
    peer: SocketAddr,
    id: &str,
    headers: &HeaderMap,
    body: Bytes,
    route: RelayRoute,
) -> Result<Response, GwError> {
    gw.check_client(headers, peer)?;
    // Only nodes in the registry: the gateway never relays to an address a user names.
    let url = gw.node_url(id).ok_or_else(|| {
        GwError::new(
            404,
            "unknown_node",
            format!("no node `{id}` in the registry"),
        )
    })?;
    // Held until the answer is passed on: for a stream, until its last chunk.
    let slot = gw.limiter.admit().await.map_err(GwError::refused)?;
    let started = Instant::now();
    let answered = match route {
        RelayRoute::Infer => gw
            .relay
            .post_sealed(&url, SEALED, body, MAX_ANSWER_BYTES)
            .await
            .map(|a| (a.status, a.content_type, axum::body::Body::from(a.body))),
        RelayRoute::Stream(path) => gw
            .relay
            .open_stream(&url, path, body)
            .await
            .map(|a| (a.status, a.content_type, passed_on(a.response, slot))),
    };
    let (status, content_type, body) = answered.map_err(|e| {
        gw.picker.failed(id, Instant::now());
        gw.metrics.relayed(id, "failed");
        let (status, code, what) = match e {
            RelayFailure::Timeout => (504, "node_timeout", "did not answer"),
            RelayFailure::Unreachable => (502, "node_unreachable", "did not answer"),
            RelayFailure::TooLarge => (502, "node_unreachable", "broke off its answer"),
        };
        GwError::new(status, code, format!("node `{id}` {what}"))
    })?;
    gw.metrics
        .relay_seconds
        .observe(started.elapsed().as_secs_f64());
    if status.is_server_error() {
        gw.picker.failed(id, Instant::now());
        gw.metrics.relayed(id, "failed");
    } else {
        gw.picker.succeeded(id);
        gw.metrics
            .relayed(id, if status.is_success() { "ok" } else { "refused" });
    }
    let mut out = (status, body).into_response();
    if let Some(ct) = content_type {
        out.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Ok(out)
}

/// A node's streamed answer as the user's body: ciphertext passed through untouched and
/// unbuffered, at most the envelope cap in all (the client opens every chunk and detects
/// any cut, so the cap or a node's failure mid-stream simply ends the body). The stream
/// owns the admission `slot`: it is released when the stream ends or the user goes away
/// (then the node's connection is dropped too, which stops its work).
fn passed_on<S: Send + 'static>(response: reqwest::Response, slot: S) -> axum::body::Body {
    let state = (Box::pin(response.bytes_stream()), 0usize, slot);
    let stream = futures::stream::unfold(state, |(mut body, sent, slot)| async move {
        let chunk = body.next().await?.ok()?;
        let sent = sent.saturating_add(chunk.len());
        (sent <= MAX_ANSWER_BYTES)
            .then_some((Ok::<Bytes, std::io::Error>(chunk), (body, sent, slot)))
    });
    axum::body::Body::from_stream(stream)
}

/// The HTTP status of a node verdict that blames the request (docs/PROTOCOL.md's error
/// table); `None` for verdicts about the node (timeout, fetch failure, internal), which the
/// gateway answers by trying another node.
fn request_fault_status(code: &str) -> Option<u16> {
    Some(match code {
        "malformed_request" | "invalid_cid" | "invalid_number" | "invalid_decimals"
        | "value_out_of_range" | "shape_mismatch" | "type_mismatch" | "unknown_input"
        | "missing_input" | "duplicate_input" | "invalid_input" => 400,
        "model_not_allowed" => 403,
        "model_not_found" => 404,
        "model_too_large" | "tensor_too_large" | "inference_too_large" => 413,
        "model_load_failed" | "inference_failed" => 422,
        // Language-model requests (the node's OpenAI routes).
        "invalid_body"
        | "invalid_request"
        | "invalid_model"
        | "model_not_llm"
        | "unsupported_parameter"
        | "context_length_exceeded"
        | "max_tokens_too_large"
        | "no_chat_template"
        | "chat_template_failed" => 400,
        _ => return None,
    })
}

/// A node's authenticated verdict (sealed answer or sealed stream) that blames the
/// request, as the gateway's answer with the node's code and message.
fn request_fault(e: &ClientError) -> Option<GwError> {
    let verdict = match e {
        ClientError::Answer(attesta_seal::AnswerError::Remote(r))
        | ClientError::Stream(attesta_seal::StreamError::Remote(r)) => &r.0,
        _ => return None,
    };
    let status = request_fault_status(&verdict.code)?;
    Some(GwError {
        code: Cow::Owned(verdict.code.clone()),
        ..GwError::new(status, "", verdict.message.clone())
    })
}

/// OpenGradient's `/infer` body.
#[derive(serde::Deserialize)]
struct OgRequest {
    ipfs_hash: String,
    model_inputs: Box<serde_json::value::RawValue>,
}

/// `POST /infer` (plaintext-compatible): attested, sealed and receipt-checked by the gateway.
async fn plaintext_infer(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let resp = match body {
        Ok(body) => plaintext_inner(&gw, peer, &headers, &body).await,
        Err(e) => Err(body_error(&e)),
    }
    .unwrap_or_else(IntoResponse::into_response);
    count(&gw, "infer", &resp);
    resp
}

async fn plaintext_inner(
    gw: &Gateway,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, GwError> {
    gw.check_client(headers, peer)?;
    let req: OgRequest = serde_json::from_slice(body).map_err(|e| {
        GwError::new(
            400,
            "invalid_body",
            format!("expected {{\"ipfs_hash\", \"model_inputs\"}}: {e}"),
        )
    })?;
    let _slot = gw.limiter.admit().await.map_err(GwError::refused)?;
    let (cid, inputs) = (req.ipfs_hash.as_str(), req.model_inputs.get());
    let (pick, outcome) = gw
        .with_failover(None, &|| false, |client| async move {
            client.infer(cid, inputs).await
        })
        .await?;
    let output: serde_json::Value = serde_json::from_str(outcome.output.get())
        .map_err(|e| GwError::new(502, "bad_output", e.to_string()))?;
    let proof = serde_json::to_value(&outcome.bundle)
        .map_err(|e| GwError::new(500, "internal", format!("proof bundle: {e}")))?;
    let answer = serde_json::json!({
        "output": output,
        "model_hash": outcome.model_hash,
        "node": pick.id,
        "proof": proof,
    });
    Ok(axum::Json(answer).into_response())
}
