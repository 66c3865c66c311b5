//! The decoder: embedding, transformer blocks (RMSNorm, rotary grouped-query attention,
//! SwiGLU), final norm and output projection.
//!
//! One forward call takes a chunk of tokens of one sequence and returns logits for the
//! last position (generation) or for every position (teacher-forced checking, where the
//! validator scores a whole completion in one pass). One token runs the decode step
//! (`decode`), several the batched pass (`prefill`), with the same arithmetic.

use crate::config::{Architecture, ModelConfig};
use crate::error::{LlmError, Result};
use crate::weights::{Linear, Scratch, WeightReader};
use candle_core::{DType, Device, Tensor};
use std::io::{Read, Seek};

pub(crate) struct Block {
    /// Norm weights and the q|k|v biases (Qwen2) as plain vectors.
    pub(crate) attn_norm_v: Vec<f32>,
    pub(crate) ffn_norm_v: Vec<f32>,
    pub(crate) qkv_bias_v: Option<Vec<f32>>,
    /// Query, key and value projections, rows stacked (`n_embd + 2 * kv` outputs).
    pub(crate) qkv: Stack,
    pub(crate) wo: Linear,
    /// Gate and up projections, rows stacked (`2 * n_ff` outputs, gate first).
    pub(crate) gate_up: Stack,
    pub(crate) down: Linear,
}

/// Linear layers applied to one input whose outputs are concatenated: one fused layer
/// when the weights share a type, else one per weight.
pub(crate) struct Stack(Vec<Linear>);

impl Stack {
    fn load<R: Read + Seek>(
        w: &mut WeightReader<'_, R>,
        names: &[(&str, usize)],
        k: usize,
    ) -> Result<Self> {
        Ok(Stack(w.linears(names, k)?))
    }

    /// Outputs (rows) of all parts.
    pub(crate) fn rows(&self) -> usize {
        self.0.iter().map(Linear::out_features).sum()
    }

    /// `x [m, k] -> [m, sum of outputs]` (row-major), as [`Linear::forward_rows`].
    pub(crate) fn forward_rows(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        match self.0.as_slice() {
            [one] => one.forward_rows(x, m),
            parts => {
                let width = self.rows();
                let mut out = vec![0f32; m * width];
                let mut base = 0;
                for part in parts {
                    let n = part.out_features();
                    let y = part.forward_rows(x, m)?;
                    for (o, yt) in out.chunks_exact_mut(width).zip(y.chunks_exact(n)) {
                        o[base..base + n].copy_from_slice(yt);
                    }
                    base += n;
                }
                Ok(out)
            }
        }
    }

    /// Rows `rows` (of the concatenated output) for one input vector; see
    /// [`Linear::dot_rows`].
    pub(crate) fn dot_rows(
        &self,
        x: &[f32],
        scratch: &mut Scratch,
        rows: std::ops::Range<usize>,
        mut out: impl FnMut(usize, f32),
    ) -> Result<()> {
        let mut base = 0;
        for part in &self.0 {
            let n = part.out_features();
            let lo = rows.start.max(base);
            let hi = rows.end.min(base + n);
            if lo < hi {
                part.dot_rows(x, scratch, lo - base..hi - base, |r, v| out(base + r, v))?;
            }
            base += n;
        }
        Ok(())
    }
}

/// A loaded model: immutable, shared by every sequence that runs on it.
pub struct Model {
    pub(crate) cfg: ModelConfig,
    pub(crate) embed: candle_core::quantized::QTensor,
    pub(crate) blocks: Vec<Block>,
    pub(crate) norm_v: Vec<f32>,
    pub(crate) output: Linear,
    /// Rotary tables for every position of the context: `[ctx, head_dim / 2]`.
    pub(crate) cos: Tensor,
    pub(crate) sin: Tensor,
}

