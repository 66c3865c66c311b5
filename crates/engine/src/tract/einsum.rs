//! Exact integer matrix products.
//!
//! tract lowers MatMul and Einsum to an `EinSum` whose evaluation picks a
//! linear-algebra kernel, and there is none for int64: running one panicked
//! ("Can't build a WeightType from I64"). Integer `EinSum` nodes are
//! replaced by [`IntEinSum`], a direct evaluation in wrapping two's
//! complement arithmetic, as onnxruntime's integer MatMul computes.

use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_hir::internal::*;

use super::reduce::widen;

/// True for an integer, unquantized `EinSum` (tract has no int64 kernel;
/// every integer type is routed alike so they all wrap the same way).
pub(crate) fn needs_exact(op: &EinSum) -> bool {
    op.q_params.is_none() && op.operating_dt.is_integer() && !op.operating_dt.is_quantized()
}

/// ONNX operators tract lowers to an `EinSum`.
pub(crate) const PRODUCTS: &[&str] = &["MatMul", "Einsum", "Gemm"];

/// Replaces every integer `EinSum` among `nodes` of `model` by an [`IntEinSum`].
pub(crate) fn reroute(model: &mut TypedModel, nodes: std::ops::Range<usize>) {
    for id in nodes {
        let Some(node) = model.nodes.get_mut(id) else {
            continue;
        };
        let Some(einsum) = node.op_as::<EinSum>() else {
            continue;
        };
        if needs_exact(einsum) {
            let inner = einsum.clone();
            node.op = Box::new(IntEinSum { inner });
        }
    }
}

/// An integer `EinSum` evaluated directly, wrapping like two's complement.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub(crate) struct IntEinSum {
    inner: EinSum,
}

impl Op for IntEinSum {
    fn name(&self) -> StaticName {
        "IntEinSum".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{}", self.inner.axes)])
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for IntEinSum {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let expr = &self.inner.axes;
        let axes: Vec<&Axis> = expr.iter_all_axes().collect();
        // Each axis' extent: the largest of its input dims (a dim of 1
        // broadcasts).
        let mut extents = vec![1usize; axes.len()];
        for (a, axis) in axes.iter().enumerate() {
            let mut seen = false;
            for (i, positions) in axis.inputs.iter().enumerate().take(inputs.len()) {
                for p in positions {
                    let d = *inputs[i]
                        .shape()
                        .get(*p)
                        .context("axis beyond input rank")?;
                    extents[a] = if seen { extents[a].max(d) } else { d };
                    seen = true;
                }
            }
        }
        // Dims of one axis must agree (or broadcast from 1): the indexing
        // below relies on it, and a hostile graph may not have been typed.
        for (a, axis) in axes.iter().enumerate() {
            for (i, positions) in axis.inputs.iter().enumerate().take(inputs.len()) {
                for p in positions {
                    let d = inputs[i].shape().get(*p).copied().unwrap_or(1);
                    if d != 1 && d != extents[a] {
                        bail!(
                            "einsum axis {} has extent {d} in input {i} but {} elsewhere",
                            axis.repr,
                            extents[a]
                        );
                    }
                }
            }
        }
        let values: Vec<Vec<i128>> = inputs
            .iter()
            .map(|t| widen(&*t.cast_to_dt(self.inner.operating_dt)?))
            .collect::<TractResult<_>>()?;
        // Per input, per axis: the stride to step by (0 where broadcast).
        let strides: Vec<Vec<usize>> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let own = row_major(t.shape());
                axes.iter()
                    .map(|axis| {
                        axis.inputs.get(i).map_or(0, |ps| {
                            ps.iter()
                                .filter(|p| t.shape()[**p] != 1)
                                .map(|p| own[*p])
                                .sum()
                        })
                    })
                    .collect()
            })
            .collect();
        let out_rank = expr.rank(InOut::Out(0));
        let mut out_shape = vec![1usize; out_rank];
        for (a, axis) in axes.iter().enumerate() {
            for p in axis.outputs.first().into_iter().flatten() {
                out_shape[*p] = extents[a];
            }
        }
        let own = row_major(&out_shape);
        let out_strides: Vec<usize> = axes
            .iter()
            .map(|axis| {
                axis.outputs
                    .first()
                    .map_or(0, |ps| ps.iter().map(|p| own[*p]).sum())
            })
            .collect();
        let mut out = vec![0i128; out_shape.iter().product()];
        let total: usize = extents.iter().product();
        let mut idx = vec![0usize; axes.len()];
        for _ in 0..total {
            let mut product: i128 = 1;
            for (i, v) in values.iter().enumerate() {
                let at: usize = idx.iter().zip(&strides[i]).map(|(x, s)| x * s).sum();
                product = product.wrapping_mul(v[at]);
            }
            let o: usize = idx.iter().zip(&out_strides).map(|(x, s)| x * s).sum();
            out[o] = out[o].wrapping_add(product);
            for a in (0..axes.len()).rev() {
                idx[a] += 1;
                if idx[a] < extents[a] {
                    break;
                }
                idx[a] = 0;
            }
        }
        let dt = self.inner.operating_dt;
        let out = super::reduce::narrow(&out, dt, &out_shape, super::reduce::Narrow::Wrap)?;
        Ok(tvec!(out.into_tvalue()))
    }
}

fn row_major(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for ax in (0..shape.len().saturating_sub(1)).rev() {
        strides[ax] = strides[ax + 1] * shape[ax + 1];
    }
    strides
}

impl TypedOp for IntEinSum {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        self.inner.output_facts(inputs)
    }

    tract_onnx::tract_core::as_op!();
}
