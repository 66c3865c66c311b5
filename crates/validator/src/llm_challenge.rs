//! Language-model challenges: a fresh random prompt (token ids drawn from the model's
//! vocabulary) sent as a greedy completion with `return_token_ids` through the attested
//! sealed channel (`attesta-client`'s [`Client::complete`](attesta_client::Client::complete)
//! to the node's `POST /v1/completions`: the OpenAI body sealed to the key set the node
//! attested in the same check, the answer a sealed chunk stream ending in a receipt).
//! The opened chunks give the time to first token and the decode rate; the validator
//! then checks that the receipt is bound to this challenge ([`check_binding`]: model CID
//! and GGUF hash, the request it sealed, the streamed answer = the signed one) and the
//! returned ids with one teacher-forced forward pass of its own copy of the model
//! ([`attesta_llm::check::check_greedy`]), far cheaper than generating them.
//!
//! No credit for: a token that was not the argmax (within the tolerance), ids that
//! disagree with the text or the counts (wrong answer); a receipt that does not verify
//! or names another model or request, a chunk that does not open, a stream cut, spliced
//! or reordered (receipt or protocol failure).
#![deny(clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use attesta_content::{Cid, ModelStore};
use attesta_llm::LlmModel;
use attesta_llm::check::DEFAULT_TOLERANCE;
use rand_core::Rng;
use serde_json::{Value, json};

use crate::challenge::ChallengeError;
use crate::probe::ProbeError;
use crate::round::Clock;

/// Upper bound on the completion text the validator keeps (bytes): a node cannot make it
/// buffer more, whatever its chunks say.
pub const MAX_TEXT_BYTES: usize = 4 << 20;
/// Upper bound on prompt and completion lengths in a spec.
pub const MAX_TOKENS: u32 = 4096;

/// One language-model challenge as configured (`[[validator.challenges.llm]]`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmChallengeSpec {
    /// Model CID of a GGUF file (must be in the challenge store).
    pub cid: String,
    /// Random prompt tokens per challenge (a BOS token is added in front when the model
    /// asks for one).
    #[serde(default = "default_prompt_tokens")]
    pub prompt_tokens: u32,
    /// Completion tokens asked for (`max_tokens`); also the length the score normalises
    /// the answer's time to ([`crate::scoring::llm_time_secs`]).
    #[serde(default = "default_completion_tokens")]
    pub completion_tokens: u32,
    /// Logit gap below the argmax still accepted as greedy (near-ties between honest
    /// engines; see [`attesta_llm::check::DEFAULT_TOLERANCE`]).
    #[serde(default = "default_tolerance")]
    pub tolerance: f32,
}

fn default_prompt_tokens() -> u32 {
    32
}
fn default_completion_tokens() -> u32 {
    32
}
fn default_tolerance() -> f32 {
    DEFAULT_TOLERANCE
}

impl LlmChallengeSpec {
    /// A spec with the default lengths and tolerance for `cid`.
    pub fn new(cid: impl Into<String>) -> Self {
        LlmChallengeSpec {
            cid: cid.into(),
            prompt_tokens: default_prompt_tokens(),
            completion_tokens: default_completion_tokens(),
            tolerance: default_tolerance(),
        }
    }

    /// Range checks (the model's context length is checked when it loads).
    pub fn validate(&self) -> Result<(), String> {
        let lengths_ok = (1..=MAX_TOKENS).contains(&self.prompt_tokens)
            && (1..=MAX_TOKENS).contains(&self.completion_tokens);
        // `>= 0.0` is false for NaN.
        if !(lengths_ok && self.tolerance >= 0.0 && self.tolerance.is_finite()) {
            return Err(format!(
                "llm model {}: prompt_tokens and completion_tokens must be 1..={MAX_TOKENS}, tolerance finite and ≥ 0",
                self.cid
            ));
        }
        Ok(())
    }
}

