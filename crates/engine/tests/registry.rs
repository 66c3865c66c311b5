//! Real trained models that registry packages ship (`scripts/registry_models.py`): PP-OCRv4's
//! text detector and recogniser, and Silero VAD, a recurrent voice-activity model whose graph
//! branches with `If` on its sample rate and again on a shape before a `Squeeze` (its two
//! branches differ in rank, and each types only for its own inputs). Both engines must answer
//! them like Python onnxruntime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use crate::support;

use attesta_engine::tract::TractEngine;
use attesta_engine::{Limits, Tensor, TensorData};
use attesta_test_support::registry::registry_model;
use support::{assert_matches_onnxruntime, pseudo_random};

const RTOL: f64 = 1e-4;
const ATOL: f64 = 1e-5;

fn f32_input(name: &str, shape: &[usize], seed: u64, scale: f32) -> (String, Tensor) {
    let values = pseudo_random(shape.iter().product(), seed)
        .into_iter()
        .map(|v| v * scale)
        .collect();
    let t = Tensor::new(shape.to_vec(), TensorData::F32(values)).unwrap();
    (name.to_string(), t)
}

/// Loads `name` in both engines and compares each with onnxruntime on every input set.
fn compare(name: &str, input_sets: &[Vec<(String, Tensor)>]) {
    let path = registry_model(name);
    let bytes = std::fs::read(&path).unwrap();
    for (engine_name, engine) in support::engines() {
        let model = engine
            .load(&bytes, &Limits::default())
            .unwrap_or_else(|e| panic!("{engine_name}: {name}: {e}"));
        for (k, inputs) in input_sets.iter().enumerate() {
            let what = format!("{engine_name}: {name}, input set {k}");
            assert_matches_onnxruntime(&*model, &what, &path, inputs, RTOL, ATOL);
        }
    }
}

#[test]
fn ocr_text_detector_matches_onnxruntime_at_two_shapes() {
    compare(
        "ocr-det",
        &[
            vec![f32_input("x", &[1, 3, 64, 96], 1, 1.0)],
            vec![f32_input("x", &[2, 3, 32, 64], 2, 1.0)],
        ],
    );
}

#[test]
fn ocr_text_recogniser_matches_onnxruntime() {
    compare("ocr-rec", &[vec![f32_input("x", &[1, 3, 48, 160], 3, 1.0)]]);
}

/// A frame of audio, the recurrent state, the sample rate.
fn vad_inputs(rate: i64, seed: u64) -> Vec<(String, Tensor)> {
    let samples = if rate == 16000 { 512 } else { 256 };
    vec![
        f32_input("input", &[1, samples], seed, 0.5),
        f32_input("state", &[2, 1, 128], seed + 1, 0.3),
        (
            "sr".into(),
            Tensor::new(vec![], TensorData::I64(vec![rate])).unwrap(),
        ),
    ]
}

#[test]
fn silero_vad_runs_on_both_engines_at_both_sample_rates() {
    compare(
        "silero-vad",
        &[
            vad_inputs(16000, 5),
            vad_inputs(8000, 6),
            vad_inputs(16000, 7),
        ],
    );
}

#[test]
fn silero_vad_opset_15_export_runs_on_both_engines() {
    compare(
        "silero-vad-op15",
        &[vad_inputs(16000, 8), vad_inputs(8000, 9)],
    );
}

/// tract bakes the branching model's scalar integer input into its plans (that is what lets
/// the `If` pick a branch while typing): one plan per sample rate, reused after that.
#[test]
fn silero_vad_on_tract_keeps_one_plan_per_sample_rate() {
    let bytes = std::fs::read(registry_model("silero-vad")).unwrap();
    let model = TractEngine::new(1)
        .load_tract(&bytes, &Limits::default())
        .unwrap();
    let run = |inputs: Vec<(String, Tensor)>| {
        use attesta_engine::Model;
        model
            .run(inputs.into_iter().map(|(_, t)| t).collect())
            .unwrap()
    };
    run(vad_inputs(16000, 1));
    run(vad_inputs(16000, 2));
    assert_eq!(model.cached_plans(), 1);
    run(vad_inputs(8000, 3));
    run(vad_inputs(8000, 4));
    assert_eq!(model.cached_plans(), 2);
}
