//! Tensor sizes checked inside tract, before it allocates.
//!
//! tract allocates in three places a request can steer: while it analyses
//! a graph (it evaluates every operator whose inputs are all known, so a
//! request value baked in as a constant reaches `ConstantOfShape`, `Range`,
//! `OneHot`... through any chain of `Identity`, `Cast` or shape arithmetic),
//! while it optimises (constant folding, after the typed graph is checked by
//! `check_facts`), and while it runs (tensors whose sizes depend on values
//! only known then, like a `Range` of a runtime input). An allocation that
//! fails aborts the process, and one that succeeds can take gigabytes.
//!
//! Every operator parsed through [`register`] is wrapped in [`SizeGuard`],
//! which works out its output facts (and, for the operators whose output
//! size is set by operand values, the size from those values) before tract
//! may evaluate it; [`run_checked`] does the same for every node of a plan
//! whose output shape was not known when the plan was compiled. Both refuse
//! with [`TensorTooLarge`] (or [`InvalidValue`] for a negative size) carried
//! through tract's error chain, which [`classify`] recovers.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::TypedSimplePlan;
use tract_onnx::tract_core::plan::eval as plan_eval;
use tract_onnx::tract_hir::internal::*;

use super::prescan::{self, Const, Refusal};
use crate::{EngineError, Limits, TensorTooLarge};

/// A size-setting operand that is negative or otherwise meaningless.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct InvalidValue(pub(crate) String);

/// Operators left unwrapped: `Constant` (its value is already checked by the
/// pre-scan), `Identity` (its output is its input) and the control-flow
/// operators, whose bodies are parsed (and guarded) node by node.
const UNGUARDED: &[&str] = &["Constant", "Identity", "If", "Loop", "Scan"];

/// Largest operand whose values are read to check a size (shapes, repeats,
/// depths and bounds are short vectors).
const MAX_OPERAND: usize = 64;

thread_local! {
    /// The tensor cap of the parse under way on this thread (see [`parse_with_cap`]).
    static PARSE_CAP: Cell<Option<usize>> = const { Cell::new(None) };
}

/// tract's operator register with the engine's own parsers (exact integer
/// reductions, `If` that follows a known condition), before size guards
/// are added.
fn base() -> &'static OnnxOpRegister {
    static BASE: OnceLock<OnnxOpRegister> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut reg = tract_onnx::onnx().op_register;
        super::reduce::register(&mut reg);
        super::branch::register(&mut reg);
        reg
    })
}

/// The register the engine parses with: [`base`], every operator but the
/// [`UNGUARDED`] ones wrapped in a [`SizeGuard`].
pub(crate) fn register() -> OnnxOpRegister {
    let mut reg = OnnxOpRegister::default();
    for (name, builder) in &base().0 {
        let builder = if UNGUARDED.contains(&name.as_str()) {
            *builder
        } else {
            guarded_builder
        };
        reg.0.insert(name.clone(), builder);
    }
    reg
}

