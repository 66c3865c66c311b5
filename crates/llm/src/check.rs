//! Teacher-forced checking of a greedy completion: one forward pass over prompt +
//! completion tells, at every generated position, whether the claimed token was the
//! model's argmax. Far cheaper than generating (one batched pass instead of one pass
//! per token), which is what lets a validator check every answer.

use crate::error::{LlmError, Result};
use crate::generate::PREFILL_BATCH;
use crate::model::{KvCache, Logits, Model, argmax, rows};

/// Default tolerance, in logits: a claimed token whose logit is within this of the maximum
/// counts as greedy. On one build and CPU, the check's batched pass computes exactly the
/// logits the generating decode steps saw (gap 0, whatever the thread count: the engine's
/// `prefill` module); the tolerance is for honest engines whose arithmetic differs (the
/// AVX-512 and AVX2 kernels, another build), which the tests measure on every test model
/// (llama.cpp itself agrees within it on F32, F16 and Q8_0), while a non-greedy choice on
/// a random-weights or real model is typically off by whole logits.
pub const DEFAULT_TOLERANCE: f32 = 0.05;

/// The first position where a claimed token was not (near-)greedy.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// Index in the completion.
    pub index: usize,
    /// The token the node claimed.
    pub claimed: u32,
    /// The model's argmax there.
    pub argmax: u32,
    /// How far below the maximum the claimed token's logit is.
    pub gap: f32,
}

/// What a check found.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// Completion tokens checked.
    pub checked: usize,
    /// The largest gap among accepted tokens (how close to the tolerance honest answers come).
    pub max_accepted_gap: f32,
    /// The first failing position, if any.
    pub mismatch: Option<Mismatch>,
}

impl CheckReport {
    /// Whether every token was greedy within the tolerance.
    pub fn passed(&self) -> bool {
        self.mismatch.is_none()
    }
}

/// Checks that `completion` is the greedy continuation of `prompt` within `tolerance`.
pub fn check_greedy(
    model: &Model,
    prompt: &[u32],
    completion: &[u32],
    tolerance: f32,
) -> Result<CheckReport> {
    let ctx = model.config().context_length;
    let total = prompt.len() + completion.len();
    if prompt.is_empty() || total > ctx {
        return Err(LlmError::ContextOverflow {
            needed: total,
            limit: ctx,
        });
    }
    let n_vocab = model.config().n_vocab;
    if let Some(index) = completion.iter().position(|&t| t as usize >= n_vocab) {
        // Not a token of this model at all: fails without running anything.
        return Ok(CheckReport {
            checked: index + 1,
            max_accepted_gap: 0.0,
            mismatch: Some(Mismatch {
                index,
                claimed: completion[index],
                argmax: 0,
                gap: f32::INFINITY,
            }),
        });
    }
    let mut cache = KvCache::new(model, total)?;
    // The sequence the node's steps ran: the prompt, then every completion token but the
    // last. Position `prompt.len() - 1 + i` predicts completion token `i`; earlier
    // positions only fill the cache. One pass per chunk, logits only where needed.
    let first = prompt.len() - 1;
    let mut seq = Vec::with_capacity(total);
    seq.extend_from_slice(prompt);
    seq.extend_from_slice(&completion[..completion.len().saturating_sub(1)]);
    let mut report = CheckReport {
        checked: 0,
        max_accepted_gap: 0.0,
        mismatch: None,
    };
    let mut start = 0;
    for chunk in seq.chunks(PREFILL_BATCH) {
        let end = start + chunk.len();
        if end <= first {
            model.forward(chunk, &mut cache, Logits::Last)?;
            start = end;
            continue;
        }
        let from = first.max(start);
        let logits = rows(&model.forward(chunk, &mut cache, Logits::Tail(end - from))?)?;
        for (offset, row) in logits.iter().enumerate() {
            let index = from + offset - first;
            let Some(&claimed) = completion.get(index) else {
                break;
            };
            let best = argmax(row);
            let gap = match row.get(claimed as usize) {
                Some(&l) => row[best] - l,
                None => f32::INFINITY,
            };
            report.checked += 1;
            if gap > tolerance || gap.is_nan() {
                report.mismatch = Some(Mismatch {
                    index,
                    claimed,
                    argmax: best as u32,
                    gap,
                });
                return Ok(report);
            }
            report.max_accepted_gap = report.max_accepted_gap.max(gap);
        }
        start = end;
    }
    Ok(report)
}
