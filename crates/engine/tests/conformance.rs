//! The ONNX backend node tests shipped in the `onnx` wheel, run through our
//! engine. Every test listed in `conformance/expected_pass.txt` must pass;
//! the pass count and a per-test summary are printed and written out.
//!
//! `ATTESTA_CONFORMANCE_WRITE=1` rewrites the expected list from this run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use crate::support;

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use attesta_engine::tract::{TractEngine, decode_tensor_proto};
use attesta_engine::{DType, Engine, Limits, Tensor, TensorData};

/// Per-test bound: load, compile and run every data set.
const TIMEOUT: Duration = Duration::from_secs(30);
const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-7;

fn node_tests_dir() -> PathBuf {
    let out = Command::new(support::python())
        .args(["-c", "import onnx,os;print(os.path.dirname(onnx.__file__))"])
        .output()
        .expect("running python");
    assert!(
        out.status.success(),
        "python cannot import onnx (run scripts/setup-venv): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir =
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("backend/test/data/node");
    assert!(
        dir.is_dir(),
        "{} is missing: is onnx==1.17.0 installed?",
        dir.display()
    );
    dir
}

fn read_tensor(path: &Path) -> Result<Tensor, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    decode_tensor_proto(&bytes, &Limits::default())
        .map(|t| t.tensor)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    (0..)
        .map(|i| dir.join(format!("{prefix}_{i}.pb")))
        .take_while(|p| p.exists())
        .collect()
}

fn compare(actual: &Tensor, expected: &Tensor) -> Result<(), String> {
    if actual.shape() != expected.shape() {
        return Err(format!(
            "shape {:?}, expected {:?}",
            actual.shape(),
            expected.shape()
        ));
    }
    if actual.dtype() != expected.dtype() {
        return Err(format!(
            "type {}, expected {}",
            actual.dtype(),
            expected.dtype()
        ));
    }
    match (actual.data(), expected.data()) {
        (TensorData::String(a), TensorData::String(b)) => (a == b)
            .then_some(())
            .ok_or_else(|| "strings differ".into()),
        _ if matches!(actual.dtype(), DType::F32 | DType::F64) => {
            match support::first_mismatch(
                &support::as_f64(actual),
                &support::as_f64(expected),
                RTOL,
                ATOL,
            ) {
                None => Ok(()),
                Some(m) => Err(format!("values differ at {m:?}")),
            }
        }
        (a, b) => (a == b).then_some(()).ok_or_else(|| "values differ".into()),
    }
}

fn run_case(engine: &dyn Engine, dir: &Path) -> Result<(), String> {
    let bytes = std::fs::read(dir.join("model.onnx")).map_err(|e| e.to_string())?;
    let model = engine
        .load(&bytes, &Limits::default())
        .map_err(|e| e.to_string())?;
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("test_data_set_"))
        })
        .collect();
    sets.sort();
    if sets.is_empty() {
        return Err("no test data".into());
    }
    for set in sets {
        let inputs = numbered(&set, "input")
            .iter()
            .map(|p| read_tensor(p))
            .collect::<Result<Vec<_>, _>>()?;
        let expected = numbered(&set, "output")
            .iter()
            .map(|p| read_tensor(p))
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = model.run(inputs).map_err(|e| e.to_string())?;
        if outputs.len() != expected.len() {
            return Err(format!(
                "{} outputs, expected {}",
                outputs.len(),
                expected.len()
            ));
        }
        for (i, (o, e)) in outputs.iter().zip(&expected).enumerate() {
            compare(&o.tensor, e).map_err(|m| format!("output {i}: {m}"))?;
        }
    }
    Ok(())
}

/// Runs one case on its own thread; a hang past [`TIMEOUT`] is a failure
/// (the thread is abandoned, the suite goes on).
fn run_bounded(engine: Arc<dyn Engine>, dir: PathBuf) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("conformance-case".into())
        .spawn(move || {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| run_case(&*engine, &dir)))
                .unwrap_or_else(|_| Err("the test harness panicked".into()));
            let _ = tx.send(result);
        })
        .map_err(|e| e.to_string())?;
    match rx.recv_timeout(TIMEOUT) {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {TIMEOUT:?}")),
    }
}

#[test]
fn onnx_node_tests() {
    suite(Arc::new(TractEngine::new(1)), "expected_pass.txt");
}

#[test]
fn onnx_node_tests_onnxruntime() {
    suite(
        Arc::new(support::ort_engine()),
        "expected_pass_onnxruntime.txt",
    );
}

/// Runs every node test through `engine`; `expected` names the list of
/// tests that must pass (under `tests/conformance/`).
fn suite(engine: Arc<dyn Engine>, expected: &str) {
    let backend = engine.name();
    let root = node_tests_dir();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() > 1000,
        "only {} node tests found in {}",
        cases.len(),
        root.display()
    );

    let start = Instant::now();
    let mut passed = BTreeSet::new();
    let mut summary = String::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let t = Instant::now();
        let result = run_bounded(engine.clone(), case.clone());
        let status = match &result {
            Ok(()) => "pass".to_string(),
            Err(e) => format!("fail\t{}", e.replace(['\n', '\t'], " ")),
        };
        summary.push_str(&format!(
            "{name}\t{:.3}s\t{status}\n",
            t.elapsed().as_secs_f64()
        ));
        if result.is_ok() {
            passed.insert(name);
        }
    }
    let total = cases.len();
    println!(
        "ONNX node tests on {backend}: {} / {total} pass ({:.1?})",
        passed.len(),
        start.elapsed()
    );
    let summary_path =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("onnx-node-conformance-{backend}.tsv"));
    std::fs::write(&summary_path, &summary).unwrap();
    println!("per-test summary: {}", summary_path.display());

    let expected_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/conformance")
        .join(expected);
    if std::env::var_os("ATTESTA_CONFORMANCE_WRITE").is_some() {
        let mut text = String::new();
        for name in &passed {
            text.push_str(name);
            text.push('\n');
        }
        std::fs::write(&expected_path, text).unwrap();
        println!("wrote {}", expected_path.display());
        return;
    }
    let expected: BTreeSet<String> = std::fs::read_to_string(&expected_path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    let regressions: Vec<&String> = expected.difference(&passed).collect();
    let newly: Vec<&String> = passed.difference(&expected).collect();
    if !newly.is_empty() {
        println!(
            "{} tests pass that are not listed yet: {newly:?}",
            newly.len()
        );
    }
    assert!(
        regressions.is_empty(),
        "{} listed tests no longer pass: {regressions:?} (details in {})",
        regressions.len(),
        summary_path.display()
    );
    assert!(
        passed.len() >= expected.len(),
        "pass count dropped: {} < {}",
        passed.len(),
        expected.len()
    );
}