/// A loaded challenge language model.
pub struct LlmChallengeModel {
    spec: LlmChallengeSpec,
    sha256_hex: String,
    llm: LlmModel,
    /// Ids a random prompt may use: not control, end-of-generation, unknown or BOS.
    prompt_vocab: Vec<u32>,
}

impl std::fmt::Debug for LlmChallengeModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmChallengeModel")
            .field("cid", &self.spec.cid)
            .field("sha256", &self.sha256_hex)
            .finish_non_exhaustive()
    }
}

impl LlmChallengeModel {
    /// The spec it was loaded for.
    pub fn spec(&self) -> &LlmChallengeSpec {
        &self.spec
    }

    /// SHA-256 (hex) of the GGUF file.
    pub fn sha256_hex(&self) -> &str {
        &self.sha256_hex
    }

    /// The validator's own copy of the model.
    pub fn llm(&self) -> &LlmModel {
        &self.llm
    }
}

/// A challenge ready to send.
#[derive(Debug, Clone)]
pub struct LlmChallenge {
    /// The model (the validator's copy, for the check).
    pub model: Arc<LlmChallengeModel>,
    /// Prompt token ids, sent as they are.
    pub prompt: Vec<u32>,
    /// `max_tokens` of the request.
    pub max_tokens: u32,
}

impl LlmChallenge {
    /// The model's CID.
    pub fn model_cid(&self) -> &str {
        &self.model.spec.cid
    }

    /// The request body: greedy, streamed, with token ids and usage.
    pub fn request_body(&self) -> Value {
        json!({
            "model": self.model.spec.cid,
            "prompt": self.prompt,
            "max_tokens": self.max_tokens,
            "temperature": 0,
            "stream": true,
            "stream_options": {"include_usage": true},
            "return_token_ids": true,
        })
    }
}

/// The configured challenge language models, loaded once and shared by every round.
#[derive(Debug, Clone, Default)]
pub struct LlmChallengeSet {
    models: Vec<Arc<LlmChallengeModel>>,
}

impl LlmChallengeSet {
    /// Loads every spec's GGUF from the store.
    pub fn load(store: &ModelStore, specs: &[LlmChallengeSpec]) -> Result<Self, ChallengeError> {
        let mut entries = Vec::with_capacity(specs.len());
        for spec in specs {
            let cid: Cid = spec.cid.parse().map_err(|e: attesta_content::CidError| {
                ChallengeError::BadCid {
                    cid: spec.cid.clone(),
                    reason: e.to_string(),
                }
            })?;
            let stored = store
                .get(&cid)
                .map_err(|e| ChallengeError::Store {
                    cid: spec.cid.clone(),
                    source: e.into(),
                })?
                .ok_or_else(|| ChallengeError::Missing(spec.cid.clone()))?;
            let bytes = std::fs::read(&stored.path).map_err(|e| ChallengeError::Store {
                cid: spec.cid.clone(),
                source: e.into(),
            })?;
            entries.push((spec.clone(), bytes));
        }
        Self::from_bytes(entries)
    }

