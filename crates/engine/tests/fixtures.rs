//! Real models from the fixtures folder: outputs against stored references
//! and against Python onnxruntime run during the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use crate::support;

use attesta_engine::tract::{TractEngine, decode_tensor_proto};
use attesta_engine::{DType, Dim, Engine, EngineError, Limits, Model, Tensor, TensorData};
use support::{as_f64, first_mismatch, fixture, fixtures, pseudo_random};

const RTOL: f64 = 1e-4;
const ATOL: f64 = 1e-5;

fn load(rel: &str) -> std::sync::Arc<dyn Model> {
    TractEngine::new(1)
        .load(&fixture(rel), &Limits::default())
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Runs `rel` on deterministic pseudo-random f32 inputs of `shapes`, in each
/// of our backends and in Python onnxruntime, and compares every output.
fn compare_with_onnxruntime(rel: &str, shapes: &[Vec<usize>]) {
    for (name, engine) in support::engines() {
        let model = engine
            .load(&fixture(rel), &Limits::default())
            .unwrap_or_else(|e| panic!("{name}: {rel}: {e}"));
        compare_model(&*model, &format!("{name}: {rel}"), rel, shapes);
    }
}

fn compare_model(model: &dyn Model, what: &str, rel: &str, shapes: &[Vec<usize>]) {
    let inputs: Vec<(String, Tensor)> = model
        .info()
        .inputs
        .iter()
        .zip(shapes)
        .enumerate()
        .map(|(i, (decl, shape))| {
            let values = pseudo_random(shape.iter().product(), 7 + i as u64);
            let t = Tensor::new(shape.clone(), TensorData::F32(values)).unwrap();
            (decl.name.clone(), t)
        })
        .collect();
    support::assert_matches_onnxruntime(model, what, &fixtures().join(rel), &inputs, RTOL, ATOL);
}

#[test]
fn light_squeezenet_matches_stored_output() {
    let model = load("onnx/onnx-light-1.23.2/light_squeezenet.onnx");
    let n = 3 * 224 * 224;
    let input: Vec<f32> = (0..n).map(|i| i as f32 / n as f32).collect();
    let out = model
        .run(vec![
            Tensor::new(vec![1, 3, 224, 224], TensorData::F32(input)).unwrap(),
        ])
        .unwrap();
    let expected = decode_tensor_proto(
        &fixture("onnx/onnx-light-1.23.2/light_squeezenet_output_0.pb"),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(out[0].tensor.shape(), expected.tensor.shape());
    let m = first_mismatch(
        &as_f64(&out[0].tensor),
        &as_f64(&expected.tensor),
        RTOL,
        1e-6,
    );
    assert!(
        m.is_none(),
        "squeezenet differs from the stored output at {m:?}"
    );
}

#[test]
fn light_squeezenet_matches_onnxruntime() {
    compare_with_onnxruntime(
        "onnx/onnx-light-1.23.2/light_squeezenet.onnx",
        &[vec![1, 3, 224, 224]],
    );
}

#[test]
fn sigmoid_matches_onnxruntime() {
    compare_with_onnxruntime("onnx/onnxruntime-datasets/sigmoid.onnx", &[vec![3, 4, 5]]);
}

#[test]
fn mul_1_matches_onnxruntime() {
    compare_with_onnxruntime("onnx/onnxruntime-datasets/mul_1.onnx", &[vec![3, 2]]);
}

#[test]
fn ocr_classifier_matches_onnxruntime_at_two_shapes() {
    let rel = "onnx/real/ch_ppocr_mobile_v2.0_cls_infer.onnx";
    compare_with_onnxruntime(rel, &[vec![1, 3, 48, 192]]);
    compare_with_onnxruntime(rel, &[vec![2, 3, 48, 96]]);
}

#[test]
fn ocr_classifier_metadata_keeps_unknown_dims() {
    let model = load("onnx/real/ch_ppocr_mobile_v2.0_cls_infer.onnx");
    let info = model.info();
    assert_eq!(info.inputs.len(), 1);
    assert_eq!(info.inputs[0].name, "x");
    assert_eq!(info.inputs[0].dtype, DType::F32);
    let shape = info.inputs[0].shape.clone().unwrap();
    assert_eq!(shape.len(), 4);
    assert_eq!(shape[1], Dim::Fixed(3));
    assert!(matches!(shape[0], Dim::Symbolic(_)), "{shape:?}");
    assert_eq!(info.outputs.len(), 1);
    assert_eq!(info.outputs[0].dtype, DType::F32);
}

#[test]
fn sigmoid_metadata_is_exact() {
    let model = load("onnx/onnxruntime-datasets/sigmoid.onnx");
    let x = &model.info().inputs[0];
    assert_eq!(x.dtype, DType::F32);
    assert_eq!(
        x.shape,
        Some(vec![Dim::Fixed(3), Dim::Fixed(4), Dim::Fixed(5)])
    );
}

#[test]
fn single_op_fixtures_match_their_reference_outputs() {
    let dir = fixtures().join("onnx/onnx-node-1.17.0");
    for (name, engine) in support::engines() {
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let case = entry.unwrap().path();
            let model = engine
                .load(
                    &std::fs::read(case.join("model.onnx")).unwrap(),
                    &Limits::default(),
                )
                .unwrap();
            let data = case.join("test_data_set_0");
            let read = |name: String| {
                decode_tensor_proto(&std::fs::read(data.join(name)).unwrap(), &Limits::default())
                    .unwrap()
            };
            let inputs = (0..model.info().inputs.len())
                .map(|i| read(format!("input_{i}.pb")).tensor)
                .collect();
            let outputs = model.run(inputs).unwrap();
            for (i, o) in outputs.iter().enumerate() {
                let expected = read(format!("output_{i}.pb")).tensor;
                assert_eq!(
                    o.tensor.shape(),
                    expected.shape(),
                    "{name}: {}",
                    case.display()
                );
                assert!(
                    first_mismatch(&as_f64(&o.tensor), &as_f64(&expected), 1e-3, 1e-7).is_none(),
                    "{name}: {}",
                    case.display()
                );
            }
            checked += 1;
        }
        assert_eq!(checked, 6, "expected the six single-op fixtures");
    }
}

#[test]
fn logreg_iris_is_a_typed_load_error_naming_the_domain() {
    for (name, engine) in support::engines() {
        let err = engine
            .load(
                &fixture("onnx/onnxruntime-datasets/logreg_iris.onnx"),
                &Limits::default(),
            )
            .err()
            .expect("ai.onnx.ml must be refused");
        match err {
            EngineError::Load(msg) => assert!(msg.contains("ai.onnx.ml"), "{name}: {msg}"),
            other => panic!("{name}: expected Load, got {other:?}"),
        }
    }
}

#[test]
fn inputs_are_validated_against_the_declaration() {
    for (name, engine) in support::engines() {
        eprintln!("backend {name}");
        inputs_are_validated_by(&*engine);
    }
}

fn inputs_are_validated_by(engine: &dyn Engine) {
    let model = engine
        .load(
            &fixture("onnx/onnxruntime-datasets/sigmoid.onnx"),
            &Limits::default(),
        )
        .unwrap();
    let good = || Tensor::new(vec![3, 4, 5], TensorData::F32(vec![0.5; 60])).unwrap();
    assert!(model.run(vec![good()]).is_ok());
    let wrong_type = Tensor::new(vec![3, 4, 5], TensorData::F64(vec![0.5; 60])).unwrap();
    assert!(
        matches!(model.run(vec![wrong_type]), Err(EngineError::InvalidInput { input, .. }) if input == "x")
    );
    let wrong_shape = Tensor::new(vec![3, 5, 4], TensorData::F32(vec![0.5; 60])).unwrap();
    assert!(matches!(
        model.run(vec![wrong_shape]),
        Err(EngineError::InvalidInput { .. })
    ));
    let wrong_rank = Tensor::new(vec![60], TensorData::F32(vec![0.5; 60])).unwrap();
    assert!(matches!(
        model.run(vec![wrong_rank]),
        Err(EngineError::InvalidInput { .. })
    ));
    assert!(matches!(model.run(vec![]), Err(EngineError::MissingInput(n)) if n == "x"));
    assert!(matches!(
        model.run(vec![good(), good()]),
        Err(EngineError::InvalidInput { .. })
    ));
    // A symbolic-batch model loads under a small tensor cap; a batch over the cap is refused.
    let limits = Limits {
        max_tensor_bytes: 512 << 10,
        ..Limits::default()
    };
    let ocr = engine
        .load(
            &fixture("onnx/real/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
            &limits,
        )
        .unwrap();
    let big = Tensor::new(
        vec![8, 3, 48, 192],
        TensorData::F32(vec![0.0; 8 * 3 * 48 * 192]),
    )
    .unwrap();
    assert!(
        matches!(ocr.run(vec![big]), Err(EngineError::TensorTooLarge(_))),
        "input over the tensor cap"
    );
    // A fixed-shape model whose own input is over the cap is refused at load.
    let tiny = Limits {
        max_tensor_bytes: 100,
        ..Limits::default()
    };
    assert!(matches!(
        engine.load(&fixture("onnx/onnxruntime-datasets/sigmoid.onnx"), &tiny),
        Err(EngineError::Load(_))
    ));
}

#[test]
fn engine_identity_and_memory_estimate() {
    let engine = TractEngine::new(2);
    assert_eq!(engine.name(), "tract");
    // The version string must be the tract actually linked: compare with the lockfile when present.
    let lock = support::workspace_root().join("Cargo.lock");
    if let Ok(lock) = std::fs::read_to_string(lock) {
        let needle = format!("name = \"tract-onnx\"\nversion = \"{}\"", engine.version());
        assert!(
            lock.contains(&needle),
            "TRACT_VERSION {} is not the locked tract-onnx",
            engine.version()
        );
    }
    let bytes = fixture("onnx/real/ch_ppocr_mobile_v2.0_cls_infer.onnx");
    let model = engine.load(&bytes, &Limits::default()).unwrap();
    let before = model.memory_estimate();
    assert!(before >= bytes.len());
    model
        .run(vec![
            Tensor::new(
                vec![1, 3, 48, 192],
                TensorData::F32(pseudo_random(3 * 48 * 192, 1)),
            )
            .unwrap(),
        ])
        .unwrap();
    assert!(
        model.memory_estimate() > before,
        "a compiled plan adds to the estimate"
    );
}

#[test]
fn model_size_cap_is_enforced() {
    let bytes = fixture("onnx/onnxruntime-datasets/sigmoid.onnx");
    let limits = Limits {
        max_model_bytes: bytes.len() - 1,
        ..Limits::default()
    };
    for (name, engine) in support::engines() {
        assert!(
            matches!(engine.load(&bytes, &limits), Err(EngineError::Load(_))),
            "{name}"
        );
    }
}

#[test]
fn ort_engine_names_the_measured_library() {
    let engine = support::ort_engine();
    assert_eq!(engine.name(), "onnxruntime");
    let lib = support::ort_library();
    let out = std::process::Command::new(support::python())
        .args([
            "-c",
            "import sys,hashlib,onnxruntime;print(onnxruntime.__version__);print(hashlib.sha384(open(sys.argv[1],'rb').read()).hexdigest())",
        ])
        .arg(&lib)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(engine.version(), lines.next().unwrap(), "library version");
    let hex: String = engine
        .runtime()
        .sha384()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hex, lines.next().unwrap(), "library SHA-384");
}

#[test]
fn ort_sessions_serve_concurrent_runs_with_identical_outputs() {
    let model = support::ort_engine()
        .load(
            &fixture("onnx/real/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
            &Limits::default(),
        )
        .unwrap();
    let input = || {
        Tensor::new(
            vec![1, 3, 48, 192],
            TensorData::F32(pseudo_random(3 * 48 * 192, 5)),
        )
        .unwrap()
    };
    let reference = model.run(vec![input()]).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..5)
                        .map(|_| model.run(vec![input()]).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for out in h.join().unwrap() {
                assert_eq!(
                    out, reference,
                    "runs on different sessions agree bit for bit"
                );
            }
        }
    });
}
