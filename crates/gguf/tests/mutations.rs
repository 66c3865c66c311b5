//! Small files with tokenizer metadata and a chat template, mutated byte by byte: reading,
//! building the tokenizer and template, encoding and rendering never panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::io::Cursor;

use attesta_gguf::{ChatMessage, ChatTemplate, Gguf, Limits, Tokenizer};
use common::*;

fn spm_file() -> Vec<u8> {
    let tokens = [
        "<unk>",
        "<s>",
        "</s>",
        "<0x41>",
        "▁",
        "a",
        "b",
        "ab",
        "▁a",
        "▁ab",
        "<|im_end|>",
    ];
    write(
        vec![
            ("tokenizer.ggml.model", s("llama")),
            ("tokenizer.ggml.tokens", strs(tokens)),
            (
                "tokenizer.ggml.scores",
                W::Arr(6, (0..tokens.len()).map(|i| W::F32(-(i as f32))).collect()),
            ),
            (
                "tokenizer.ggml.token_type",
                W::Arr(
                    5,
                    [2, 3, 3, 6, 1, 1, 1, 1, 1, 1, 3]
                        .into_iter()
                        .map(W::I32)
                        .collect(),
                ),
            ),
            ("tokenizer.ggml.bos_token_id", W::U32(1)),
            (
                "tokenizer.chat_template",
                s("{% for m in messages %}{{ m.role }}:{{ m.content }}{% endfor %}"),
            ),
        ],
        vec![tensor("w", &[32, 2], 8, 68)],
    )
}

fn bpe_file() -> Vec<u8> {
    write(
        vec![
            ("tokenizer.ggml.model", s("gpt2")),
            ("tokenizer.ggml.pre", s("qwen2")),
            (
                "tokenizer.ggml.tokens",
                strs(["a", "b", "ab", "Ġ", "Ġab", "<|endoftext|>"]),
            ),
            ("tokenizer.ggml.merges", strs(["a b", "Ġ ab"])),
            ("tokenizer.ggml.eos_token_id", W::U32(5)),
        ],
        vec![],
    )
}

#[test]
fn synthetic_vocabularies() {
    let g = Gguf::read(
        Cursor::new(spm_file()),
        spm_file().len() as u64,
        &Limits::default(),
    )
    .unwrap();
    let t = Tokenizer::from_gguf(&g).unwrap();
    // "▁ab" beats "▁a" + "b"; 'A' falls back to its byte token; "<|im_end|>" is control.
    assert_eq!(t.encode("ab", true, false), vec![1, 9]);
    assert_eq!(t.encode("abA", false, false), vec![9, 3]);
    assert_eq!(t.detokenize(&[9, 3], false), "abA");
    assert_eq!(t.decode(&[9, 3], false), " abA");
    assert_eq!(t.encode("<|im_end|>", false, true), vec![10]);
    assert!(t.is_eog(10) && t.is_eog(2));
    let bytes = bpe_file();
    let g = Gguf::read(Cursor::new(&bytes), bytes.len() as u64, &Limits::default()).unwrap();
    let t = Tokenizer::from_gguf(&g).unwrap();
    assert_eq!(t.encode("ab ab", true, false), vec![2, 4]);
    assert_eq!(t.decode(&[2, 4], false), "ab ab");
    assert_eq!(t.eos(), Some(5));
}

#[test]
fn mutated_files_never_panic() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let limits = Limits {
        max_metadata_bytes: 1 << 20,
        ..Limits::default()
    };
    for base in [spm_file(), bpe_file()] {
        for _ in 0..1500 {
            let mut b = base.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() % b.len() as u64) as usize;
                b[i] = match next() % 3 {
                    0 => next() as u8,
                    1 => 0xFF,
                    _ => b[i] ^ (1 << (next() % 8)),
                };
            }
            if let Ok(g) = Gguf::read(Cursor::new(&b), b.len() as u64, &limits)
                && let Ok(t) = Tokenizer::from_gguf(&g)
            {
                let ids = t.encode("ab <s>ab A\u{1F999}", true, true);
                let _ = t.decode(&ids, true);
                if let Ok(c) = ChatTemplate::from_gguf(&g, &t) {
                    let _ = c.render(&[ChatMessage::new("user", "x")], true);
                }
            }
        }
    }
}
