//! The response writer: engine outputs as OpenGradient's nested JSON lists.

use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};

use crate::{DType, NamedTensor, TensorData, element_count};

/// The `/infer` response body.
#[derive(Debug, Serialize)]
pub struct InferResponse<'a> {
    /// One entry per model output, in graph order.
    pub output: Vec<OutputEntry<'a>>,
    /// SHA-256 hex of the model file.
    pub model_hash: &'a str,
}

/// One output tensor in OpenGradient's shape.
#[derive(Debug, Serialize)]
pub struct OutputEntry<'a> {
    /// Output name.
    pub name: &'a str,
    /// Shape of the result.
    pub shape: &'a [usize],
    /// Nested lists (a bare scalar for rank 0).
    pub result: Nested<'a>,
    /// `number` or `string`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// A flat tensor serialised as nested JSON lists following its shape.
/// Floats are written as the shortest `f64` text (what Python's
/// `ndarray.tolist()` + `json` produce); NaN and infinities become `null`;
/// booleans become 0/1 so every `number` output holds numbers.
#[derive(Debug)]
pub struct Nested<'a> {
    shape: &'a [usize],
    data: &'a TensorData,
}

/// Builds the response for `outputs` of a model whose file hashes to `model_hash`.
pub fn encode_response<'a>(outputs: &'a [NamedTensor], model_hash: &'a str) -> InferResponse<'a> {
    InferResponse {
        output: outputs
            .iter()
            .map(|o| OutputEntry {
                name: &o.name,
                shape: o.tensor.shape(),
                result: Nested {
                    shape: o.tensor.shape(),
                    data: o.tensor.data(),
                },
                kind: if o.tensor.dtype() == DType::String {
                    "string"
                } else {
                    "number"
                },
            })
            .collect(),
        model_hash,
    }
}

impl Serialize for Nested<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_level(
            s,
            self.shape,
            self.data,
            0,
            element_count(self.shape).unwrap_or(0),
        )
    }
}

fn serialize_level<S: Serializer>(
    s: S,
    shape: &[usize],
    data: &TensorData,
    offset: usize,
    span: usize,
) -> Result<S::Ok, S::Error> {
    let Some((&dim, rest)) = shape.split_first() else {
        return serialize_scalar(s, data, offset);
    };
    let stride = span.checked_div(dim).unwrap_or(0);
    let mut seq = s.serialize_seq(Some(dim))?;
    for i in 0..dim {
        seq.serialize_element(&Level {
            shape: rest,
            data,
            offset: offset + i * stride,
            span: stride,
        })?;
    }
    seq.end()
}

struct Level<'a> {
    shape: &'a [usize],
    data: &'a TensorData,
    offset: usize,
    span: usize,
}

impl Serialize for Level<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_level(s, self.shape, self.data, self.offset, self.span)
    }
}

fn serialize_scalar<S: Serializer>(s: S, data: &TensorData, i: usize) -> Result<S::Ok, S::Error> {
    fn float<S: Serializer>(s: S, x: Option<f64>) -> Result<S::Ok, S::Error> {
        match x {
            Some(x) if x.is_finite() => s.serialize_f64(x),
            _ => s.serialize_none(),
        }
    }
    match data {
        TensorData::F32(v) => float(s, v.get(i).map(|x| f64::from(*x))),
        TensorData::F64(v) => float(s, v.get(i).copied()),
        TensorData::I8(v) => s.serialize_i64(v.get(i).map_or(0, |x| i64::from(*x))),
        TensorData::I16(v) => s.serialize_i64(v.get(i).map_or(0, |x| i64::from(*x))),
        TensorData::I32(v) => s.serialize_i64(v.get(i).map_or(0, |x| i64::from(*x))),
        TensorData::I64(v) => s.serialize_i64(v.get(i).copied().unwrap_or(0)),
        TensorData::U8(v) => s.serialize_u64(v.get(i).map_or(0, |x| u64::from(*x))),
        TensorData::U16(v) => s.serialize_u64(v.get(i).map_or(0, |x| u64::from(*x))),
        TensorData::U32(v) => s.serialize_u64(v.get(i).map_or(0, |x| u64::from(*x))),
        TensorData::U64(v) => s.serialize_u64(v.get(i).copied().unwrap_or(0)),
        TensorData::Bool(v) => s.serialize_u64(u64::from(v.get(i).copied().unwrap_or(false))),
        TensorData::String(v) => s.serialize_str(v.get(i).map_or("", String::as_str)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;

    #[test]
    fn encodes_nested_lists() {
        let outputs = vec![
            NamedTensor {
                name: "y".into(),
                tensor: Tensor::new(
                    vec![2, 3],
                    TensorData::F32(vec![0.1, 1.0, 2.5, f32::NAN, -0.0, 3.0]),
                )
                .unwrap(),
            },
            NamedTensor {
                name: "s".into(),
                tensor: Tensor::new(vec![], TensorData::String(vec!["a".into()])).unwrap(),
            },
            NamedTensor {
                name: "e".into(),
                tensor: Tensor::new(vec![2, 0], TensorData::I64(vec![])).unwrap(),
            },
            NamedTensor {
                name: "b".into(),
                tensor: Tensor::new(vec![2], TensorData::Bool(vec![true, false])).unwrap(),
            },
        ];
        let json = serde_json::to_value(encode_response(&outputs, "ab")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"output": [
                {"name": "y", "shape": [2, 3], "result": [[0.10000000149011612, 1.0, 2.5], [null, -0.0, 3.0]], "type": "number"},
                {"name": "s", "shape": [], "result": "a", "type": "string"},
                {"name": "e", "shape": [2, 0], "result": [[], []], "type": "number"},
                {"name": "b", "shape": [2], "result": [1, 0], "type": "number"},
            ], "model_hash": "ab"})
        );
    }
}
