//! The tract-onnx backend: pure Rust, loads once, compiles one optimised
//! plan per distinct set of input shapes and runs them concurrently.

mod branch;
mod convert;
mod einsum;
pub(crate) mod fixed_cost;
mod guard;
pub(crate) mod info;
mod plans;
pub(crate) mod prescan;
mod reduce;

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use tract_linalg::multithread::Executor;
use tract_onnx::Onnx;
use tract_onnx::pb;
use tract_onnx::prelude::{
    DatumType, Framework, InferenceFact, InferenceModel, InferenceModelExt, IntoRunnable, TValue,
    TVec, TypedModel, TypedSimplePlan,
};
use tract_onnx::tract_core::runtime::RunOptions;
use tract_onnx::tract_hir::infer::GenericFactoid;
use tract_onnx::tract_hir::ops::konst::Const;

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
        let mut onnx = tract_onnx::onnx();
        onnx.op_register = guard::register();
        TractEngine { onnx, executor }
    }

    /// Like [`Engine::load`], returning the concrete model type.
    pub fn load_tract(&self, onnx: &[u8], limits: &Limits) -> Result<TractModel, EngineError> {
        let known = |op: &str| self.onnx.op_register.0.contains_key(op);
        let proto = prescan::decode_and_check(onnx, limits, &known)?;

        let inference = guard::parse_with_cap(limits.max_tensor_bytes, || {
            guarded("parsing", || self.onnx.model_for_proto_model(&proto))
        })
        .map_err(EngineError::Load)?;
        let (typed, needs_values) = match typed_probe(&inference).map_err(EngineError::Load)? {
            Probe::Typed(t) => (Some(t), false),
            Probe::Deferred => (None, false),
            Probe::NeedsValues => (None, true),
        };
        if let Some(typed) = &typed {
            check_facts(typed, limits.max_tensor_bytes)
                .map_err(|e| EngineError::Load(e.to_string()))?;
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
            plans: PlanCache::new(limits.max_plans_per_model, limits.max_plan_bytes),
            executor: self.executor.clone(),
            max_tensor_bytes: limits.max_tensor_bytes,
            file_bytes: onnx.len(),
            needs_values,
            // A top-level `If` often branches on a scalar input (a sample rate,
            // a mode), and its branches may only type for their own inputs.
            freeze_scalars: graph.node.iter().any(|n| n.op_type == "If"),
            value_guard: prescan::ValueGuard::new(graph),
            fixed_cost: fixed_cost::fixed_cost(&proto),
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
    /// The graph only types with some input values known (see `frozen_inputs`).
    needs_values: bool,
    /// The graph branches at its top level: integer scalar inputs are baked
    /// in, so that a condition on them picks its branch while typing (see
    /// `branch`), with one plan per value.
    freeze_scalars: bool,
    /// Size checks on the values of inputs baked in as constants.
    value_guard: prescan::ValueGuard,
    /// See [`Model::fixed_cost`].
    fixed_cost: bool,
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

    /// Whether the plan for these inputs runs without tract's optimisations
    /// (optimisation failed, or the graph is evaluated per request).
    /// Compiles the plan if needed.
    pub fn plan_is_unoptimised(&self, inputs: &[Tensor]) -> Result<bool, EngineError> {
        Ok(self.prepare(inputs)?.unoptimised)
    }

    fn validate(&self, inputs: &[Tensor]) -> Result<Vec<Vec<usize>>, EngineError> {
        crate::validate::inputs(&self.info, inputs, self.max_tensor_bytes)?;
        Ok(inputs.iter().map(|t| t.shape().to_vec()).collect())
    }

    fn plan(&self, key: ShapeKey, inputs: &[Tensor]) -> Result<Arc<Plan>, EngineError> {
        let shapes = key.0.clone();
        self.plans
            .get_or_compile(key, || self.compile(&shapes, inputs))
            .map_err(|e| e.into_engine_error("cannot prepare the model for these inputs"))
    }

    /// Inputs baked into the plan: for models that only type once some
    /// input values are known (ONNX allows axes, shapes, pads... as graph
    /// inputs; tract needs them constant), the integer inputs; for models
    /// that branch, their integer scalars.
    fn frozen_inputs(&self, inputs: &[Tensor]) -> Vec<bool> {
        inputs
            .iter()
            .map(|t| {
                is_integer(t.dtype())
                    && (self.needs_values || (self.freeze_scalars && t.data().len() == 1))
            })
            .collect()
    }

    /// The inference graph with `frozen` inputs replaced by constants of
    /// their values and the others fixed to their concrete shapes.
    fn specialise(
        &self,
        inputs: &[Tensor],
        frozen: &[bool],
    ) -> Result<(InferenceModel, Vec<usize>), String> {
        let mut model = (*self.inference).clone();
        let outlets = model
            .input_outlets()
            .map_err(|e| format!("{e:#}"))?
            .to_vec();
        let mut kept = Vec::new();
        let mut feeds = Vec::new();
        for (ix, ((outlet, t), dt)) in outlets
            .iter()
            .zip(inputs)
            .zip(&self.input_types)
            .enumerate()
        {
            if frozen.get(ix).copied().unwrap_or(false) {
                let value = Arc::new(convert::to_tract(t.clone(), *dt)?);
                let fact = InferenceFact::dt_shape_from_tensor(&value);
                model.node_mut(outlet.node).op =
                    Box::new(Const::new(value).map_err(|e| format!("{e:#}"))?);
                model
                    .set_outlet_fact(*outlet, fact)
                    .map_err(|e| format!("{e:#}"))?;
            } else {
                let fact = InferenceFact::dt_shape(*dt, t.shape().iter().copied());
                model
                    .set_outlet_fact(*outlet, fact)
                    .map_err(|e| format!("{e:#}"))?;
                kept.push(*outlet);
                feeds.push(ix);
            }
        }
        model
            .set_input_outlets(&kept)
            .map_err(|e| format!("{e:#}"))?;
        Ok((model, feeds))
    }

    fn compile(&self, shapes: &[Vec<usize>], inputs: &[Tensor]) -> Result<Plan, CompileError> {
        debug_assert_eq!(shapes.len(), inputs.len());
        let frozen = self.frozen_inputs(inputs);
        let (model, feeds) = self
            .specialise(inputs, &frozen)
            .map_err(CompileError::Failed)?;
        let typed = match guarded_compile("typing", || model.into_typed()) {
            Ok(typed) => typed,
            // Still untypable with the integer inputs known: evaluate with
            // every input frozen, per request.
            Err(CompileError::Failed(_)) if self.needs_values => {
                return Ok(Plan {
                    runnable: None,
                    feeds: Vec::new(),
                    bytes: 0,
                    run_bytes: None,
                    unoptimised: true,
                });
            }
            Err(e) => return Err(e),
        };
        check_facts(&typed, self.max_tensor_bytes).map_err(CompileError::TooLarge)?;
        // Optimisation moves weights into the operators (packed for the
        // matrix kernels), out of sight of `const_bytes`: the typed graph's
        // constants stand for them.
        let typed_consts = const_bytes(&typed);
        let (chosen, unoptimised) = match guarded("optimising", || typed.clone().into_optimized()) {
            Ok(optimised) => (optimised, false),
            Err(_) => (typed, true),
        };
        let bytes = const_bytes(&chosen).max(typed_consts);
        let run_bytes = run_bytes(&chosen);
        let options = RunOptions {
            executor: self.executor.clone(),
            ..RunOptions::default()
        };
        let runnable = guarded_compile("planning", || chosen.into_runnable_with_options(&options))?;
        Ok(Plan {
            runnable: Some(runnable),
            feeds,
            bytes,
            run_bytes,
            unoptimised,
        })
    }

    /// Evaluates the graph with every input frozen to its value (tract folds
    /// the whole graph), for input sets no plan can be cached for.
    fn evaluate_frozen(&self, inputs: &[Tensor]) -> Result<TVec<TValue>, EngineError> {
        let all = vec![true; inputs.len()];
        let (model, _) = self.specialise(inputs, &all).map_err(EngineError::Run)?;
        let typed = guarded_compile("typing", || model.into_typed())
            .map_err(|e| e.into_engine_error("cannot evaluate the model on these inputs"))?;
        check_facts(&typed, self.max_tensor_bytes).map_err(EngineError::TensorTooLarge)?;
        let runnable = guarded_compile("planning", || typed.into_runnable())
            .map_err(|e| e.into_engine_error("cannot evaluate the model on these inputs"))?;
        run_guarded(&runnable, TVec::new(), self.max_tensor_bytes)
    }
}

pub(crate) fn is_integer(dtype: crate::DType) -> bool {
    use crate::DType::*;
    matches!(dtype, I8 | I16 | I32 | I64 | U8 | U16 | U32 | U64)
}

/// Integer input values as cache-key material (injective per dtype).
pub(crate) fn integer_values(t: &Tensor) -> Vec<i64> {
    use crate::TensorData as D;
    match t.data() {
        D::I8(v) => v.iter().map(|x| i64::from(*x)).collect(),
        D::I16(v) => v.iter().map(|x| i64::from(*x)).collect(),
        D::I32(v) => v.iter().map(|x| i64::from(*x)).collect(),
        D::I64(v) => v.clone(),
        D::U8(v) => v.iter().map(|x| i64::from(*x)).collect(),
        D::U16(v) => v.iter().map(|x| i64::from(*x)).collect(),
        D::U32(v) => v.iter().map(|x| i64::from(*x)).collect(),
        D::U64(v) => v.iter().map(|x| *x as i64).collect(),
        _ => Vec::new(),
    }
}

fn run_guarded(
    plan: &Arc<TypedSimplePlan>,
    values: TVec<TValue>,
    cap: usize,
) -> Result<TVec<TValue>, EngineError> {
    match catch_unwind(AssertUnwindSafe(|| guard::run_checked(plan, values, cap))) {
        Ok(Ok(o)) => Ok(o),
        Ok(Err(e)) => {
            Err(guard::classify(&e).unwrap_or_else(|| EngineError::Run(format!("{e:#}"))))
        }
        Err(p) => Err(EngineError::Internal(format!(
            "tract panicked while running: {}",
            panic_text(&*p)
        ))),
    }
}

impl Model for TractModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn fixed_cost(&self) -> bool {
        self.fixed_cost
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<NamedTensor>, EngineError> {
        let plan = self.prepare(&inputs)?;
        let outputs = match &plan.runnable {
            None => self.evaluate_frozen(&inputs)?,
            Some(runnable) => {
                let mut values: TVec<TValue> = TVec::with_capacity(plan.feeds.len());
                for (ix, ((t, dt), decl)) in inputs
                    .into_iter()
                    .zip(&self.input_types)
                    .zip(&self.info.inputs)
                    .enumerate()
                {
                    if plan.feeds.contains(&ix) {
                        let t = convert::to_tract(t, *dt).map_err(|reason| {
                            EngineError::InvalidInput {
                                input: decl.name.clone(),
                                reason,
                            }
                        })?;
                        values.push(t.into());
                    }
                }
                run_guarded(runnable, values, self.max_tensor_bytes)?
            }
        };
        self.outputs(&outputs)
    }

    fn memory_estimate(&self) -> usize {
        self.file_bytes.saturating_add(self.plans.bytes())
    }

    /// Sum of every intermediate and output tensor of the plan for these
    /// input shapes (an upper bound: nothing freed, nothing in place), plus
    /// the inputs themselves. Compiles the plan if it is not cached (the run
    /// that follows would); `None` for invalid inputs or shapes only known
    /// while running.
    fn run_bytes_estimate(&self, inputs: &[Tensor]) -> Option<usize> {
        let plan = self.prepare(inputs).ok()?;
        let inputs: usize = inputs.iter().map(Tensor::byte_size).sum();
        plan.run_bytes?.checked_add(inputs)
    }
}

impl TractModel {
    /// Validates `inputs` and returns the plan for their shapes (and the
    /// values of frozen inputs), compiling it if needed.
    fn prepare(&self, inputs: &[Tensor]) -> Result<Arc<Plan>, EngineError> {
        let shapes = self.validate(inputs)?;
        let frozen = self.frozen_inputs(inputs);
        let values: Vec<Vec<i64>> = inputs
            .iter()
            .zip(&frozen)
            .filter(|(_, f)| **f)
            .map(|(t, _)| integer_values(t))
            .collect();
        if !values.is_empty() {
            // tract evaluates operators fed only by constants while typing, so
            // sizes set by baked-in values are checked before it sees them.
            let named: Vec<(&str, &[i64])> = self
                .info
                .inputs
                .iter()
                .zip(&frozen)
                .filter(|(_, f)| **f)
                .zip(&values)
                .map(|((decl, _), v)| (decl.name.as_str(), v.as_slice()))
                .collect();
            self.value_guard
                .check(&named, self.max_tensor_bytes)
                .map_err(|e| match e {
                    prescan::Refusal::TooLarge(t) => EngineError::TensorTooLarge(t),
                    prescan::Refusal::Invalid(reason) => EngineError::InvalidInput {
                        input: String::new(),
                        reason,
                    },
                })?;
        }
        self.plan((shapes, values), inputs)
    }

    /// Converts tract's outputs to the declared output types.
    fn outputs(&self, outputs: &TVec<TValue>) -> Result<Vec<NamedTensor>, EngineError> {
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
                // The declared type is the contract callers see in `info()`;
                // tract sometimes computes in another (ConstantOfShape's
                // default value comes out f64), so numeric outputs are cast.
                let want = convert::datum_of(decl.dtype);
                let cast;
                let value: &tract_onnx::prelude::Tensor = if convert::dtype_of(value.datum_type())
                    != Some(decl.dtype)
                    && decl.dtype.is_numeric()
                    && value.datum_type() != DatumType::String
                {
                    cast = value.cast_to_dt(want).map_err(|e| {
                        EngineError::Run(format!(
                            "output {:?}: cannot return {:?} as {}: {e:#}",
                            decl.name,
                            value.datum_type(),
                            decl.dtype
                        ))
                    })?;
                    &cast
                } else {
                    value
                };
                let tensor = convert::from_tract(value)
                    .map_err(|e| EngineError::Run(format!("output {:?}: {e}", decl.name)))?;
                Ok(NamedTensor {
                    name: decl.name.clone(),
                    tensor,
                })
            })
            .collect()
    }
}