    /// Builds the set from GGUF bytes directly (the CID is taken as given). An empty
    /// list is an empty set: language-model challenges are optional.
    pub fn from_bytes(entries: Vec<(LlmChallengeSpec, Vec<u8>)>) -> Result<Self, ChallengeError> {
        use sha2::Digest as _;
        let mut models = Vec::with_capacity(entries.len());
        for (spec, bytes) in entries {
            let unsupported = |reason: String| ChallengeError::Unsupported {
                cid: spec.cid.clone(),
                reason,
            };
            spec.validate().map_err(unsupported)?;
            let llm = LlmModel::from_bytes(&bytes).map_err(|e| ChallengeError::Engine {
                cid: spec.cid.clone(),
                source: e.into(),
            })?;
            let ctx = llm.model().config().context_length;
            // +1: the BOS token in front.
            let needed = spec.prompt_tokens as usize + spec.completion_tokens as usize + 1;
            if needed > ctx {
                return Err(unsupported(format!(
                    "prompt_tokens + completion_tokens + 1 = {needed} exceeds the context length {ctx}"
                )));
            }
            let tok = llm.tokenizer();
            let excluded = |id: u32| {
                tok.is_control(id)
                    || tok.is_eog(id)
                    || tok.unk() == Some(id)
                    || tok.bos() == Some(id)
                    || tok.token_text(id).is_empty()
            };
            let n_vocab = u32::try_from(llm.model().config().n_vocab).unwrap_or(u32::MAX);
            let prompt_vocab: Vec<u32> = (0..n_vocab).filter(|id| !excluded(*id)).collect();
            if prompt_vocab.is_empty() {
                return Err(unsupported(
                    "no ordinary tokens to build prompts from".into(),
                ));
            }
            let sha256_hex = hex::encode(sha2::Sha256::digest(&bytes));
            models.push(Arc::new(LlmChallengeModel {
                spec,
                sha256_hex,
                llm,
                prompt_vocab,
            }));
        }
        Ok(LlmChallengeSet { models })
    }

    /// Number of models.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether no language model is configured.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Model CIDs in order.
    pub fn cids(&self) -> Vec<String> {
        self.models.iter().map(|m| m.spec.cid.clone()).collect()
    }

    /// A fresh challenge: a model picked at random and a prompt of random ordinary
    /// tokens (unpredictable, so no answer can be precomputed).
    pub fn generate(&self, rng: &mut impl Rng) -> Result<LlmChallenge, ChallengeError> {
        let n = self.models.len() as u64;
        if n == 0 {
            return Err(ChallengeError::Empty);
        }
        let idx = usize::try_from(rng.next_u64() % n).unwrap_or(0);
        let m = self.models.get(idx).ok_or(ChallengeError::Empty)?;
        let tok = m.llm.tokenizer();
        let mut prompt = Vec::with_capacity(m.spec.prompt_tokens as usize + 1);
        if tok.add_bos()
            && let Some(bos) = tok.bos()
        {
            prompt.push(bos);
        }
        let v = m.prompt_vocab.len() as u64;
        for _ in 0..m.spec.prompt_tokens {
            // Modulo bias is irrelevant: prompts need to be unpredictable, not uniform.
            let i = usize::try_from(rng.next_u64() % v).unwrap_or(0);
            prompt.push(m.prompt_vocab.get(i).copied().unwrap_or(0));
        }
        Ok(LlmChallenge {
            model: Arc::clone(m),
            prompt,
            max_tokens: m.spec.completion_tokens,
        })
    }
}

/// What the stream delivered, with the validator's timings.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamedAnswer {
    /// Every token id of the chunks, in order (an end-of-generation token included).
    pub ids: Vec<u32>,
    /// The concatenated text of the chunks.
    pub text: String,
    /// `finish_reason` of the last choice chunk.
    pub finish_reason: Option<String>,
    /// `usage.completion_tokens` of the usage chunk.
    pub usage_completion_tokens: Option<u64>,
    /// Request sent → first chunk carrying a token id.
    pub ttft: Duration,
    /// First → last chunk carrying a token id.
    pub decode: Duration,
    /// Request sent → the verified end of the stream.
    pub total: Duration,
    /// Whether the whole stream arrived at once (through an axon: a synapse is one
    /// request and one response), so the chunk times say nothing about the decode rate.
    pub at_once: bool,
    /// The proof bundle (receipt + evidence, JSON) of the verified stream, kept with a
    /// correct answer as the ONNX challenges' bundles are.
    pub bundle: Option<String>,
}

impl StreamedAnswer {
    /// An empty answer, before any chunk.
    pub fn empty(at_once: bool) -> Self {
        StreamedAnswer {
            ids: Vec::new(),
            text: String::new(),
            finish_reason: None,
            usage_completion_tokens: None,
            ttft: Duration::ZERO,
            decode: Duration::ZERO,
            total: Duration::ZERO,
            at_once,
            bundle: None,
        }
    }