/// Runs `parse` with `cap` as the tensor cap of the guards it creates.
pub(crate) fn parse_with_cap<T>(cap: usize, parse: impl FnOnce() -> T) -> T {
    struct Reset(Option<usize>);
    impl Drop for Reset {
        fn drop(&mut self) {
            PARSE_CAP.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(PARSE_CAP.with(|c| c.replace(Some(cap))));
    parse()
}

fn guarded_builder(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let Some(builder) = base().0.get(&node.op_type) else {
        bail!("operator {:?} is not supported", node.op_type);
    };
    let (inner, closures) = builder(ctx, node)?;
    let cap = PARSE_CAP
        .with(Cell::get)
        .unwrap_or_else(|| Limits::default().max_tensor_bytes);
    // The node is kept for the value checks; its attributes are small for
    // every operator that is not a `Constant`.
    let node = Arc::new(NodeProto {
        input: node.input.clone(),
        output: node.output.clone(),
        name: node.name.clone(),
        op_type: node.op_type.clone(),
        attribute: node.attribute.clone(),
        ..NodeProto::default()
    });
    Ok((Box::new(SizeGuard { inner, cap, node }), closures))
}

/// An inference operator that checks its output sizes before the operator
/// it wraps may be evaluated. Everything else is delegated.
#[derive(Debug, Clone)]
struct SizeGuard {
    inner: Box<dyn InferenceOp>,
    cap: usize,
    node: Arc<NodeProto>,
}

impl PartialEq for SizeGuard {
    // Like tract's own expansion wrapper: two guards are never merged.
    fn eq(&self, _other: &Self) -> bool {
        false
    }
}
impl Eq for SizeGuard {}

impl SizeGuard {
    /// Refuses outputs whose known shape is over the cap, and operators
    /// whose known operand values set an output over the cap.
    fn check(&self, inputs: &[InferenceFact], outputs: &[InferenceFact]) -> TractResult<()> {
        for (ix, fact) in outputs.iter().enumerate() {
            let Some(shape) = fact.shape.concretize() else {
                continue;
            };
            let dims: Option<Vec<i64>> = shape.iter().map(|d| d.to_i64().ok()).collect();
            let Some(dims) = dims else { continue };
            let size = fact.datum_type.concretize().map_or(1, |dt| dt.size_of());
            let what = || {
                format!(
                    "output {ix} of node {:?} ({}), shape {dims:?}",
                    self.node.name, self.node.op_type
                )
            };
            check_dims(&dims, size, self.cap, what)?;
        }
        if prescan::MATERIALISING.contains(&self.node.op_type.as_str()) {
            let consts: HashMap<&str, Const<'_>> = self
                .node
                .input
                .iter()
                .zip(inputs)
                .filter_map(|(name, fact)| Some((name.as_str(), known(fact)?)))
                .collect();
            prescan::materialising(&self.node, &consts, self.cap).map_err(|r| match r {
                Refusal::TooLarge(t) => TractError::from(t),
                Refusal::Invalid(m) => TractError::from(InvalidValue(m)),
            })?;
        }
        Ok(())
    }
}

/// What analysis knows of an operand: its numbers when small, its volume.
fn known(fact: &InferenceFact) -> Option<Const<'static>> {
    let size = fact.datum_type.concretize().map_or(1, |dt| dt.size_of());
    if let Some(value) = fact.value.concretize() {
        let numbers = (value.len() <= MAX_OPERAND)
            .then(|| {
                let cast = value.cast_to::<f64>().ok()?;
                let view = cast.try_as_plain_ram().ok()?;
                view.as_slice::<f64>().ok().map(<[f64]>::to_vec)
            })
            .flatten();
        return Some(Const::Known {
            numbers,
            volume: value.len() as f64,
            size,
        });
    }
    let shape = fact.shape.concretize()?;
    let volume = shape
        .iter()
        .map(|d| d.to_i64().ok().map(|d| d as f64))
        .product::<Option<f64>>()?;
    Some(Const::Known {
        numbers: None,
        volume,
        size,
    })
}

/// Refuses a shape over `cap` bytes, or one with a negative extent.
fn check_dims(dims: &[i64], size: usize, cap: usize, what: impl Fn() -> String) -> TractResult<()> {
    let mut bytes: Option<u128> = Some(size as u128);
    for d in dims {
        let Ok(d) = u128::try_from(*d) else {
            return Err(InvalidValue(format!("{} has a negative extent", what())).into());
        };
        bytes = bytes.and_then(|b| b.checked_mul(d));
    }
    if bytes.is_none_or(|b| b > cap as u128) {
        return Err(TensorTooLarge {
            what: what(),
            bytes,
            cap,
        }
        .into());
    }
    Ok(())
}

impl Op for SizeGuard {
    fn name(&self) -> StaticName {
        self.inner.name()
    }

    fn validation(&self) -> Validation {
        self.inner.validation()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        self.inner.info()
    }

    fn mints_runtime_symbols(&self) -> bool {
        self.inner.mints_runtime_symbols()
    }

    fn as_typed(&self) -> Option<&dyn TypedOp> {
        self.inner.as_typed()
    }
}

impl EvalOp for SizeGuard {
    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.inner.eval(ctx, inputs)
    }

    fn forwards_input(&self) -> Option<usize> {
        self.inner.forwards_input()
    }

    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        self.inner.eval_out_of_plan(inputs)
    }

    fn state(&self, ctx: &EvalContext) -> TractResult<Option<Box<dyn OpState>>> {
        self.inner.state(ctx)
    }

    fn drop_session(&self, session: SessionId, node_id: usize) {
        self.inner.drop_session(session, node_id)
    }
}

type Facts = (
    TVec<InferenceFact>,
    TVec<InferenceFact>,
    TVec<InferenceFact>,
);

impl InferenceOp for SizeGuard {
    fn infer(
        &mut self,
        inputs: TVec<&InferenceFact>,
        outputs: TVec<&InferenceFact>,
        observed: TVec<&InferenceFact>,
    ) -> TractResult<Facts> {
        // Operand values first: some of tract's shape rules assert on a
        // negative size instead of returning an error.
        let known: Vec<InferenceFact> = inputs.iter().map(|f| (*f).clone()).collect();
        self.check(&known, &[])?;
        // tract's `infer` evaluates the operator as soon as its inputs are
        // known; the facts it derives first are checked before that.
        let (ins, outs, obs) =
            self.inner
                .infer_facts(inputs.clone(), outputs.clone(), observed.clone())?;
        self.check(&ins, &outs)?;
        // Evaluating an integer matrix product here would reach tract's
        // kernels (none for int64); it is left to the exact typed op.
        let integer = |f: &InferenceFact| {
            f.datum_type
                .concretize()
                .is_some_and(|dt| dt.is_integer() && !dt.is_quantized())
        };
        if super::einsum::PRODUCTS.contains(&self.node.op_type.as_str()) && ins.iter().any(integer)
        {
            return Ok((ins, outs, obs));
        }
        self.inner.infer(inputs, outputs, observed)
    }

