//! Whether a graph's run time is set by its declared shapes alone.
//!
//! A caller may run a model somewhere a long run would hurt (the node runs
//! microsecond models on its async worker, skipping the hop to a blocking
//! thread) only if no request can make one run much longer than the runs it
//! has seen. That holds when every input has a fixed declared shape (requests
//! are checked against it) and every operator's work depends only on its
//! operands' shapes: no control flow (`Loop` trip counts and `If` branches
//! come from values), no operator whose output size is set by operand values
//! (`Range`, `Expand`, `Tile`, `Pad`, `Resize`, `NonZero`...), no operator of
//! another domain. The list is an allowlist: an operator not on it makes the
//! graph's cost unknown, so a new or rare operator fails closed.

use tract_onnx::pb::{GraphProto, ModelProto, tensor_shape_proto, type_proto};

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

/// True when `model`'s main graph has only [`SHAPE_BOUND`] operators of the
/// default domain and every graph input has a fixed, positive shape.
pub(crate) fn fixed_cost(model: &ModelProto) -> bool {
    model.graph.as_ref().is_some_and(graph_is_fixed_cost)
}

fn graph_is_fixed_cost(graph: &GraphProto) -> bool {
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs_fixed = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_str()))
        .all(|i| {
            let Some(type_proto::Value::TensorType(t)) = i.r#type.as_ref().and_then(|t| t.value.as_ref())
            else {
                return false;
            };
            t.shape.as_ref().is_some_and(|s| {
                s.dim.iter().all(|d| {
                    matches!(d.value, Some(tensor_shape_proto::dimension::Value::DimValue(n)) if n > 0)
                })
            })
        });
    inputs_fixed
        && graph.node.iter().all(|n| {
            (n.domain.is_empty() || n.domain == "ai.onnx")
                && SHAPE_BOUND.contains(&n.op_type.as_str())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{NodeProto, TensorShapeProto, TypeProto, ValueInfoProto};

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
    fn static_graphs_of_shape_bound_operators_are_fixed_cost() {
        let mlp = [
            ("Gemm", ""),
            ("Relu", ""),
            ("Gemm", "ai.onnx"),
            ("Softmax", ""),
        ];
        assert!(fixed_cost(&model(&mlp, &[Some(1), Some(784)])));
        assert!(
            fixed_cost(&model(&[("Relu", "")], &[])),
            "a scalar's shape is fixed"
        );
    }

    #[test]
    fn value_dependent_work_symbolic_shapes_and_other_domains_are_not() {
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
            !fixed_cost(&model(&[("Relu", "")], &[None, Some(8)])),
            "symbolic dim"
        );
        assert!(
            !fixed_cost(&model(&[("Relu", "")], &[Some(0), Some(8)])),
            "zero dim"
        );
        assert!(
            !fixed_cost(&model(&[("Gelu", "com.microsoft")], &fixed)),
            "foreign domain"
        );
        assert!(!fixed_cost(&ModelProto::default()), "no graph");
    }
}