    /// Decode rate: tokens after the first over the time they took (`None` without an
    /// interval to measure, or when the stream arrived at once).
    pub fn tokens_per_sec(&self) -> Option<f64> {
        let secs = self.decode.as_secs_f64();
        (!self.at_once && self.ids.len() >= 2 && secs > 0.0)
            .then(|| (self.ids.len() - 1) as f64 / secs)
    }

    /// The time the answer is scored by: [`crate::scoring::llm_time_secs`] from the
    /// measured TTFT and decode rate, or, for a stream that arrived at once,
    /// [`crate::scoring::llm_time_at_once_secs`] from the whole answer's time.
    pub fn scored_secs(&self, completion_tokens: u32) -> f64 {
        if self.at_once {
            crate::scoring::llm_time_at_once_secs(
                self.total.as_secs_f64(),
                self.ids.len(),
                completion_tokens,
            )
        } else {
            crate::scoring::llm_time_secs(
                self.ttft.as_secs_f64(),
                self.tokens_per_sec(),
                completion_tokens,
            )
        }
    }
}

/// The timings of a verified answer (kept with the attempt for metrics and logs).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LlmTiming {
    /// Time to first token (µs); the whole answer's time when it arrived at once.
    pub ttft_us: u64,
    /// Decode rate (tokens/s), when measurable.
    pub tokens_per_sec: Option<f64>,
    /// Completion tokens returned.
    pub tokens: u32,
    /// The validator's teacher-forced check (µs).
    pub check_us: u64,
    /// The time the answer is scored by ([`StreamedAnswer::scored_secs`]).
    pub scored_secs: f64,
    /// The model's context length in tokens (from the validator's own copy), so the
    /// gateway can list what the node was verified to serve.
    pub context_length: usize,
}

#[cfg(test)]
impl LlmTiming {
    /// A verified answer's timings for tests that only need one to exist (a model with a
    /// 512-token context).
    pub(crate) fn for_tests() -> Self {
        LlmTiming {
            ttft_us: 1,
            tokens_per_sec: None,
            tokens: 1,
            check_us: 1,
            scored_secs: 0.1,
            context_length: 512,
        }
    }
}

fn protocol(m: impl Into<String>) -> ProbeError {
    ProbeError::Protocol(m.into())
}

fn receipt(m: impl Into<String>) -> ProbeError {
    ProbeError::Receipt(m.into())
}

/// Collects the opened data chunks of a sealed answer as they arrive (the callback of
/// [`attesta_client::Client::complete`]), timing the ones that carry token ids with the
/// validator's clock. A chunk that breaks the format is remembered and ends the
/// collection: the callback cannot stop the stream, but nothing more is kept.
pub struct ChunkCollector<'c> {
    clock: &'c dyn Clock,
    t0: SystemTime,
    max_tokens: u32,
    answer: StreamedAnswer,
    first_token: Option<Duration>,
    error: Option<ProbeError>,
}

