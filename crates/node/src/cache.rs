//! In-memory cache of loaded models with a byte budget, LRU eviction,
//! single-flight loading and a memory of models that failed to load.
//!
//! Single flight: the first request for a CID starts one load task; later
//! requests wait on its result. Each waiter waits at most the request
//! deadline; when the last one gives up before the model passed its isolated
//! probe, the task is aborted, which kills the probe process. Once the probe
//! passed, the load runs to the end (its cost is bounded by the probe) and
//! the model is kept for the next request.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attesta_cache::Lru;
use attesta_content::Cid;
use attesta_engine::Engine;
use axum::http::StatusCode;
use tokio::sync::watch;

use crate::error::ApiError;
use crate::loader::{LoadError, Loader};
use crate::metrics::Metrics;
use crate::probe::ProbeReport;
use crate::source::{ModelSource, ResolveError};

/// A model ready to run, with the identity facts a response reports.
pub struct LoadedModel {
    /// Content address it was loaded by.
    pub cid: Cid,
    /// SHA-256 of the model file.
    pub sha256: [u8; 32],
    /// The same as lowercase hex (OpenGradient's `model_hash`).
    pub sha256_hex: String,
    /// File size in bytes.
    pub file_size: u64,
    /// The engine's model.
    pub model: Arc<dyn attesta_engine::Model>,
    /// Name of the engine that loaded it (recorded in receipts).
    pub engine: &'static str,
    /// That engine's version.
    pub engine_version: &'static str,
}

/// Failed loads remembered so a hostile file is not parsed again and again.
const MAX_REMEMBERED_FAILURES: usize = 1024;

/// The result of one load, as every waiter receives it.
type Outcome = Result<Arc<LoadedModel>, ApiError>;

/// One load in progress and the requests waiting for it.
struct Flight {
    /// Tells this flight from a later one for the same CID.
    id: u64,
    waiters: usize,
    /// Set once the probe passed: from then on the load is finished and
    /// kept even if nobody waits.
    committed: bool,
    result: watch::Receiver<Option<Outcome>>,
    task: tokio::task::AbortHandle,
}

#[derive(Default)]
struct State {
    /// Loaded models, weighing their estimated resident bytes.
    ready: Lru<Cid, Arc<LoadedModel>>,
    loading: HashMap<Cid, Flight>,
    /// Load verdicts, the oldest forgotten first when the memory is full.
    failed: Lru<Cid, ApiError>,
    flights: u64,
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
        ModelCache {
            inner: Arc::new(Inner {
                loader,
                budget,
                wait_timeout,
                source,
                metrics,
                state: Mutex::new(State::default()),
            }),
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
        let (mut result, id) = {
            let mut st = self.inner.lock();
            if let Some(model) = st.ready.get(cid).cloned() {
                drop(st);
                self.inner.metrics.cache_lookup(true);
                return Ok(model);
            }
            if let Some(err) = st.failed.peek(cid) {
                return Err(err.clone());
            }
            st.flights += 1;
            let next = st.flights;
            let flight = match st.loading.entry(cid.clone()) {
                // A task that ended without publishing (it panicked) is replaced.
                Entry::Occupied(mut e) if e.get().task.is_finished() => {
                    e.insert(Inner::start(&self.inner, cid.clone(), next));
                    e.into_mut()
                }
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(v) => v.insert(Inner::start(&self.inner, cid.clone(), next)),
            };
            flight.waiters += 1;
            (flight.result.clone(), flight.id)
        };
        self.inner.metrics.cache_lookup(false);
        let _waiting = Waiter {
            inner: &self.inner,
            cid,
            id,
        };
        let waited =
            tokio::time::timeout(self.inner.wait_timeout, result.wait_for(|r| r.is_some())).await;
        match waited {
            Ok(Ok(outcome)) => match &*outcome {
                Some(r) => r.clone(),
                None => Err(ApiError::internal(format!(
                    "loading model {cid} ended without a result"
                ))),
            },
            Ok(Err(_)) => Err(ApiError::internal(format!(
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
        self.inner.lock().loading.len()
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

/// One request waiting for a flight; leaving (answered, timed out or
/// dropped with its connection) is counted, and the last to leave an
/// uncommitted flight stops it.
struct Waiter<'a> {
    inner: &'a Inner,
    cid: &'a Cid,
    id: u64,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut st = self.inner.lock();
        let Some(flight) = st.loading.get_mut(self.cid).filter(|f| f.id == self.id) else {
            return;
        };
        flight.waiters = flight.waiters.saturating_sub(1);
        if flight.waiters == 0 && !flight.committed {
            // Aborting drops the probe's child handle, which kills it, and
            // frees the load slot.
            flight.task.abort();
            st.loading.remove(self.cid);
            drop(st);
            self.inner.metrics.model_load_abandoned();
            tracing::info!(model = %self.cid, "model load abandoned: no request waits for it");
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Spawns the load task of a new flight.
    fn start(this: &Arc<Inner>, cid: Cid, id: u64) -> Flight {
        let (tx, rx) = watch::channel(None);
        let inner = this.clone();
        let task = tokio::spawn(async move {
            let outcome = inner.fly(&cid, id).await;
            let outcome = inner.finish(&cid, id, outcome);
            // No receiver left only when every waiter is gone; nothing to tell.
            let _ = tx.send(Some(outcome));
        });
        Flight {
            id,
            waiters: 0,
            committed: false,
            result: rx,
            task: task.abort_handle(),
        }
    }

    /// Resolves, probes and loads `cid`.
    async fn fly(&self, cid: &Cid, id: u64) -> Result<Arc<LoadedModel>, Failure> {
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
        if !self.commit(cid, id) {
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
            sha256: stored.sha256,
            sha256_hex: hex::encode(stored.sha256),
            file_size: stored.size,
            model,
            engine: engine.name(),
            engine_version: engine.version(),
        }))
    }

    /// Marks flight `id` as past its probe; false when it was abandoned.
    fn commit(&self, cid: &Cid, id: u64) -> bool {
        let mut st = self.lock();
        match st.loading.get_mut(cid).filter(|f| f.id == id) {
            Some(f) => {
                f.committed = true;
                true
            }
            None => false,
        }
    }

    /// Publishes the outcome of flight `id`: the model into the cache, or a
    /// verdict into the failure memory.
    fn finish(&self, cid: &Cid, id: u64, outcome: Result<Arc<LoadedModel>, Failure>) -> Outcome {
        let mut st = self.lock();
        if st.loading.get(cid).is_some_and(|f| f.id == id) {
            st.loading.remove(cid);
        }
        let outcome = match outcome {
            Ok(model) => {
                self.metrics.model_load(true);
                if !st.ready.contains_key(cid) {
                    let bytes = model.model.memory_estimate();
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
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "model_load_failed",
            format!("model {cid} cannot be loaded: {e}"),
        )
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
