//! Whether a graph's run time is set by its inputs' shapes alone.
//!
//! A caller may run a model somewhere a long run would hurt (the node runs
//! microsecond models on its async worker, skipping the hop to a blocking
//! thread) only if no request can make a run much longer than the runs it has
//! seen with the same input shapes. That holds when every operator's work
//! depends only on its operands' shapes: no control flow (`Loop` trip counts
//! and `If` branches come from values), no operator whose output size is set
//! by operand values (`Range`, `Expand`, `Tile`, `Pad`, `Resize`,
//! `NonZero`...), no shape operand computed from a request, no operator of
//! another domain. The operator list is an allowlist: one not on it makes the
//! graph's cost unknown, so a new or rare operator fails closed.

use std::collections::HashSet;

use tract_onnx::pb::{GraphProto, ModelProto, NodeProto};

/// Operators of the default domain whose work is a function of their
/// operands' shapes (attributes included), whatever the values.
const SHAPE_BOUND: &[&str] = &[
    // element-wise arithmetic and logic
    "Abs",
    "Add",
    "And",
    "BitShift",
    "Ceil",
    "Clip",
    "Div",
    "Equal",
    "Erf",
    "Exp",
    "Floor",
    "Greater",
    "GreaterOrEqual",
    "IsInf",
    "IsNaN",
    "Less",
    "LessOrEqual",
    "Log",
    "Max",
    "Mean",
    "Min",
    "Mod",
    "Mul",
    "Neg",
    "Not",
    "Or",
    "Pow",
    "Reciprocal",
    "Round",
    "Sign",
    "Sqrt",
    "Sub",
    "Sum",
    "Where",
    "Xor",
    "Cos",
    "Sin",
    "Tan",
    "Acos",
    "Asin",
    "Atan",
    "Cosh",
    "Sinh",
    "Tanh",
    "Acosh",
    "Asinh",
    "Atanh",
    // activations
    "Celu",
    "Elu",
    "Gelu",
    "HardSigmoid",
    "HardSwish",
    "Hardmax",
    "LeakyRelu",
    "LogSoftmax",
    "Mish",
    "PRelu",
    "Relu",
    "Selu",
    "Shrink",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Softsign",
    "ThresholdedRelu",
    // products, convolutions, pooling, normalisation
    "Conv",
    "ConvInteger",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "MatMulInteger",
    "QLinearConv",
    "QLinearMatMul",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalLpPool",
    "GlobalMaxPool",
    "LpPool",
    "MaxPool",
    "BatchNormalization",
    "GroupNormalization",
    "InstanceNormalization",
    "LayerNormalization",
    "LpNormalization",
    "LRN",
    "MeanVarianceNormalization",
    // reductions (axes may be an input: the work is still at most the input's size)
    "ArgMax",
    "ArgMin",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
    "CumSum",
    // layout: outputs no larger than their inputs, or fixed by attributes
    "Cast",
    "CastLike",
    "Concat",
    "Constant",
    "DepthToSpace",
    "Dropout",
    "Flatten",
    "Gather",
    "GatherElements",
    "GatherND",
    "Identity",
    "Reshape",
    "Shape",
    "Size",
    "Slice",
    "SpaceToDepth",
    "Split",
    "Squeeze",
    "Transpose",
    "Unsqueeze",
    "ScatterElements",
    "ScatterND",
    // quantisation
    "DequantizeLinear",
    "QuantizeLinear",
    "DynamicQuantizeLinear",
];

/// Operand positions that set an output's shape (targets, starts and ends, axes,
/// split sizes). Computed from a request, they could turn a cheap product into
/// an expensive one (a reshape to `[n, 1]` then `[1, n]` makes an `n × n`
/// product out of `n` numbers), so they must be constants.
const SHAPE_OPERANDS: &[(&str, &[usize])] = &[
    ("Reshape", &[1]),
    ("Slice", &[1, 2, 3, 4]),
    ("Split", &[1]),
    ("Squeeze", &[1]),
    ("Unsqueeze", &[1]),
    ("CumSum", &[1]),
    ("ReduceL1", &[1]),
    ("ReduceL2", &[1]),
    ("ReduceLogSum", &[1]),
    ("ReduceLogSumExp", &[1]),
    ("ReduceMax", &[1]),
    ("ReduceMean", &[1]),
    ("ReduceMin", &[1]),
    ("ReduceProd", &[1]),
    ("ReduceSum", &[1]),
    ("ReduceSumSquare", &[1]),
];

