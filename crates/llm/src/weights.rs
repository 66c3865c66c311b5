//! Weight tensors read from a validated GGUF file into candle's quantised tensors.
//!
//! The bounded reader (`attesta_gguf`) has already checked that every tensor lies inside
//! the file and that its byte size matches its type and dimensions; here each tensor the
//! model needs is looked up by name, its shape checked against the configuration, and
//! its bytes read exactly once.

use crate::error::{LlmError, Result};
use attesta_gguf::{Gguf, TensorInfo};
use candle_core::quantized::k_quants::{
    BlockQ2K, BlockQ3K, BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5_1, BlockQ5K, BlockQ6K,
    BlockQ8_0, BlockQ8_1, BlockQ8K, GgmlType, QK8_0,
};
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{Device, Tensor};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};

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
        let (info, dtype) = self.info(name, shape)?;
        let size = usize::try_from(info.size).map_err(|_| tensor_err(name, "too large"))?;
        // u64 words: candle views the bytes as blocks and asserts their alignment.
        let mut words = vec![0u64; size.div_ceil(8)];
        let bytes = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..size];
        self.file.seek(SeekFrom::Start(info.offset))?;
        self.file.read_exact(bytes)?;
        let storage = QStorage::from_data(Cow::Borrowed(bytes), &Device::Cpu, dtype)?;
        Ok(QTensor::new(storage, shape.to_vec())?)
    }

    /// Reads the tensors `names` (each `[n_i, k]`) as one linear layer whose output is their
    /// outputs concatenated, when they share one GGML type: rows of a quantised matrix
    /// are independent (blocks run along each row), so stacking them is exact, and one
    /// matmul then quantises the activations once and streams all rows in one pass.
    /// Tensors of mixed types come back as separate layers, in order.
    pub fn linears(&mut self, names: &[(&str, usize)], k: usize) -> Result<Vec<Linear>> {
        let mut types = Vec::with_capacity(names.len());
        for &(name, n) in names {
            types.push(self.info(name, &[n, k])?.1);
        }
        if names.len() < 2 || types.windows(2).any(|w| w[0] != w[1]) {
            return names
                .iter()
                .map(|&(name, n)| self.linear(name, [n, k]))
                .collect();
        }
        let n_total: usize = names.iter().map(|&(_, n)| n).sum();
        let dtype = types[0];
        let weights = match dtype {
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
                let parts = names
                    .iter()
                    .map(|&(name, n)| self.dense(name, &[n, k]))
                    .collect::<Result<Vec<_>>>()?;
                Weights::Dense(
                    Tensor::cat(&parts, 0)?.flatten_all()?.to_vec1()?,
                    InputRounding::of(dtype),
                )
            }
            _ => {
                let mut sources = Vec::with_capacity(names.len());
                for &(name, n) in names {
                    let (info, _) = self.info(name, &[n, k])?;
                    let size =
                        usize::try_from(info.size).map_err(|_| tensor_err(name, "too large"))?;
                    sources.push((info.offset, size));
                }
                Weights::Quantised(self.read_blocks(names[0].0, dtype, &sources)?)
            }
        };
        Ok(vec![Linear {
            weights,
            n: n_total,
            k,
        }])
    }

    /// Reads tensor `name` of shape `[n, k]` as a linear layer.
    pub fn linear(&mut self, name: &str, shape: [usize; 2]) -> Result<Linear> {
        let (info, dtype) = self.info(name, &shape)?;
        let [n, k] = shape;
        let weights = match dtype {
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => Weights::Dense(
                self.dense(name, &shape)?.flatten_all()?.to_vec1()?,
                InputRounding::of(dtype),
            ),
            _ => {
                let size = usize::try_from(info.size).map_err(|_| tensor_err(name, "too large"))?;
                Weights::Quantised(self.read_blocks(name, dtype, &[(info.offset, size)])?)
            }
        };
        Ok(Linear { weights, n, k })
    }

    /// Reads tensor `name` of shape `shape` as an f32 tensor (norms, biases).
    pub fn dense(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        Ok(self.qtensor(name, shape)?.dequantize(&Device::Cpu)?)
    }

    /// The tensor's entry and type, after the same checks as [`WeightReader::qtensor`].
    fn info(&self, name: &str, shape: &[usize]) -> Result<(&'g TensorInfo, GgmlDType)> {
        let info = *self
            .by_name
            .get(name)
            .ok_or_else(|| tensor_err(name, "missing"))?;
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
        Ok((info, dtype))
    }

    /// The byte ranges `sources` (already checked by `info`) read one after the other
    /// into one vector of `dtype`'s blocks.
    fn read_blocks(
        &mut self,
        name: &str,
        dtype: GgmlDType,
        sources: &[(u64, usize)],
    ) -> Result<Blocks> {
        macro_rules! read_as {
            ($variant:ident, $ty:ty) => {{
                let mut blocks: Vec<$ty> = Vec::new();
                for &(offset, size) in sources {
                    self.file.seek(SeekFrom::Start(offset))?;
                    read_into_blocks(&mut self.file, size, &mut blocks)
                        .map_err(|e| tensor_err(name, &e))?;
                }
                Blocks::$variant(blocks)
            }};
        }
        Ok(match dtype {
            GgmlDType::Q4_0 => read_as!(Q4_0, BlockQ4_0),
            GgmlDType::Q4_1 => read_as!(Q4_1, BlockQ4_1),
            GgmlDType::Q5_0 => read_as!(Q5_0, BlockQ5_0),
            GgmlDType::Q5_1 => read_as!(Q5_1, BlockQ5_1),
            GgmlDType::Q8_0 => read_as!(Q8_0, BlockQ8_0),
            GgmlDType::Q2K => read_as!(Q2K, BlockQ2K),
            GgmlDType::Q3K => read_as!(Q3K, BlockQ3K),
            GgmlDType::Q4K => read_as!(Q4K, BlockQ4K),
            GgmlDType::Q5K => read_as!(Q5K, BlockQ5K),
            GgmlDType::Q6K => read_as!(Q6K, BlockQ6K),
            other => {
                return Err(tensor_err(
                    name,
                    &format!("type {other:?} is not a weight type"),
                ));
            }
        })
    }
}