impl std::fmt::Debug for ChunkCollector<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkCollector")
            .field("answer", &self.answer)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<'c> ChunkCollector<'c> {
    /// A collector for `ch`, whose request was sent at `t0` on `clock`; `at_once` when the
    /// transport delivers the stream in one piece.
    pub fn new(ch: &LlmChallenge, clock: &'c dyn Clock, t0: SystemTime, at_once: bool) -> Self {
        ChunkCollector {
            clock,
            t0,
            max_tokens: ch.max_tokens,
            answer: StreamedAnswer::empty(at_once),
            first_token: None,
            error: None,
        }
    }

    /// Takes one opened chunk (an OpenAI completion chunk object).
    pub fn push(&mut self, chunk: &Value) {
        if self.error.is_some() {
            return;
        }
        let at = self.clock.now().duration_since(self.t0).unwrap_or_default();
        let before = self.answer.ids.len();
        if let Err(e) = apply_chunk(&mut self.answer, chunk, self.max_tokens) {
            self.error = Some(e);
            return;
        }
        if self.answer.ids.len() > before {
            let first = *self.first_token.get_or_insert(at);
            self.answer.ttft = first;
            self.answer.decode = at.saturating_sub(first);
        }
    }

    /// The answer as streamed, after the stream verified; `total` is request → verified end.
    pub fn finish(self, total: Duration) -> Result<StreamedAnswer, ProbeError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut ans = self.answer;
        ans.total = total;
        if ans.at_once {
            // One response carries every chunk: the first token is known only when the
            // whole answer is (docs/PROTOCOL.md, "Language-model challenges").
            ans.ttft = total;
            ans.decode = Duration::ZERO;
        }
        Ok(ans)
    }
}

/// A token id: a JSON integer that fits a `u32`.
fn token_id(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|i| u32::try_from(i).ok())
}

/// A JSON list of token ids, if it is one.
fn token_ids(v: &Value) -> Option<Vec<u32>> {
    v.as_array()?.iter().map(token_id).collect()
}

/// Checks that a verified sealed answer is bound to `ch` and that the streamed chunks are
/// what the node signed: the receipt names the challenge's model CID and the SHA-256 of
/// the validator's own copy of the GGUF, its request digest covers the request sealed
/// (this challenge's body, unchanged), and the signed final response repeats the
/// streamed token ids, text, finish reason and usage and the challenge's prompt ids.
/// Everything else about the receipt (signature by the attested key set, the digests
/// of request, chunk transcript and output) the client has already verified.
pub fn check_binding(
    ch: &LlmChallenge,
    out: &attesta_client::CompletionOutcome,
    ans: &StreamedAnswer,
) -> Result<(), ProbeError> {
    let r = &out.receipt.receipt;
    if r.model_cid != ch.model.spec.cid {
        return Err(receipt(format!(
            "receipt names model {}, the challenge was {}",
            r.model_cid, ch.model.spec.cid
        )));
    }
    let sha = hex::encode(r.model_sha256);
    if sha != ch.model.sha256_hex || !out.model_hash.eq_ignore_ascii_case(&sha) {
        return Err(receipt(format!(
            "receipt names model sha256 {sha}, the challenge's GGUF is {}",
            ch.model.sha256_hex
        )));
    }
    if attesta_seal::sha256(&out.request) != r.request_digest {
        return Err(receipt(
            "the receipt's request digest is not the request sealed",
        ));
    }
    let sealed = attesta_seal::RequestPlaintext::parse(&out.request)
        .map_err(|e| receipt(format!("the request sealed does not parse: {e}")))?;
    let sent: Value = serde_json::from_str(sealed.inputs.get())
        .map_err(|e| receipt(format!("the request sealed is not JSON: {e}")))?;
    if sealed.model != ch.model.spec.cid || sent != ch.request_body() {
        return Err(receipt("the request sealed is not this challenge"));
    }
    let signed = &out.output;
    let choice = signed.pointer("/choices/0").unwrap_or(&Value::Null);
    let ids = choice.get("token_ids").and_then(token_ids);
    let prompt_ids = signed.get("prompt_token_ids").and_then(token_ids);
    let mismatch = |what: &str| {
        Err(receipt(format!(
            "the signed answer's {what} differs from the streamed one"
        )))
    };
    if ids.as_deref() != Some(ans.ids.as_slice()) {
        return mismatch("token ids");
    }
    if choice.get("text").and_then(Value::as_str) != Some(ans.text.as_str()) {
        return mismatch("text");
    }
    if choice.get("finish_reason").and_then(Value::as_str) != ans.finish_reason.as_deref() {
        return mismatch("finish reason");
    }
    if signed
        .pointer("/usage/completion_tokens")
        .and_then(Value::as_u64)
        != ans.usage_completion_tokens
    {
        return mismatch("usage");
    }
    if prompt_ids.as_deref() != Some(ch.prompt.as_slice()) {
        return Err(receipt(
            "the signed answer's prompt ids are not the challenge's",
        ));
    }
    Ok(())
}

