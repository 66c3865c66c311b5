//! Small generated ONNX models for the devnet, benchmarks and tests: a newcomer's
//! `attesta devnet` needs challenge models without downloading anything.
//! Weights are deterministic in the seed, so the same seed gives the same
//! bytes and therefore the same CID.

use prost::Message as _;
use tract_onnx::pb;

/// Activation between the two layers of [`mlp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `max(0, x)`.
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
}

impl Activation {
    fn op(self) -> &'static str {
        match self {
            Activation::Relu => "Relu",
            Activation::Tanh => "Tanh",
            Activation::Sigmoid => "Sigmoid",
        }
    }
}

/// Shape of a generated model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlpSpec {
    /// Input features (input `x: float32[batch, inputs]`).
    pub inputs: usize,
    /// Hidden units.
    pub hidden: usize,
    /// Outputs (`y: float32[batch, outputs]`).
    pub outputs: usize,
    /// Hidden activation.
    pub activation: Activation,
    /// Weight seed.
    pub seed: u64,
}

/// The devnet's default challenge set: three small MLPs.
pub fn devnet_set() -> Vec<(String, MlpSpec)> {
    vec![
        (
            "mlp-relu-16x32x4".into(),
            MlpSpec {
                inputs: 16,
                hidden: 32,
                outputs: 4,
                activation: Activation::Relu,
                seed: 1,
            },
        ),
        (
            "mlp-tanh-8x16x2".into(),
            MlpSpec {
                inputs: 8,
                hidden: 16,
                outputs: 2,
                activation: Activation::Tanh,
                seed: 2,
            },
        ),
        (
            "mlp-sigmoid-32x64x8".into(),
            MlpSpec {
                inputs: 32,
                hidden: 64,
                outputs: 8,
                activation: Activation::Sigmoid,
                seed: 3,
            },
        ),
    ]
}

/// splitmix64: deterministic weights without an RNG dependency.
fn weights(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            // Uniform in [-scale, scale).
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

const FLOAT: i32 = 1; // TensorProto.DataType.FLOAT

fn initializer(name: &str, dims: &[usize], data: Vec<f32>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.iter().map(|d| *d as i64).collect(),
        data_type: FLOAT,
        float_data: data,
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Option<usize>]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            denotation: String::new(),
            value: Some(match d {
                Some(n) => dimension::Value::DimValue(*n as i64),
                None => dimension::Value::DimParam("batch".into()),
            }),
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: FLOAT,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
        }),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
    pb::NodeProto {
        input: inputs.iter().map(|s| (*s).to_string()).collect(),
        output: vec![output.into()],
        name: output.into(),
        op_type: op.into(),
        ..Default::default()
    }
}

/// `y = W2·act(W1·x + b1) + b2` as ONNX bytes (opset 13).
pub fn mlp(spec: &MlpSpec) -> Vec<u8> {
    let s = spec.seed;
    let w1_scale = 1.0 / (spec.inputs.max(1) as f32).sqrt();
    let w2_scale = 1.0 / (spec.hidden.max(1) as f32).sqrt();
    let graph = pb::GraphProto {
        name: "attesta-devnet-mlp".into(),
        node: vec![
            node("MatMul", &["x", "w1"], "h0"),
            node("Add", &["h0", "b1"], "h1"),
            node(spec.activation.op(), &["h1"], "h2"),
            node("MatMul", &["h2", "w2"], "h3"),
            node("Add", &["h3", "b2"], "y"),
        ],
        initializer: vec![
            initializer(
                "w1",
                &[spec.inputs, spec.hidden],
                weights(s, spec.inputs * spec.hidden, w1_scale),
            ),
            initializer("b1", &[spec.hidden], weights(s ^ 1, spec.hidden, 0.1)),
            initializer(
                "w2",
                &[spec.hidden, spec.outputs],
                weights(s ^ 2, spec.hidden * spec.outputs, w2_scale),
            ),
            initializer("b2", &[spec.outputs], weights(s ^ 3, spec.outputs, 0.1)),
        ],
        input: vec![value_info("x", &[None, Some(spec.inputs)])],
        output: vec![value_info("y", &[None, Some(spec.outputs)])],
        ..Default::default()
    };
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: "attesta devnet".into(),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use crate::tract::TractEngine;
    use crate::{Engine, Limits, Tensor, TensorData};

    use super::*;

    #[test]
    fn generated_models_load_and_run_deterministically() {
        let engine = TractEngine::new(1);
        for (name, spec) in devnet_set() {
            let bytes = mlp(&spec);
            assert_eq!(bytes, mlp(&spec), "{name}: same seed, same bytes");
            let m = engine.load(&bytes, &Limits::default()).unwrap();
            let x = Tensor::new(
                vec![2, spec.inputs],
                TensorData::F32(vec![0.25; 2 * spec.inputs]),
            )
            .unwrap();
            let out = m.run(vec![x]).unwrap();
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].tensor.shape(), &[2, spec.outputs]);
        }
        assert_ne!(
            mlp(&devnet_set()[0].1),
            mlp(&MlpSpec {
                seed: 9,
                ..devnet_set()[0].1
            })
        );
    }
}