/// Appends `size` bytes of `r` to `blocks` as whole blocks of `T`.
#[allow(unsafe_code)]
fn read_into_blocks<T: GgmlType, R: Read>(
    r: &mut R,
    size: usize,
    blocks: &mut Vec<T>,
) -> std::result::Result<(), String> {
    let bsize = std::mem::size_of::<T>();
    if bsize == 0 || !size.is_multiple_of(bsize) {
        return Err(format!("{size} bytes is not a whole number of blocks"));
    }
    let start = blocks.len();
    blocks.resize(start + size / bsize, T::zeros());
    let new = &mut blocks[start..];
    // SAFETY: candle's block types (`BlockQ4K`, `BlockQ8_0`, ...) are `#[repr(C)]` structs
    // of integer, integer-array and f16 fields, for which every bit pattern is a valid
    // value, so overwriting their bytes with the file's bytes (GGML's block layout, which
    // these structs mirror) cannot create an invalid value; the byte view covers exactly
    // the initialised elements of `new` and lives only for this read. candle has the same
    // cast (`as_t_slice`) but keeps it private; it is the one way to get typed blocks,
    // which the per-row dot products of the decode path need.
    let bytes = unsafe {
        std::slice::from_raw_parts_mut(new.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(new))
    };
    r.read_exact(bytes).map_err(|e| e.to_string())
}

/// A weight matrix `[n, k]` applied as `x @ W^T`.
///
/// Quantised weights run on row dot products that quantise activations to the weight
/// type's dot-product partner exactly as llama.cpp does (Q8_0 for Q8_0 and Q4_0, Q8_K for
/// the K-quants): on AVX-512 VNNI our own kernels for Q8_0 and Q4_K (`prefill_avx512`),
/// on AVX2 our Q8_0 kernel, else candle's per-type `vec_dot`. Batched products compute
/// each output with the same dot product as single-vector ones. candle's `QMatMul` is
/// not used: on CPUs with VNNI it takes a repacked path that quantises activations per
/// 256 values instead of 32, which moved Q8_0 logits ~1 logit away from llama.cpp on the
/// test models.
pub struct Linear {
    weights: Weights,
    /// Output features (rows).
    n: usize,
    /// Input features.
    k: usize,
}

enum Weights {
    /// F32/F16/BF16 weights, widened to f32, row after row, and how inputs are rounded
    /// before they meet them.
    Dense(Vec<f32>, InputRounding),
    /// Quantised blocks, row after row.
    Quantised(Blocks),
}

