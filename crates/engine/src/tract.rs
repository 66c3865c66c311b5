//! The tract-onnx backend: pure Rust, loads once, compiles one optimised
//! plan per distinct set of input shapes and runs them concurrently.

mod convert;
mod info;
mod plans;
mod prescan;

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use prost::Message;
use tract_linalg::multithread::Executor;
use tract_onnx::Onnx;
use tract_onnx::pb;
use tract_onnx::prelude::{
    DatumType, Framework, InferenceFact, InferenceModel, InferenceModelExt, TValue, TVec,
    TypedModel,
};
use tract_onnx::tract_core::runtime::RunOptions;
use tract_onnx::tract_hir::infer::GenericFactoid;

use self::plans::{CompileError, Plan, PlanCache, ShapeKey};
use crate::{Engine, EngineError, Limits, Model, ModelInfo, NamedTensor, Tensor};

/// Version of the tract crates this backend is built against (recorded in receipts).
pub const TRACT_VERSION: &str = "0.23.9";

/// The tract-onnx engine.
pub struct TractEngine {
    onnx: Onnx,
    executor: Option<Executor>,
}

impl std::fmt::Debug for TractEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TractEngine")
            .field("multithreaded", &self.executor.is_some())
            .finish()
    }
}

impl Default for TractEngine {
    fn default() -> Self {
        TractEngine::new(1)
    }
}

impl TractEngine {
    /// An engine whose matrix products use `threads` threads (a private pool
    /// when `threads > 1`; 0 and 1 mean single-threaded).
    pub fn new(threads: usize) -> TractEngine {
        let executor = if threads > 1 {
            // Building a pool can only fail on platforms without threads.
            catch_unwind(|| Executor::multithread_with_name(threads, "attesta-tract")).ok()
        } else {
            None
        };
        TractEngine {
            onnx: tract_onnx::onnx(),
            executor,
        }
    }

    /// Like [`Engine::load`], returning the concrete model type.
    pub fn load_tract(&self, onnx: &[u8], limits: &Limits) -> Result<TractModel, EngineError> {
        if onnx.len() > limits.max_model_bytes {
            return Err(EngineError::Load(format!(
                "model is {} bytes, over the {} byte limit",
                onnx.len(),
                limits.max_model_bytes
            )));
        }
        if onnx.is_empty() {
            return Err(EngineError::Load("model file is empty".into()));
        }
        let proto = pb::ModelProto::decode(onnx)
            .map_err(|e| EngineError::Load(format!("not an ONNX model: {e}")))?;
        let known = |op: &str| self.onnx.op_register.0.contains_key(op);
        prescan::check_model(&proto, limits, &known)?;

        let inference = guarded("parsing", || self.onnx.model_for_proto_model(&proto))
            .map_err(EngineError::Load)?;
        let typed = typed_probe(&inference).map_err(EngineError::Load)?;
        if let Some(typed) = &typed {
            check_facts(typed, limits).map_err(EngineError::Load)?;
        }
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| EngineError::Load("the model has no graph".into()))?;
        let fallback = |ix: usize| {
            let typed = typed.as_ref()?;
            let outlet = typed.output_outlets().ok()?.get(ix).copied()?;
            convert::dtype_of(typed.outlet_fact(outlet).ok()?.datum_type)
        };
        let interface = info::interface(graph, &fallback)?;
        if interface.info.inputs.len() != inference.inputs.len()
            || interface.info.outputs.len() != inference.outputs.len()
        {
            return Err(EngineError::Load(
                "graph inputs or outputs do not resolve".into(),
            ));
        }
        Ok(TractModel {
            info: interface.info,
            input_types: interface.input_types,
            inference: Arc::new(inference),
            plans: PlanCache::new(limits.max_plans_per_model),
            executor: self.executor.clone(),
            max_tensor_bytes: limits.max_tensor_bytes,
            file_bytes: onnx.len(),
        })
    }
}

impl Engine for TractEngine {
    fn name(&self) -> &'static str {
        "tract"
    }

    fn version(&self) -> &'static str {
        TRACT_VERSION
    }

    fn load(&self, onnx: &[u8], limits: &Limits) -> Result<Arc<dyn Model>, EngineError> {
        Ok(Arc::new(self.load_tract(onnx, limits)?))
    }
}

/// A model loaded by [`TractEngine`].
pub struct TractModel {
    info: ModelInfo,
    input_types: Vec<DatumType>,
    inference: Arc<InferenceModel>,
    plans: PlanCache,
    executor: Option<Executor>,
    max_tensor_bytes: usize,
    file_bytes: usize,
}

impl std::fmt::Debug for TractModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TractModel")
            .field("info", &self.info)
            .field("plans", &self.plans.len())
            .finish()
    }
}

impl TractModel {
    /// Number of compiled plans currently cached (bounded by
    /// [`Limits::max_plans_per_model`]).
    pub fn cached_plans(&self) -> usize {
        self.plans.len()
    }

