//! A validator's teacher-forced check reproduces the node's generation exactly: on every
//! test GGUF (each supported quantisation, both tokenizer families), the logits of one
//! batched pass equal those of token-by-token decode steps bit for bit, and checking a
//! greedy generation finds every claimed token at a gap of exactly zero. (Before the
//! batched pass shared the decode step's arithmetic, a 24-layer Q4_K model refused its
//! own greedy answers: one flipped activation rounding moved later logits by tenths.)

use crate::oracle;
use attesta_llm::LlmModel;
use attesta_llm::check::{DEFAULT_TOLERANCE, check_greedy};
use attesta_llm::generate::Generation;
use attesta_llm::model::{KvCache, Logits, rows};
use attesta_llm::sample::SamplingParams;

const MODELS: [&str; 5] = [
    "tiny-spm-f32",
    "tiny-spm-f16",
    "tiny-spm-q8_0",
    "tiny-spm-q4_k",
    "tiny-bpe-q8_0",
];

#[test]
fn batched_passes_equal_decode_steps_on_every_test_model() {
    for name in MODELS {
        let llm = LlmModel::open(&oracle::gguf(name)).unwrap();
        let model = llm.model();
        let prompt = llm.tokenizer().encode(
            "Every answer is checked against the model itself.",
            true,
            false,
        );
        let mut cache = KvCache::new(model, prompt.len()).unwrap();
        let all = rows(&model.forward(&prompt, &mut cache, Logits::All).unwrap()).unwrap();
        let mut cache = KvCache::new(model, prompt.len()).unwrap();
        for (i, &t) in prompt.iter().enumerate() {
            let step = model
                .forward(&[t], &mut cache, Logits::Last)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert!(step == all[i], "{name}: position {i} differs");
        }
    }
}

#[test]
fn a_greedy_generation_checks_at_gap_zero_on_every_test_model() {
    for name in MODELS {
        let llm = LlmModel::open(&oracle::gguf(name)).unwrap();
        let model = llm.model();
        let prompt = llm
            .tokenizer()
            .encode("The validator sends a fresh prompt and", true, false);
        let mut g = Generation::start(model, &prompt, SamplingParams::greedy(), 24, 0).unwrap();
        let mut completion = Vec::new();
        while let Some(step) = g.step().unwrap() {
            completion.push(step.token);
        }
        let report = check_greedy(model, &prompt, &completion, DEFAULT_TOLERANCE).unwrap();
        assert!(report.passed(), "{name}: {report:?}");
        assert_eq!(report.checked, completion.len());
        assert_eq!(report.max_accepted_gap, 0.0, "{name}: {report:?}");
    }
}
