//! The test GGUFs and llama.cpp's logits, through the shared test support.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

pub use attesta_test_support::llm::llama_oracle as call_ref;

/// The test GGUF `name`, generated on first use.
pub fn gguf(name: &str) -> PathBuf {
    attesta_test_support::llm::test_gguf(name)
}

/// One oracle request.
pub fn call(req: serde_json::Value) -> serde_json::Value {
    call_ref(&req)
}

/// llama.cpp's teacher-forced logits of `tokens`: (shape, row-major values).
pub fn logits(model: &Path, tokens: &[u32]) -> ([usize; 2], Vec<f32>) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let ans = call(
        serde_json::json!({"op": "logits", "model": model, "tokens": tokens, "out": out.path()}),
    );
    let shape: [usize; 2] = serde_json::from_value(ans["shape"].clone()).unwrap();
    let bytes = std::fs::read(out.path()).unwrap();
    let v = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (shape, v)
}