/// Decodes an ONNX `TensorProto` (as in the ONNX test suite's `*.pb`
/// files), refusing the same hostile declarations as model loading.
pub fn decode_tensor_proto(bytes: &[u8], limits: &Limits) -> Result<NamedTensor, EngineError> {
    let proto = <pb::TensorProto as prost::Message>::decode(bytes)
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
        Ok(Err(e)) => Err(match guard::classify(&e) {
            Some(EngineError::TensorTooLarge(t)) => CompileError::TooLarge(t),
            Some(EngineError::InvalidInput { reason, .. }) => CompileError::Invalid(reason),
            _ => CompileError::Failed(format!("{stage} failed: {e:#}")),
        }),
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
/// model that still does not type is checked again per shape set (or, with
/// concrete inputs, per set of parameter values) at run time.
fn typed_probe(inference: &InferenceModel) -> Result<Probe, String> {
    let mut probe = inference.clone();
    let mut all_concrete = true;
    for ix in 0..probe.inputs.len() {
        let fact = probe.input_fact(ix).map_err(|e| format!("{e:#}"))?.clone();
        if fact.shape.is_open() {
            return Ok(Probe::Deferred);
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
    let typed = match guarded_compile("typing", || probe.into_typed()) {
        Ok(typed) => Ok(typed),
        // The model's own constants make a tensor over the cap (or of a
        // negative size): no request can fix that.
        Err(CompileError::TooLarge(t)) => return Err(t.to_string()),
        Err(CompileError::Invalid(m)) => return Err(m),
        Err(CompileError::Failed(m) | CompileError::Panicked(m)) => Err(m),
    };
    match typed {
        Ok(typed) => Ok(Probe::Typed(typed)),
        // Concrete shapes and still untypable: some input is used as a
        // parameter tract needs constant (axes, a shape, pads...).
        Err(_) if all_concrete && !inference.inputs.is_empty() => Ok(Probe::NeedsValues),
        Err(e) if all_concrete => Err(e),
        // Some graphs (a Reshape fed by computed shapes, say) only type once
        // the input shapes are concrete: typing is retried for each shape set.
        Err(_) => Ok(Probe::Deferred),
    }
}

/// What typing the graph at load time showed.
enum Probe {
    Typed(TypedModel),
    /// Types only with concrete input shapes: checked per shape set.
    Deferred,
    /// Types only with some input values known.
    NeedsValues,
}

/// Rejects any tensor with a known shape over the cap (weights, constant
/// folds, intermediates of a concrete plan), before tract folds or runs it.
fn check_facts(model: &TypedModel, cap: usize) -> Result<(), crate::TensorTooLarge> {
    for node in model.nodes() {
        for output in &node.outputs {
            if let Some(shape) = output.fact.shape.as_concrete() {
                let bytes = shape
                    .iter()
                    .try_fold(output.fact.datum_type.size_of() as u128, |b, d| {
                        b.checked_mul(*d as u128)
                    });
                if bytes.is_none_or(|b| b > cap as u128) {
                    return Err(crate::TensorTooLarge {
                        what: format!(
                            "node {:?} output, a {:?} tensor of shape {shape:?}",
                            node.name, output.fact.datum_type
                        ),
                        bytes,
                        cap,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Upper bound on the bytes one run allocates: every node output of the
/// plan, as if none were freed or computed in place. `None` when some shape
/// is only known while running.
fn run_bytes(model: &TypedModel) -> Option<usize> {
    model
        .nodes()
        .iter()
        .filter(|n| !n.op_is::<tract_onnx::tract_core::ops::konst::Const>())
        .flat_map(|n| &n.outputs)
        .map(|o| guard::fact_bytes(&o.fact))
        .try_fold(0usize, |sum, b| sum.checked_add(b?))
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
