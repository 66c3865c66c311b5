//! Shared helpers for the engine's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use attesta_engine::{Tensor, TensorData};

/// The ONNX model builders (one home: attesta-test-support).
#[allow(unused_imports)] // not every test binary builds models
pub use attesta_test_support::onnx as build;

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    attesta_test_support::workspace_root()
}

/// The shared fixtures folder; a missing folder fails the test.
pub fn fixtures() -> PathBuf {
    attesta_test_support::fixtures()
}

/// Reads a fixture file, failing the test if it is missing.
pub fn fixture(rel: &str) -> Vec<u8> {
    attesta_test_support::read_fixture(rel)
}

/// The venv's Python; a missing interpreter fails the test.
pub fn python() -> PathBuf {
    attesta_test_support::python()
}

/// Deterministic pseudo-random floats in [-1, 1) (xorshift; no dependency).
pub fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Flattens any numeric tensor to f64 for comparisons.
pub fn as_f64(t: &Tensor) -> Vec<f64> {
    match t.data() {
        TensorData::F32(v) => v.iter().map(|x| f64::from(*x)).collect(),
        TensorData::F64(v) => v.clone(),
        TensorData::I8(v) => v.iter().map(|x| f64::from(*x)).collect(),
        TensorData::I16(v) => v.iter().map(|x| f64::from(*x)).collect(),
        TensorData::I32(v) => v.iter().map(|x| f64::from(*x)).collect(),
        TensorData::I64(v) => v.iter().map(|x| *x as f64).collect(),
        TensorData::U8(v) => v.iter().map(|x| f64::from(*x)).collect(),
        TensorData::U16(v) => v.iter().map(|x| f64::from(*x)).collect(),
        TensorData::U32(v) => v.iter().map(|x| f64::from(*x)).collect(),
        TensorData::U64(v) => v.iter().map(|x| *x as f64).collect(),
        TensorData::Bool(v) => v.iter().map(|x| f64::from(u8::from(*x))).collect(),
        other => panic!("not numeric: {:?}", other.dtype()),
    }
}

/// Largest violation of |a-b| <= atol + rtol*|b|, as (index, a, b), if any.
pub fn first_mismatch(
    actual: &[f64],
    expected: &[f64],
    rtol: f64,
    atol: f64,
) -> Option<(usize, f64, f64)> {
    if actual.len() != expected.len() {
        return Some((usize::MAX, actual.len() as f64, expected.len() as f64));
    }
    actual
        .iter()
        .zip(expected)
        .enumerate()
        .find_map(|(i, (a, b))| {
            let ok = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= atol + rtol * b.abs();
            (!ok).then_some((i, *a, *b))
        })
}

/// Runs `model` under Python onnxruntime on f32 inputs and returns every
/// output as (shape, values as f64).
pub fn onnxruntime(
    model: &Path,
    inputs: &[(String, Vec<usize>, Vec<f32>)],
) -> Vec<(Vec<usize>, Vec<f64>)> {
    let tensors: Vec<(String, Tensor)> = inputs
        .iter()
        .map(|(name, shape, values)| {
            let t = Tensor::new(shape.clone(), TensorData::F32(values.clone())).unwrap();
            (name.clone(), t)
        })
        .collect();
    onnxruntime_tensors(model, &tensors)
}

