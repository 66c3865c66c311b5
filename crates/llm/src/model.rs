//! The decoder: embedding, transformer blocks (RMSNorm, rotary grouped-query attention,
//! SwiGLU), final norm and output projection, over candle's quantised matmuls.
//!
//! One forward call takes a chunk of tokens of one sequence and returns logits for the
//! last position (generation) or for every position (teacher-forced checking, where the
//! validator scores a whole completion in one pass).

use crate::config::{Architecture, ModelConfig};
use crate::error::{LlmError, Result};
use crate::weights::{Linear, WeightReader};
use candle_core::{DType, Device, Tensor};
use std::io::{Read, Seek};

struct Block {
    attn_norm: Tensor,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    bq: Option<Tensor>,
    bk: Option<Tensor>,
    bv: Option<Tensor>,
    wo: Linear,
    ffn_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// A loaded model: immutable, shared by every sequence that runs on it.
pub struct Model {
    cfg: ModelConfig,
    embed: candle_core::quantized::QTensor,
    blocks: Vec<Block>,
    norm: Tensor,
    output: Linear,
    /// Rotary tables for every position of the context: `[ctx, head_dim / 2]`.
    cos: Tensor,
    sin: Tensor,
}

/// Which logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position's (`[n_vocab]`): generation.
    Last,
    /// Every position's (`[n_tokens, n_vocab]`): teacher-forced checking.
    All,
}