    /// Whether the plan for these input shapes runs without tract's
    /// optimisations (optimisation failed). Compiles the plan if needed.
    pub fn plan_is_unoptimised(&self, shapes: &[Vec<usize>]) -> Result<bool, EngineError> {
        Ok(self.plan(shapes.to_vec())?.unoptimised)
    }

    fn validate(&self, inputs: &[Tensor]) -> Result<ShapeKey, EngineError> {
        if inputs.len() < self.info.inputs.len() {
            let missing = self
                .info
                .inputs
                .get(inputs.len())
                .map(|i| i.name.clone())
                .unwrap_or_default();
            return Err(EngineError::MissingInput(missing));
        }
        if inputs.len() > self.info.inputs.len() {
            return Err(EngineError::InvalidInput {
                input: String::new(),
                reason: format!(
                    "the model takes {} inputs, got {}",
                    self.info.inputs.len(),
                    inputs.len()
                ),
            });
        }
        let mut symbols: Vec<(&str, usize, &str)> = Vec::new();
        for (t, decl) in inputs.iter().zip(&self.info.inputs) {
            let bad = |reason: String| EngineError::InvalidInput {
                input: decl.name.clone(),
                reason,
            };
            if t.dtype() != decl.dtype {
                return Err(bad(format!("expected {}, got {}", decl.dtype, t.dtype())));
            }
            if !decl.accepts_shape(t.shape()) {
                return Err(bad(format!(
                    "shape {:?} does not fit {}",
                    t.shape(),
                    decl.signature()
                )));
            }
            if t.byte_size() > self.max_tensor_bytes {
                return Err(bad(format!(
                    "{} bytes, over the {} byte tensor cap",
                    t.byte_size(),
                    self.max_tensor_bytes
                )));
            }
            for (d, s) in decl.shape.iter().flatten().zip(t.shape()) {
                if let crate::Dim::Symbolic(name) = d
                    && name != "?"
                {
                    if let Some((_, prev, who)) = symbols.iter().find(|(n, _, _)| n == name)
                        && prev != s
                    {
                        return Err(bad(format!(
                            "dimension {name} is {s} here but {prev} in input {who:?}"
                        )));
                    }
                    symbols.push((name, *s, &decl.name));
                }
            }
        }
        Ok(inputs.iter().map(|t| t.shape().to_vec()).collect())
    }

    fn plan(&self, key: ShapeKey) -> Result<Arc<Plan>, EngineError> {
        let compile_key = key.clone();
        self.plans
            .get_or_compile(key, || self.compile(&compile_key))
            .map_err(|e| match e {
                CompileError::Failed(m) => EngineError::Run(format!(
                    "cannot prepare the model for these input shapes: {m}"
                )),
                CompileError::Panicked(m) => EngineError::Internal(m),
            })
    }

    fn compile(&self, shapes: &[Vec<usize>]) -> Result<Plan, CompileError> {
        let mut model = (*self.inference).clone();
        for (ix, (shape, dt)) in shapes.iter().zip(&self.input_types).enumerate() {
            model = model
                .with_input_fact(ix, InferenceFact::dt_shape(*dt, shape.iter().copied()))
                .map_err(|e| CompileError::Failed(format!("{e:#}")))?;
        }
        let typed = guarded_compile("typing", || model.into_typed())?;
        check_facts(
            &typed,
            &Limits {
                max_tensor_bytes: self.max_tensor_bytes,
                ..Limits::default()
            },
        )
        .map_err(CompileError::Failed)?;
        let (chosen, unoptimised) = match guarded("optimising", || typed.clone().into_optimized()) {
            Ok(optimised) => (optimised, false),
            Err(_) => (typed, true),
        };
        let bytes = const_bytes(&chosen);
        let options = RunOptions {
            executor: self.executor.clone(),
            ..RunOptions::default()
        };
        let runnable = guarded_compile("planning", || chosen.into_runnable_with_options(&options))?;
        Ok(Plan {
            runnable,
            bytes,
            unoptimised,
        })
    }
}

impl Model for TractModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<NamedTensor>, EngineError> {
        let key = self.validate(&inputs)?;
        let plan = self.plan(key)?;
        let mut values: TVec<TValue> = TVec::with_capacity(inputs.len());
        for ((t, dt), decl) in inputs
            .into_iter()
            .zip(&self.input_types)
            .zip(&self.info.inputs)
        {
            let t = convert::to_tract(t, *dt).map_err(|reason| EngineError::InvalidInput {
                input: decl.name.clone(),
                reason,
            })?;
            values.push(t.into());
        }
        let outputs = match catch_unwind(AssertUnwindSafe(|| plan.runnable.run(values))) {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return Err(EngineError::Run(format!("{e:#}"))),
            Err(p) => {
                return Err(EngineError::Internal(format!(
                    "tract panicked while running: {}",
                    panic_text(&*p)
                )));
            }
        };
        if outputs.len() != self.info.outputs.len() {
            return Err(EngineError::Run(format!(
                "the model produced {} outputs, {} declared",
                outputs.len(),
                self.info.outputs.len()
            )));
        }
        outputs
            .iter()
            .zip(&self.info.outputs)
            .map(|(value, decl)| {
                let tensor = convert::from_tract(value)
                    .map_err(|e| EngineError::Run(format!("output {:?}: {e}", decl.name)))?;
                Ok(NamedTensor {
                    name: decl.name.clone(),
                    tensor,
                })
            })
            .collect()
    }

    fn memory_estimate(&self) -> usize {
        self.file_bytes.saturating_add(self.plans.bytes())
    }
}

