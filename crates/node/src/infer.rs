//! `POST /infer`: OpenGradient's request in, OpenGradient's response out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use attesta_content::Cid;
use attesta_engine::{Cancel, og};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::Semaphore;

use crate::AppState;
use crate::budget::{BudgetError, ByteBudget};
use crate::error::ApiError;

/// Default in-flight memory budget of an [`Executor`].
pub const DEFAULT_INFLIGHT_BYTES: usize = 1 << 30;

/// Runs CPU-bound inference off the async workers, at most `workers` at a
/// time and within an in-flight memory budget.
pub struct Executor {
    permits: Arc<Semaphore>,
    workers: usize,
    budget: ByteBudget,
    timeout: Duration,
    placed: PlacementCounts,
}

/// Runs counted by where they ran (`attesta_inference_runs_total{placement}`): how often
/// [`Placement::InlineWhenIdle`] saved the hop to the blocking pool.
#[derive(Clone)]
pub struct PlacementCounts {
    runs: Family<PlacementLabels, Counter>,
    /// The family's two series, held so that counting a run looks nothing up (and both
    /// are exported from the start, at 0).
    inline: Counter,
    pool: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlacementLabels {
    placement: &'static str,
}

impl Default for PlacementCounts {
    fn default() -> Self {
        let runs = Family::<PlacementLabels, Counter>::default();
        let series = |placement| runs.get_or_create(&PlacementLabels { placement }).clone();
        PlacementCounts {
            inline: series("inline"),
            pool: series("pool"),
            runs,
        }
    }
}

impl PlacementCounts {
    /// Registers the counts with the node's metrics.
    pub fn register(&self, metrics: &crate::metrics::Metrics) {
        metrics.with_registry(|r| {
            r.register(
                "inference_runs",
                "Runs by where they ran (inline on the async worker, or the blocking pool)",
                self.runs.clone(),
            );
        });
    }

    /// Runs that ran inline on the async worker.
    pub fn inline(&self) -> u64 {
        self.inline.get()
    }

    /// Runs that ran on the blocking pool.
    pub fn pool(&self) -> u64 {
        self.pool.get()
    }
}

/// Where [`Executor::run_placed`] may run a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On the blocking pool: any job.
    Blocking,
    /// On the calling async worker when no other run holds a slot, else on the
    /// blocking pool. For jobs known to take microseconds (see [`InlineGate`]):
    /// handing one to a blocking thread and waking the worker for its answer
    /// costs two thread wake-ups, more than the job itself, and with nothing
    /// else running the worker has nothing better to do. Under load the pool
    /// keeps the workers free for I/O.
    InlineWhenIdle,
}

/// Decides when a model's runs may be placed inline ([`Placement::InlineWhenIdle`]):
/// only a model whose work is set by its inputs' shapes
/// ([`attesta_engine::Model::fixed_cost`]), and only at the input shapes of the last
/// [`InlineGate::STREAK`] runs if each of them took at most [`InlineGate::FAST`]. A
/// slower run, or a run at other shapes, starts the count again.
#[derive(Debug, Default)]
pub struct InlineGate {
    /// (the shapes' key, fast runs in a row at them)
    streak: std::sync::Mutex<(u64, u32)>,
}

impl InlineGate {
    /// Longest run (conversion, engine and encoding) counted as fast.
    pub const FAST: Duration = Duration::from_micros(200);
    /// Fast runs in a row before runs go inline.
    pub const STREAK: u32 = 8;

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, u32)> {
        self.streak
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether runs at the shapes with this key may go inline now.
    pub fn allows(&self, shapes: u64) -> bool {
        let s = self.lock();
        s.0 == shapes && s.1 >= Self::STREAK
    }

    /// Records how long one run at the shapes with this key took.
    pub fn record(&self, shapes: u64, took: Duration) {
        let mut s = self.lock();
        *s = match (took <= Self::FAST, s.0 == shapes) {
            (false, _) => (shapes, 0),
            (true, true) => (shapes, s.1.saturating_add(1)),
            (true, false) => (shapes, 1),
        };
    }
}

/// A key for a request's input shapes (names, element kinds and dimensions).
pub fn shapes_key(inputs: &og::ModelInputs) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for t in &inputs.numbers {
        (0u8, &t.name, &t.shape).hash(&mut h);
    }
    for t in &inputs.strings {
        (1u8, &t.name, &t.shape).hash(&mut h);
    }
    h.finish()
}

impl Executor {
    /// An executor with `workers` concurrent slots, a per-request deadline
    /// and an in-flight budget of [`DEFAULT_INFLIGHT_BYTES`].
    pub fn new(workers: usize, timeout: Duration) -> Self {
        Executor {
            permits: Arc::new(Semaphore::new(workers.max(1))),
            workers: workers.max(1),
            budget: ByteBudget::new(DEFAULT_INFLIGHT_BYTES),
            timeout,
            placed: PlacementCounts::default(),
        }
    }