impl Model {
    /// Reads every weight the configuration calls for, checking names, shapes and types.
    pub fn load<R: Read + Seek>(cfg: ModelConfig, w: &mut WeightReader<'_, R>) -> Result<Self> {
        let (e, hd) = (cfg.n_embd, cfg.head_dim);
        let kv = cfg.n_head_kv * hd;
        let embed = w.qtensor("token_embd.weight", &[cfg.n_vocab, e])?;
        let output = if w.has("output.weight") {
            w.linear("output.weight", [cfg.n_vocab, e])?
        } else {
            // Tied embeddings: the output projection is the embedding matrix.
            w.linear("token_embd.weight", [cfg.n_vocab, e])?
        };
        let norm = w.dense("output_norm.weight", &[e])?;
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = |s: &str| format!("blk.{i}.{s}");
            let bias = cfg.arch == Architecture::Qwen2;
            blocks.push(Block {
                attn_norm: w.dense(&p("attn_norm.weight"), &[e])?,
                wq: w.linear(&p("attn_q.weight"), [e, e])?,
                wk: w.linear(&p("attn_k.weight"), [kv, e])?,
                wv: w.linear(&p("attn_v.weight"), [kv, e])?,
                bq: opt(bias, || w.dense(&p("attn_q.bias"), &[e]))?,
                bk: opt(bias, || w.dense(&p("attn_k.bias"), &[kv]))?,
                bv: opt(bias, || w.dense(&p("attn_v.bias"), &[kv]))?,
                wo: w.linear(&p("attn_output.weight"), [e, e])?,
                ffn_norm: w.dense(&p("ffn_norm.weight"), &[e])?,
                gate: w.linear(&p("ffn_gate.weight"), [cfg.n_ff, e])?,
                up: w.linear(&p("ffn_up.weight"), [cfg.n_ff, e])?,
                down: w.linear(&p("ffn_down.weight"), [e, cfg.n_ff])?,
            });
        }
        // Llama 3.1-style frequency factors, when the file carries them.
        let factors = if w.has("rope_freqs.weight") {
            Some(w.dense("rope_freqs.weight", &[hd / 2])?.to_vec1::<f32>()?)
        } else {
            None
        };
        let (cos, sin) = rotary_tables(&cfg, factors.as_deref())?;
        Ok(Model {
            cfg,
            embed,
            blocks,
            norm,
            output,
            cos,
            sin,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Runs `tokens` (positions `cache.len()..`) through the model, appending their keys
    /// and values to `cache`.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, which: Logits) -> Result<Tensor> {
        let n = tokens.len();
        let pos = cache.len;
        if n == 0 {
            return Err(LlmError::ContextOverflow {
                needed: 0,
                limit: cache.capacity,
            });
        }
        if pos + n > cache.capacity {
            return Err(LlmError::ContextOverflow {
                needed: pos + n,
                limit: cache.capacity,
            });
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= self.cfg.n_vocab) {
            return Err(LlmError::TokenOutOfRange {
                id,
                n_vocab: self.cfg.n_vocab,
            });
        }
        let ids = Tensor::from_slice(tokens, n, &Device::Cpu)?;
        let mut x = self.embed.embedding(&ids)?; // [n, e]
        let cos = self.cos.narrow(0, pos, n)?;
        let sin = self.sin.narrow(0, pos, n)?;
        let mask = causal_mask(n, pos)?;
        for (layer, b) in self.blocks.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &b.attn_norm, self.cfg.rms_eps)?;
            let a = self.attention(b, &h, &cos, &sin, mask.as_ref(), cache, layer)?;
            x = (x + a)?;
            let h = candle_nn::ops::rms_norm(&x, &b.ffn_norm, self.cfg.rms_eps)?;
            let g = candle_nn::ops::silu(&b.gate.forward(&h)?)?;
            let f = b.down.forward(&(g * b.up.forward(&h)?)?)?;
            x = (x + f)?;
        }
        cache.len += n;
        let x = match which {
            Logits::Last => x.narrow(0, n - 1, 1)?,
            Logits::All => x,
        };
        let x = candle_nn::ops::rms_norm(&x, &self.norm, self.cfg.rms_eps)?;
        let logits = self.output.forward(&x)?;
        Ok(match which {
            Logits::Last => logits.squeeze(0)?,
            Logits::All => logits,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        b: &Block,
        h: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        cache: &mut KvCache,
        layer: usize,
    ) -> Result<Tensor> {
        let c = &self.cfg;
        let n = h.dim(0)?;
        let pos = cache.len;
        let q = add_bias(b.wq.forward(h)?, b.bq.as_ref())?;
        let k = add_bias(b.wk.forward(h)?, b.bk.as_ref())?;
        let v = add_bias(b.wv.forward(h)?, b.bv.as_ref())?;
        // [n, heads, hd] -> [1, heads, n, hd]: the layout rotary and matmul expect.
        let q = q
            .reshape((1, n, c.n_head, c.head_dim))?
            .transpose(1, 2)?
            .contiguous()?;
        let k = k
            .reshape((1, n, c.n_head_kv, c.head_dim))?
            .transpose(1, 2)?
            .contiguous()?;
        let v = v
            .reshape((1, n, c.n_head_kv, c.head_dim))?
            .transpose(1, 2)?
            .contiguous()?;
        let (q, k) = match c.arch {
            Architecture::Llama => (
                candle_nn::rotary_emb::rope_i(&q, cos, sin)?,
                candle_nn::rotary_emb::rope_i(&k, cos, sin)?,
            ),
            Architecture::Qwen2 => (
                candle_nn::rotary_emb::rope(&q, cos, sin)?,
                candle_nn::rotary_emb::rope(&k, cos, sin)?,
            ),
        };
        let (k_all, v_all) = cache.append(layer, &k, &v, pos)?; // [1, kv, pos+n, hd]
        let t = pos + n;
        let group = c.n_head / c.n_head_kv;
        // Grouped-query attention without copying keys: the heads sharing a KV head are
        // stacked along the row axis of one matmul.
        let q = q.reshape((1, c.n_head_kv, group * n, c.head_dim))?;
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let att = (q.matmul(&k_all.t()?)? * scale)?; // [1, kv, group*n, t]
        let att = match mask {
            Some(m) => att
                .reshape((1, c.n_head_kv, group, n, t))?
                .broadcast_add(m)?
                .reshape((1, c.n_head_kv, group * n, t))?,
            None => att,
        };
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let y = att.matmul(&v_all)?; // [1, kv, group*n, hd]
        let y = y
            .reshape((1, c.n_head, n, c.head_dim))?
            .transpose(1, 2)?
            .reshape((n, c.n_embd))?;
        b.wo.forward(&y)
    }
}

/// Keys and values of one sequence, preallocated for its whole budget so that a decode
/// step writes in place instead of copying the cache.
pub struct KvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// A cache for `capacity` tokens of `model` (at most its context length).
    pub fn new(model: &Model, capacity: usize) -> Result<Self> {
        let c = &model.cfg;
        if capacity > c.context_length {
            return Err(LlmError::ContextOverflow {
                needed: capacity,
                limit: c.context_length,
            });
        }
        let shape = (1, c.n_head_kv, capacity.max(1), c.head_dim);
        let mut keys = Vec::with_capacity(c.n_layer);
        let mut values = Vec::with_capacity(c.n_layer);
        for _ in 0..c.n_layer {
            keys.push(Tensor::zeros(shape, DType::F32, &Device::Cpu)?);
            values.push(Tensor::zeros(shape, DType::F32, &Device::Cpu)?);
        }
        Ok(KvCache {
            keys,
            values,
            len: 0,
            capacity,
        })
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no token was fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tokens it can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
        pos: usize,
    ) -> Result<(Tensor, Tensor)> {
        let n = k.dim(2)?;
        let (kc, vc) = (&self.keys[layer], &self.values[layer]);
        kc.slice_set(k, 2, pos)?;
        vc.slice_set(v, 2, pos)?;
        Ok((kc.narrow(2, 0, pos + n)?, vc.narrow(2, 0, pos + n)?))
    }
}