/// True when `model`'s main graph has only [`SHAPE_BOUND`] operators of the
/// default domain and every [`SHAPE_OPERANDS`] operand is an initializer or a
/// `Constant`.
pub(crate) fn fixed_cost(model: &ModelProto) -> bool {
    model.graph.as_ref().is_some_and(graph_is_fixed_cost)
}

fn graph_is_fixed_cost(graph: &GraphProto) -> bool {
    let constants: HashSet<&str> = graph
        .initializer
        .iter()
        .map(|t| t.name.as_str())
        .chain(
            graph
                .node
                .iter()
                .filter(|n| n.op_type == "Constant")
                .flat_map(|n| n.output.iter().map(String::as_str)),
        )
        .collect();
    graph.node.iter().all(|n| {
        (n.domain.is_empty() || n.domain == "ai.onnx")
            && SHAPE_BOUND.contains(&n.op_type.as_str())
            && shape_operands_constant(n, &constants)
    })
}

/// Whether every [`SHAPE_OPERANDS`] operand of `n` is absent or among `constants`.
fn shape_operands_constant(n: &NodeProto, constants: &HashSet<&str>) -> bool {
    let positions = SHAPE_OPERANDS
        .iter()
        .find(|(op, _)| *op == n.op_type)
        .map_or(&[][..], |(_, p)| *p);
    positions.iter().all(|&p| {
        n.input
            .get(p)
            .is_none_or(|name| name.is_empty() || constants.contains(name.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{TensorShapeProto, TypeProto, ValueInfoProto};
    use tract_onnx::pb::{tensor_shape_proto, type_proto};

    fn input(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
        use tensor_shape_proto::{Dimension, dimension::Value};
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: 1,
                    shape: Some(TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|d| Dimension {
                                value: Some(match d {
                                    Some(n) => Value::DimValue(*n),
                                    None => Value::DimParam("batch".into()),
                                }),
                                ..Default::default()
                            })
                            .collect(),
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A graph `x → Reshape(x, target) → MatMul(·, ·)`, `target` an initializer or the
    /// second graph input.
    fn reshape_model(target_is_constant: bool) -> ModelProto {
        let mut m = model(&[], &[Some(1), Some(64)]);
        let g = m.graph.as_mut().unwrap();
        if target_is_constant {
            g.initializer.push(tract_onnx::pb::TensorProto {
                name: "target".into(),
                dims: vec![2],
                data_type: 7,
                int64_data: vec![8, 8],
                ..Default::default()
            });
        } else {
            g.input.push(input("target", &[Some(2)]));
        }
        g.node.push(NodeProto {
            op_type: "Reshape".into(),
            input: vec!["x".into(), "target".into()],
            output: vec!["r".into()],
            ..Default::default()
        });
        g.node.push(NodeProto {
            op_type: "MatMul".into(),
            input: vec!["r".into(), "r".into()],
            output: vec!["y".into()],
            ..Default::default()
        });
        m
    }

    #[test]
    fn shapes_set_by_request_values_are_not_fixed_cost() {
        assert!(fixed_cost(&reshape_model(true)));
        assert!(!fixed_cost(&reshape_model(false)));
    }

    fn model(ops: &[(&str, &str)], dims: &[Option<i64>]) -> ModelProto {
        ModelProto {
            graph: Some(GraphProto {
                input: vec![input("x", dims)],
                node: ops
                    .iter()
                    .map(|(op, domain)| NodeProto {
                        op_type: (*op).into(),
                        domain: (*domain).into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn graphs_of_shape_bound_operators_are_fixed_cost() {
        let mlp = [
            ("Gemm", ""),
            ("Relu", ""),
            ("Gemm", "ai.onnx"),
            ("Softmax", ""),
        ];
        assert!(fixed_cost(&model(&mlp, &[Some(1), Some(784)])));
        assert!(
            fixed_cost(&model(&mlp, &[None, Some(784)])),
            "a symbolic batch: the cost follows the request's shapes"
        );
    }

    #[test]
    fn value_dependent_work_and_other_domains_are_not() {
        let fixed = [Some(1), Some(8)];
        for op in [
            "Loop", "If", "Scan", "Range", "Expand", "Tile", "Pad", "NonZero", "TopK", "Resize",
        ] {
            assert!(
                !fixed_cost(&model(&[("Relu", ""), (op, "")], &fixed)),
                "{op}"
            );
        }
        assert!(
            !fixed_cost(&model(&[("Gelu", "com.microsoft")], &fixed)),
            "foreign domain"
        );
        assert!(!fixed_cost(&ModelProto::default()), "no graph");
    }
}