    /// Where runs ran, counted (register them to export them).
    pub fn placements(&self) -> &PlacementCounts {
        &self.placed
    }

    /// Replaces the in-flight memory budget with `bytes`.
    pub fn with_inflight_bytes(mut self, bytes: usize) -> Self {
        self.budget = ByteBudget::new(bytes);
        self
    }

    /// The deadline of one run, queueing included.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The in-flight memory budget.
    pub fn budget(&self) -> &ByteBudget {
        &self.budget
    }

    /// Runs `job` on the blocking pool once a slot is free. The deadline covers
    /// the wait and the run; a run past it keeps its slot until it finishes
    /// (or, through [`Executor::run_cancellable`], until the engine stops it),
    /// so timed-out work still counts against capacity.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.run_charged(0, job).await
    }

    /// Like [`Executor::run`], first charging `bytes` against the in-flight
    /// budget (waiting, within the same deadline, until they fit). The charge
    /// is held like the slot, until the run really ends. A charge larger
    /// than the whole budget fails at once with 413 `inference_too_large`.
    pub async fn run_charged<T: Send + 'static>(
        &self,
        bytes: usize,
        job: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.run_cancellable(bytes, move |_| job()).await
    }

    /// Like [`Executor::run_charged`], handing `job` a [`Cancel`] that fires when the
    /// deadline passes or the caller stops waiting (its future is dropped): a job that
    /// passes it to the engine ([`attesta_engine::Model::run_cancellable`]) gives its slot
    /// and charge back early instead of computing an answer nobody will read.
    pub async fn run_cancellable<T: Send + 'static>(
        &self,
        bytes: usize,
        job: impl FnOnce(&Cancel) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.run_placed(Placement::Blocking, bytes, job).await
    }

    /// Like [`Executor::run_cancellable`], on the calling worker when `placement`
    /// allows it (slot, charge and deadline as on the pool; an inline job cannot be
    /// stopped midway, which is why only short ones are placed there).
    pub async fn run_placed<T: Send + 'static>(
        &self,
        placement: Placement,
        bytes: usize,
        job: impl FnOnce(&Cancel) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let permits = self.permits.clone();
        let workers = self.workers;
        let budget = self.budget.clone();
        let placed = &self.placed;
        let cancel = Cancel::new();
        // Fires on every way out of this function except a finished run: the timeout
        // below, and the caller dropping the future (a client that went away).
        let _stop_on_exit = CancelOnDrop(cancel.clone());
        let work = async move {
            let charge = budget.charge(bytes).await.map_err(budget_error)?;
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| ApiError::internal("executor closed"))?;
            // This run's slot is the only one taken: nothing else is running.
            let idle = permits.available_permits() + 1 >= workers;
            if placement == Placement::InlineWhenIdle && idle {
                let _held = (permit, charge);
                placed.inline.inc();
                return job(&cancel);
            }
            placed.pool.inc();
            tokio::task::spawn_blocking(move || {
                let _held = (permit, charge);
                job(&cancel)
            })
            .await
            .map_err(|e| ApiError::internal_from("inference task failed", e))?
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