/// How an input vector is rounded before a dense product, as ggml converts it to the
/// weights' `vec_dot_type`: F16 weights are dotted with inputs rounded to f16, BF16 with
/// inputs rounded to bf16, F32 with the inputs as they are. (On the F16 test model this
/// moved the largest logit difference to llama.cpp from 0.016 to 0.014: most of that gap
/// has another cause, not found yet.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputRounding {
    None,
    F16,
    Bf16,
}

impl InputRounding {
    fn of(dtype: GgmlDType) -> Self {
        match dtype {
            GgmlDType::F16 => InputRounding::F16,
            GgmlDType::BF16 => InputRounding::Bf16,
            _ => InputRounding::None,
        }
    }

    fn apply<'a>(&self, x: &'a [f32]) -> std::borrow::Cow<'a, [f32]> {
        match self {
            InputRounding::None => std::borrow::Cow::Borrowed(x),
            InputRounding::F16 => x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect(),
            InputRounding::Bf16 => x
                .iter()
                .map(|&v| half::bf16::from_f32(v).to_f32())
                .collect(),
        }
    }
}

/// Quantised blocks typed by their GGML type, so rows can be dotted one by one.
pub(crate) enum Blocks {
    Q4_0(Vec<BlockQ4_0>),
    Q4_1(Vec<BlockQ4_1>),
    Q5_0(Vec<BlockQ5_0>),
    Q5_1(Vec<BlockQ5_1>),
    Q8_0(Vec<BlockQ8_0>),
    Q2K(Vec<BlockQ2K>),
    Q3K(Vec<BlockQ3K>),
    Q4K(Vec<BlockQ4K>),
    Q5K(Vec<BlockQ5K>),
    Q6K(Vec<BlockQ6K>),
}

/// Runs `$body` with `$w` bound to the typed block vector of `$blocks`.
macro_rules! with_blocks {
    ($blocks:expr, $w:ident => $body:expr) => {
        match $blocks {
            Blocks::Q4_0($w) => $body,
            Blocks::Q4_1($w) => $body,
            Blocks::Q5_0($w) => $body,
            Blocks::Q5_1($w) => $body,
            Blocks::Q8_0($w) => $body,
            Blocks::Q2K($w) => $body,
            Blocks::Q3K($w) => $body,
            Blocks::Q4K($w) => $body,
            Blocks::Q5K($w) => $body,
            Blocks::Q6K($w) => $body,
        }
    };
}

impl Linear {
    /// Output features.
    pub fn out_features(&self) -> usize {
        self.n
    }

    /// `x [m, k]` (row-major) times the weights: `[m, n]`. Every output is the dot product
    /// [`Linear::dot_rows`] computes for that input and row, so a batched pass (prefill, a
    /// teacher-forced check) and decode steps agree bit for bit.
    pub(crate) fn forward_rows(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        let (k, n) = (self.k, self.n);
        if x.len() != m * k {
            return Err(candle_core::Error::Msg(format!(
                "linear: {} inputs for {m} rows of {k}",
                x.len()
            ))
            .into());
        }
        #[cfg(target_arch = "x86_64")]
        if crate::prefill_avx512::available() {
            use crate::prefill_avx512 as p;
            match &self.weights {
                Weights::Quantised(Blocks::Q8_0(w)) if p::q8_0_fits(k) => {
                    return Ok(p::matmul(p::Quant::Q8_0(w), x, m, k, n));
                }
                Weights::Quantised(Blocks::Q4K(w)) => {
                    return Ok(p::matmul(p::Quant::Q4K(w), x, m, k, n));
                }
                _ => {}
            }
        }
        if let Weights::Dense(w, rounding) = &self.weights {
            return Ok(dense_matmul(w, &rounding.apply(x), m, k, n));
        }
        // Otherwise each input row through `dot_rows`, a tile of weight rows per work
        // item so the tile stays in cache across the inputs; the tile is large because
        // each item quantises every input row again.
        const TILE: usize = 128;
        let dst: Vec<AtomicU32> = (0..m * n).map(|_| AtomicU32::new(0)).collect();
        let failed = std::sync::Mutex::new(None);
        candle_core::utils::barrier_pool().execute_chunked(n.div_ceil(TILE), |items| {
            let mut scratch = Scratch::default();
            for item in items {
                let rows = item * TILE..n.min((item + 1) * TILE);
                for (t, xt) in x.chunks_exact(k).enumerate() {
                    scratch.reset();
                    let out = &dst[t * n..(t + 1) * n];
                    let r = self.dot_rows(xt, &mut scratch, rows.clone(), |r, v| {
                        out[r].store(v.to_bits(), Ordering::Relaxed)
                    });
                    if let Err(e) = r {
                        if let Ok(mut f) = failed.lock() {
                            f.get_or_insert(e);
                        }
                        return;
                    }
                }
            }
        });
        if let Some(e) = failed.into_inner().ok().flatten() {
            return Err(e);
        }
        Ok(dst
            .into_iter()
            .map(|a| f32::from_bits(a.into_inner()))
            .collect())
    }

