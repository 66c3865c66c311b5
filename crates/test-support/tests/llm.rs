//! The LLM test inputs are there and llama.cpp answers: a generated model is a GGUF, and
//! the oracle tokenizes with the real Llama SPM vocab.

use attesta_test_support::llm::{llama_oracle, test_gguf, vocab_gguf};
use std::io::Read;

#[test]
fn tiny_model_is_generated_as_a_gguf() {
    let path = test_gguf("tiny-spm-q8_0");
    let mut magic = [0u8; 4];
    std::fs::File::open(&path)
        .unwrap()
        .read_exact(&mut magic)
        .unwrap();
    assert_eq!(&magic, b"GGUF", "{}", path.display());
    // A second ask reuses the file.
    assert_eq!(test_gguf("tiny-spm-q8_0"), path);
}

#[test]
fn oracle_tokenizes_with_the_llama_spm_vocab() {
    let vocab = vocab_gguf("llama-spm");
    let answer = llama_oracle(&serde_json::json!({
        "op": "tokenize",
        "model": vocab,
        "texts": ["Hello world"],
        "add_special": true,
        "parse_special": false,
    }));
    let tokens = answer["tokens"][0].as_array().unwrap();
    assert!(!tokens.is_empty());
    // <s> ▁Hello ▁world (llama.cpp's own list, ggml-vocab-llama-spm.gguf.out, has 15043 3186).
    assert_eq!(answer["tokens"][0], serde_json::json!([1, 15043, 3186]));
}
