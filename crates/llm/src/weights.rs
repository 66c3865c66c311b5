//! Weight tensors read from a validated GGUF file into candle's quantised tensors.
//!
//! The bounded reader (`attesta_gguf`) has already checked that every tensor lies inside
//! the file and that its byte size matches its type and dimensions; here each tensor the
//! model needs is looked up by name, its shape checked against the configuration, and
//! its bytes read exactly once.

use crate::error::{LlmError, Result};
use attesta_gguf::{Gguf, TensorInfo};
use candle_core::quantized::{GgmlDType, QStorage, QTensor, QuantizedType};
use candle_core::{Device, Tensor};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

/// Named tensors of one GGUF file, read on demand.
pub struct WeightReader<'g, R> {
    by_name: HashMap<&'g str, &'g TensorInfo>,
    file: R,
}

impl<'g, R: Read + Seek> WeightReader<'g, R> {
    /// Indexes the tensors of `gguf`, read from `file` (the same bytes it was parsed from).
    pub fn new(gguf: &'g Gguf, file: R) -> Self {
        let by_name = gguf.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
        WeightReader { by_name, file }
    }

    /// Whether the file has a tensor of that name.
    pub fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Reads tensor `name`, whose shape (outermost first, as candle orders it) must be `shape`.
    pub fn qtensor(&mut self, name: &str, shape: &[usize]) -> Result<QTensor> {
        let info = *self
            .by_name
            .get(name)
            .ok_or_else(|| tensor_err(name, "missing"))?;
        // GGUF lists dimensions innermost first.
        let dims: Vec<usize> = info
            .dims
            .iter()
            .rev()
            .map(|&d| usize::try_from(d).map_err(|_| tensor_err(name, "dimension overflows")))
            .collect::<Result<_>>()?;
        if dims != shape {
            return Err(tensor_err(
                name,
                &format!("shape {dims:?}, expected {shape:?}"),
            ));
        }
        let dtype = candle_dtype(info.ggml_type.id())
            .ok_or_else(|| tensor_err(name, &format!("type {:?} not supported", info.ggml_type)))?;
        let inner = *shape.last().unwrap_or(&1);
        if !inner.is_multiple_of(dtype.block_size()) {
            return Err(tensor_err(
                name,
                "row size is not a multiple of the block size",
            ));
        }
        let size = usize::try_from(info.size).map_err(|_| tensor_err(name, "too large"))?;
        let expected = shape.iter().product::<usize>() / dtype.block_size() * dtype.type_size();
        if size != expected {
            return Err(tensor_err(
                name,
                &format!("{size} bytes, expected {expected}"),
            ));
        }
        // u64 words: candle views the bytes as blocks and asserts their alignment.
        let mut words = vec![0u64; size.div_ceil(8)];
        let bytes = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..size];
        self.file.seek(SeekFrom::Start(info.offset))?;
        self.file.read_exact(bytes)?;
        let storage = QStorage::from_data(Cow::Borrowed(bytes), &Device::Cpu, dtype)?;
        Ok(QTensor::new(storage, shape.to_vec())?)
    }

    /// Reads tensor `name` of shape `[n, k]` as a linear layer.
    pub fn linear(&mut self, name: &str, shape: [usize; 2]) -> Result<Linear> {
        let q = self.qtensor(name, &shape)?;
        Linear::new(q)
    }

    /// Reads tensor `name` of shape `shape` as an f32 tensor (norms, biases).
    pub fn dense(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        Ok(self.qtensor(name, shape)?.dequantize(&Device::Cpu)?)
    }
}

/// A weight matrix `[n, k]` applied as `x @ W^T`.
///
/// Quantised weights run on candle's plain quantised matmul, which quantises activations
/// to the weight type's dot-product partner exactly as llama.cpp does (Q8_0 for Q8_0 and
/// Q4_0, Q8_K for the K-quants). `QMatMul` is not used: on CPUs with VNNI it takes a
/// repacked path that quantises activations per 256 values instead of 32, which moved
/// Q8_0 logits ~1 logit away from llama.cpp on the test models.
pub enum Linear {
    /// F32/F16/BF16 weights, widened to f32.
    Dense(Tensor),
    /// Quantised weights.
    Quantised {
        /// The blocks.
        blocks: Box<dyn QuantizedType>,
        /// Output features.
        n: usize,
        /// Input features.
        k: usize,
    },
}

impl Linear {
    fn new(q: QTensor) -> Result<Self> {
        let (n, k) = q.shape().dims2()?;
        match q.dtype() {
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
                Ok(Linear::Dense(q.dequantize(&Device::Cpu)?))
            }
            dtype => {
                let data = q.data()?;
                Ok(Linear::Quantised {
                    blocks: dtype.from_data(data),
                    n,
                    k,
                })
            }
        }
    }

    /// `x [m, k] -> [m, n]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Linear::Dense(w) => Ok(x.matmul(&w.t()?)?),
            Linear::Quantised { blocks, n, k } => {
                let (m, xk) = x.dims2()?;
                if xk != *k {
                    return Err(candle_core::Error::Msg(format!(
                        "linear: input {xk}, weights {k}"
                    ))
                    .into());
                }
                let lhs = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
                let mut dst = vec![0f32; m * n];
                blocks.matmul_t((m, *k, *n), &lhs, &mut dst)?;
                Ok(Tensor::from_vec(dst, (m, *n), &Device::Cpu)?)
            }
        }
    }
}

/// candle's type for a GGML type id (candle keeps its own mapping private).
fn candle_dtype(id: u32) -> Option<GgmlDType> {
    Some(match id {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

fn tensor_err(name: &str, reason: &str) -> LlmError {
    LlmError::Tensor {
        name: name.to_string(),
        reason: reason.to_string(),
    }
}