/// Fires its [`Cancel`] when dropped; firing after the run finished does nothing.
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// The handler.
pub async fn infer(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    state.metrics.inflight().inc();
    let result = infer_inner(&state, body, started).await;
    state.metrics.inflight().dec();
    match result {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn infer_inner(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
    started: Instant,
) -> Result<Vec<u8>, ApiError> {
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
    let body = run_model(
        state,
        loaded.clone(),
        request.inputs,
        |outputs, model_hash| {
            let response = og::encode_response(outputs, model_hash);
            serde_json::to_vec(&response)
                .map_err(|e| ApiError::internal_from("encoding response", e))
        },
    )
    .await?;
    crate::fault::before_answer(state.fault()).await;
    state
        .metrics
        .infer_request_seconds(&loaded.cid_text, started.elapsed().as_secs_f64());
    Ok(body)
}

/// Charges the run's estimated memory against the in-flight budget, then on
/// the executor converts the inputs for `loaded`, runs it, applies any
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
    // Charged from the request as parsed: converting is work for the executor's
    // bounded slots, not the async workers.
    let onnx = loaded.onnx()?.clone();
    let charge = inflight_estimate(&inputs, onnx.info());
    // Only a model whose cost follows its input shapes is timed for the gate.
    let shapes = onnx.fixed_cost().then(|| shapes_key(&inputs));
    let placement = if shapes.is_some_and(|k| loaded.inline.allows(k)) {
        Placement::InlineWhenIdle
    } else {
        Placement::Blocking
    };
    state
        .executor
        .run_placed(placement, charge, move |cancel| {
            let started = Instant::now();
            let tensors = og::to_tensors(&inputs, onnx.info())?;
            drop(inputs);
            let t0 = Instant::now();
            let mut outputs = onnx.run_cancellable(tensors, cancel)?;
            metrics.inference_seconds(&loaded.cid_text, t0.elapsed().as_secs_f64());
            crate::fault::perturb(fault, &mut outputs);
            let encoded = encode(&outputs, &loaded.sha256_hex);
            if let Some(k) = shapes {
                loaded.inline.record(k, started.elapsed());
            }
            encoded
        })
        .await
}

/// Inputs are charged this many times their size: activations of a run are
/// rarely more than a few copies of its inputs, and the charge is only a
/// budget share, not an allocation.
const INPUT_CHARGE_MULTIPLE: usize = 8;
/// Smallest charge, covering a run's fixed overhead.
const MIN_CHARGE: usize = 1 << 20;

/// Bytes one run is charged against the in-flight budget: a conservative
/// multiple of the size its inputs will have once converted to the model's
/// declared types (as [`attesta_engine::Tensor::byte_size`] counts them).
/// (Where the engine can predict a run's memory without compiling,
/// `Model::run_bytes_estimate`, that prediction belongs here first.)
pub fn inflight_estimate(inputs: &og::ModelInputs, info: &attesta_engine::ModelInfo) -> usize {
    let declared = |name: &str| {
        info.inputs
            .iter()
            .find(|t| t.name == name)
            .map_or(8, |t| t.dtype.size_of())
    };
    let numbers = inputs
        .numbers
        .iter()
        .map(|t| t.values.len().saturating_mul(declared(&t.name)));
    let strings = inputs.strings.iter().map(|t| {
        t.values
            .iter()
            .map(|v| v.len() + attesta_engine::DType::String.size_of())
            .fold(0usize, usize::saturating_add)
    });
    numbers
        .chain(strings)
        .fold(0usize, usize::saturating_add)
        .saturating_mul(INPUT_CHARGE_MULTIPLE)
        .max(MIN_CHARGE)
}

fn budget_error(e: BudgetError) -> ApiError {
    match e {
        BudgetError::NeverFits { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "inference_too_large",
            e.to_string(),
        ),
        other => ApiError::internal(other.to_string()),
    }
}

/// Maps body-reading failures (size limit, a body slower than the body timeout, a broken
/// stream) to wire errors: all of them are the request's fault, so all are 4xx.
pub fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            e.body_text(),
        );
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if let Some(t) = c.downcast_ref::<crate::server::BodyTimeout>() {
            return ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", t.to_string());
        }
        cause = c.source();
    }
    ApiError::bad_request("bad_body", e.body_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_opens_after_a_streak_of_fast_runs_at_the_same_shapes() {
        let gate = InlineGate::default();
        let (a, b) = (1, 2);
        let fast = InlineGate::FAST;
        for _ in 1..InlineGate::STREAK {
            gate.record(a, fast);
        }
        assert!(!gate.allows(a), "one run short of the streak");
        gate.record(a, fast);
        assert!(gate.allows(a));
        assert!(!gate.allows(b), "only at the shapes the streak ran at");
        gate.record(a, fast + Duration::from_micros(1));
        assert!(!gate.allows(a), "a slow run closes it");
        for _ in 0..InlineGate::STREAK {
            gate.record(a, Duration::ZERO);
        }
        assert!(gate.allows(a), "a new streak reopens it");
        gate.record(b, Duration::ZERO);
        assert!(
            !gate.allows(a) && !gate.allows(b),
            "other shapes start over"
        );
    }

    /// Inline jobs run on the calling thread only with no other run in flight; blocking
    /// jobs never do. Slots are taken and given back either way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inline_placement_runs_on_the_caller_only_when_nothing_else_runs() {
        let executor = Arc::new(Executor::new(2, Duration::from_secs(10)));
        let thread_of = |placement| {
            let executor = executor.clone();
            async move {
                let caller = std::thread::current().id();
                let ran_on = executor
                    .run_placed(placement, 0, |_| Ok(std::thread::current().id()))
                    .await
                    .unwrap();
                ran_on == caller
            }
        };
        assert!(thread_of(Placement::InlineWhenIdle).await, "idle: inline");
        assert!(
            !thread_of(Placement::Blocking).await,
            "blocking: on the pool"
        );

        // Hold one slot with a blocking job until told to end.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let busy = {
            let executor = executor.clone();
            tokio::spawn(async move {
                executor
                    .run_placed(Placement::Blocking, 0, move |_| {
                        let _ = started_tx.send(());
                        let _ = held.recv();
                        Ok(())
                    })
                    .await
            })
        };
        started.await.unwrap();
        assert!(
            !thread_of(Placement::InlineWhenIdle).await,
            "another run in flight: on the pool"
        );
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        assert!(
            thread_of(Placement::InlineWhenIdle).await,
            "idle again: inline"
        );
        assert_eq!(
            executor.permits.available_permits(),
            2,
            "every slot given back"
        );
        // Two inline runs (idle, idle again), three on the pool (the blocking one, the
        // one that held a slot, the inline request made while it did).
        let placed = executor.placements();
        assert_eq!((placed.inline(), placed.pool()), (2, 3));
    }
}
