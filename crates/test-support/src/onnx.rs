//! Builders for small ONNX models made in the tests (no committed model files), on the
//! protobuf types tract-onnx generates (feature `onnx`).

use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension::Value as DimValue};

/// ONNX `TensorProto.DataType` of float32.
pub const FLOAT: i32 = 1;
/// ONNX `TensorProto.DataType` of int64.
pub const INT64: i32 = 7;

/// A tensor value info with fixed dims.
pub fn value_info(name: &str, elem_type: i32, dims: &[i64]) -> pb::ValueInfoProto {
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(DimValue::DimValue(*d)),
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

/// A node of the default domain.
pub fn node(
    op: &str,
    inputs: &[&str],
    outputs: &[&str],
    attribute: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: outputs.first().map(|s| s.to_string()).unwrap_or_default(),
        attribute,
        ..Default::default()
    }
}

/// An int64 vector initializer.
pub fn int64s(name: &str, values: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: vec![values.len() as i64],
        data_type: INT64,
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

/// A tensor-valued attribute.
pub fn tensor_attr(name: &str, t: pb::TensorProto) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 4,
        t: Some(t),
        ..Default::default()
    }
}

/// A graph named `g`.
pub fn graph(
    nodes: Vec<pb::NodeProto>,
    initializer: Vec<pb::TensorProto>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
) -> pb::GraphProto {
    pb::GraphProto {
        node: nodes,
        initializer,
        input: inputs,
        output: outputs,
        name: "g".into(),
        ..Default::default()
    }
}

/// A model of `g` importing opset 17 of the default domain.
pub fn model(g: pb::GraphProto) -> Vec<u8> {
    model_with_opset(g, 17)
}

/// A model of `g` importing `opset` of the default domain.
pub fn model_with_opset(g: pb::GraphProto, opset: i64) -> Vec<u8> {
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        graph: Some(g),
        ..Default::default()
    }
    .encode_to_vec()
}

/// ONNX `TensorProto.DataType` of int32.
pub const INT32: i32 = 6;

/// An integer attribute.
pub fn int_attr(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 2,
        i: v,
        ..Default::default()
    }
}

/// An integer-list attribute.
pub fn ints_attr(name: &str, v: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 7,
        ints: v.to_vec(),
        ..Default::default()
    }
}

/// A string attribute.
pub fn string_attr(name: &str, v: &str) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 3,
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// A rank-0 int64 initializer.
pub fn scalar_i64(name: &str, v: i64) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        data_type: INT64,
        int64_data: vec![v],
        ..Default::default()
    }
}

/// A float32 vector initializer.
pub fn floats(name: &str, values: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: vec![values.len() as i64],
        data_type: FLOAT,
        float_data: values.to_vec(),
        ..Default::default()
    }
}

/// A value info with no shape (type only), for outputs tract infers.
pub fn typed(name: &str, elem_type: i32) -> pb::ValueInfoProto {
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type,
                shape: None,
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A value info whose dims are numbers or, for negative entries, named
/// symbols (`-1` → `N`, `-2` → `M`...).
pub fn value_info_symbolic(name: &str, elem_type: i32, dims: &[i64]) -> pb::ValueInfoProto {
    let mut v = value_info(name, elem_type, &[]);
    if let Some(pb::type_proto::Value::TensorType(t)) =
        v.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.shape = Some(pb::TensorShapeProto {
            dim: dims
                .iter()
                .map(|d| Dimension {
                    value: Some(if *d < 0 {
                        DimValue::DimParam(((b'M' as i64 + 1 + d) as u8 as char).to_string())
                    } else {
                        DimValue::DimValue(*d)
                    }),
                    ..Default::default()
                })
                .collect(),
        });
    }
    v
}
