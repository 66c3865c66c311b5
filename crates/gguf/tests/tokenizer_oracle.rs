//! The tokenizers against llama.cpp itself (llama-cpp-python in the LLM venv, through
//! tests/llm/llama_oracle.py): a multilingual text set (German, Chinese, Japanese, Korean,
//! Thai, Hindi, Arabic, emoji, code with tabs and CRLF, leading/trailing spaces, digit
//! runs, control characters, chat markers) tokenised in all four `add_special` ×
//! `parse_special` modes, detokenised, every piece, and the vocabulary facts (BOS, EOS,
//! EOT, EOG set, control tokens) on every vocabulary the crate supports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use attesta_gguf::Tokenizer;
use serde_json::{Value, json};

const VOCABS: &[&str] = &["llama-spm", "llama-bpe", "qwen2", "phi-3", "gpt-2"];

const TEXTS: &[&str] = &[
    "",
    " ",
    "\n",
    "Hello world",
    " Hello world",
    "Größenwahn über Äpfel und Öl, süß!",
    "我想在苹果公司工作。你好，世界",
    "日本語のテキストです。カタカナとひらがな",
    "한국어 테스트 ภาษาไทย हिन्दी",
    "مرحبا بالعالم، كيف حالك؟",
    "emoji 🦙🚀 😶‍🌫️ ✅ 👍🏽",
    "fn main() {\n\tlet x = 1;\r\n\treturn x;\n}\n",
    "   leading and trailing spaces   ",
    "tab\there  two  spaces\n\n\nthree newlines",
    "digits 1234567890 0.000123 3,141,592 ١٢٣",
    "\u{a0}non-breaking\u{3000}ideographic\u{2028}separators",
    "mixed: naïve café résumé — «quotes» “curly”",
    "x\u{301} e\u{300} a\u{308} (combining)",
    "Don't you'll we've I'M THEY'RE",
    "Hello , world ! It 's a test .",
    "\u{0}\u{1}\u{1b}[31mred\u{1b}[0m",
    "<s>Hello</s> <|im_start|>user\nhi<|im_end|>",
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>",
    "<|endoftext|> <unk> </s>x",
];

fn oracle(req: Value) -> Value {
    attesta_test_support::llm::llama_oracle(&req)
}

fn ids(v: &Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn model(name: &str) -> String {
    common::vocab_path(name).to_string_lossy().into_owned()
}

#[test]
fn tokenize_matches_llama_cpp() {
    let mut failures = Vec::new();
    for name in VOCABS {
        let t = Tokenizer::from_gguf(&common::vocab(name)).unwrap();
        for add in [false, true] {
            for parse in [false, true] {
                let ans = oracle(
                    json!({"op": "tokenize", "model": model(name), "texts": TEXTS,
                    "add_special": add, "parse_special": parse}),
                );
                for (text, want) in TEXTS.iter().zip(ans["tokens"].as_array().unwrap()) {
                    let (want, got) = (ids(want), t.encode(text, add, parse));
                    if want != got {
                        failures.push(format!(
                            "{name} add={add} parse={parse} {text:?}\n  want {want:?}\n  got  {got:?}"
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn detokenize_and_pieces_match_llama_cpp() {
    for name in VOCABS {
        let t = Tokenizer::from_gguf(&common::vocab(name)).unwrap();
        // Every text's tokens (with BOS/EOS and control tokens) in one sequence, and a few
        // texts on their own for the leading-space and clean-up rules.
        let mut seqs: Vec<Vec<u32>> = [
            " Hello world",
            "   leading and trailing spaces   ",
            "Hello , world ! It 's a test .",
        ]
        .iter()
        .map(|x| t.encode(x, false, false))
        .collect();
        seqs.push(TEXTS.iter().flat_map(|x| t.encode(x, true, true)).collect());
        for special in [false, true] {
            for toks in &seqs {
                if toks.is_empty() {
                    continue;
                }
                let ans = oracle(
                    json!({"op": "detokenize", "model": model(name), "tokens": toks,
                    "remove_special": false, "unparse_special": special}),
                );
                assert_eq!(
                    t.detokenize(toks, special),
                    ans["text"].as_str().unwrap(),
                    "{name} {toks:?} special={special}"
                );
                let pieces: Vec<String> = toks.iter().map(|&i| hex(t.piece(i, special))).collect();
                assert_eq!(
                    serde_json::to_value(&pieces).unwrap(),
                    ans["pieces_hex"],
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn vocabulary_facts_match_llama_cpp() {
    for name in VOCABS {
        let t = Tokenizer::from_gguf(&common::vocab(name)).unwrap();
        let v = oracle(json!({"op": "vocab", "model": model(name)}));
        let opt = |x: Option<u32>| x.map_or(-1, i64::from);
        assert_eq!(v["n_vocab"], json!(t.n_vocab()), "{name}");
        assert_eq!(v["bos"], json!(opt(t.bos())), "{name}");
        assert_eq!(v["eos"], json!(opt(t.eos())), "{name}");
        assert_eq!(v["add_bos"], json!(t.add_bos()), "{name}");
        assert_eq!(v["add_eos"], json!(t.add_eos()), "{name}");
        assert_eq!(ids(&v["eog"]), t.eog_ids().collect::<Vec<_>>(), "{name}");
        let control: Vec<u32> = (0..t.n_vocab() as u32)
            .filter(|&i| t.is_control(i))
            .collect();
        assert_eq!(ids(&v["control"]), control, "{name}");
        // llama.cpp picks EOT by walking a hash map when several texts qualify; it must at
        // least be one of the end-of-generation tokens here too.
        let eot = v["eot"].as_i64().unwrap();
        if eot >= 0 {
            assert!(t.is_eog(eot as u32), "{name}: eot {eot}");
            assert!(t.eot().is_some(), "{name}");
        }
    }
}