fn opt(wanted: bool, mut f: impl FnMut() -> Result<Tensor>) -> Result<Option<Tensor>> {
    if wanted { f().map(Some) } else { Ok(None) }
}

fn add_bias(x: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    Ok(match bias {
        Some(b) => x.broadcast_add(b)?,
        None => x,
    })
}

/// `[n, pos + n]` additive mask: query `i` (absolute `pos + i`) sees keys `0..=pos + i`.
/// None for a single token, which sees everything before it.
fn causal_mask(n: usize, pos: usize) -> Result<Option<Tensor>> {
    if n == 1 {
        return Ok(None);
    }
    let t = pos + n;
    let data: Vec<f32> = (0..n)
        .flat_map(|i| (0..t).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Some(Tensor::from_vec(data, (n, t), &Device::Cpu)?))
}

/// cos/sin of every position and frequency, `[ctx, rope_dim / 2]`, as llama.cpp computes
/// them (theta_i = base^(-2i/d), divided by the optional per-frequency factors).
fn rotary_tables(cfg: &ModelConfig, factors: Option<&[f32]>) -> Result<(Tensor, Tensor)> {
    let half = cfg.rope_dim / 2;
    let inv: Vec<f32> = (0..half)
        .map(|i| {
            let f = 1.0 / cfg.rope_base.powf(2.0 * i as f32 / cfg.rope_dim as f32);
            f / factors.and_then(|fs| fs.get(i).copied()).unwrap_or(1.0)
        })
        .collect();
    let ctx = cfg.context_length;
    let inv = Tensor::from_vec(inv, (1, half), &Device::Cpu)?;
    let t = Tensor::arange(0u32, ctx as u32, &Device::Cpu)?
        .to_dtype(DType::F32)?
        .reshape((ctx, 1))?;
    let freqs = t.broadcast_mul(&inv)?;
    Ok((freqs.cos()?.contiguous()?, freqs.sin()?.contiguous()?))
}

/// Index of the largest logit (the lowest index among equals, as llama.cpp's greedy sampler).
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best
}

/// Logits of the last dimension as rows of f32.
pub fn rows(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(match logits.rank() {
        1 => vec![logits.to_vec1::<f32>()?],
        _ => logits.to_dtype(DType::F32)?.to_vec2::<f32>()?,
    })
}
