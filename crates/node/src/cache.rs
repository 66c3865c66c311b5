//! In-memory cache of loaded models with a byte budget, LRU eviction,
//! single-flight loading and a memory of models that failed to load.
//!
//! Single flight ([`SingleFlight::run_spawned`], the workspace's one
//! mechanism): the first request for a CID starts one load task; later
//! requests wait on its result. Each waiter waits at most the request
//! deadline; when the last one gives up before the model passed its isolated
//! probe, the task is aborted, which kills the probe process and frees its
//! load slot. Once the probe passed, the load [keeps](Keep::keep) itself and
//! runs to the end (its cost is bounded by the probe), and the model is kept
//! for the next request. The task publishes into the cache (or the failure
//! memory) itself, so a model loaded with nobody waiting is not lost.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attesta_cache::{Keep, Lru, SingleFlight, Stopped};
use attesta_content::Cid;
use attesta_engine::Engine;
use axum::http::StatusCode;

use crate::error::ApiError;
use crate::loader::{LoadError, Loader};
use crate::metrics::Metrics;
use crate::probe::ProbeReport;
use crate::source::{ModelSource, ResolveError};

/// A model ready to run, with the identity facts a response reports.
pub struct LoadedModel {
    /// Content address it was loaded by.
    pub cid: Cid,
    /// The same as text, for metrics and logs: printing a CID base-58 encodes it,
    /// which every request would otherwise pay again.
    pub cid_text: String,
    /// SHA-256 of the model file.
    pub sha256: [u8; 32],
    /// The same as lowercase hex (OpenGradient's `model_hash`).
    pub sha256_hex: String,
    /// File size in bytes.
    pub file_size: u64,
    /// What runs it: an ONNX engine's model or a language model.
    pub runnable: Runnable,
    /// Name of the engine that loaded it (recorded in receipts).
    pub engine: &'static str,
    /// That engine's version.
    pub engine_version: &'static str,
    /// Whether its runs have been short enough to skip the blocking pool.
    pub inline: crate::infer::InlineGate,
}

/// The two kinds of model a node serves, told apart by the file's first bytes.
#[derive(Clone)]
pub enum Runnable {
    /// An ONNX model on the node's ONNX engine (`/infer`, `/v1/infer`).
    Onnx(Arc<dyn attesta_engine::Model>),
    /// A GGUF language model (`/v1/completions`, `/v1/chat/completions`).
    Llm(Arc<attesta_llm::LlmModel>),
}

impl LoadedModel {
    /// The ONNX model, or 400 `model_is_llm` for a language model.
    pub fn onnx(&self) -> Result<&Arc<dyn attesta_engine::Model>, ApiError> {
        match &self.runnable {
            Runnable::Onnx(m) => Ok(m),
            Runnable::Llm(_) => Err(ApiError::bad_request(
                "model_is_llm",
                format!(
                    "model {} is a language model: use /v1/completions or /v1/chat/completions",
                    self.cid
                ),
            )),
        }
    }

    /// The language model, or 400 `model_not_llm` for an ONNX model.
    pub fn llm(&self) -> Result<&Arc<attesta_llm::LlmModel>, ApiError> {
        match &self.runnable {
            Runnable::Llm(m) => Ok(m),
            Runnable::Onnx(_) => Err(ApiError::bad_request(
                "model_not_llm",
                format!("model {} is an ONNX model, not a language model", self.cid),
            )),
        }
    }

    /// Estimated resident bytes, for the cache's budget.
    pub fn memory_estimate(&self) -> usize {
        match &self.runnable {
            Runnable::Onnx(m) => m.memory_estimate(),
            Runnable::Llm(m) => m.memory_estimate(),
        }
    }
}

/// Failed loads remembered so a hostile file is not parsed again and again.
const MAX_REMEMBERED_FAILURES: usize = 1024;

/// The result of one load, as every waiter receives it.
type Outcome = Result<Arc<LoadedModel>, ApiError>;

#[derive(Default)]
struct State {
    /// Loaded models, weighing their estimated resident bytes.
    ready: Lru<Cid, Arc<LoadedModel>>,
    /// Load verdicts, the oldest forgotten first when the memory is full.
    failed: Lru<Cid, ApiError>,
}

struct Inner {
    loader: Loader,
    budget: usize,
    wait_timeout: Duration,
    source: Arc<dyn ModelSource>,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
}

/// The cache. Cheap to share behind an `Arc`.
pub struct ModelCache {
    inner: Arc<Inner>,
    /// The load task of each CID being loaded, with the requests waiting for it.
    loads: SingleFlight<Cid, Outcome>,
}

/// A summary of one cached model for listings.
#[derive(Debug, Clone)]
pub struct CachedSummary {
    /// Content address.
    pub cid: Cid,
    /// Estimated resident bytes.
    pub bytes: usize,
}