/// Which logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position's (`[n_vocab]`): generation.
    Last,
    /// Every position's (`[n_tokens, n_vocab]`): teacher-forced checking.
    All,
    /// The last `n` positions' (`[n, n_vocab]`, `n` clamped to `1..=n_tokens`): a check
    /// whose chunk starts inside the prompt.
    Tail(usize),
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
            let qkv_bias = if bias {
                let parts = [
                    w.dense(&p("attn_q.bias"), &[e])?,
                    w.dense(&p("attn_k.bias"), &[kv])?,
                    w.dense(&p("attn_v.bias"), &[kv])?,
                ];
                Some(Tensor::cat(&parts, 0)?.to_vec1()?)
            } else {
                None
            };
            let (q, k, v) = (p("attn_q.weight"), p("attn_k.weight"), p("attn_v.weight"));
            let (g, u) = (p("ffn_gate.weight"), p("ffn_up.weight"));
            let attn_norm = w.dense(&p("attn_norm.weight"), &[e])?;
            let ffn_norm = w.dense(&p("ffn_norm.weight"), &[e])?;
            blocks.push(Block {
                attn_norm_v: attn_norm.to_vec1()?,
                ffn_norm_v: ffn_norm.to_vec1()?,
                qkv_bias_v: qkv_bias,
                qkv: Stack::load(w, &[(&q, e), (&k, kv), (&v, kv)], e)?,
                wo: w.linear(&p("attn_output.weight"), [e, e])?,
                gate_up: Stack::load(w, &[(&g, cfg.n_ff), (&u, cfg.n_ff)], e)?,
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
            norm_v: norm.to_vec1()?,
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
        if n == 1 {
            // One token (a decode step): the single-vector path, no tensor ops.
            let logits = crate::decode::forward_token(self, tokens[0], cache)?;
            let len = logits.len();
            return Ok(match which {
                Logits::Last => Tensor::from_vec(logits, len, &Device::Cpu)?,
                Logits::All | Logits::Tail(_) => Tensor::from_vec(logits, (1, len), &Device::Cpu)?,
            });
        }
        let logits = crate::prefill::forward_batch(self, tokens, cache, which)?;
        let len = self.cfg.n_vocab;
        Ok(match which {
            Logits::Last => Tensor::from_vec(logits, len, &Device::Cpu)?,
            Logits::All | Logits::Tail(_) => {
                let rows = logits.len() / len.max(1);
                Tensor::from_vec(logits, (rows, len), &Device::Cpu)?
            }
        })
    }
}

/// Keys and values of one sequence, preallocated for its whole budget so that a step
/// writes in place instead of copying the cache. Per layer, keys and values are
/// `[n_head_kv, capacity, head_dim]` f32, each KV head's rows contiguous, so the decode
/// path hands every thread the heads it attends over as plain slices.
pub struct KvCache {
    pub(crate) keys: Vec<Vec<f32>>,
    pub(crate) values: Vec<Vec<f32>>,
    pub(crate) len: usize,
    pub(crate) capacity: usize,
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
        let size = c.n_head_kv * capacity.max(1) * c.head_dim;
        Ok(KvCache {
            keys: (0..c.n_layer).map(|_| vec![0f32; size]).collect(),
            values: (0..c.n_layer).map(|_| vec![0f32; size]).collect(),
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

    /// Rows per KV head in the per-layer buffers (the capacity, at least 1).
    pub(crate) fn rows(&self) -> usize {
        self.capacity.max(1)
    }
}

/// cos/sin of every position and frequency, `[ctx, rope_dim / 2]`, exactly as llama.cpp
/// computes them: for position `p`, `theta_0 = p` and each next frequency multiplies by
/// `base^(-2 / d)` in f32 (ggml's recurrence, not `base^(-2i/d)` per frequency: the two
/// round differently, and with a large base such as Llama 3's 500000 the difference was
/// enough to flip quantised activations and move logits by tenths), divided by the
/// optional per-frequency factors, then `cosf`/`sinf`.
fn rotary_tables(cfg: &ModelConfig, factors: Option<&[f32]>) -> Result<(Tensor, Tensor)> {
    let half = cfg.rope_dim / 2;
    let ctx = cfg.context_length;
    let scale = cfg.rope_base.powf(-2.0 / cfg.rope_dim as f32);
    let mut cos = Vec::with_capacity(ctx * half);
    let mut sin = Vec::with_capacity(ctx * half);
    for p in 0..ctx {
        let mut theta = p as f32;
        for i in 0..half {
            let t = theta / factors.and_then(|fs| fs.get(i).copied()).unwrap_or(1.0);
            cos.push(t.cos());
            sin.push(t.sin());
            theta *= scale;
        }
    }
    Ok((
        Tensor::from_vec(cos, (ctx, half), &Device::Cpu)?,
        Tensor::from_vec(sin, (ctx, half), &Device::Cpu)?,
    ))
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