/// Decodes an ONNX `TensorProto` (as in the ONNX test suite's `*.pb`
/// files), refusing the same hostile declarations as model loading.
pub fn decode_tensor_proto(bytes: &[u8], limits: &Limits) -> Result<NamedTensor, EngineError> {
    let proto = pb::TensorProto::decode(bytes)
        .map_err(|e| EngineError::Load(format!("not a TensorProto: {e}")))?;
    prescan::check_tensor(&proto, "tensor", limits.max_tensor_bytes)?;
    let resolver = tract_onnx::data_resolver::MmapDataResolver;
    let tensor = guarded("decoding", || {
        tract_onnx::tensor::load_tensor(&resolver, &proto, None)
    })
    .map_err(EngineError::Load)?;
    let tensor = convert::from_tract(&tensor).map_err(EngineError::Load)?;
    Ok(NamedTensor {
        name: proto.name,
        tensor,
    })
}

/// Runs tract code that may panic on malformed graphs, turning both errors
/// and panics into a message.
fn guarded<T>(
    stage: &str,
    f: impl FnOnce() -> tract_onnx::prelude::TractResult<T>,
) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{stage} failed: {e:#}")),
        Err(p) => Err(format!("tract panicked while {stage}: {}", panic_text(&*p))),
    }
}

fn guarded_compile<T>(
    stage: &str,
    f: impl FnOnce() -> tract_onnx::prelude::TractResult<T>,
) -> Result<T, CompileError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(CompileError::Failed(format!("{stage} failed: {e:#}"))),
        Err(p) => Err(CompileError::Panicked(format!(
            "tract panicked while {stage}: {}",
            panic_text(&*p)
        ))),
    }
}

fn panic_text(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

/// Types the graph once at load to catch broken models early. Unknown input
/// dimensions become fresh symbols so shape-polymorphic models type too; a
/// model that still does not type is refused only when its inputs are fully
/// concrete (otherwise the check happens per shape set at run time).
fn typed_probe(inference: &InferenceModel) -> Result<Option<TypedModel>, String> {
    let mut probe = inference.clone();
    let mut all_concrete = true;
    for ix in 0..probe.inputs.len() {
        let fact = probe.input_fact(ix).map_err(|e| format!("{e:#}"))?.clone();
        if fact.shape.is_open() {
            return Ok(None);
        }
        all_concrete &= fact
            .shape
            .dims()
            .all(|d| matches!(d, GenericFactoid::Only(d) if d.to_i64().is_ok()));
        if fact
            .shape
            .dims()
            .any(|d| !matches!(d, GenericFactoid::Only(_)))
        {
            let dims: Vec<_> = fact
                .shape
                .dims()
                .map(|d| match d {
                    GenericFactoid::Only(d) => d.clone(),
                    GenericFactoid::Any => probe.symbols.new_with_prefix("unk").into(),
                })
                .collect();
            let mut new_fact = InferenceFact::shape(dims);
            new_fact.datum_type = fact.datum_type;
            probe = probe
                .with_input_fact(ix, new_fact)
                .map_err(|e| format!("{e:#}"))?;
        }
    }
    match guarded("typing", || probe.into_typed()) {
        Ok(typed) => Ok(Some(typed)),
        Err(e) if all_concrete => Err(e),
        // Some graphs (a Reshape fed by computed shapes, say) only type once
        // the input shapes are concrete: typing is retried for each shape set.
        Err(_) => Ok(None),
    }
}

/// Rejects any tensor with a known shape over the cap (weights, constant
/// folds, intermediates of a concrete plan).
fn check_facts(model: &TypedModel, limits: &Limits) -> Result<(), String> {
    for node in model.nodes() {
        for output in &node.outputs {
            if let Some(shape) = output.fact.shape.as_concrete() {
                let bytes = crate::element_count(shape)
                    .and_then(|n| n.checked_mul(output.fact.datum_type.size_of()));
                if bytes.is_none_or(|b| b > limits.max_tensor_bytes) {
                    return Err(format!(
                        "node {:?} produces a {:?} tensor of shape {shape:?}, over the {} byte tensor cap",
                        node.name, output.fact.datum_type, limits.max_tensor_bytes
                    ));
                }
            }
        }
    }
    Ok(())
}

fn const_bytes(model: &TypedModel) -> usize {
    model
        .nodes()
        .iter()
        .flat_map(|n| &n.outputs)
        .filter_map(|o| o.fact.konst.as_ref())
        .map(|k| k.len().saturating_mul(k.datum_type().size_of()))
        .fold(0usize, usize::saturating_add)
}