/// Why a load task ended without a model.
enum Failure {
    /// The loader's verdict or fault: [`LoadError::is_verdict`] decides
    /// whether it is remembered.
    Load(LoadError),
    /// Anything before loading proper (resolution, reading the file):
    /// answered but not remembered.
    Other(ApiError),
}

impl ModelCache {
    /// Creates an empty cache holding at most `budget` estimated bytes of
    /// models loaded by `loader`; a request waits at most `wait_timeout`
    /// for a load.
    pub fn new(
        loader: Loader,
        budget: usize,
        wait_timeout: Duration,
        source: Arc<dyn ModelSource>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let abandoned = metrics.clone();
        let loads = SingleFlight::with_abandon_hook(move |cid: &Cid| {
            abandoned.model_load_abandoned();
            tracing::info!(model = %cid, "model load abandoned: no request waits for it");
        });
        ModelCache {
            inner: Arc::new(Inner {
                loader,
                budget,
                wait_timeout,
                source,
                metrics,
                state: Mutex::new(State::default()),
            }),
            loads,
        }
    }

    /// The engine models are loaded with.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        self.inner.loader.engine()
    }

    /// Returns the loaded model for `cid`, loading it on first use.
    /// Concurrent callers for the same CID share one load; a model that
    /// failed to load answers with the remembered error at once.
    pub async fn get(&self, cid: &Cid) -> Result<Arc<LoadedModel>, ApiError> {
        {
            let mut st = self.inner.lock();
            if let Some(model) = st.ready.get(cid).cloned() {
                drop(st);
                self.inner.metrics.cache_lookup(true);
                return Ok(model);
            }
            if let Some(err) = st.failed.peek(cid) {
                return Err(err.clone());
            }
        }
        self.inner.metrics.cache_lookup(false);
        let inner = self.inner.clone();
        let key = cid.clone();
        let load = self.loads.run_spawned(cid.clone(), move |keep| async move {
            inner.load(&key, &keep).await
        });
        // Leaving (answered, timed out, or dropped with the connection) is
        // counted by the flight; the last to leave an unkept load stops it.
        match tokio::time::timeout(self.inner.wait_timeout, load).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(Stopped)) => Err(ApiError::internal(format!(
                "loading model {cid} stopped without a result"
            ))),
            Err(_) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "model {cid} did not finish loading within {} ms",
                    self.inner.wait_timeout.as_millis()
                ),
            )),
        }
    }

    /// The loaded model for `cid` if it is in memory now (no loading).
    pub fn peek(&self, cid: &Cid) -> Option<Arc<LoadedModel>> {
        self.inner.lock().ready.peek(cid).cloned()
    }

    /// The remembered load failure of `cid`, if any.
    pub fn failure(&self, cid: &Cid) -> Option<ApiError> {
        self.inner.lock().failed.peek(cid).cloned()
    }

    /// Loads in progress now (each with at most one probe process).
    pub fn loads_in_flight(&self) -> usize {
        self.loads.len()
    }

    /// Models in memory now.
    pub fn summary(&self) -> Vec<CachedSummary> {
        let st = self.inner.lock();
        st.ready
            .iter()
            .map(|(cid, _)| CachedSummary {
                cid: cid.clone(),
                bytes: st.ready.weight(cid).unwrap_or(0),
            })
            .collect()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The body of `cid`'s load task: its outcome, published.
    async fn load(&self, cid: &Cid, keep: &Keep) -> Outcome {
        // Again: a load that ended since the request looked published here.
        {
            let st = self.lock();
            if let Some(model) = st.ready.peek(cid) {
                return Ok(model.clone());
            }
            if let Some(err) = st.failed.peek(cid) {
                return Err(err.clone());
            }
        }
        let outcome = self.fly(cid, keep).await;
        self.finish(cid, outcome)
    }

    /// Resolves, probes and loads `cid`.
    async fn fly(&self, cid: &Cid, keep: &Keep) -> Result<Arc<LoadedModel>, Failure> {
        let resolved = self
            .source
            .resolve(cid)
            .await
            .map_err(|e| Failure::Other(resolve_error(e)))?;
        let stored = resolved.stored;
        let limit = self.loader.limits().max_model_bytes;
        if stored.size > limit as u64 {
            return Err(Failure::Load(LoadError::TooLarge {
                size: stored.size,
                limit,
            }));
        }
        let bytes = tokio::fs::read(&stored.path)
            .await
            .map_err(|e| Failure::Other(ApiError::internal(format!("reading model {cid}: {e}"))))?;
        drop(resolved.guard);
        let permit = self.loader.permit().await.map_err(|e| {
            Failure::Other(ApiError::internal(format!("waiting for a load slot: {e}")))
        })?;
        self.metrics.model_load_started();
        let started = Instant::now();
        if attesta_llm::is_gguf(&bytes) {
            keep.keep();
            let llm = self
                .loader
                .load_llm(permit, bytes)
                .await
                .map_err(Failure::Load)?;
            tracing::info!(model = %cid, engine = attesta_llm::ENGINE_NAME, ms = started.elapsed().as_millis() as u64, info = ?llm.info(), "loaded language model");
            return Ok(Arc::new(LoadedModel {
                cid: cid.clone(),
                cid_text: cid.to_string(),
                sha256: stored.sha256,
                sha256_hex: hex::encode(stored.sha256),
                file_size: stored.size,
                runnable: Runnable::Llm(llm),
                engine: attesta_llm::ENGINE_NAME,
                engine_version: attesta_llm::ENGINE_VERSION,
                inline: Default::default(),
            }));
        }
        let engine = self.loader.engines().for_model(cid).clone();
        let report = self
            .loader
            .probe(engine.as_ref(), &bytes)
            .await
            .map_err(Failure::Load)?;
        if let Some(ProbeReport::Loaded {
            load_ms,
            memory_estimate,
            warmup,
            peak_rss_bytes,
        }) = &report
        {
            tracing::info!(model = %cid, load_ms, memory_estimate, ?warmup, ?peak_rss_bytes, "model passed its isolated load");
        }
        // Past the probe: finish even if every request gives up now.
        if !keep.keep() {
            return Err(Failure::Other(ApiError::internal(format!(
                "loading model {cid} was abandoned"
            ))));
        }
        let model = self
            .loader
            .load(engine.clone(), permit, bytes)
            .await
            .map_err(Failure::Load)?;
        tracing::info!(model = %cid, engine = engine.name(), ms = started.elapsed().as_millis() as u64, "loaded model");
        Ok(Arc::new(LoadedModel {
            cid: cid.clone(),
            cid_text: cid.to_string(),
            sha256: stored.sha256,
            sha256_hex: hex::encode(stored.sha256),
            file_size: stored.size,
            runnable: Runnable::Onnx(model),
            engine: engine.name(),
            engine_version: engine.version(),
            inline: Default::default(),
        }))
    }

    /// Publishes the outcome of a load: the model into the cache, or a
    /// verdict into the failure memory.
    fn finish(&self, cid: &Cid, outcome: Result<Arc<LoadedModel>, Failure>) -> Outcome {
        let mut st = self.lock();
        let outcome = match outcome {
            Ok(model) => {
                self.metrics.model_load(true);
                if !st.ready.contains_key(cid) {
                    let bytes = model.memory_estimate();
                    st.ready.insert(cid.clone(), model.clone(), bytes);
                    self.evict(&mut st, cid);
                }
                Ok(model)
            }
            Err(Failure::Load(e)) => {
                self.metrics.model_load(false);
                let remember = e.is_verdict();
                let err = load_error(cid, e);
                if remember {
                    tracing::warn!(model = %cid, error = %err.message, "model failed to load; remembered");
                    // Content is immutable: a file that failed once fails again.
                    while st.failed.len() >= MAX_REMEMBERED_FAILURES
                        && st.failed.pop_lru(|_, _| false).is_some()
                    {}
                    st.failed.insert(cid.clone(), err.clone(), 0);
                }
                Err(err)
            }
            Err(Failure::Other(err)) => Err(err),
        };
        self.metrics.cache_state(st.ready.len(), st.ready.bytes());
        outcome
    }

    /// Drops least-recently-used models until the budget holds, sparing `keep`.
    fn evict(&self, st: &mut State, keep: &Cid) {
        while st.ready.bytes() > self.budget {
            let Some((victim, _, bytes)) = st.ready.pop_lru(|c, _| c == keep) else {
                break;
            };
            tracing::info!(model = %victim, bytes, "evicted model from memory cache");
        }
    }
}

/// The wire error for a failed load: 422 for a verdict on the file, 500 for
/// a fault of the node.
fn load_error(cid: &Cid, e: LoadError) -> ApiError {
    if e.is_verdict() {
        ApiError::model_load_failed(format!("model {cid} cannot be loaded: {e}"))
    } else {
        let cause = std::error::Error::source(&e).map(|s| format!(": {s}"));
        ApiError::internal(format!(
            "loading model {cid}: {e}{}",
            cause.unwrap_or_default()
        ))
    }
}

fn resolve_error(e: ResolveError) -> ApiError {
    match e {
        ResolveError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "model_not_found", m),
        ResolveError::NotAllowed(m) => ApiError::new(StatusCode::FORBIDDEN, "model_not_allowed", m),
        ResolveError::TooLarge(m) => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "model_too_large", m)
        }
        ResolveError::Fetch(m) => ApiError::new(StatusCode::BAD_GATEWAY, "model_fetch_failed", m),
        ResolveError::Store(m) => ApiError::internal(m),
    }
}
