//! ONNX `If` that follows only the branch its condition picks, once the
//! condition is known.
//!
//! Exporters write `If` to choose between code paths for different inputs: a
//! recurrent audio model (Silero VAD) branches on its sample rate, then on
//! whether a dimension is 1 before a `Squeeze`. ONNX lets the two branches
//! give outputs of different shapes, even ranks, and a branch may be
//! ill-typed for inputs that select the other one. tract's parser analyses
//! both branches whatever the condition and builds an `IfThenElse` whose
//! branches must agree on their output facts, so such models fail to type
//! ("If ToTypedTranslator", "Attempt to squeeze an axis which dimension is
//! not one"). Here, when the condition is known while typing (it is derived
//! from input shapes, or from an integer input the engine froze), only the
//! chosen branch is analysed and it is inlined into the typed graph; an
//! unknown condition keeps tract's behaviour, both branches and a runtime
//! choice.

use tract_onnx::model::{OnnxOpRegister, ParseResult, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::logic::IfThenElse;
use tract_onnx::tract_hir::internal::*;

/// Replaces tract's parser for `If`.
pub(crate) fn register(reg: &mut OnnxOpRegister) {
    reg.insert("If", parse_if);
}

fn parse_if(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let ParseResult {
        model: then_body,
        unresolved_inputs: then_names,
        ..
    } = ctx.parse_graph(node.get_attr("then_branch")?)?;
    let ParseResult {
        model: else_body,
        unresolved_inputs: else_names,
        ..
    } = ctx.parse_graph(node.get_attr("else_branch")?)?;
    // The node's inputs: the condition, then every outer value either branch
    // reads, once each, in a stable order.
    let mut outer: Vec<String> = then_names.iter().chain(&else_names).cloned().collect();
    outer.sort();
    outer.dedup();
    let slot = |name: &String| -> TractResult<usize> {
        outer
            .iter()
            .position(|o| o == name)
            .map(|p| p + 1)
            .ok_or_else(|| format_err!("If: branch input {name} not among the outer values"))
    };
    let then_mapping = then_names.iter().map(slot).collect::<TractResult<_>>()?;
    let else_mapping = else_names.iter().map(slot).collect::<TractResult<_>>()?;
    Ok((
        Box::new(If {
            then_body,
            then_mapping,
            else_body,
            else_mapping,
        }),
        outer,
    ))
}

/// The parsed `If`: both bodies, and for each body input the node input it
/// reads (0 is the condition).
#[derive(Debug, Clone)]
struct If {
    then_body: InferenceModel,
    then_mapping: Vec<usize>,
    else_body: InferenceModel,
    else_mapping: Vec<usize>,
}

impl PartialEq for If {
    // Bodies are not compared: two `If`s are never merged.
    fn eq(&self, _: &Self) -> bool {
        false
    }
}
impl Eq for If {}

impl If {
    fn branch(&self, cond: bool) -> (&InferenceModel, &[usize]) {
        if cond {
            (&self.then_body, &self.then_mapping)
        } else {
            (&self.else_body, &self.else_mapping)
        }
    }
}

/// The condition's value, when the fact holds it.
fn known_condition(fact: &InferenceFact) -> TractResult<Option<bool>> {
    match fact.value.concretize() {
        Some(v) => Ok(Some(v.cast_to_scalar::<bool>()?)),
        None => Ok(None),
    }
}

impl Op for If {
    fn name(&self) -> StaticName {
        "If".into()
    }

    not_a_typed_op!();
}

impl EvalOp for If {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (body, mapping) = self.branch(inputs[0].cast_to_scalar::<bool>()?);
        let inputs: TVec<TValue> = mapping.iter().map(|&ix| inputs[ix].clone()).collect();
        body.clone().into_runnable()?.run(inputs)
    }
}

