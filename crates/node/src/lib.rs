//! The attesta node: an HTTP service that runs ONNX models by content address.
//!
//! Routes: `POST /infer` (OpenGradient's format), `POST /v1/infer` (the sealed
//! channel), `GET /v1/attestation`, `GET /enclave/attestation`, `GET /v1/models`,
//! `GET /healthz`, `GET /metrics`. Every error is a JSON body
//! `{"error": {"code", "message"}}`.
//!
//! [`Node::build`] assembles the whole service from a [`NodeConfig`] and the
//! [`NodeParts`] an operator chooses; [`Node::serve`] runs it on a listener with
//! the limits of [`server`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use attesta_attester::Attester;
use attesta_content::fetch::Fetcher;
use attesta_content::store::ModelStore;
use attesta_engine::{Engine, Limits};
use attesta_seal::{NodeKeys, ReplayConfig, ReplayGuard};
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

pub mod attested;
pub mod budget;
pub mod cache;
pub mod endorse;
pub mod error;
pub mod fault;
pub mod fetching;
pub mod infer;
pub mod llm;
pub mod loader;
pub mod media;
pub mod metrics;
pub mod probe;
pub mod proxy;
pub mod server;
pub mod source;
pub mod transport;

use cache::ModelCache;
use error::ApiError;
use fetching::{FetchMetrics, FetchPlan, FetchingSource};
use infer::Executor;
use metrics::Metrics;
use source::{LocalStore, ModelSource};

/// Tunables of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Address to listen on: TCP, vsock (inside a Nitro enclave) or a Unix socket.
    pub listen: transport::Addr,
    /// Byte budget of the in-memory model cache.
    pub cache_bytes: usize,
    /// Inferences that may run at once.
    pub workers: usize,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Deadline for one inference, queueing included.
    pub request_timeout: Duration,
    /// Caps applied to untrusted model files.
    pub limits: Limits,
    /// Header, body and idle timeouts and the connection cap of the HTTP surface.
    pub http: server::HttpLimits,
    /// Accepted clock difference for sealed requests (and how long they are remembered).
    pub replay_window: Duration,
    /// Deliberate misbehaviour (devnet demos only; see [`fault::ActiveFault`]).
    pub fault: Option<fault::ActiveFault>,
    /// Time and memory budget, isolation and concurrency of model loads.
    pub loading: loader::LoadConfig,
    /// Memory budget of the inferences in flight, in bytes (language models charge their
    /// KV cache against it).
    pub inflight_bytes: usize,
    /// Most tokens one language-model request may generate.
    pub max_completion_tokens: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)).into(),
            cache_bytes: 2 << 30,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_body_bytes: 16 << 20,
            request_timeout: Duration::from_secs(30),
            limits: Limits::default(),
            http: server::HttpLimits::default(),
            replay_window: attesta_seal::replay::DEFAULT_MAX_AGE,
            fault: None,
            loading: loader::LoadConfig::default(),
            inflight_bytes: infer::DEFAULT_INFLIGHT_BYTES,
            max_completion_tokens: llm::DEFAULT_MAX_COMPLETION_TOKENS,
        }
    }
}

/// What a node is built from besides its tunables: the pieces an operator chooses.
pub struct NodeParts {
    /// The inference backend.
    pub engine: Arc<dyn Engine>,
    /// Models loaded with another engine than `engine` (config overrides).
    pub engine_overrides: Vec<(attesta_content::Cid, Arc<dyn Engine>)>,
    /// The on-disk model store.
    pub store: ModelStore,
    /// Gateways and policy for unknown CIDs; `None` serves the store only.
    pub fetch: Option<FetchPlan>,
    /// Evidence producer; `None` runs without a TEE (no attestation routes, no sealed channel).
    pub attester: Option<Arc<dyn Attester>>,
    /// Fetches the DCAP collateral / SNP certificates a hardware attester does not supply;
    /// `None` serves evidence with only what the attester gave.
    pub endorser: Option<endorse::Endorser>,
    /// Time source of the sealed channel (replay windows, receipts).
    pub clock: attested::Clock,
    /// Randomness of the sealed answers' response nonces.
    pub rng: attested::Rng,
}