    /// Rows `rows` of `W x` for one input vector `x` (`k` values), each passed to `out`
    /// with its index. `scratch` holds `x` quantised for the weight type; it is filled on
    /// first use and must be [`Scratch::reset`] whenever `x` changes. Every row is the same
    /// dot product whichever thread computes it and however the rows are split, so results
    /// do not depend on the thread count.
    pub(crate) fn dot_rows(
        &self,
        x: &[f32],
        scratch: &mut Scratch,
        rows: Range<usize>,
        mut out: impl FnMut(usize, f32),
    ) -> Result<()> {
        let k = self.k;
        if x.len() != k || rows.end > self.n {
            return Err(candle_core::Error::Msg(format!(
                "linear: input {}, weights {k}, rows {rows:?} of {}",
                x.len(),
                self.n
            ))
            .into());
        }
        match &self.weights {
            Weights::Dense(w, rounding) => {
                let x = rounding.apply(x);
                for r in rows {
                    out(r, dot(&w[r * k..(r + 1) * k], &x));
                }
            }
            #[cfg(target_arch = "x86_64")]
            Weights::Quantised(Blocks::Q8_0(w))
                if crate::prefill_avx512::available() && crate::prefill_avx512::q8_0_fits(k) =>
            {
                use crate::prefill_avx512 as p;
                p::dot_rows(p::Quant::Q8_0(w), x, &mut scratch.avx512, rows, &mut out);
            }
            #[cfg(target_arch = "x86_64")]
            Weights::Quantised(Blocks::Q4K(w)) if crate::prefill_avx512::available() => {
                use crate::prefill_avx512 as p;
                p::dot_rows(p::Quant::Q4K(w), x, &mut scratch.avx512, rows, &mut out);
            }
            #[cfg(target_arch = "x86_64")]
            Weights::Quantised(Blocks::Q8_0(w)) if q8_avx2::available() => {
                let kb = k / QK8_0;
                let slot = &mut scratch.q8_0;
                if !slot.ready {
                    slot.blocks.clear();
                    slot.blocks.resize(kb, BlockQ8_0::zeros());
                    crate::quantize::q8_0(x, &mut slot.blocks);
                    slot.ready = true;
                }
                let (w, xq) = (block_bytes(w), block_bytes(&slot.blocks[..kb]));
                // SAFETY: `available` checked at run time that the CPU has the features
                // these functions are compiled for (AVX2, FMA, F16C); they have no other
                // precondition.
                #[allow(unsafe_code)]
                unsafe {
                    let xd = q8_avx2::scales(xq);
                    q8_avx2::rows(w, xq, &xd, kb, rows, &mut out)
                };
            }
            Weights::Quantised(blocks) => {
                with_blocks!(blocks, w => dot_rows_q(w, k, x, scratch, rows, &mut out));
            }
        }
        Ok(())
    }
}

fn dot_rows_q<T: GgmlType>(
    w: &[T],
    k: usize,
    x: &[f32],
    scratch: &mut Scratch,
    rows: Range<usize>,
    out: &mut impl FnMut(usize, f32),
) where
    T::VecDotType: Activation,
{
    let kb = k / T::BLCK_SIZE;
    let slot = T::VecDotType::slot(scratch);
    if !slot.ready {
        slot.blocks.clear();
        slot.blocks.resize(kb, T::VecDotType::zeros());
        T::VecDotType::quantize(x, &mut slot.blocks);
        slot.ready = true;
    }
    let xq = &slot.blocks[..kb];
    for r in rows {
        out(r, T::vec_dot(k, &w[r * kb..(r + 1) * kb], xq));
    }
}

