//! Conversions between attesta tensors and onnxruntime values.

use half::{bf16, f16};
use ort::session::SessionInputValue;
use ort::value::{DynValue, TensorElementType, ValueType};
use tract_onnx::prelude::DatumType;

use crate::{DType, EngineError, Tensor, TensorData};

/// How an input is handed to onnxruntime: as carried, or narrowed to the
/// half-precision type the model declares (attesta carries those as f32).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Feed {
    /// The attesta type is the model's type.
    AsIs,
    /// f32 narrowed to IEEE half.
    F16,
}

impl Feed {
    /// The feed for an input the model declares as `dt`.
    pub(crate) fn of(dt: DatumType) -> Result<Feed, EngineError> {
        match dt {
            DatumType::F16 => Ok(Feed::F16),
            _ => Ok(Feed::AsIs),
        }
    }

    /// Builds the onnxruntime value (one move of the buffer, no copy, for
    /// every type but half floats and strings).
    pub(crate) fn value(self, t: Tensor) -> Result<SessionInputValue<'static>, String> {
        use ort::value::Tensor as T;
        let (shape, data) = t.into_parts();
        let text = |e: ort::Error| e.to_string();
        let value: DynValue = match (self, data) {
            (Feed::F16, TensorData::F32(v)) => {
                T::from_array((shape, v.into_iter().map(f16::from_f32).collect::<Vec<_>>()))
                    .map_err(text)?
                    .into_dyn()
            }
            (_, TensorData::F32(v)) => T::from_array((shape, v)).map_err(text)?.into_dyn(),
            (_, TensorData::F64(v)) => T::from_array((shape, v)).map_err(text)?.into_dyn(),
            (_, TensorData::I8(v)) => T::from_array((shape, v)).map_err(text)?.into_dyn(),
            (_, TensorData::I16(v)) => T::from_array((shape, v)).map_err(text)?.into_dyn(),
            (_, TensorData::I32(v)) => T::from_array((shape, v)).map_err(text)?.into_dyn(),
            (_, TensorData::I64(v)) => T::from_array((shape, v)).map_err(text)?.into_dyn(),
            (_, TensorData::U8(v)) => T::from_array((shape, v)).map_err(text)?.into_dyn(),
            (_, TensorData::U16(v)) => T::from_array((shape, v)).map_err(text)?.into_dyn(),
            (_, TensorData::U32(v)) => T::from_array((shape, v)).map_err(text)?.into_dyn(),
            (_, TensorData::U64(v)) => T::from_array((shape, v)).map_err(text)?.into_dyn(),
            (_, TensorData::Bool(v)) => T::from_array((shape, v)).map_err(text)?.into_dyn(),
            (_, TensorData::String(v)) => T::<String>::from_string_array((shape, v.as_slice()))
                .map_err(text)?
                .into_dyn(),
        };
        Ok(value.into())
    }
}

/// The attesta type an onnxruntime output type is returned as (half floats
/// widen to f32, as in the tract backend).
pub(crate) fn declared_dtype(ty: &ValueType) -> Option<DType> {
    match ty {
        ValueType::Tensor { ty, .. } => dtype_of(*ty),
        _ => None,
    }
}

fn dtype_of(ty: TensorElementType) -> Option<DType> {
    use TensorElementType as E;
    Some(match ty {
        E::Float32 | E::Float16 | E::Bfloat16 => DType::F32,
        E::Float64 => DType::F64,
        E::Int8 => DType::I8,
        E::Int16 => DType::I16,
        E::Int32 => DType::I32,
        E::Int64 => DType::I64,
        E::Uint8 => DType::U8,
        E::Uint16 => DType::U16,
        E::Uint32 => DType::U32,
        E::Uint64 => DType::U64,
        E::Bool => DType::Bool,
        E::String => DType::String,
        _ => return None,
    })
}

