//! Many threads running one model with different input shapes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use crate::support;

use std::sync::Arc;

use attesta_engine::tract::TractEngine;
use attesta_engine::{Engine, Limits, Model, Tensor, TensorData};

const OCR: &str = "onnx/real/ch_ppocr_mobile_v2.0_cls_infer.onnx";

fn input(shape: &[usize], seed: u64) -> Tensor {
    Tensor::new(
        shape.to_vec(),
        TensorData::F32(support::pseudo_random(shape.iter().product(), seed)),
    )
    .unwrap()
}

#[test]
fn concurrent_runs_with_many_shapes_are_correct_and_the_cache_stays_bounded() {
    let bytes = support::fixture(OCR);
    let shapes: Vec<Vec<usize>> = (0..10)
        .map(|i| vec![1 + i % 2, 3, 48, 32 + 16 * i])
        .collect();

    // References: each shape on its own, freshly loaded model, one thread.
    let reference: Vec<Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let m = TractEngine::new(1)
                .load(&bytes, &Limits::default())
                .unwrap();
            match m
                .run(vec![input(s, i as u64)])
                .unwrap()
                .remove(0)
                .tensor
                .into_parts()
                .1
            {
                TensorData::F32(v) => v,
                other => panic!("{other:?}"),
            }
        })
        .collect();

    let limits = Limits {
        max_plans_per_model: 4,
        ..Limits::default()
    };
    let model = Arc::new(TractEngine::new(2).load_tract(&bytes, &limits).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let model = model.clone();
            let shapes = shapes.clone();
            let reference = reference.clone();
            std::thread::spawn(move || {
                for round in 0..3 {
                    for k in 0..shapes.len() {
                        let i = (k + t + round) % shapes.len();
                        let out = model.run(vec![input(&shapes[i], i as u64)]).unwrap();
                        let TensorData::F32(v) = out[0].tensor.data() else {
                            panic!("not f32")
                        };
                        assert_eq!(v, &reference[i], "thread {t}, shape {:?}", shapes[i]);
                        assert!(model.cached_plans() <= 4);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("worker panicked");
    }
    assert!(
        model.cached_plans() <= 4 && model.cached_plans() >= 1,
        "{}",
        model.cached_plans()
    );
}

#[test]
fn same_shape_from_many_threads_compiles_one_plan() {
    let bytes = support::fixture(OCR);
    let model = Arc::new(
        TractEngine::new(1)
            .load_tract(&bytes, &Limits::default())
            .unwrap(),
    );
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let model = model.clone();
            std::thread::spawn(move || model.run(vec![input(&[1, 3, 48, 64], 3)]).unwrap())
        })
        .collect();
    let outs: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(outs.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(model.cached_plans(), 1);
    assert!(
        !model
            .plan_is_unoptimised(&[input(&[1, 3, 48, 64], 3)])
            .unwrap(),
        "the OCR plan should be optimised"
    );
}
