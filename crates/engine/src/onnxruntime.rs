//! The onnxruntime backend: the `ort` bindings over a `libonnxruntime`
//! loaded at run time (see [`OrtRuntime`]), behind the same [`Engine`] and
//! [`Model`] traits and the same guarantees as the tract backend.
//!
//! A model passes the same protobuf pre-scan as tract's before onnxruntime
//! sees it (size caps on every tensor, node and nesting caps, operators whose
//! output size is set by constant operands), inputs are checked against the
//! declared interface by the shared validator, operators whose output size
//! is set by graph-input values are checked against those values before a
//! run, and outputs are cast to the declared types.
//!
//! `ort` runs a session through `&mut`, so a model holds a small pool of
//! sessions built once at load that share one prepacked-weights container;
//! runs pick a free one.

mod convert;
mod library;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use ort::session::builder::{GraphOptimizationLevel, PrepackedWeights};
use ort::session::{RunOptions, Session};

pub use self::library::{ORT_API_MINOR, ORT_LIB_ENV, OrtLoadError, OrtRuntime};
use crate::tract::{info, prescan};
use crate::{Cancel, Engine, EngineError, Limits, Model, ModelInfo, NamedTensor, Tensor};

/// Settings of the onnxruntime backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrtOptions {
    /// Threads one run may use inside an operator (onnxruntime's intra-op
    /// pool; 1 runs on the calling thread only).
    pub intra_threads: usize,
    /// Sessions built per model, i.e. runs of one model that proceed at once
    /// (each holds its own activations; weights are shared).
    pub sessions_per_model: usize,
}

impl Default for OrtOptions {
    fn default() -> Self {
        OrtOptions {
            intra_threads: 1,
            sessions_per_model: 2,
        }
    }
}

/// The onnxruntime engine over a loaded [`OrtRuntime`].
#[derive(Debug, Clone)]
pub struct OrtEngine {
    runtime: &'static OrtRuntime,
    options: OrtOptions,
}

impl OrtEngine {
    /// An engine on `runtime` with `options` (zeros are taken as 1).
    pub fn new(runtime: &'static OrtRuntime, options: OrtOptions) -> OrtEngine {
        OrtEngine {
            runtime,
            options: OrtOptions {
                intra_threads: options.intra_threads.max(1),
                sessions_per_model: options.sessions_per_model.max(1),
            },
        }
    }

    /// The library this engine runs on.
    pub fn runtime(&self) -> &'static OrtRuntime {
        self.runtime
    }

    /// Like [`Engine::load`], returning the concrete model type.
    pub fn load_ort(&self, onnx: &[u8], limits: &Limits) -> Result<OrtModel, EngineError> {
        // Any default-domain operator may reach onnxruntime, but only after
        // the same size checks tract's models pass.
        let proto = prescan::decode_and_check(onnx, limits, &|_| true)?;
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| EngineError::Load("the model has no graph".into()))?;

        let weights = PrepackedWeights::new();
        let mut sessions = Vec::with_capacity(self.options.sessions_per_model);
        for _ in 0..self.options.sessions_per_model {
            sessions.push(Mutex::new(self.session(onnx, &weights)?));
        }
        let first = sessions
            .first()
            .ok_or_else(|| EngineError::Internal("no session was built".into()))?;
        let fallback_types: Vec<Option<crate::DType>> = {
            let s = first.lock().unwrap_or_else(PoisonError::into_inner);
            s.outputs()
                .iter()
                .map(|o| convert::declared_dtype(o.dtype()))
                .collect()
        };
        let interface = info::interface(graph, &|ix| fallback_types.get(ix).copied().flatten())?;
        crate::validate::declared_sizes(&interface.info, limits.max_tensor_bytes)?;
        let feeds = interface
            .input_types
            .iter()
            .map(|dt| convert::Feed::of(*dt))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OrtModel {
            info: interface.info,
            feeds,
            sessions,
            next: AtomicUsize::new(0),
            max_tensor_bytes: limits.max_tensor_bytes,
            memory: onnx
                .len()
                .saturating_mul(self.options.sessions_per_model.saturating_add(1)),
            value_guard: prescan::ValueGuard::new(graph),
            fixed_cost: crate::tract::fixed_cost::fixed_cost(&proto),
        })
    }

    fn session(&self, onnx: &[u8], weights: &PrepackedWeights) -> Result<Session, EngineError> {
        let threads = self.options.intra_threads;
        let build = || -> Result<Session, String> {
            let text = |e: ort::Error<_>| e.to_string();
            Session::builder(self.runtime.env())
                .map_err(|e| e.to_string())?
                .with_optimization_level(GraphOptimizationLevel::All)
                .map_err(text)?
                .with_intra_threads(threads)
                .map_err(text)?
                .with_inter_threads(1)
                .map_err(text)?
                .with_parallel_execution(false)
                .map_err(text)?
                .with_prepacked_weights(weights)
                .map_err(text)?
                .commit_from_memory(onnx)
                .map_err(|e| e.to_string())
        };
        match catch_unwind(AssertUnwindSafe(build)) {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) if is_out_of_memory(&e) => Err(EngineError::OutOfMemory(format!(
                "onnxruntime could not allocate while loading: {e}"
            ))),
            Ok(Err(e)) => Err(EngineError::Load(format!("onnxruntime refused it: {e}"))),
            Err(_) => Err(EngineError::Internal(
                "the onnxruntime bindings panicked while loading".into(),
            )),
        }
    }
}