/// The bytes of a slice of quantisation blocks (GGML's layout).
#[allow(unsafe_code)]
pub(crate) fn block_bytes<T: GgmlType>(blocks: &[T]) -> &[u8] {
    // Padding bytes would be uninitialised memory: candle's block types are `#[repr(C)]`
    // structs of integers, integer arrays and f16/f32 fields whose size is GGML's block
    // size, which rules padding out; checked here for the type at hand.
    assert_eq!(
        std::mem::size_of::<T>(),
        T::DTYPE.type_size(),
        "block has padding"
    );
    // SAFETY: per the check above the blocks are initialised bytes without padding; the
    // view borrows `blocks` and covers exactly its elements.
    unsafe {
        std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), std::mem::size_of_val(blocks))
    }
}

/// The bytes of a slice of quantisation blocks, writable (GGML's layout).
#[allow(unsafe_code)]
pub(crate) fn block_bytes_mut<T: GgmlType>(blocks: &mut [T]) -> &mut [u8] {
    // As in `block_bytes`: no padding; and every byte pattern is a value of these blocks
    // (integers, integer arrays, f16/f32), so writes cannot make an invalid block.
    assert_eq!(
        std::mem::size_of::<T>(),
        T::DTYPE.type_size(),
        "block has padding"
    );
    // SAFETY: per the above; the view borrows `blocks` mutably and covers exactly it.
    unsafe {
        std::slice::from_raw_parts_mut(
            blocks.as_mut_ptr().cast::<u8>(),
            std::mem::size_of_val(blocks),
        )
    }
}

/// Q8_0 x Q8_0 row dot products for x86-64 with AVX2. candle's kernel
/// (`vec_dot_q8_0_q8_0`, itself llama.cpp's) converts both f16 scales of every block
/// through a function call (the `half` crate's runtime-dispatched F16C path), which
/// made it compute-bound at about half llama.cpp's decode speed; here the scales are
/// converted inline (the input's once per call). Each row's arithmetic is unchanged:
/// per block the same integer dot, scaled by `d_w * d_x` and accumulated into one
/// 8-lane sum in block order, then the same horizontal sum. (Dotting four rows per
/// loaded input block was tried: slower.)
#[cfg(target_arch = "x86_64")]
mod q8_avx2 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    /// Bytes of a Q8_0 block.
    const BLOCK: usize = 34;

    /// Whether this CPU runs `rows` (checked once).
    pub(super) fn available() -> bool {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
        })
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn f16(lo: u8, hi: u8) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(
            u16::from_le_bytes([lo, hi]),
        ))))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn load(b: &[u8]) -> __m256i {
        bytemuck::pod_read_unaligned(&b[2..BLOCK])
    }

    /// llama.cpp's `mul_sum_i8_pairs_float`: the 32 products summed pairwise to 8 floats.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn mul_sum(x: __m256i, y: __m256i) -> __m256 {
        let ax = _mm256_sign_epi8(x, x);
        let sy = _mm256_sign_epi8(y, x);
        let dot = _mm256_maddubs_epi16(ax, sy);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum(x: __m256) -> f32 {
        let res = _mm256_extractf128_ps(x, 1);
        let res = _mm_add_ps(res, _mm256_castps256_ps128(x));
        let res = _mm_add_ps(res, _mm_movehl_ps(res, res));
        let res = _mm_add_ss(res, _mm_movehdup_ps(res));
        _mm_cvtss_f32(res)
    }

    /// The f32 scales of Q8_0 blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn scales(x: &[u8]) -> Vec<f32> {
        x.chunks_exact(BLOCK).map(|b| f16(b[0], b[1])).collect()
    }

    /// Rows `rows` of `w` (rows of `nb` blocks) dotted with `x` (`nb` blocks, whose
    /// scales are `xd`).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn rows(
        w: &[u8],
        x: &[u8],
        xd: &[f32],
        nb: usize,
        rows: Range<usize>,
        out: &mut impl FnMut(usize, f32),
    ) {
        let row_bytes = nb * BLOCK;
        let row = |r: usize| &w[r * row_bytes..(r + 1) * row_bytes];
        for r in rows {
            let mut acc = _mm256_setzero_ps();
            for ((wb, xb), &dx) in row(r)
                .chunks_exact(BLOCK)
                .zip(x.chunks_exact(BLOCK))
                .zip(xd)
            {
                let d = _mm256_set1_ps(f16(wb[0], wb[1]) * dx);
                acc = _mm256_fmadd_ps(d, mul_sum(load(wb), load(xb)), acc);
            }
            out(r, hsum(acc));
        }
    }
}

/// f32 dot product in eight lanes (vectorises without target flags; inlined so a caller
/// built for wider vectors, like the attention, gets it in its own build).
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, at) = a.split_at(a.len() - a.len() % 8);
    let (bc, bt) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for (x, y) in at.iter().zip(bt) {
        sum += x * y;
    }
    sum
}