impl InferenceOp for If {
    fn infer_facts(
        &mut self,
        inputs: TVec<&InferenceFact>,
        outputs: TVec<&InferenceFact>,
        observed: TVec<&InferenceFact>,
    ) -> TractResult<(
        TVec<InferenceFact>,
        TVec<InferenceFact>,
        TVec<InferenceFact>,
    )> {
        let mut inputs: TVec<InferenceFact> = inputs.into_iter().cloned().collect();
        let mut outputs: TVec<InferenceFact> = outputs.into_iter().cloned().collect();
        loop {
            let mut changed = inputs[0]
                .datum_type
                .unify_with(&bool::datum_type().into())?;
            let cond = known_condition(&inputs[0])?;
            // Only the chosen branch, when there is one: the other may not
            // type for these inputs (that is often why the `If` is there).
            let branches: &mut [(&mut InferenceModel, &Vec<usize>)] = match cond {
                Some(true) => &mut [(&mut self.then_body, &self.then_mapping)],
                Some(false) => &mut [(&mut self.else_body, &self.else_mapping)],
                None => &mut [
                    (&mut self.then_body, &self.then_mapping),
                    (&mut self.else_body, &self.else_mapping),
                ],
            };
            for (body, mapping) in branches.iter_mut() {
                for (body_ix, outer_ix) in mapping.iter().enumerate() {
                    changed |= body
                        .input_fact_mut(body_ix)?
                        .unify_with_mut(&mut inputs[*outer_ix])?;
                }
                for (ix, out) in outputs.iter_mut().enumerate() {
                    changed |= if cond.is_some() {
                        body.output_fact_mut(ix)?.unify_with_mut(out)?
                    } else {
                        // Undecided: the output is whatever both branches give.
                        let fact = body.output_fact_mut(ix)?;
                        fact.shape.unify_with_mut(&mut out.shape)?
                            | fact.datum_type.unify_with_mut(&mut out.datum_type)?
                    };
                }
                changed |= body.analyse(false)?;
            }
            if !changed {
                return Ok((inputs, outputs, observed.into_iter().cloned().collect()));
            }
        }
    }

    fn nboutputs(&self) -> TractResult<usize> {
        let n = self.then_body.outputs.len();
        ensure!(
            n == self.else_body.outputs.len(),
            "If: the then branch has {n} outputs, the else branch {}",
            self.else_body.outputs.len()
        );
        Ok(n)
    }

    fn to_typed(
        &self,
        source: &InferenceModel,
        node: &InferenceNode,
        target: &mut TypedModel,
        mapping: &HashMap<OutletId, OutletId>,
    ) -> TractResult<TVec<OutletId>> {
        let inputs: TVec<OutletId> = node.inputs.iter().map(|o| mapping[o]).collect();
        let Some(cond) = known_condition(source.outlet_fact(node.inputs[0])?)? else {
            let op = IfThenElse {
                then_body: self.then_body.clone().into_typed()?,
                then_input_mapping: self.then_mapping.clone(),
                else_body: self.else_body.clone().into_typed()?,
                else_input_mapping: self.else_mapping.clone(),
            };
            return target.wire_node(&node.name, op, &inputs);
        };
        let (body, body_mapping) = self.branch(cond);
        let body = body.clone().into_typed()?;
        inline(&body, body_mapping, &inputs, &node.name, target)
    }

    as_op!();
}

/// Wires `body`'s nodes into `target`, its inputs fed by `inputs[mapping[i]]`,
/// their names prefixed with the `If`'s; returns the outlets of its outputs.
fn inline(
    body: &TypedModel,
    mapping: &[usize],
    inputs: &[OutletId],
    prefix: &str,
    target: &mut TypedModel,
) -> TractResult<TVec<OutletId>> {
    let mut wired: HashMap<OutletId, OutletId> = HashMap::default();
    for (body_input, outer_ix) in body.input_outlets()?.iter().zip(mapping) {
        wired.insert(*body_input, inputs[*outer_ix]);
    }
    for id in body.eval_order()? {
        let n = body.node(id);
        if TypedModel::is_source(&n.op) {
            continue;
        }
        let ins: TVec<OutletId> = n.inputs.iter().map(|o| wired[o]).collect();
        let name = target.unique_name(format!("{prefix}.{}", n.name));
        let outs = target.wire_node(name, n.op.clone(), &ins)?;
        for (slot, outlet) in outs.into_iter().enumerate() {
            wired.insert(OutletId::new(id, slot), outlet);
        }
    }
    body.output_outlets()?
        .iter()
        .map(|o| {
            wired
                .get(o)
                .copied()
                .ok_or_else(|| format_err!("If: branch output {o:?} is not wired"))
        })
        .collect()
}
