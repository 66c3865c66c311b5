//! The engine against llama.cpp (llama-cpp-python, built in the LLM venv) on the test
//! GGUFs: teacher-forced logits agree within [`LOGIT_TOLERANCE`], greedy continuations
//! agree token for token wherever llama.cpp's top-2 margin exceeds it, and prompts
//! tokenise identically.
//!
//! Tolerance (max |ours - llama.cpp| per logit; logits of these random models span about
//! +-37): 0.05 on every model. Measured: F32, Q8_0 (SPM and Llama 3 BPE) and Q4_K agree to
//! <= 2e-5 (summation order); F16 to 0.014, not yet explained (inputs are rounded to f16
//! as ggml does; that was 0.002 of it). Two causes of larger gaps were found and fixed:
//! the rotary tables must follow ggml's recurrence (`theta *= base^(-2/d)` frequency after
//! frequency; the per-frequency power moved the Q4_K model's logits by 0.45), and RMS norm
//! must round as ggml does (squares summed in f64, `x * (1 / sqrt(mean + eps))` then
//! `* w`; our `x / sqrt(..) * w` in f32 moved the Llama 3 Q8_0 model's logits by 0.8 from
//! the first position that attended to one particular token, whose normalised embedding
//! had a value an ulp from a quantisation step). In quantised models an ulp of difference
//! before an activation is quantised can move that activation a whole step, so these
//! checks are sharp. Greedy decoding must agree wherever llama.cpp's top-2 margin exceeds
//! the tolerance.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::oracle;

use attesta_llm::LlmModel;
use attesta_llm::generate::Generation;
use attesta_llm::model::{KvCache, Logits, rows};
use attesta_llm::sample::SamplingParams;
use serde_json::json;

/// Largest accepted |ours - llama.cpp| per logit.
const TIGHT: f32 = 0.05;

const TEXT: &str =
    "The quick brown fox jumps over the lazy dog. Größe, 東京, مرحبا, 🚀 and 12345 tokens.";

fn compare(name: &str, tolerance: f32) {
    let path = oracle::gguf(name);
    let llm = LlmModel::open(&path).unwrap();
    let tok = llm.tokenizer();
    let prompt = tok.encode(TEXT, true, false);
    let theirs = oracle::call(
        json!({"op": "tokenize", "model": path, "texts": [TEXT], "add_special": true, "parse_special": false}),
    );
    assert_eq!(
        json!(prompt),
        theirs["tokens"][0],
        "{name}: tokenisation differs"
    );

    // Teacher-forced logits of every position.
    let (shape, expected) = oracle::logits(&path, &prompt);
    assert_eq!(shape, [prompt.len(), llm.info().n_vocab]);
    let mut cache = KvCache::new(llm.model(), prompt.len()).unwrap();
    let ours = rows(
        &llm.model()
            .forward(&prompt, &mut cache, Logits::All)
            .unwrap(),
    )
    .unwrap();
    let mut worst = 0.0f32;
    let mut per = Vec::new();
    for (i, row) in ours.iter().enumerate() {
        let want = &expected[i * shape[1]..(i + 1) * shape[1]];
        let mut w = 0.0f32;
        for (a, b) in row.iter().zip(want) {
            w = w.max((a - b).abs());
        }
        per.push(w);
        worst = worst.max(w);
    }
    eprintln!(
        "{name}: max |logit difference| vs llama.cpp over {} positions: {worst}",
        prompt.len()
    );
    assert!(
        worst < tolerance,
        "{name}: logits differ by {worst} (per position: {per:?})"
    );

    // Greedy continuation: identical up to the first near-tie.
    let n = 48;
    let theirs =
        oracle::call(json!({"op": "greedy", "model": path, "prompt_tokens": prompt, "n": n}));
    let their_tokens: Vec<u32> = serde_json::from_value(theirs["tokens"].clone()).unwrap();
    let margins: Vec<f32> = serde_json::from_value(theirs["margins"].clone()).unwrap();
    // Teacher-forced on llama.cpp's continuation: at every step where its top-2 margin
    // exceeds the tolerance, our argmax is its token.
    let mut forced = prompt.clone();
    forced.extend_from_slice(&their_tokens[..n - 1]);
    let mut cache = KvCache::new(llm.model(), forced.len()).unwrap();
    let all = rows(
        &llm.model()
            .forward(&forced, &mut cache, Logits::All)
            .unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for (i, (&t, &m)) in their_tokens.iter().zip(&margins).enumerate() {
        if m > tolerance {
            let ours = attesta_llm::model::argmax(&all[prompt.len() - 1 + i]) as u32;
            assert_eq!(
                ours, t,
                "{name}: step {i} (llama.cpp margin {m}): we pick {ours}, llama.cpp {t}"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= n / 4,
        "{name}: only {checked} of {n} steps are clear of the tolerance"
    );
    // Free-running: our own greedy continuation equals llama.cpp's up to its first near-tie.
    let mut g = Generation::start(llm.model(), &prompt, SamplingParams::greedy(), n, 0).unwrap();
    let ours: Vec<u32> = std::iter::from_fn(|| g.step().unwrap().map(|s| s.token)).collect();
    let clear = margins.iter().position(|&m| m <= tolerance).unwrap_or(n);
    assert_eq!(
        ours[..clear],
        their_tokens[..clear],
        "{name}: greedy tokens differ before the first near-tie at {clear}"
    );
    eprintln!(
        "{name}: {checked} of {n} greedy steps clear of the tolerance agree; free-running agrees up to {clear}"
    );
}

#[test]
fn tiny_spm_f32_matches_llama_cpp() {
    compare("tiny-spm-f32", TIGHT);
}

#[test]
fn tiny_spm_f16_matches_llama_cpp() {
    compare("tiny-spm-f16", TIGHT);
}

#[test]
fn tiny_spm_q8_0_matches_llama_cpp() {
    compare("tiny-spm-q8_0", TIGHT);
}

#[test]
fn tiny_spm_q4_k_matches_llama_cpp() {
    compare("tiny-spm-q4_k", TIGHT);
}

#[test]
fn tiny_bpe_q8_0_matches_llama_cpp() {
    compare("tiny-bpe-q8_0", TIGHT);
}