/// `x [m, k] @ w^T` for dense weights: a tile of rows per work item, each row dotted with
/// four inputs at a time ([`dot4`]), every output bit-identical to `dot_rows`' [`dot`].
fn dense_matmul(w: &[f32], x: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    const TILE: usize = 16;
    let dst: Vec<AtomicU32> = (0..m * n).map(|_| AtomicU32::new(0)).collect();
    candle_core::utils::barrier_pool().execute_chunked(n.div_ceil(TILE), |items| {
        for item in items {
            for r in item * TILE..n.min((item + 1) * TILE) {
                let row = &w[r * k..(r + 1) * k];
                let mut groups = x.chunks_exact(4 * k);
                for (g, four) in groups.by_ref().enumerate() {
                    let xs = std::array::from_fn(|i| &four[i * k..(i + 1) * k]);
                    for (i, v) in dot4(row, xs).into_iter().enumerate() {
                        dst[(4 * g + i) * n + r].store(v.to_bits(), Ordering::Relaxed);
                    }
                }
                let done = m - groups.remainder().len() / k;
                for (i, xt) in groups.remainder().chunks_exact(k).enumerate() {
                    dst[(done + i) * n + r].store(dot(row, xt).to_bits(), Ordering::Relaxed);
                }
            }
        }
    });
    dst.into_iter()
        .map(|a| f32::from_bits(a.into_inner()))
        .collect()
}

/// [`dot`] of `a` with four vectors, loading `a` once: each result is computed exactly as
/// `dot(a, b[i])` (same lanes, same order), so it is bit-identical.
fn dot4(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    let split = a.len() - a.len() % 8;
    let mut acc = [[0f32; 8]; 4];
    for (j, x) in a[..split].chunks_exact(8).enumerate() {
        for (t, acc) in acc.iter_mut().enumerate() {
            let y = &b[t][8 * j..8 * j + 8];
            for i in 0..8 {
                acc[i] += x[i] * y[i];
            }
        }
    }
    std::array::from_fn(|t| {
        let mut sum = acc[t].iter().sum::<f32>();
        for (x, y) in a[split..].iter().zip(&b[t][split..]) {
            sum += x * y;
        }
        sum
    })
}

/// One input vector quantised for one activation type, reused from call to call.
pub(crate) struct Slot<T> {
    blocks: Vec<T>,
    ready: bool,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            blocks: Vec::new(),
            ready: false,
        }
    }
}

/// Per-thread buffers of the quantised input vector, one per activation type, so a
/// vector is quantised once per matrix group and no step allocates.
#[derive(Default)]
pub(crate) struct Scratch {
    q8_0: Slot<BlockQ8_0>,
    q8_1: Slot<BlockQ8_1>,
    q8k: Slot<BlockQ8K>,
    #[cfg(target_arch = "x86_64")]
    avx512: crate::prefill_avx512::Vector,
}

impl Scratch {
    /// Forgets the quantised vector: the next `dot_rows` quantises its input again.
    pub(crate) fn reset(&mut self) {
        self.q8_0.ready = false;
        self.q8_1.ready = false;
        self.q8k.ready = false;
        #[cfg(target_arch = "x86_64")]
        self.avx512.reset();
    }
}

/// The activation types (dot-product partners of the weight types) and their scratch slot.
pub(crate) trait Activation: GgmlType {
    fn slot(s: &mut Scratch) -> &mut Slot<Self>;
    /// Quantises `xs` into `ys` as llama.cpp does ([`crate::quantize`]).
    fn quantize(xs: &[f32], ys: &mut [Self]) {
        Self::from_float(xs, ys);
    }
}

impl Activation for BlockQ8_0 {
    fn slot(s: &mut Scratch) -> &mut Slot<Self> {
        &mut s.q8_0
    }
    fn quantize(xs: &[f32], ys: &mut [Self]) {
        crate::quantize::q8_0(xs, ys);
    }
}

impl Activation for BlockQ8_1 {
    fn slot(s: &mut Scratch) -> &mut Slot<Self> {
        &mut s.q8_1
    }
}

impl Activation for BlockQ8K {
    fn slot(s: &mut Scratch) -> &mut Slot<Self> {
        &mut s.q8k
    }
    fn quantize(xs: &[f32], ys: &mut [Self]) {
        crate::quantize::q8k(xs, ys);
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