/// onnxruntime turns a failed C++ allocation into an error status whose
/// text names `std::bad_alloc`; there is no error code for it.
fn is_out_of_memory(message: &str) -> bool {
    message.contains("bad_alloc")
}

impl Engine for OrtEngine {
    fn name(&self) -> &'static str {
        "onnxruntime"
    }

    fn version(&self) -> &'static str {
        self.runtime.version()
    }

    fn load(&self, onnx: &[u8], limits: &Limits) -> Result<Arc<dyn Model>, EngineError> {
        Ok(Arc::new(self.load_ort(onnx, limits)?))
    }
}

/// A model loaded by [`OrtEngine`].
pub struct OrtModel {
    info: ModelInfo,
    feeds: Vec<convert::Feed>,
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    max_tensor_bytes: usize,
    memory: usize,
    /// Size checks on operators sized by integer input values.
    value_guard: prescan::ValueGuard,
    /// See [`Model::fixed_cost`].
    fixed_cost: bool,
}

impl std::fmt::Debug for OrtModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtModel")
            .field("info", &self.info)
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

impl OrtModel {
    /// A free session, or (all busy) the next one in turn, waited for.
    fn session(&self) -> Result<MutexGuard<'_, Session>, EngineError> {
        let n = self.sessions.len().max(1);
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            if let Some(m) = self.sessions.get(start.wrapping_add(k) % n) {
                match m.try_lock() {
                    Ok(g) => return Ok(g),
                    Err(TryLockError::Poisoned(p)) => return Ok(p.into_inner()),
                    Err(TryLockError::WouldBlock) => {}
                }
            }
        }
        self.sessions
            .get(start % n)
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
            .ok_or_else(|| EngineError::Internal("the model has no session".into()))
    }

    /// Operators whose output size is set by integer graph inputs (an
    /// `Expand` to a requested shape, a `Range` to a requested limit) are
    /// checked against the request's values before onnxruntime allocates.
    fn check_values(&self, inputs: &[Tensor]) -> Result<(), EngineError> {
        let values: Vec<(&str, Vec<i64>)> = self
            .info
            .inputs
            .iter()
            .zip(inputs)
            .filter(|(_, t)| crate::tract::is_integer(t.dtype()))
            .map(|(decl, t)| (decl.name.as_str(), crate::tract::integer_values(t)))
            .collect();
        let named: Vec<(&str, &[i64])> = values.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        self.value_guard
            .check(&named, self.max_tensor_bytes)
            .map_err(|e| match e {
                prescan::Refusal::TooLarge(t) => EngineError::TensorTooLarge(t),
                prescan::Refusal::Invalid(reason) => EngineError::InvalidInput {
                    input: String::new(),
                    reason,
                },
            })
    }
}

impl Model for OrtModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn fixed_cost(&self) -> bool {
        self.fixed_cost
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<NamedTensor>, EngineError> {
        self.run_cancellable(inputs, &Cancel::new())
    }

    /// Stops onnxruntime between (and inside some) kernels: the run's options are
    /// terminated when `cancel` fires.
    fn run_cancellable(
        &self,
        inputs: Vec<Tensor>,
        cancel: &Cancel,
    ) -> Result<Vec<NamedTensor>, EngineError> {
        crate::validate::inputs(&self.info, &inputs, self.max_tensor_bytes)?;
        self.check_values(&inputs)?;
        let mut feeds = Vec::with_capacity(inputs.len());
        for ((t, decl), feed) in inputs.into_iter().zip(&self.info.inputs).zip(&self.feeds) {
            let value = feed.value(t).map_err(|reason| EngineError::InvalidInput {
                input: decl.name.clone(),
                reason,
            })?;
            feeds.push((decl.name.as_str(), value));
        }
        let options = Arc::new(RunOptions::new().map_err(|e| EngineError::Run(e.to_string()))?);
        let stop = options.clone();
        cancel.on_cancel(move || {
            // An error only means the run already ended.
            let _ = stop.terminate();
        });
        let mut session = self.session()?;
        let run = catch_unwind(AssertUnwindSafe(|| {
            let outputs = session.run_with_options(feeds, &*options).map_err(|e| {
                let text = e.to_string();
                if cancel.is_cancelled() {
                    EngineError::Cancelled
                } else if is_out_of_memory(&text) {
                    EngineError::OutOfMemory(text)
                } else {
                    EngineError::Run(text)
                }
            })?;
            self.info
                .outputs
                .iter()
                .map(|decl| {
                    let value = outputs.get(&decl.name).ok_or_else(|| {
                        EngineError::Run(format!("output {:?} was not produced", decl.name))
                    })?;
                    let tensor = convert::output(value, decl.dtype, self.max_tensor_bytes)
                        .map_err(|e| EngineError::Run(format!("output {:?}: {e}", decl.name)))?;
                    Ok(NamedTensor {
                        name: decl.name.clone(),
                        tensor,
                    })
                })
                .collect::<Result<Vec<_>, EngineError>>()
        }));
        match run {
            Ok(r) => r,
            Err(_) => Err(EngineError::Internal(
                "the onnxruntime bindings panicked while running".into(),
            )),
        }
    }

    /// The file once per session plus once for the shared prepacked
    /// weights: onnxruntime keeps each session's initializers.
    fn memory_estimate(&self) -> usize {
        self.memory
    }
}