impl NodeParts {
    /// Parts for a store-only node without a TEE, on the system clock.
    pub fn new(engine: Arc<dyn Engine>, store: ModelStore) -> Self {
        NodeParts {
            engine,
            engine_overrides: Vec::new(),
            store,
            fetch: None,
            attester: None,
            endorser: None,
            clock: system_clock(),
            rng: system_rng(),
        }
    }
}

/// Unix time from the system clock, for [`NodeParts::clock`].
pub fn system_clock() -> attested::Clock {
    Arc::new(|| attesta_seal::UnixTime::from_system(std::time::SystemTime::now()))
}

/// The operating system's CSPRNG, for [`NodeParts::rng`].
pub fn system_rng() -> attested::Rng {
    Arc::new(std::sync::Mutex::new(rand_core::UnwrapErr(
        getrandom::SysRng,
    )))
}

/// A fully assembled node, ready to serve.
pub struct Node {
    config: NodeConfig,
    state: Arc<AppState>,
    app: Router,
}

impl Node {
    /// Builds the whole service: metrics, the model source (store, or store then gateways),
    /// the cache, the executor, a fresh in-memory key set and replay memory when an attester
    /// is given, and the routes.
    pub fn build(config: NodeConfig, parts: NodeParts) -> Node {
        let metrics = Arc::new(Metrics::new());
        let source: Arc<dyn ModelSource> = match parts.fetch {
            None => Arc::new(LocalStore::new(parts.store.clone())),
            Some(plan) => {
                let mut gateways = plan.gateways;
                gateways.max_model_bytes = config.limits.max_model_bytes as u64;
                tracing::info!(gateways = ?gateways.urls, policy = ?plan.policy, "fetching unknown models from IPFS");
                let observer = Arc::new(FetchMetrics::register(&metrics));
                let fetcher = Fetcher::new(gateways, parts.store.clone()).with_observer(observer);
                Arc::new(FetchingSource::new(
                    parts.store.clone(),
                    fetcher,
                    plan.policy,
                ))
            }
        };
        let engines = parts
            .engine_overrides
            .into_iter()
            .fold(loader::Engines::new(parts.engine), |e, (cid, engine)| {
                e.with_override(cid, engine)
            });
        let mut state =
            AppState::with_engines(&config, engines, parts.store, source, metrics.clone());
        if let Some(attester) = parts.attester {
            // Fresh keys from the OS on every start: they exist only in this process.
            let keys = NodeKeys::generate(&mut rand_core::UnwrapErr(getrandom::SysRng));
            tracing::info!(tee = %attester.platform(), keyset_digest = %hex::encode(keys.keyset_digest()), "key set ready");
            state = state.with_attestation(attested::Attestation {
                keys,
                attester,
                endorser: parts.endorser.map(|e| Arc::new(e.register(&metrics))),
                replay: ReplayGuard::new(ReplayConfig {
                    max_age: config.replay_window,
                    ..ReplayConfig::default()
                }),
                clock: parts.clock,
                rng: parts.rng,
            });
        }
        let state = Arc::new(state);
        let app = router(state.clone(), &config);
        Node { config, state, app }
    }

    /// The shared state (cache, metrics, store) behind the routes.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// The configuration the node was built with.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The routes, for serving on a listener of one's own or for calling in-process.
    pub fn router(&self) -> Router {
        self.app.clone()
    }

    /// Binds [`NodeConfig::listen`].
    pub async fn bind(&self) -> std::io::Result<transport::Listener> {
        transport::Listener::bind(&self.config.listen).await
    }

    /// Serves on `listener` (a [`transport::Listener`] or a plain TCP listener) until
    /// `shutdown` resolves, then lets in-flight requests finish within the configured grace
    /// period.
    pub async fn serve(
        self,
        listener: impl Into<transport::Listener>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let metrics = server::ConnectionMetrics::register(&self.state.metrics);
        server::serve(
            listener.into(),
            self.app,
            self.config.http,
            metrics,
            shutdown,
        )
        .await
    }
}

