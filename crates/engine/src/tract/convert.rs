//! Conversions between attesta tensors and tract tensors.

use tract_onnx::prelude::{DatumType, IntoTensor, Tensor as TractTensor, tract_ndarray};
use tract_onnx::tract_core::internal::Datum;

use crate::{DType, Tensor, TensorData};

/// Builds the tract tensor for an input, casting to `want` when the model
/// takes a type attesta carries in a wider one (f16 travels as f32).
pub(crate) fn to_tract(t: Tensor, want: DatumType) -> Result<TractTensor, String> {
    let (shape, data) = t.into_parts();
    // `from_shape` is one memcpy into tract's aligned storage.
    let tensor = match data {
        TensorData::F32(v) => TractTensor::from_shape(&shape, &v),
        TensorData::F64(v) => TractTensor::from_shape(&shape, &v),
        TensorData::I8(v) => TractTensor::from_shape(&shape, &v),
        TensorData::I16(v) => TractTensor::from_shape(&shape, &v),
        TensorData::I32(v) => TractTensor::from_shape(&shape, &v),
        TensorData::I64(v) => TractTensor::from_shape(&shape, &v),
        TensorData::U8(v) => TractTensor::from_shape(&shape, &v),
        TensorData::U16(v) => TractTensor::from_shape(&shape, &v),
        TensorData::U32(v) => TractTensor::from_shape(&shape, &v),
        TensorData::U64(v) => TractTensor::from_shape(&shape, &v),
        TensorData::Bool(v) => TractTensor::from_shape(&shape, &v),
        TensorData::String(v) => {
            tract_ndarray::ArrayD::from_shape_vec(tract_ndarray::IxDyn(&shape), v)
                .map(IntoTensor::into_tensor)
                .map_err(|e| e.into())
        }
    }
    .map_err(|e| format!("{e:#}"))?;
    if tensor.datum_type() == want {
        Ok(tensor)
    } else {
        tensor
            .cast_to_dt(want)
            .map(|t| t.into_owned())
            .map_err(|e| format!("cannot cast {:?} to {want:?}: {e:#}", tensor.datum_type()))
    }
}

fn plain<T: Datum + Clone>(t: &TractTensor) -> Result<Vec<T>, String> {
    let view = t.to_plain_array_view::<T>().map_err(|e| format!("{e:#}"))?;
    Ok(match view.as_slice() {
        Some(s) => s.to_vec(),
        None => view.iter().cloned().collect(),
    })
}

fn cast<T: Datum + Clone>(t: &TractTensor) -> Result<Vec<T>, String> {
    let c = t.cast_to::<T>().map_err(|e| format!("{e:#}"))?;
    plain::<T>(&c)
}

/// Converts a tract output (or a decoded TensorProto) back to an attesta tensor.
pub(crate) fn from_tract(t: &TractTensor) -> Result<Tensor, String> {
    let data = match t.datum_type() {
        DatumType::F32 => TensorData::F32(plain(t)?),
        DatumType::F64 => TensorData::F64(plain(t)?),
        DatumType::I8 => TensorData::I8(plain(t)?),
        DatumType::I16 => TensorData::I16(plain(t)?),
        DatumType::I32 => TensorData::I32(plain(t)?),
        DatumType::I64 => TensorData::I64(plain(t)?),
        DatumType::U8 => TensorData::U8(plain(t)?),
        DatumType::U16 => TensorData::U16(plain(t)?),
        DatumType::U32 => TensorData::U32(plain(t)?),
        DatumType::U64 => TensorData::U64(plain(t)?),
        DatumType::Bool => TensorData::Bool(plain(t)?),
        DatumType::String => TensorData::String(plain(t)?),
        DatumType::F16 => TensorData::F32(cast::<f32>(t)?),
        DatumType::TDim => TensorData::I64(cast::<i64>(t)?),
        other => {
            return Err(format!(
                "the engine cannot return tensors of type {other:?}"
            ));
        }
    };
    Tensor::new(t.shape().to_vec(), data).map_err(|e| e.to_string())
}

/// The attesta type an ONNX element type travels as, and the tract type the
/// model itself uses.
pub(crate) fn onnx_elem_type(elem_type: i32) -> Option<(DType, DatumType)> {
    Some(match elem_type {
        1 => (DType::F32, DatumType::F32),
        2 => (DType::U8, DatumType::U8),
        3 => (DType::I8, DatumType::I8),
        4 => (DType::U16, DatumType::U16),
        5 => (DType::I16, DatumType::I16),
        6 => (DType::I32, DatumType::I32),
        7 => (DType::I64, DatumType::I64),
        8 => (DType::String, DatumType::String),
        9 => (DType::Bool, DatumType::Bool),
        10 => (DType::F32, DatumType::F16),
        11 => (DType::F64, DatumType::F64),
        12 => (DType::U32, DatumType::U32),
        13 => (DType::U64, DatumType::U64),
        _ => return None,
    })
}

/// The tract type attesta's `dtype` is carried in.
pub(crate) fn datum_of(dtype: DType) -> DatumType {
    match dtype {
        DType::F32 => DatumType::F32,
        DType::F64 => DatumType::F64,
        DType::I8 => DatumType::I8,
        DType::I16 => DatumType::I16,
        DType::I32 => DatumType::I32,
        DType::I64 => DatumType::I64,
        DType::U8 => DatumType::U8,
        DType::U16 => DatumType::U16,
        DType::U32 => DatumType::U32,
        DType::U64 => DatumType::U64,
        DType::Bool => DatumType::Bool,
        DType::String => DatumType::String,
    }
}

/// The attesta type a tract output of type `dt` is returned as.
pub(crate) fn dtype_of(dt: DatumType) -> Option<DType> {
    Some(match dt {
        DatumType::F32 | DatumType::F16 => DType::F32,
        DatumType::F64 => DType::F64,
        DatumType::I8 => DType::I8,
        DatumType::I16 => DType::I16,
        DatumType::I32 => DType::I32,
        DatumType::I64 | DatumType::TDim => DType::I64,
        DatumType::U8 => DType::U8,
        DatumType::U16 => DType::U16,
        DatumType::U32 => DType::U32,
        DatumType::U64 => DType::U64,
        DatumType::Bool => DType::Bool,
        DatumType::String => DType::String,
        _ => return None,
    })
}
