//! Special tokens, BOS/EOS, end-of-generation ids, pieces and decoding on the real
//! vocabularies, with the values llama.cpp gives for them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::time::Instant;

use attesta_gguf::Tokenizer;

fn tok(name: &str) -> Tokenizer {
    Tokenizer::from_gguf(&common::vocab(name)).unwrap()
}

/// Texts that survive encode → detokenize unchanged on every vocabulary (no " ," or " 's"
/// that llama.cpp's `clean_spaces` rewrites on Llama-3).
const MULTILINGUAL: &[&str] = &[
    "Hello world",
    "Größenwahn über Äpfel und Öl, süß!",
    "我想在苹果公司工作。你好，世界",
    "日本語のテキストです。カタカナとひらがな",
    "مرحبا بالعالم، كيف حالك؟",
    "emoji 🦙🚀 😶‍🌫️ ✅ 👍🏽",
    "fn main() {\n\tlet x = 1;\r\n\treturn x;\n}\n",
    "   leading and trailing spaces   ",
    "digits 1234567890 0.000123 3,141,592",
    "\u{a0}non-breaking\u{3000}ideographic\u{2028}separators",
    "mixed: naïve café résumé — «quotes» “curly”",
];

#[test]
fn llama_spm_specials() {
    let t = tok("llama-spm");
    assert_eq!((t.bos(), t.eos(), t.unk()), (Some(1), Some(2), Some(0)));
    assert!(t.add_bos() && !t.add_eos());
    assert_eq!(t.encode("", true, false), vec![1]);
    assert!(t.encode("", false, false).is_empty());
    let hello = t.encode("Hello", false, false);
    assert_eq!(
        t.encode("Hello", true, false),
        [vec![1], hello.clone()].concat()
    );
    // "<s>" is a control token: text unless parse_special; after it the ▁ prefix again.
    assert_eq!(
        t.encode("<s>Hello", false, true),
        [vec![1], hello.clone()].concat()
    );
    assert!(!t.encode("<s>Hello", false, false).contains(&1));
    assert!(t.is_eog(2) && !t.is_eog(1));
    assert_eq!(t.piece(1, false), b"");
    assert_eq!(t.piece(1, true), b"<s>");
    assert_eq!(t.piece(hello[0], false), b" Hello");
    // Byte fallback: a character outside the vocabulary becomes its UTF-8 bytes.
    let ids = t.encode("\u{10FFFD}", false, false);
    assert_eq!(ids.len(), 5, "{ids:?}"); // ▁ + 4 byte tokens
    assert_eq!(t.detokenize(&ids, false), "\u{10FFFD}");
    assert_eq!(t.decode(&ids, false), " \u{10FFFD}");
    assert_eq!(t.token_text(ids[1]), "<0xF4>");
}

#[test]
fn llama_bpe_specials() {
    let t = tok("llama-bpe");
    let bot = t.token_id("<|begin_of_text|>").unwrap();
    let eot = t.token_id("<|eot_id|>").unwrap();
    let eos = t.token_id("<|end_of_text|>").unwrap();
    assert_eq!(t.bos(), Some(bot));
    assert!(t.add_bos());
    assert!(t.is_eog(eot) && t.is_eog(eos) && !t.is_eog(bot));
    assert_eq!(t.eot(), Some(eot));
    let hi = t.encode("Hi", false, false);
    assert_eq!(
        t.encode("Hi", true, false),
        [vec![bot], hi.clone()].concat()
    );
    let chat = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
    let ids = t.encode(chat, false, true);
    assert_eq!(ids.first(), t.token_id("<|start_header_id|>").as_ref());
    assert_eq!(ids.last(), Some(&eot));
    assert_eq!(t.decode(&ids, true), chat);
    // Without parse_special the markers are plain text.
    let plain = t.encode(chat, false, false);
    assert!(!plain.contains(&eot));
    assert_eq!(t.decode(&plain, false), chat);
    assert_eq!(t.decode(&ids, false), "user\n\nHi");
}

#[test]
fn qwen2_specials() {
    let t = tok("qwen2");
    let im_start = t.token_id("<|im_start|>").unwrap();
    let im_end = t.token_id("<|im_end|>").unwrap();
    let eot = t.token_id("<|endoftext|>").unwrap();
    assert!(t.is_eog(im_end) && t.is_eog(eot) && !t.is_eog(im_start));
    assert!(!t.add_bos());
    assert_eq!(t.encode("hi", true, false), t.encode("hi", false, false));
    let ids = t.encode("<|im_start|>user\nhi<|im_end|>\n", false, true);
    assert_eq!(ids.first(), Some(&im_start));
    assert!(ids.contains(&im_end));
    assert!(t.is_control(im_end));
    assert_eq!(t.piece(im_end, false), b"");
    assert_eq!(t.piece(im_end, true), b"<|im_end|>");
}

#[test]
fn phi3_special_tokens_strip_following_whitespace() {
    // llama.cpp gives Phi-3's special tokens (except <s>, <unk>, <|endoftext|>) an rstrip
    // attribute by model name.
    let t = tok("phi-3");
    let eos = t.token_id("</s>").unwrap();
    let a = t.encode("</s>  \n x", false, true);
    assert_eq!(a.first(), Some(&eos));
    assert_eq!(a, t.encode("</s>x", false, true));
    let bos = t.token_id("<s>").unwrap();
    assert_ne!(
        t.encode("<s> x", false, true),
        t.encode("<s>x", false, true)
    );
    assert_eq!(t.encode("<s>x", false, true).first(), Some(&bos));
}

#[test]
fn decode_round_trips() {
    for name in ["llama-spm", "llama-bpe", "qwen2", "phi-3"] {
        let t = tok(name);
        for text in MULTILINGUAL {
            let ids = t.encode(text, false, false);
            assert_eq!(&t.detokenize(&ids, false), text, "{name}: {ids:?}");
            // Token by token, the pieces concatenate to the same bytes (SPM: after the
            // one leading space the first piece carries).
            let mut bytes: Vec<u8> = ids
                .iter()
                .flat_map(|&i| t.piece(i, false).to_vec())
                .collect();
            if t.kind() == attesta_gguf::TokenizerKind::Spm {
                bytes.remove(0);
            }
            assert_eq!(bytes, text.as_bytes(), "{name}");
            // decode is the pieces, lossily decoded (SPM keeps the prefixed space).
            let pieces: Vec<u8> = ids
                .iter()
                .flat_map(|&i| t.piece(i, false).to_vec())
                .collect();
            assert_eq!(t.decode(&ids, false), String::from_utf8_lossy(&pieces));
        }
    }
}

#[test]
fn out_of_range_ids_are_harmless() {
    let t = tok("qwen2");
    let n = t.n_vocab() as u32;
    assert_eq!(t.piece(n, true), b"");
    assert_eq!(t.token_text(u32::MAX), "");
    assert_eq!(t.decode(&[u32::MAX, n], true), "");
    assert!(!t.is_eog(n));
}

#[test]
fn a_long_prompt_is_fast() {
    // About 4k tokens of mixed text; debug builds are ~10x slower than release, so the
    // bound here is loose (the release figure is in the report).
    let text: String = MULTILINGUAL
        .iter()
        .cycle()
        .take(340)
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    for name in ["llama-spm", "llama-bpe", "qwen2"] {
        let t = tok(name);
        let start = Instant::now();
        let ids = t.encode(&text, true, true);
        let took = start.elapsed();
        eprintln!("{name}: {} tokens in {took:?}", ids.len());
        assert!(ids.len() > 4000);
        assert!(took.as_millis() < 1000, "{name}: {took:?}");
    }
}