/// Shared state of the HTTP handlers.
pub struct AppState {
    /// Loaded models.
    pub cache: ModelCache,
    /// Inference slots.
    pub executor: Executor,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// The on-disk store, for listings.
    pub store: ModelStore,
    /// Deliberate misbehaviour, if the operator asked for it (read through [`AppState::fault`]).
    insecure_fault: Option<fault::ActiveFault>,
    /// Key set and evidence producer (`None` when the node runs without a TEE).
    pub attestation: Option<attested::Attestation>,
    /// Limits and metrics of the language-model routes.
    pub llm: llm::LlmState,
    started: Instant,
}

impl AppState {
    /// Enables attestation and the sealed channel.
    pub fn with_attestation(mut self, attestation: attested::Attestation) -> Self {
        self.attestation = Some(attestation);
        self
    }

    /// The deadline of one request (queueing included).
    pub fn executor_timeout(&self) -> Duration {
        self.executor.timeout()
    }

    /// The fault to apply now: `None` unless the configured fault is bound to
    /// this node's attestation (see [`fault::ActiveFault::effective`]).
    pub fn fault(&self) -> Option<fault::Fault> {
        let attester = self.attestation.as_ref().map(|a| &a.attester);
        self.insecure_fault.as_ref()?.effective(attester)
    }

    /// Wires a node together.
    pub fn new(
        config: &NodeConfig,
        engine: Arc<dyn Engine>,
        store: ModelStore,
        source: Arc<dyn ModelSource>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self::with_engines(config, loader::Engines::new(engine), store, source, metrics)
    }

    /// Wires a node together whose engine may differ per model.
    pub fn with_engines(
        config: &NodeConfig,
        engines: loader::Engines,
        store: ModelStore,
        source: Arc<dyn ModelSource>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let executor = Executor::new(config.workers, config.request_timeout)
            .with_inflight_bytes(config.inflight_bytes);
        executor.placements().register(&metrics);
        AppState {
            cache: ModelCache::new(
                loader::Loader::with_engines(
                    engines,
                    config.limits.clone(),
                    config.loading.clone(),
                ),
                config.cache_bytes,
                config.request_timeout,
                source,
                metrics.clone(),
            ),
            executor,
            llm: llm::LlmState::new(
                config.max_completion_tokens,
                // Chat templates are isolated as models are: in a child process of the
                // same executable, unless loads run (insecurely) in-process.
                match &config.loading.isolation {
                    loader::Isolation::Process(cmd) => {
                        llm::template_sandbox::RenderIsolation::Process {
                            program: cmd.program.clone(),
                            max_memory: llm::template_sandbox::DEFAULT_RENDER_MEMORY,
                        }
                    }
                    loader::Isolation::InsecureInProcess => {
                        llm::template_sandbox::RenderIsolation::InsecureInProcess
                    }
                },
                &metrics,
            ),
            metrics,
            store,
            insecure_fault: config.fault.clone(),
            attestation: None,
            started: Instant::now(),
        }
    }
}

/// The node's router.
pub fn router(state: Arc<AppState>, config: &NodeConfig) -> Router {
    Router::new()
        .route(
            "/infer",
            post(infer::infer).route_layer(middleware::from_fn(media::require_json)),
        )
        .route(
            "/v1/infer",
            post(attested::infer).route_layer(middleware::from_fn(media::require_sealed)),
        )
        .route("/v1/attestation", get(attested::v1))
        .route("/enclave/attestation", get(attested::nitriding))
        .route("/v1/models", get(list_models))
        // JSON or a sealed envelope (checked by the handlers).
        .route("/v1/completions", post(llm::completions))
        .route("/v1/chat/completions", post(llm::chat_completions))
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().clone();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    state.metrics.request(&route, status);
    if let Some(code) = resp.extensions().get::<error::ErrorCode>() {
        state.metrics.error(code.0);
    }
    // Per request: debug, or a busy node writes thousands of lines a second; /metrics has the totals.
    tracing::debug!(%method, route, status, us = started.elapsed().as_micros() as u64, "request");
    resp
}