fn apply_chunk(ans: &mut StreamedAnswer, v: &Value, max_tokens: u32) -> Result<(), ProbeError> {
    if let Some(err) = v.get("error") {
        let head: String = err.to_string().chars().take(300).collect();
        return Err(protocol(format!("the node's stream failed: {head}")));
    }
    if let Some(n) = v.pointer("/usage/completion_tokens") {
        ans.usage_completion_tokens = Some(
            n.as_u64()
                .ok_or_else(|| protocol("usage.completion_tokens is not a count"))?,
        );
    }
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .ok_or_else(|| protocol("chunk without choices"))?;
    for c in choices {
        if let Some(t) = c.get("text") {
            let t = t.as_str().ok_or_else(|| protocol("text is not a string"))?;
            // Bounded by the token count below only once ids come; bound the text too.
            if ans.text.len().saturating_add(t.len()) > MAX_TEXT_BYTES {
                return Err(protocol(format!(
                    "completion text longer than {MAX_TEXT_BYTES} bytes"
                )));
            }
            ans.text.push_str(t);
        }
        if let Some(ids) = c.get("token_ids") {
            let ids = ids
                .as_array()
                .ok_or_else(|| protocol("token_ids is not a list"))?;
            for id in ids {
                let id = token_id(id).ok_or_else(|| protocol("token id is not a u32"))?;
                if ans.ids.len() >= max_tokens as usize {
                    return Err(protocol(format!(
                        "more than max_tokens = {max_tokens} token ids"
                    )));
                }
                ans.ids.push(id);
            }
        }
        if let Some(f) = c.get("finish_reason").and_then(Value::as_str) {
            ans.finish_reason = Some(f.to_string());
        }
    }
    Ok(())
}

/// Why a streamed answer is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Wrong(pub String);

/// Checks a streamed answer against the validator's model: consistent ids, text and
/// counts, then every id greedy within the tolerance. CPU-bound (one forward pass over
/// prompt + completion): call it off the async workers ([`verify`] does).
pub fn check(ch: &LlmChallenge, ans: &StreamedAnswer) -> Result<(), Wrong> {
    let m = &ch.model;
    let tok = m.llm.tokenizer();
    let wrong = |s: String| Err(Wrong(s));
    if ans.ids.is_empty() {
        return wrong("no completion tokens".into());
    }
    let eog_at = ans.ids.iter().position(|&id| tok.is_eog(id));
    if let Some(i) = eog_at
        && i + 1 != ans.ids.len()
    {
        return wrong(format!("end-of-generation token at {i} is not the last"));
    }
    match ans.finish_reason.as_deref() {
        Some("length") if ans.ids.len() == ch.max_tokens as usize && eog_at.is_none() => {}
        Some("stop") if eog_at.is_some() => {}
        other => {
            return wrong(format!(
                "finish_reason {other:?} does not fit {} ids (max_tokens {}, end-of-generation {})",
                ans.ids.len(),
                ch.max_tokens,
                eog_at.is_some()
            ));
        }
    }
    if ans.usage_completion_tokens != Some(ans.ids.len() as u64) {
        return wrong(format!(
            "usage.completion_tokens {:?} but {} token ids",
            ans.usage_completion_tokens,
            ans.ids.len()
        ));
    }
    let visible = ans
        .ids
        .get(..eog_at.unwrap_or(ans.ids.len()))
        .unwrap_or(&[]);
    let text = tok.decode(visible, false);
    if text != ans.text {
        return wrong("the text is not the decoded token ids".into());
    }
    let report =
        attesta_llm::check::check_greedy(m.llm.model(), &ch.prompt, &ans.ids, m.spec.tolerance)
            .map_err(|e| Wrong(format!("teacher-forced check failed: {e}")))?;
    match report.mismatch {
        None => Ok(()),
        Some(mm) => wrong(format!(
            "token {} is {} but the greedy token is {} (logit gap {} > tolerance {})",
            mm.index, mm.claimed, mm.argmax, mm.gap, m.spec.tolerance
        )),
    }
}

