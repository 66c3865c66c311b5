//! Hyper-parameters of a decoder-only model, read from GGUF metadata and checked
//! against bounds before any tensor is allocated (a hostile file states them).

use crate::error::{LlmError, Result};
use attesta_gguf::Gguf;

/// The architectures this engine runs. Both are the Llama block (RMSNorm, rotary
/// attention with grouped KV heads, SwiGLU); they differ in rotary layout and biases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `llama` (Llama 2/3, Mistral): adjacent-pair rotary embedding, no biases.
    Llama,
    /// `qwen2`: half-split (NeoX) rotary embedding, biases on Q, K and V.
    Qwen2,
}

impl Architecture {
    /// The GGUF `general.architecture` name.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
        }
    }
}

/// Upper bounds on what a model file may declare; a larger value is refused before any
/// allocation. They exceed every open model of the supported families.
const MAX_LAYERS: u32 = 512;
const MAX_EMBD: u32 = 65_536;
const MAX_HEADS: u32 = 1_024;
const MAX_FF: u32 = 1 << 20;
const MAX_CONTEXT: u32 = 1 << 20;

/// The shape of a model, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Which block layout.
    pub arch: Architecture,
    /// Vocabulary size (rows of the embedding).
    pub n_vocab: usize,
    /// Hidden size.
    pub n_embd: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Attention heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention; divides `n_head`).
    pub n_head_kv: usize,
    /// Size of one head.
    pub head_dim: usize,
    /// Feed-forward hidden size.
    pub n_ff: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Rotary base frequency.
    pub rope_base: f32,
    /// Dimensions per head that rotate (the rest pass through).
    pub rope_dim: usize,
    /// Context length the model was trained for.
    pub context_length: usize,
}

impl ModelConfig {
    /// Reads and validates the hyper-parameters of `gguf`; `n_vocab` comes from the
    /// tokenizer (the embedding's rows are checked against it when tensors load).
    pub fn from_gguf(gguf: &Gguf, n_vocab: usize) -> Result<Self> {
        let arch_name = gguf
            .architecture()
            .ok_or_else(|| meta_err("general.architecture", "missing"))?;
        let arch = match arch_name {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            other => return Err(LlmError::UnsupportedArchitecture(other.to_string())),
        };
        let a = arch.name();
        let n_embd = bounded(gguf, &format!("{a}.embedding_length"), MAX_EMBD)?;
        let n_layer = bounded(gguf, &format!("{a}.block_count"), MAX_LAYERS)?;
        let n_head = bounded(gguf, &format!("{a}.attention.head_count"), MAX_HEADS)?;
        let kv_key = format!("{a}.attention.head_count_kv");
        let n_head_kv = match gguf.get_u32(&kv_key) {
            Some(v) if v >= 1 && v <= n_head as u32 => v as usize,
            Some(v) => return Err(meta_err(&kv_key, &format!("{v} not in 1..={n_head}"))),
            None => n_head,
        };
        if n_head % n_head_kv != 0 {
            return Err(meta_err(&kv_key, "does not divide the head count"));
        }
        if n_embd % n_head != 0 {
            return Err(meta_err(
                &format!("{a}.embedding_length"),
                "not a multiple of the head count",
            ));
        }
        let head_dim = n_embd / n_head;
        if head_dim % 2 != 0 {
            return Err(meta_err(
                &format!("{a}.attention.head_count"),
                "odd head size",
            ));
        }
        let n_ff = bounded(gguf, &format!("{a}.feed_forward_length"), MAX_FF)?;
        let context_length = bounded(gguf, &format!("{a}.context_length"), MAX_CONTEXT)?;
        let eps_key = format!("{a}.attention.layer_norm_rms_epsilon");
        let rms_eps = gguf
            .get_f32(&eps_key)
            .ok_or_else(|| meta_err(&eps_key, "missing"))?;
        if !(rms_eps > 0.0 && rms_eps < 1.0) {
            return Err(meta_err(&eps_key, "not in (0, 1)"));
        }
        let base_key = format!("{a}.rope.freq_base");
        let rope_base = gguf.get_f32(&base_key).unwrap_or(10_000.0);
        if !(rope_base.is_finite() && rope_base > 1.0) {
            return Err(meta_err(&base_key, "not a finite value above 1"));
        }
        let dim_key = format!("{a}.rope.dimension_count");
        let rope_dim = match gguf.get_u32(&dim_key) {
            Some(d) if d as usize == head_dim => head_dim,
            // Partial rotary is not in these families; refusing beats running it wrong.
            Some(d) => return Err(meta_err(&dim_key, &format!("{d} != head size {head_dim}"))),
            None => head_dim,
        };
        if n_vocab == 0 || n_vocab > 1 << 22 {
            return Err(meta_err(
                "tokenizer.ggml.tokens",
                "vocabulary size out of range",
            ));
        }
        Ok(ModelConfig {
            arch,
            n_vocab,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            rms_eps,
            rope_base,
            rope_dim,
            context_length,
        })
    }

    /// Bytes of KV cache one token costs (keys and values of every layer, f32).
    pub fn kv_bytes_per_token(&self) -> usize {
        2 * self.n_layer * self.n_head_kv * self.head_dim * std::mem::size_of::<f32>()
    }
}

fn bounded(gguf: &Gguf, key: &str, max: u32) -> Result<usize> {
    match gguf.get_u32(key) {
        Some(v) if v >= 1 && v <= max => Ok(v as usize),
        Some(v) => Err(meta_err(key, &format!("{v} not in 1..={max}"))),
        None => Err(meta_err(key, "missing")),
    }
}

fn meta_err(key: &str, reason: &str) -> LlmError {
    LlmError::Metadata {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}
