//! OpenGradient's tensor JSON: the `/infer` request and response bodies of
//! OpenGradient's TEE ONNX node, decoded exactly and checked against a model.
//!
//! A number travels as a fixed-point pair `{value, decimals}` meaning
//! `value / 10^decimals`, where each half may be a JSON integer or a decimal
//! string. Conversion is exact up to the target type: integers use integer
//! arithmetic (truncating toward zero, as OpenGradient's `np.int_` does),
//! floats are the correctly rounded `f64` of the exact quotient (narrowed to
//! `f32` for float32 inputs, again as OpenGradient does).
//!
//! The code is split by concern: [`CodecError`] and its codes in `error`,
//! the exact fixed-point numbers in `fixed`, the request decoder (serde
//! visitors included) in `parse`, its single-pass fast path in `scan`, the
//! conversion to engine tensors in `tensors` and the response writer in
//! `write`. Everything public is re-exported here, so `attesta_engine::og::*`
//! paths stay those of the single module it once was.

#![deny(clippy::indexing_slicing)]

mod error;
mod fixed;
mod parse;
mod scan;
mod tensors;
mod write;

pub use error::CodecError;
pub use fixed::{FieldError, FixedPoint, MAX_DECIMALS};
pub use parse::{
    InferRequest, ModelInputs, NumberTensor, StringTensor, parse_inputs, parse_inputs_general,
    parse_request, parse_request_general,
};
pub use tensors::to_tensors;
pub use write::{InferResponse, Nested, OutputEntry, encode_response};

/// Helpers shared by the unit tests of the submodules.
#[cfg(test)]
mod test_util {
    use super::FixedPoint;
    use crate::{DType, Dim, ModelInfo, TensorInfo};

    pub(super) fn fp(v: &str, d: &str) -> FixedPoint {
        FixedPoint::parse(v, d).unwrap()
    }

    pub(super) fn info(inputs: Vec<(&str, DType, Option<Vec<Dim>>)>) -> ModelInfo {
        ModelInfo {
            inputs: inputs
                .into_iter()
                .map(|(n, dtype, shape)| TensorInfo {
                    name: n.into(),
                    dtype,
                    shape,
                })
                .collect(),
            outputs: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::info;
    use super::*;
    use crate::{DType, Dim};

    /// Bounded mutation fuzzing: no body, however mangled, makes the codec panic,
    /// and whatever parses converts (or fails) cleanly against a model.
    #[test]
    fn mutated_bodies_never_panic() {
        let inner = r#"{"numbers":[{"name":"x","shape":[2,2],"values":[{"value":15,"decimals":1},{"value":"-25","decimals":"2"},{"value":"1.5","decimals":0},{"value":7,"decimals":18}]}],"strings":[{"name":"s","shape":[1],"values":["hi"]}]}"#;
        let seed = serde_json::json!({"ipfs_hash": "QmX", "model_inputs": inner})
            .to_string()
            .into_bytes();
        let model = info(vec![
            (
                "x",
                DType::I16,
                Some(vec![Dim::Symbolic("n".into()), Dim::Fixed(2)]),
            ),
            ("s", DType::String, None),
        ]);
        let mut state = 0x9e3779b97f4a7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut body = seed.clone();
            for _ in 0..(next() % 4 + 1) {
                let pos = (next() as usize) % body.len();
                match next() % 3 {
                    0 => body[pos] = next() as u8,
                    1 => {
                        body.remove(pos);
                    }
                    _ => {
                        let alphabet = b"{}[]\",:0-9e.";
                        body.insert(pos, alphabet[(next() as usize) % alphabet.len()]);
                    }
                }
            }
            if let Ok(req) = parse_request(&body) {
                let _ = to_tensors(&req.inputs, &model);
            }
        }
    }
}
