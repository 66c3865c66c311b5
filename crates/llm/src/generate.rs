//! One sequence's generation: batched prefill of the prompt, then one token per step.
//!
//! The caller drives it step by step, so cancellation, deadlines, stop strings and
//! streaming live with the caller (the node), and the engine never blocks on anything
//! but arithmetic. A sampled token is fed to the model lazily, at the next step, so the
//! last token of a completion costs no forward pass.

use crate::error::{LlmError, Result};
use crate::model::{KvCache, Logits, Model, rows};
use crate::sample::{Sampler, SamplingParams, logprobs};

/// Tokens per prefill forward pass: large enough for the matmuls to run at full speed,
/// small enough to bound the activation memory of a long prompt.
pub const PREFILL_BATCH: usize = 256;

/// One generated token.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The token id.
    pub token: u32,
    /// Its log-probability under the model (natural log, before temperature).
    pub logprob: f32,
    /// The most likely alternatives with their log-probabilities, most likely first
    /// (as many as requested at start).
    pub top: Vec<(u32, f32)>,
}

/// A sequence being generated.
pub struct Generation<'m> {
    model: &'m Model,
    cache: KvCache,
    sampler: Sampler,
    logits: Vec<f32>,
    pending: Option<u32>,
    produced: usize,
    max_tokens: usize,
    top_k: usize,
    prompt_len: usize,
}

impl<'m> Generation<'m> {
    /// Prefills `prompt` and prepares to generate at most `max_tokens` tokens, reporting
    /// `top_k` alternatives per token. The KV cache is sized for prompt + completion, so a
    /// request that cannot fit is refused here, before any work.
    pub fn start(
        model: &'m Model,
        prompt: &[u32],
        params: SamplingParams,
        max_tokens: usize,
        top_k: usize,
    ) -> Result<Self> {
        let ctx = model.config().context_length;
        let needed = prompt.len().saturating_add(max_tokens);
        if prompt.is_empty() || needed > ctx {
            return Err(LlmError::ContextOverflow { needed, limit: ctx });
        }
        let mut cache = KvCache::new(model, needed)?;
        let mut last = None;
        for chunk in prompt.chunks(PREFILL_BATCH) {
            last = Some(model.forward(chunk, &mut cache, Logits::Last)?);
        }
        let logits = match last {
            Some(t) => rows(&t)?.pop().unwrap_or_default(),
            None => Vec::new(),
        };
        Ok(Generation {
            model,
            cache,
            sampler: Sampler::new(params),
            logits,
            pending: None,
            produced: 0,
            max_tokens,
            top_k,
            prompt_len: prompt.len(),
        })
    }

    /// The next token, or None once `max_tokens` were produced. End-of-generation tokens
    /// are returned like any other: the caller knows the tokenizer and decides.
    pub fn step(&mut self) -> Result<Option<Step>> {
        if self.produced >= self.max_tokens {
            return Ok(None);
        }
        if let Some(t) = self.pending.take() {
            let out = self.model.forward(&[t], &mut self.cache, Logits::Last)?;
            self.logits = out.to_vec1::<f32>()?;
        }
        let token = self.sampler.next(&self.logits);
        let (logprob, top) = logprobs(&self.logits, token, self.top_k);
        self.pending = Some(token);
        self.produced += 1;
        Ok(Some(Step {
            token,
            logprob,
            top,
        }))
    }

    /// Tokens generated so far.
    pub fn produced(&self) -> usize {
        self.produced
    }

    /// Prompt tokens.
    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }
}
