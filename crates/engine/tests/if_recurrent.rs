//! An `If` whose condition comes from the input's shape and whose branch runs
//! a GRU (`scripts/make_models.py` builds it, as recurrent audio models are
//! exported): both engines must answer it like Python onnxruntime, at a
//! sequence (then-branch) and at a single frame (else-branch).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use crate::support;

use std::process::Command;

use attesta_engine::{Limits, Tensor, TensorData};
use support::{as_f64, first_mismatch, onnxruntime, pseudo_random};

#[test]
fn if_with_a_recurrent_branch_runs_on_both_engines() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(support::python())
        .arg(support::workspace_root().join("scripts/make_models.py"))
        .arg(dir.path())
        .args(["--only", "if_recurrent.onnx"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.path().join("if_recurrent.onnx");
    let bytes = std::fs::read(&path).unwrap();
    for (name, engine) in support::engines() {
        let model = engine
            .load(&bytes, &Limits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for shape in [vec![2, 5, 8], vec![2, 1, 8], vec![1, 3, 8]] {
            let values = pseudo_random(shape.iter().product(), 11);
            let ours = model
                .run(vec![
                    Tensor::new(shape.clone(), TensorData::F32(values.clone())).unwrap(),
                ])
                .unwrap_or_else(|e| panic!("{name} at {shape:?}: {e}"));
            let theirs = onnxruntime(&path, &[("x".into(), shape.clone(), values)]);
            assert_eq!(ours[0].tensor.shape(), &theirs[0].0[..], "{name} {shape:?}");
            assert!(theirs[0].1.iter().any(|v| *v != 0.0));
            let m = first_mismatch(&as_f64(&ours[0].tensor), &theirs[0].1, 1e-4, 1e-6);
            assert!(m.is_none(), "{name} at {shape:?} differs: {m:?}");
        }
    }
}

/// The condition as a graph input: known only while running. The GRU branch
/// must give what the shape-conditioned model gives (Python onnxruntime), and
/// both engines must agree on either branch.
#[test]
fn if_on_a_runtime_flag_runs_on_both_engines() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(support::python())
        .arg(support::workspace_root().join("scripts/make_models.py"))
        .arg(dir.path())
        .args(["--only", "if_recurrent.onnx", "if_recurrent_flag.onnx"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shape = vec![2, 5, 8];
    let values = pseudo_random(shape.iter().product(), 3);
    let gru_reference = onnxruntime(
        &dir.path().join("if_recurrent.onnx"),
        &[("x".into(), shape.clone(), values.clone())],
    );
    let bytes = std::fs::read(dir.path().join("if_recurrent_flag.onnx")).unwrap();
    let mut answers = Vec::new();
    for (name, engine) in support::engines() {
        let model = engine
            .load(&bytes, &Limits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let run = |flag: bool| {
            model
                .run(vec![
                    Tensor::new(shape.clone(), TensorData::F32(values.clone())).unwrap(),
                    Tensor::new(vec![], TensorData::Bool(vec![flag])).unwrap(),
                ])
                .unwrap_or_else(|e| panic!("{name} with use_gru={flag}: {e}"))
        };
        let gru = run(true);
        let m = first_mismatch(&as_f64(&gru[0].tensor), &gru_reference[0].1, 1e-4, 1e-6);
        assert!(m.is_none(), "{name}: GRU branch differs: {m:?}");
        answers.push(as_f64(&run(false)[0].tensor));
    }
    let m = first_mismatch(&answers[0], &answers[1], 1e-4, 1e-6);
    assert!(
        m.is_none(),
        "tract and onnxruntime differ on the else branch: {m:?}"
    );
}