/// Copies an output out of onnxruntime as the declared type `want`,
/// refusing outputs over the tensor cap.
pub(crate) fn output(value: &DynValue, want: DType, cap: usize) -> Result<Tensor, String> {
    let ValueType::Tensor { ty, shape, .. } = value.dtype() else {
        return Err(format!("is a {}, not a tensor", value.dtype()));
    };
    let dims: Vec<usize> = shape
        .iter()
        .map(|d| usize::try_from(*d).map_err(|_| format!("has a negative dimension {d}")))
        .collect::<Result<_, _>>()?;
    let elements = crate::element_count(&dims).ok_or("has an overflowing shape")?;
    let size = dtype_of(*ty).map_or(8, DType::size_of);
    if elements.saturating_mul(size) > cap {
        return Err(format!(
            "has {elements} elements, over the {cap} byte tensor cap"
        ));
    }
    let text = |e: ort::Error| e.to_string();
    macro_rules! plain {
        ($t:ty, $variant:ident) => {
            TensorData::$variant(value.try_extract_tensor::<$t>().map_err(text)?.1.to_vec())
        };
    }
    let data = match ty {
        TensorElementType::Float32 => plain!(f32, F32),
        TensorElementType::Float16 => TensorData::F32(
            value
                .try_extract_tensor::<f16>()
                .map_err(text)?
                .1
                .iter()
                .map(|x| x.to_f32())
                .collect(),
        ),
        TensorElementType::Bfloat16 => TensorData::F32(
            value
                .try_extract_tensor::<bf16>()
                .map_err(text)?
                .1
                .iter()
                .map(|x| x.to_f32())
                .collect(),
        ),
        TensorElementType::Float64 => plain!(f64, F64),
        TensorElementType::Int8 => plain!(i8, I8),
        TensorElementType::Int16 => plain!(i16, I16),
        TensorElementType::Int32 => plain!(i32, I32),
        TensorElementType::Int64 => plain!(i64, I64),
        TensorElementType::Uint8 => plain!(u8, U8),
        TensorElementType::Uint16 => plain!(u16, U16),
        TensorElementType::Uint32 => plain!(u32, U32),
        TensorElementType::Uint64 => plain!(u64, U64),
        TensorElementType::Bool => plain!(bool, Bool),
        TensorElementType::String => {
            TensorData::String(value.try_extract_strings().map_err(text)?.1)
        }
        other => return Err(format!("has unsupported element type {other}")),
    };
    let data = if data.dtype() == want {
        data
    } else {
        cast(data, want)?
    };
    Tensor::new(dims, data).map_err(|e| e.to_string())
}

/// Numeric cast to the declared type (what the model declares is the
/// contract; a runtime that computes in another type is converted, as
/// numpy's `astype` would).
fn cast(data: TensorData, want: DType) -> Result<TensorData, String> {
    macro_rules! to {
        ($v:expr, $conv:expr) => {
            match want {
                DType::F32 => TensorData::F32($v.iter().map(|x| $conv(*x) as f32).collect()),
                DType::F64 => TensorData::F64($v.iter().map(|x| $conv(*x)).collect()),
                DType::I8 => TensorData::I8($v.iter().map(|x| $conv(*x) as i8).collect()),
                DType::I16 => TensorData::I16($v.iter().map(|x| $conv(*x) as i16).collect()),
                DType::I32 => TensorData::I32($v.iter().map(|x| $conv(*x) as i32).collect()),
                DType::I64 => TensorData::I64($v.iter().map(|x| $conv(*x) as i64).collect()),
                DType::U8 => TensorData::U8($v.iter().map(|x| $conv(*x) as u8).collect()),
                DType::U16 => TensorData::U16($v.iter().map(|x| $conv(*x) as u16).collect()),
                DType::U32 => TensorData::U32($v.iter().map(|x| $conv(*x) as u32).collect()),
                DType::U64 => TensorData::U64($v.iter().map(|x| $conv(*x) as u64).collect()),
                DType::Bool => TensorData::Bool($v.iter().map(|x| $conv(*x) != 0.0).collect()),
                DType::String => return Err("cannot cast numbers to strings".into()),
            }
        };
    }
    Ok(match &data {
        TensorData::F32(v) => to!(v, f64::from),
        TensorData::F64(v) => to!(v, |x: f64| x),
        TensorData::I8(v) => to!(v, f64::from),
        TensorData::I16(v) => to!(v, f64::from),
        TensorData::I32(v) => to!(v, f64::from),
        TensorData::I64(v) => to!(v, |x: i64| x as f64),
        TensorData::U8(v) => to!(v, f64::from),
        TensorData::U16(v) => to!(v, f64::from),
        TensorData::U32(v) => to!(v, f64::from),
        TensorData::U64(v) => to!(v, |x: u64| x as f64),
        TensorData::Bool(v) => to!(v, |x: bool| f64::from(u8::from(x))),
        TensorData::String(_) => {
            return Err(format!("cannot return strings as {want}"));
        }
    })
}
