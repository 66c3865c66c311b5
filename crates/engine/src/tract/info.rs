//! The model's declared interface, read from the ONNX graph.

use tract_onnx::pb;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;
use tract_onnx::prelude::DatumType;

use super::convert::onnx_elem_type;
use super::prescan::initializer_names;
use crate::{Dim, EngineError, ModelInfo, TensorInfo};

/// Declared interface plus the tract type each input is fed as.
pub(crate) struct Interface {
    pub(crate) info: ModelInfo,
    pub(crate) input_types: Vec<DatumType>,
}

/// Reads inputs (initializers excluded) and outputs with ONNX names, types
/// and shapes. `output_fallback` gives a type for outputs the file leaves
/// untyped.
pub(crate) fn interface(
    graph: &pb::GraphProto,
    output_fallback: &dyn Fn(usize) -> Option<crate::DType>,
) -> Result<Interface, EngineError> {
    let initializers = initializer_names(graph);
    let mut inputs = Vec::new();
    let mut input_types = Vec::new();
    for value in graph
        .input
        .iter()
        .filter(|v| !initializers.contains(v.name.as_str()))
    {
        let t = tensor_type(value)
            .ok_or_else(|| EngineError::Load(format!("input {:?} is not a tensor", value.name)))?;
        let (dtype, dt) = onnx_elem_type(t.elem_type).ok_or_else(|| {
            EngineError::Load(format!(
                "input {:?} has unsupported element type {}",
                value.name, t.elem_type
            ))
        })?;
        inputs.push(TensorInfo {
            name: value.name.clone(),
            dtype,
            shape: shape(t),
        });
        input_types.push(dt);
    }
    let mut outputs = Vec::new();
    for (ix, value) in graph.output.iter().enumerate() {
        let t = tensor_type(value);
        let dtype = match t {
            Some(t) if t.elem_type != 0 => {
                onnx_elem_type(t.elem_type).map(|(d, _)| d).ok_or_else(|| {
                    EngineError::Load(format!(
                        "output {:?} has unsupported element type {}",
                        value.name, t.elem_type
                    ))
                })?
            }
            _ => output_fallback(ix).ok_or_else(|| {
                EngineError::Load(format!("output {:?} has no tensor type", value.name))
            })?,
        };
        outputs.push(TensorInfo {
            name: value.name.clone(),
            dtype,
            shape: t.and_then(shape),
        });
    }
    Ok(Interface {
        info: ModelInfo { inputs, outputs },
        input_types,
    })
}

fn tensor_type(value: &pb::ValueInfoProto) -> Option<&pb::type_proto::Tensor> {
    match value.r#type.as_ref()?.value.as_ref()? {
        pb::type_proto::Value::TensorType(t) => Some(t),
    }
}

fn shape(t: &pb::type_proto::Tensor) -> Option<Vec<Dim>> {
    let unknown = || Dim::Symbolic("?".to_string());
    Some(
        t.shape
            .as_ref()?
            .dim
            .iter()
            .map(|d| match &d.value {
                Some(DimValue::DimValue(v)) => {
                    usize::try_from(*v).map_or_else(|_| unknown(), Dim::Fixed)
                }
                Some(DimValue::DimParam(p)) if !p.is_empty() => Dim::Symbolic(p.clone()),
                _ => unknown(),
            })
            .collect(),
    )
}
