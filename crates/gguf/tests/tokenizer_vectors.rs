//! The tokenizers against llama.cpp's own expectations: every `.inp`/`.out` vector pair
//! shipped with the vocab-only GGUFs (llama-spm, llama-bpe, qwen2, gpt-2), tokenised with
//! `add_special = false, parse_special = false` as llama.cpp's test-tokenizer-0 does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use attesta_gguf::{PreTokenizer, Tokenizer, TokenizerKind};

fn vectors(name: &str) -> Vec<(String, Vec<u32>)> {
    let path = common::vocab_path(name).display().to_string();
    let inp = std::fs::read_to_string(format!("{path}.inp")).unwrap();
    let out = std::fs::read_to_string(format!("{path}.out")).unwrap();
    let texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert!(
        texts.len() >= ids.len() && ids.len() > 40,
        "{name}: {} texts, {} outs",
        texts.len(),
        ids.len()
    );
    texts.into_iter().map(str::to_owned).zip(ids).collect()
}

fn check(name: &str, kind: TokenizerKind) {
    let t = Tokenizer::from_gguf(&common::vocab(name)).unwrap();
    assert_eq!(t.kind(), kind);
    let mut failures = Vec::new();
    for (text, want) in vectors(name) {
        let got = t.encode(&text, false, false);
        if got != want {
            failures.push(format!("{text:?}\n  want {want:?}\n  got  {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn llama_spm_vectors() {
    check("llama-spm", TokenizerKind::Spm);
}

#[test]
fn llama_bpe_vectors() {
    check("llama-bpe", TokenizerKind::Bpe(PreTokenizer::Llama3));
}

#[test]
fn qwen2_vectors() {
    check("qwen2", TokenizerKind::Bpe(PreTokenizer::Qwen2));
}

#[test]
fn gpt2_vectors() {
    check("gpt-2", TokenizerKind::Bpe(PreTokenizer::Gpt2));
}

#[test]
fn phi3_vectors() {
    check("phi-3", TokenizerKind::Spm);
}

#[test]
fn unsupported_pre_tokenizers_are_refused() {
    for (name, pre) in [
        ("deepseek-coder", "deepseek-coder"),
        ("falcon", "falcon"),
        ("starcoder", "starcoder"),
    ] {
        match Tokenizer::from_gguf(&common::vocab(name)) {
            Err(attesta_gguf::TokenizerError::UnknownPre(p)) => assert_eq!(p, pre),
            other => panic!("{name}: {other:?}"),
        }
    }
}