/// Like [`onnxruntime`] on float32 or int64 tensors. Inputs go through raw
/// little-endian files in a temp dir; `support/ort_run.py` does the work.
pub fn onnxruntime_tensors(
    model: &Path,
    inputs: &[(String, Tensor)],
) -> Vec<(Vec<usize>, Vec<f64>)> {
    let dir = tempfile::tempdir().unwrap();
    let mut manifest = Vec::new();
    for (i, (name, tensor)) in inputs.iter().enumerate() {
        let file = dir.path().join(format!("in{i}.raw"));
        let (dtype, bytes): (&str, Vec<u8>) = match tensor.data() {
            TensorData::F32(v) => ("<f4", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            TensorData::I64(v) => ("<i8", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            other => panic!("input {name}: no raw form for {:?}", other.dtype()),
        };
        std::fs::write(&file, bytes).unwrap();
        manifest.push(serde_json::json!({
            "name": name, "shape": tensor.shape(), "dtype": dtype, "file": file,
        }));
    }
    let manifest_path = dir.path().join("inputs.json");
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    run_helper("ort_run.py", &[model, &manifest_path, dir.path()]);
    let meta: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.path().join("outputs.json")).unwrap()).unwrap();
    meta.iter()
        .map(|m| {
            let shape: Vec<usize> = serde_json::from_value(m["shape"].clone()).unwrap();
            let raw = std::fs::read(m["file"].as_str().unwrap()).unwrap();
            let values = raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (shape, values)
        })
        .collect()
}

/// Runs `model` (loaded by one of our engines; `what` names it in failures)
/// and the ONNX file at `path` under Python onnxruntime on the same
/// `inputs`, and asserts every output has onnxruntime's shape and values
/// within `rtol`/`atol` (and that the reference is not all zeros).
pub fn assert_matches_onnxruntime(
    model: &dyn attesta_engine::Model,
    what: &str,
    path: &Path,
    inputs: &[(String, Tensor)],
    rtol: f64,
    atol: f64,
) {
    let ours = model
        .run(inputs.iter().map(|(_, t)| t.clone()).collect())
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let theirs = onnxruntime_tensors(path, inputs);
    assert_eq!(ours.len(), theirs.len(), "{what}: output count");
    for (o, (shape, expected)) in ours.iter().zip(&theirs) {
        assert_eq!(
            o.tensor.shape(),
            &shape[..],
            "{what}: output {} shape",
            o.name
        );
        assert!(
            expected.iter().any(|v| *v != 0.0),
            "{what}: degenerate reference"
        );
        if let Some(m) = first_mismatch(&as_f64(&o.tensor), expected, rtol, atol) {
            panic!(
                "{what}: output {} differs from onnxruntime at {m:?}",
                o.name
            );
        }
    }
}

/// Runs the Python helper `tests/support/<script>` with `args` in the venv,
/// failing the test (with its stderr) if it fails.
pub fn run_helper(script: &str, args: &[&Path]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(script);
    let out = Command::new(python())
        .arg(&script)
        .args(args)
        .output()
        .expect("running python");
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The onnxruntime library the tests run the ort backend on:
/// `ATTESTA_ORT_LIB`, else the one inside the venv's onnxruntime wheel. A
/// missing library fails the test.
pub fn ort_library() -> PathBuf {
    if let Some(p) = std::env::var_os("ATTESTA_ORT_LIB").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let out = Command::new(python())
        .args([
            "-c",
            "import onnxruntime,os,glob;d=os.path.join(os.path.dirname(onnxruntime.__file__),'capi');print(sorted(glob.glob(os.path.join(d,'libonnxruntime.so.*')))[-1])",
        ])
        .output()
        .expect("running python");
    assert!(
        out.status.success(),
        "no libonnxruntime in the venv (set ATTESTA_ORT_LIB): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The ort backend on [`ort_library`], single-threaded.
pub fn ort_engine() -> attesta_engine::onnxruntime::OrtEngine {
    use attesta_engine::onnxruntime::{OrtEngine, OrtOptions, OrtRuntime};
    let runtime = OrtRuntime::load(&ort_library()).expect("loading onnxruntime");
    OrtEngine::new(runtime, OrtOptions::default())
}

/// Both backends, by name.
pub fn engines() -> Vec<(&'static str, Box<dyn attesta_engine::Engine>)> {
    vec![
        (
            "tract",
            Box::new(attesta_engine::tract::TractEngine::new(1)),
        ),
        ("onnxruntime", Box::new(ort_engine())),
    ]
}
