//! Inference engines for attesta.
//!
//! The [`Engine`] and [`Model`] traits keep serving code independent of the
//! backend; [`tract::TractEngine`] is the default, pure-Rust backend. The
//! [`og`] module speaks OpenGradient's tensor JSON.

use std::sync::Arc;

mod cancel;
pub mod demo;
mod error;
pub mod og;
pub mod onnxruntime;
mod tensor;
pub mod tract;
mod validate;

pub use cancel::Cancel;
pub use error::{EngineError, TensorTooLarge};
pub use tensor::{
    DType, Dim, ModelInfo, NamedTensor, Tensor, TensorData, TensorInfo, element_count,
};

/// Resource caps applied while loading and running an untrusted model.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest model file accepted, in bytes.
    pub max_model_bytes: usize,
    /// Largest single tensor (initializer, constant or intermediate with a
    /// known shape) a model may declare, in bytes.
    pub max_tensor_bytes: usize,
    /// Compiled plans kept per model (one per distinct set of input shapes).
    pub max_plans_per_model: usize,
    /// Bytes the compiled plans of one model may hold together (their
    /// constants, repacked for the input shapes); least recently used plans
    /// are evicted beyond it.
    pub max_plan_bytes: usize,
    /// Nodes a model may have across its graph and subgraphs, checked
    /// before tract parses it (real models have a few thousand; a hostile
    /// chain of hundreds of thousands takes minutes to load).
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_model_bytes: 1 << 30,
            max_tensor_bytes: 1 << 30,
            max_plans_per_model: 8,
            max_plan_bytes: 2 << 30,
            max_nodes: 50_000,
        }
    }
}

/// A backend that turns ONNX bytes into runnable models.
pub trait Engine: Send + Sync {
    /// Backend name, recorded in receipts (e.g. `tract`).
    fn name(&self) -> &'static str;
    /// Backend version, recorded in receipts.
    fn version(&self) -> &'static str;
    /// Parses, checks and prepares a model. Never panics on hostile bytes.
    fn load(&self, onnx: &[u8], limits: &Limits) -> Result<Arc<dyn Model>, EngineError>;
}

/// A loaded model that can be run concurrently from many threads.
pub trait Model: Send + Sync {
    /// Declared inputs and outputs.
    fn info(&self) -> &ModelInfo;
    /// Runs the model. `inputs` follow the order of `info().inputs`.
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<NamedTensor>, EngineError>;
    /// Runs the model, stopping early with [`EngineError::Cancelled`] when `cancel` fires,
    /// if the backend can stop a run midway; the default runs to completion.
    fn run_cancellable(
        &self,
        inputs: Vec<Tensor>,
        cancel: &Cancel,
    ) -> Result<Vec<NamedTensor>, EngineError> {
        let _ = cancel;
        self.run(inputs)
    }
    /// Rough resident size in bytes, used by caches with a byte budget.
    fn memory_estimate(&self) -> usize;
    /// Upper bound on the bytes one run on `inputs` allocates (inputs,
    /// intermediates and outputs), for an in-flight memory budget; `None`
    /// when the engine cannot tell before running.
    fn run_bytes_estimate(&self, inputs: &[Tensor]) -> Option<usize> {
        let _ = inputs;
        None
    }
    /// Whether a run's work is set by its inputs' shapes alone (no control
    /// flow, no operator sized by values, no shape computed from a request), so
    /// runs seen to be short at some input shapes stay short at those shapes
    /// whatever the values. `false` when unknown.
    fn fixed_cost(&self) -> bool {
        false
    }
}
