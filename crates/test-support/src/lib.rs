//! Helpers shared by the tests of every attesta crate (a dev-dependency only).
//!
//! - [`fixtures`], [`fixture`], [`read_fixture`]: the real evidence, models and captures
//!   under `../shared/fixtures` (or `ATTESTA_FIXTURES`). A missing folder fails the test:
//!   tests that need real data must never pass vacuously.
//! - [`python`]: the test venv's interpreter (`ATTESTA_PYTHON`, else `.venv/bin/python`).
//! - [`llm`]: the LLM venv ([`llm::llm_python`], `ATTESTA_LLM_PYTHON`), random-weight test
//!   GGUFs ([`llm::test_gguf`]), llama.cpp's vocab GGUFs ([`llm::vocab_gguf`]) and llama.cpp
//!   as the reference ([`llm::llama_oracle`]).
//! - [`http`]: parsing raw HTTP/1.1 answers and checking the JSON error shape.
//! - [`registry`]: real ONNX models that registry packages ship ([`registry::registry_model`]).
//! - `onnx` (feature `onnx`): builders for small ONNX models made inside the tests.
//! - `standins` (feature `standins`): PCCS and KDS stand-ins serving real fixtures.
#![forbid(unsafe_code)]
// Test helpers: failing loudly with the cause is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod http;
pub mod llm;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod registry;
#[cfg(feature = "standins")]
pub mod standins;

use std::path::{Path, PathBuf};

/// The workspace root (two levels above every crate's manifest).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shared fixtures folder: `ATTESTA_FIXTURES`, else `../shared/fixtures` beside the
/// workspace. Panics (fails the test) when it does not exist.
pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("ATTESTA_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/fixtures"));
    assert!(
        dir.join("README.md").is_file(),
        "fixtures folder {} is missing: set ATTESTA_FIXTURES to the shared fixtures folder",
        dir.display()
    );
    dir
}

/// The path of one fixture file or folder (`rel` below [`fixtures`]); it must exist.
pub fn fixture(rel: &str) -> PathBuf {
    let path = fixtures().join(rel);
    assert!(path.exists(), "fixture {} is missing", path.display());
    path
}

/// The bytes of one fixture file.
pub fn read_fixture(rel: &str) -> Vec<u8> {
    let path = fixture(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading fixture {}: {e}", path.display()))
}

/// The Bittensor SDK venv's Python (bittensor 10.5.0, bittensor-drand, scalecodec; made by
/// scripts/setup-venv, located by `ATTESTA_BITTENSOR_PYTHON`). Missing is a failure, not a
/// skip: a cross-check that silently does not run would pass without checking anything.
pub fn bittensor_python() -> PathBuf {
    venv_python("ATTESTA_BITTENSOR_PYTHON", ".venv-bittensor")
}

/// The test venv's Python (with onnx, onnxruntime, numpy; see scripts/setup-venv).
pub fn python() -> PathBuf {
    venv_python("ATTESTA_PYTHON", ".venv")
}

/// A venv's interpreter: `$env` if set, else `<workspace>/<dir>/bin/python`; missing fails.
pub(crate) fn venv_python(env: &str, dir: &str) -> PathBuf {
    let py = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(dir).join("bin/python"));
    assert!(
        py.exists(),
        "Python {} not found: run scripts/setup-venv (or set {env})",
        py.display()
    );
    py
}
