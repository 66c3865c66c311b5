//! Inputs of the LLM tests: llama.cpp's venv, random-weight GGUFs and llama.cpp's vocab GGUFs.
//!
//! The GGUFs are made on demand by `scripts/make_test_gguf.py` (run by [`llm_python`]) into
//! `target/test-gguf/<hash>/`, where `<hash>` covers the script and the LLM venv's pins, so
//! a changed script or llama.cpp version writes a fresh folder and an unchanged one reuses
//! the files of earlier runs. The script locks and writes under a temporary name before
//! renaming, so test processes asking for the same file at once are safe.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::{venv_python, workspace_root};

/// The LLM venv's Python (llama-cpp-python, gguf, openai; made by scripts/setup-venv,
/// located by `ATTESTA_LLM_PYTHON`, else `.venv-llm`). Missing is a failure, not a skip.
pub fn llm_python() -> PathBuf {
    venv_python("ATTESTA_LLM_PYTHON", ".venv-llm")
}

/// The random-weight test model `name` (e.g. `tiny-spm-q8_0`; `scripts/make-test-gguf list`
/// prints them all), generated on first use and reused afterwards.
pub fn test_gguf(name: &str) -> PathBuf {
    let dir = gguf_cache_dir();
    let path = dir.join(format!("{name}.gguf"));
    if !path.is_file() {
        run_make_test_gguf(&["model", name], &dir);
    }
    assert!(path.is_file(), "{} was not written", path.display());
    path
}

/// llama.cpp's vocab-only GGUF `name` (e.g. `llama-spm`, `llama-bpe`, `qwen2`), extracted
/// from the llama-cpp-python sdist on first use. llama.cpp's tokenizer test texts and
/// expected ids sit beside it as `<file>.inp` / `<file>.out` where the sdist has them.
pub fn vocab_gguf(name: &str) -> PathBuf {
    let dir = gguf_cache_dir();
    let path = dir.join(format!("ggml-vocab-{name}.gguf"));
    if !path.is_file() {
        run_make_test_gguf(&["vocab", "--name", name], &dir);
    }
    assert!(path.is_file(), "{} was not written", path.display());
    path
}

/// Runs `tests/llm/llama_oracle.py` (llama.cpp's answers; its docstring lists the ops and
/// formats) on one JSON request and returns its JSON answer. Fails the test on any error.
pub fn llama_oracle(request: &serde_json::Value) -> serde_json::Value {
    let script = workspace_root().join("tests/llm/llama_oracle.py");
    let mut child = Command::new(llm_python())
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", script.display()));
    let body = serde_json::to_vec(request).unwrap();
    child.stdin.take().unwrap().write_all(&body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "llama_oracle {} failed ({}): {}",
        request["op"],
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "llama_oracle answered no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `target/test-gguf/<first 16 hex digits of sha256(script ‖ LLM pins)>/`, created.
pub fn gguf_cache_dir() -> PathBuf {
    let root = workspace_root();
    let mut h = Sha256::new();
    for rel in ["scripts/make_test_gguf.py", "scripts/requirements-llm.txt"] {
        let path = root.join(rel);
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    let short: String = h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = root.join("target/test-gguf").join(short);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// Runs scripts/make_test_gguf.py with `args`, `--out dir` and the shared sdist cache.
fn run_make_test_gguf(args: &[&str], dir: &Path) {
    let root = workspace_root();
    // The sdist (the vocab files' source) does not depend on the script: one copy for all.
    let sdist = root.join("target/test-gguf/sdist");
    let out = Command::new(llm_python())
        .arg(root.join("scripts/make_test_gguf.py"))
        .args(args)
        .arg("--out")
        .arg(dir)
        .arg("--sdist-cache")
        .arg(&sdist)
        .output()
        .unwrap_or_else(|e| panic!("starting scripts/make_test_gguf.py: {e}"));
    assert!(
        out.status.success(),
        "scripts/make_test_gguf.py {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
