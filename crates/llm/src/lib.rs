//! attesta's generative engine: decoder-only language models from GGUF files.
//!
//! Layers, bottom up:
//! - `attesta_gguf` (its own crate): the bounded GGUF reader, the tokenizers and the
//!   chat template, all from the file's metadata;
//! - [`config`]: the model's hyper-parameters, validated before any allocation;
//! - [`weights`]: tensors read from the validated file into candle's quantised blocks;
//! - [`model`]: the forward pass with a preallocated KV cache (a single-token step runs
//!   on plain vectors and a few threads, in the private `decode` module);
//! - [`sample`], [`generate`]: choosing tokens and driving one sequence step by step;
//! - [`check`]: the validator's teacher-forced check of a greedy completion.
//!
//! [`LlmModel::open`] puts them together.
#![deny(unsafe_code)]

pub mod check;
pub mod config;
mod decode;
pub mod error;
pub mod generate;
pub mod model;
mod prefill;
#[cfg(target_arch = "x86_64")]
mod prefill_avx512;
mod quantize;
pub mod sample;
pub mod weights;
mod wide;

use std::io::{Read, Seek};
use std::path::Path;

pub use attesta_gguf::{ChatMessage, ChatTemplate, Gguf, Tokenizer};
pub use config::{Architecture, ModelConfig};
pub use error::{LlmError, Result};
pub use model::Model;

/// Engine name recorded in receipts.
pub const ENGINE_NAME: &str = "attesta-llm";
/// Engine version recorded in receipts (this crate's version and candle's).
pub const ENGINE_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+candle-0.11");

/// What a listing shows about a language model.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LlmInfo {
    /// `general.architecture`.
    pub architecture: String,
    /// Dominant weight type (e.g. `Q4_K`, `Q8_0`, `F16`).
    pub quantisation: String,
    /// Context length in tokens.
    pub context_length: usize,
    /// Parameter count.
    pub parameters: u64,
    /// Vocabulary size.
    pub n_vocab: usize,
    /// Whether the file carries a chat template (needed by chat completions).
    pub chat_template: bool,
    /// `general.name`, when present.
    pub name: Option<String>,
}

/// Whether `bytes` start like a GGUF file (how the node tells an LLM from an ONNX model).
pub fn is_gguf(bytes: &[u8]) -> bool {
    bytes.starts_with(&attesta_gguf::file::MAGIC)
}

/// Reads what a listing shows from the GGUF file at `path` (metadata, tokenizer and
/// template are validated as for a load; no weight is read).
pub fn describe(path: &Path) -> Result<LlmInfo> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let gguf = Gguf::read(&mut file, len, &attesta_gguf::Limits::default())?;
    let tokenizer = Tokenizer::from_gguf(&gguf)?;
    let template = ChatTemplate::from_gguf(&gguf, &tokenizer).ok();
    let cfg = ModelConfig::from_gguf(&gguf, tokenizer.n_vocab())?;
    Ok(info_of(&gguf, &cfg, template.is_some()))
}

fn info_of(gguf: &Gguf, cfg: &ModelConfig, chat_template: bool) -> LlmInfo {
    LlmInfo {
        architecture: cfg.arch.name().to_string(),
        quantisation: gguf.quantisation(),
        context_length: cfg.context_length,
        parameters: gguf.parameter_count(),
        n_vocab: cfg.n_vocab,
        chat_template,
        name: gguf.get_str("general.name").map(str::to_string),
    }
}

/// A language model ready to serve: weights, tokenizer and chat template.
pub struct LlmModel {
    info: LlmInfo,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    model: Model,
    weight_bytes: usize,
}

impl LlmModel {
    /// Opens, validates and loads the GGUF file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        Self::read(&mut file, len)
    }

    /// Loads a GGUF model from bytes in memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::read(&mut std::io::Cursor::new(bytes), bytes.len() as u64)
    }

    /// Loads from any seekable reader of `len` bytes.
    pub fn read<R: Read + Seek>(r: &mut R, len: u64) -> Result<Self> {
        let gguf = Gguf::read(&mut *r, len, &attesta_gguf::Limits::default())?;
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        // A file without a template serves completions only; never a guessed template.
        let template = ChatTemplate::from_gguf(&gguf, &tokenizer).ok();
        let cfg = ModelConfig::from_gguf(&gguf, tokenizer.n_vocab())?;
        let weight_bytes = gguf.tensors.iter().map(|t| t.size as usize).sum();
        let info = info_of(&gguf, &cfg, template.is_some());
        let mut weights = weights::WeightReader::new(&gguf, r);
        let model = Model::load(cfg, &mut weights)?;
        Ok(LlmModel {
            info,
            tokenizer,
            template,
            model,
            weight_bytes,
        })
    }

    /// Listing facts.
    pub fn info(&self) -> &LlmInfo {
        &self.info
    }

    /// The tokenizer from the file's metadata.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat template, if the file has one.
    pub fn template(&self) -> Option<&ChatTemplate> {
        self.template.as_ref()
    }

    /// The network.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Resident bytes of the weights (F16 weights are widened to F32 on load).
    pub fn memory_estimate(&self) -> usize {
        self.weight_bytes * 2
    }
}