async fn healthz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "status": "ok",
        "engine": state.cache.engine().name(),
        "engine_version": state.cache.engine().version(),
        "uptime_s": state.started.elapsed().as_secs(),
        "insecure_fault": state.fault().map(|f| f.to_string()),
        "tee": state.attestation.as_ref().map(|a| a.attester.platform().to_string()),
        "keyset_digest": state.attestation.as_ref().map(|a| hex::encode(a.keys.keyset_digest())),
    }))
}

async fn render_metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

#[derive(Serialize)]
struct ModelEntry {
    cid: String,
    size: u64,
    sha256: String,
    loaded: bool,
    inputs: Option<Vec<String>>,
    outputs: Option<Vec<String>>,
    /// The engine that loaded it (when loaded).
    engine: Option<&'static str>,
    /// Architecture, quantisation and context of a language model.
    #[serde(skip_serializing_if = "Option::is_none")]
    llm: Option<attesta_llm::LlmInfo>,
}

/// One language model in OpenAI's `GET /v1/models` shape (plus what a caller needs to
/// size a request).
#[derive(Serialize)]
struct OpenAiModel {
    id: String,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
    context_length: usize,
    architecture: String,
    quantisation: String,
}

async fn list_models(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let store = state.store.clone();
    // Language models are recognised by their first bytes and described from their
    // metadata (validated like a load, no weights read), off the async workers.
    let stored = tokio::task::spawn_blocking(move || {
        store.list().map(|list| {
            list.into_iter()
                .map(|m| {
                    let llm = describe_if_gguf(&m.path);
                    (m, llm)
                })
                .collect::<Vec<_>>()
        })
    })
    .await
    .map_err(|e| ApiError::internal_from("listing task failed", e))?
    .map_err(|e| ApiError::internal_from("listing the store", e))?;
    let mut data = Vec::new();
    let models: Vec<ModelEntry> = stored
        .into_iter()
        .map(|(m, llm)| {
            let loaded = state.cache.peek(&m.cid);
            let onnx = loaded.as_ref().and_then(|l| l.onnx().ok());
            let sig = |v: &[attesta_engine::TensorInfo]| v.iter().map(|t| t.signature()).collect();
            if let Some(info) = &llm {
                data.push(OpenAiModel {
                    id: m.cid.to_string(),
                    object: "model",
                    created: m
                        .added_at
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                    owned_by: "attesta",
                    context_length: info.context_length,
                    architecture: info.architecture.clone(),
                    quantisation: info.quantisation.clone(),
                });
            }
            ModelEntry {
                cid: m.cid.to_string(),
                size: m.size,
                sha256: hex::encode(m.sha256),
                loaded: loaded.is_some(),
                inputs: onnx.map(|o| sig(&o.info().inputs)),
                outputs: onnx.map(|o| sig(&o.info().outputs)),
                engine: loaded.as_ref().map(|l| l.engine),
                llm,
            }
        })
        .collect();
    // `models`: every stored model (attesta's listing); `object`/`data`: the language
    // models in OpenAI's shape, so OpenAI clients list them.
    Ok(axum::Json(
        serde_json::json!({ "models": models, "object": "list", "data": data }),
    ))
}

/// The listing facts of a stored GGUF file; None for other files and for GGUF files
/// that do not validate (they fail with a clear error when requested).
fn describe_if_gguf(path: &std::path::Path) -> Option<attesta_llm::LlmInfo> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .ok()?
        .read_exact(&mut magic)
        .ok()?;
    if !attesta_llm::is_gguf(&magic) {
        return None;
    }
    attesta_llm::describe(path)
        .inspect_err(|e| tracing::debug!(path = %path.display(), error = %e, "stored GGUF does not describe"))
        .ok()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}
