//! The reader, tokenizer and chat template on the random-weight Llama GGUFs the test
//! models script writes (F32, F16, Q8_0, Q4_K and the Q4_K_M mix, three vocabularies):
//! the shapes and types the engine will load are what the file declares.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use attesta_gguf::{ChatMessage, ChatTemplate, GgmlType, Gguf, Limits, Tokenizer};

fn open(name: &str) -> (Gguf, u64) {
    let path = attesta_test_support::llm::test_gguf(name);
    let f = std::fs::File::open(&path).unwrap();
    let len = f.metadata().unwrap().len();
    (Gguf::read(f, len, &Limits::default()).unwrap(), len)
}

#[test]
fn tiny_models_read_back() {
    for (name, quant, n_vocab) in [
        ("tiny-spm-f32", "F32", 32000),
        ("tiny-spm-f16", "F16", 32000),
        ("tiny-spm-q8_0", "Q8_0", 32000),
        ("tiny-spm-q4_k", "Q4_K", 32000),
        ("tiny-spm-q4_k_m", "Q4_K", 32000),
        ("tiny-bpe-q8_0", "Q8_0", 128256),
        ("tiny-qwen2-q8_0", "Q8_0", 151936),
    ] {
        let (g, len) = open(name);
        assert_eq!(g.architecture(), Some("llama"), "{name}");
        assert_eq!(g.arch_u32("context_length"), Some(512), "{name}");
        assert_eq!(g.arch_u32("block_count"), Some(2), "{name}");
        assert_eq!(g.arch_u32("embedding_length"), Some(256), "{name}");
        assert_eq!(g.quantisation(), quant, "{name}");
        let emb = g.tensor("token_embd.weight").unwrap();
        assert_eq!(emb.dims, vec![256, n_vocab], "{name}");
        for t in &g.tensors {
            assert!(
                t.offset >= g.data_offset && t.offset + t.size <= len,
                "{name} {}",
                t.name
            );
            if t.dims.len() == 1 {
                assert_eq!(t.ggml_type, GgmlType::F32, "{name} {}", t.name);
            }
        }
        // Embeddings, 2 blocks of attention + MLP weights, norms (and an output matrix when
        // the embeddings are not tied).
        let per_block = 256 * 256 * 2 + 256 * 128 * 2 + 256 * 512 * 3 + 256 * 2;
        let base = 256 * n_vocab + 2 * per_block + 256;
        let p = g.parameter_count();
        assert!(p == base || p == base + 256 * n_vocab, "{name}: {p}");

        let tok = Tokenizer::from_gguf(&g).unwrap();
        assert_eq!(tok.n_vocab() as u64, n_vocab, "{name}");
        let tmpl = ChatTemplate::from_gguf(&g, &tok).unwrap();
        let prompt = tmpl
            .render(
                &[
                    ChatMessage::new("system", "Be brief."),
                    ChatMessage::new("user", "Hi"),
                ],
                true,
            )
            .unwrap();
        let ids = tok.encode(&prompt, true, true);
        assert!(ids.len() > 4, "{name}: {prompt:?}");
    }
}