    fn infer_facts(
        &mut self,
        inputs: TVec<&InferenceFact>,
        outputs: TVec<&InferenceFact>,
        observed: TVec<&InferenceFact>,
    ) -> TractResult<Facts> {
        self.inner.infer_facts(inputs, outputs, observed)
    }

    fn observe_outlets(
        &self,
        model: &InferenceModel,
        node: &InferenceNode,
    ) -> TractResult<Vec<OutletId>> {
        self.inner.observe_outlets(model, node)
    }

    fn incorporate(
        &self,
        model: &InferenceModel,
        node: &InferenceNode,
    ) -> TractResult<Option<InferenceModelPatch>> {
        self.inner.incorporate(model, node)
    }

    fn nboutputs(&self) -> TractResult<usize> {
        self.inner.nboutputs()
    }

    fn as_op(&self) -> &dyn Op {
        self.inner.as_op()
    }

    fn as_op_mut(&mut self) -> &mut dyn Op {
        self.inner.as_op_mut()
    }

    fn to_typed(
        &self,
        source: &InferenceModel,
        node: &InferenceNode,
        target: &mut TypedModel,
        mapping: &HashMap<OutletId, OutletId>,
    ) -> TractResult<TVec<OutletId>> {
        let first = target.nodes.len();
        let outputs = self.inner.to_typed(source, node, target, mapping)?;
        super::einsum::reroute(target, first..target.nodes.len());
        Ok(outputs)
    }
}

/// Runs a plan, checking before each node whose output shape was not known
/// at compile time (it depends on values computed in this run) that its
/// outputs fit the cap.
pub(crate) fn run_checked(
    plan: &Arc<TypedSimplePlan>,
    inputs: TVec<TValue>,
    cap: usize,
) -> TractResult<TVec<TValue>> {
    let mut state = plan.spawn()?;
    state.run_plan_with_eval(inputs, |ctx, op_state, node, inputs| {
        for (ix, output) in node.outputs.iter().enumerate() {
            if output.fact.shape.as_concrete().is_some() {
                // Checked with the whole plan when it was compiled.
                continue;
            }
            let resolved: Option<Vec<i64>> = output
                .fact
                .shape
                .iter()
                .map(|d| d.eval(ctx.symbols).to_i64().ok())
                .collect();
            let dims = match resolved {
                Some(dims) => Some(dims),
                // Set by this very node (a Range, a dynamic Tile...): what
                // the operator says of these concrete inputs.
                None => predicted(&*node.op, &inputs, ix),
            };
            if let Some(dims) = dims {
                let what = || format!("output {ix} of node {:?}, shape {dims:?}", node.name);
                check_dims(&dims, output.fact.datum_type.size_of(), cap, what)?;
            }
        }
        plan_eval(ctx, op_state, node, inputs)
    })
}

/// The output shape `op` declares for these concrete inputs (small inputs
/// passed as values, so shapes set by values resolve).
fn predicted(op: &dyn TypedOp, inputs: &[TValue], ix: usize) -> Option<Vec<i64>> {
    let facts: Vec<TypedFact> = inputs
        .iter()
        .map(|t| {
            if t.len() <= MAX_OPERAND {
                TypedFact::try_from(t.clone().into_arc_tensor()).ok()
            } else {
                Some(t.datum_type().fact(t.shape()))
            }
        })
        .collect::<Option<_>>()?;
    let refs: Vec<&TypedFact> = facts.iter().collect();
    let out = op.output_facts(&refs).ok()?;
    out.get(ix)?.shape.iter().map(|d| d.to_i64().ok()).collect()
}

/// The engine error a tract error stands for, when it is one of the
/// refusals raised by the guards.
pub(crate) fn classify(e: &TractError) -> Option<EngineError> {
    for cause in e.chain() {
        if let Some(t) = cause.downcast_ref::<TensorTooLarge>() {
            return Some(EngineError::TensorTooLarge(t.clone()));
        }
        if let Some(InvalidValue(m)) = cause.downcast_ref::<InvalidValue>() {
            return Some(EngineError::InvalidInput {
                input: String::new(),
                reason: m.clone(),
            });
        }
    }
    e.downcast_ref::<TensorTooLarge>()
        .map(|t| EngineError::TensorTooLarge(t.clone()))
}

/// Bytes of a concrete typed fact, `None` when its shape is not concrete.
pub(crate) fn fact_bytes(fact: &TypedFact) -> Option<usize> {
    let shape = fact.shape.as_concrete()?;
    crate::element_count(shape)?.checked_mul(fact.datum_type.size_of())
}