/// [`check`] on the blocking pool, timed; the scored timing when the answer is right.
pub async fn verify(ch: &LlmChallenge, ans: StreamedAnswer) -> Result<LlmTiming, Wrong> {
    let ch2 = ch.clone();
    let t = std::time::Instant::now();
    let (verdict, ans) = tokio::task::spawn_blocking(move || {
        let v = check(&ch2, &ans);
        (v, ans)
    })
    .await
    .map_err(|e| Wrong(format!("check task failed: {e}")))?;
    verdict?;
    let check_us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
    let tokens_per_sec = ans.tokens_per_sec();
    Ok(LlmTiming {
        ttft_us: u64::try_from(ans.ttft.as_micros()).unwrap_or(u64::MAX),
        tokens_per_sec,
        tokens: u32::try_from(ans.ids.len()).unwrap_or(u32::MAX),
        check_us,
        scored_secs: ans.scored_secs(ch.max_tokens),
        context_length: ch.model.llm.model().config().context_length,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_validation() {
        assert!(LlmChallengeSpec::new("x").validate().is_ok());
        let mut s = LlmChallengeSpec::new("x");
        s.tolerance = f32::NAN;
        assert!(s.validate().is_err());
        let mut s = LlmChallengeSpec::new("x");
        s.completion_tokens = 0;
        assert!(s.validate().is_err());
        let mut s = LlmChallengeSpec::new("x");
        s.prompt_tokens = MAX_TOKENS + 1;
        assert!(s.validate().is_err());
    }

    #[test]
    fn chunks_accumulate_and_overlong_answers_fail() {
        let mut a = StreamedAnswer::empty(false);
        let j = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        apply_chunk(
            &mut a,
            &j(r#"{"choices":[{"text":"a","token_ids":[5]}]}"#),
            2,
        )
        .unwrap();
        apply_chunk(
            &mut a,
            &j(r#"{"choices":[{"text":"b","token_ids":[6],"finish_reason":"length"}]}"#),
            2,
        )
        .unwrap();
        apply_chunk(
            &mut a,
            &j(r#"{"choices":[],"usage":{"completion_tokens":2}}"#),
            2,
        )
        .unwrap();
        assert_eq!(a.ids, vec![5, 6]);
        assert_eq!(a.text, "ab");
        assert_eq!(a.finish_reason.as_deref(), Some("length"));
        assert_eq!(a.usage_completion_tokens, Some(2));
        assert!(apply_chunk(&mut a, &j(r#"{"choices":[{"token_ids":[7]}]}"#), 2).is_err());
        assert!(apply_chunk(&mut a, &j(r#"{"error":{"code":"x"}}"#), 2).is_err());
        assert!(apply_chunk(&mut a, &j(r#"{"choices":[{"token_ids":[-1]}]}"#), 9).is_err());
    }

    #[test]
    fn an_answer_that_arrived_at_once_has_no_decode_rate() {
        let mut a = StreamedAnswer::empty(true);
        a.ids = vec![1, 2, 3, 4];
        a.decode = Duration::from_micros(3);
        a.total = Duration::from_millis(400);
        assert_eq!(a.tokens_per_sec(), None);
        // Four tokens in 0.4 s, extended to eight: 0.8 s.
        assert!((a.scored_secs(8) - 0.8).abs() < 1e-9);
        a.at_once = false;
        assert!(a.tokens_per_sec().is_some());
    }
}
