//! In-memory cache of loaded models with a byte budget, LRU eviction,
//! single-flight loading and a memory of models that failed to load.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use attesta_content::Cid;
use attesta_engine::{Engine, EngineError, Limits, Model};
use axum::http::StatusCode;
use tokio::sync::OnceCell;

use crate::error::ApiError;
use crate::metrics::Metrics;
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
    pub model: Arc<dyn Model>,
}

/// Failed loads remembered so a hostile file is not parsed again and again.
const MAX_REMEMBERED_FAILURES: usize = 1024;

type LoadCell = Arc<OnceCell<Result<Arc<LoadedModel>, ApiError>>>;

struct Ready {
    model: Arc<LoadedModel>,
    bytes: usize,
    last_used: u64,
}

#[derive(Default)]
struct State {
    ready: HashMap<Cid, Ready>,
    loading: HashMap<Cid, LoadCell>,
    failed: HashMap<Cid, ApiError>,
    bytes: usize,
    clock: u64,
}

/// The cache. Cheap to share behind an `Arc`.
pub struct ModelCache {
    engine: Arc<dyn Engine>,
    limits: Limits,
    budget: usize,
    source: Arc<dyn ModelSource>,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
}

/// A summary of one cached model for listings.
#[derive(Debug, Clone)]
pub struct CachedSummary {
    /// Content address.
    pub cid: Cid,
    /// Estimated resident bytes.
    pub bytes: usize,
}

impl ModelCache {
    /// Creates an empty cache holding at most `budget` estimated bytes.
    pub fn new(
        engine: Arc<dyn Engine>,
        limits: Limits,
        budget: usize,
        source: Arc<dyn ModelSource>,
        metrics: Arc<Metrics>,
    ) -> Self {
        ModelCache {
            engine,
            limits,
            budget,
            source,
            metrics,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The engine models are loaded with.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// Returns the loaded model for `cid`, loading it on first use. Concurrent
    /// callers for the same CID share one load.
    pub async fn get(&self, cid: &Cid) -> Result<Arc<LoadedModel>, ApiError> {
        let cell = {
            let mut st = self.lock();
            st.clock += 1;
            let now = st.clock;
            if let Some(r) = st.ready.get_mut(cid) {
                r.last_used = now;
                let model = r.model.clone();
                drop(st);
                self.metrics.cache_lookup(true);
                return Ok(model);
            }
            if let Some(err) = st.failed.get(cid) {
                return Err(err.clone());
            }
            st.loading.entry(cid.clone()).or_default().clone()
        };
        self.metrics.cache_lookup(false);
        let result = cell.get_or_init(|| self.load(cid)).await.clone();
        let mut st = self.lock();
        if st.loading.get(cid).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            st.loading.remove(cid);
            match &result {
                Ok(model) => {
                    if !st.ready.contains_key(cid) {
                        let bytes = model.model.memory_estimate();
                        st.clock += 1;
                        let last_used = st.clock;
                        st.bytes += bytes;
                        st.ready.insert(
                            cid.clone(),
                            Ready {
                                model: model.clone(),
                                bytes,
                                last_used,
                            },
                        );
                        self.evict(&mut st, cid);
                    }
                }
                Err(err) if err.code == "model_load_failed" => {
                    // Content is immutable: a file that failed once fails again.
                    if st.failed.len() >= MAX_REMEMBERED_FAILURES {
                        st.failed.clear();
                    }
                    st.failed.insert(cid.clone(), err.clone());
                }
                Err(_) => {}
            }
            self.metrics.cache_state(st.ready.len(), st.bytes);
        }
        result
    }

    /// Drops least-recently-used models until the budget holds, sparing `keep`.
    fn evict(&self, st: &mut State, keep: &Cid) {
        while st.bytes > self.budget {
            let victim = st
                .ready
                .iter()
                .filter(|(c, _)| *c != keep)
                .min_by_key(|(_, r)| r.last_used)
                .map(|(c, _)| c.clone());
            let Some(victim) = victim else { break };
            if let Some(r) = st.ready.remove(&victim) {
                st.bytes = st.bytes.saturating_sub(r.bytes);
                tracing::info!(model = %victim, bytes = r.bytes, "evicted model from memory cache");
            }
        }
    }

    async fn load(&self, cid: &Cid) -> Result<Arc<LoadedModel>, ApiError> {
        let resolved = self.source.resolve(cid).await.map_err(resolve_error)?;
        let stored = resolved.stored;
        if stored.size > self.limits.max_model_bytes as u64 {
            self.metrics.model_load(false);
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "model_load_failed",
                format!(
                    "model {cid} is {} bytes, over the limit of {}",
                    stored.size, self.limits.max_model_bytes
                ),
            ));
        }
        let bytes = tokio::fs::read(&stored.path)
            .await
            .map_err(|e| ApiError::internal(format!("reading model {cid}: {e}")))?;
        drop(resolved.guard);
        let engine = self.engine.clone();
        let limits = self.limits.clone();
        let started = std::time::Instant::now();
        let loaded = tokio::task::spawn_blocking(move || engine.load(&bytes, &limits))
            .await
            .map_err(|e| ApiError::internal(format!("model load task failed: {e}")))?;
        self.metrics.model_load(loaded.is_ok());
        let model = loaded.map_err(|e| match e {
            EngineError::Load(msg) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "model_load_failed",
                format!("model {cid} cannot be loaded: {msg}"),
            ),
            other => ApiError::from(other),
        })?;
        tracing::info!(model = %cid, ms = started.elapsed().as_millis() as u64, "loaded model");
        Ok(Arc::new(LoadedModel {
            cid: cid.clone(),
            sha256: stored.sha256,
            sha256_hex: hex::encode(stored.sha256),
            file_size: stored.size,
            model,
        }))
    }

    /// The loaded model for `cid` if it is in memory now (no loading).
    pub fn peek(&self, cid: &Cid) -> Option<Arc<LoadedModel>> {
        self.lock().ready.get(cid).map(|r| r.model.clone())
    }

    /// Models in memory now.
    pub fn summary(&self) -> Vec<CachedSummary> {
        self.lock()
            .ready
            .iter()
            .map(|(cid, r)| CachedSummary {
                cid: cid.clone(),
                bytes: r.bytes,
            })
            .collect()
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
