//! Stopping a run midway: a model that computes for many seconds must give its thread
//! back soon after its caller cancels (onnxruntime), and a run nobody cancels must not
//! notice the handle at all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use crate::support;

use std::time::{Duration, Instant};

use attesta_engine::{Cancel, Engine, EngineError, Limits, Tensor, TensorData};
use support::build;

/// `layers` chained square products of an `n`×`n` input with itself: 2·n³ flops a layer,
/// and onnxruntime looks at its terminate flag between layers.
fn chain_of_products(n: i64, layers: usize) -> Vec<u8> {
    let mut nodes = Vec::new();
    let mut last = "x".to_string();
    for i in 0..layers {
        let out = if i + 1 == layers {
            "y".to_string()
        } else {
            format!("h{i}")
        };
        nodes.push(build::node("MatMul", &[&last, &last], &[&out], vec![]));
        last = out;
    }
    build::model(build::graph(
        nodes,
        vec![],
        vec![build::value_info("x", build::FLOAT, &[n, n])],
        vec![build::value_info("y", build::FLOAT, &[n, n])],
    ))
}

fn input(n: usize) -> Vec<Tensor> {
    vec![Tensor::new(vec![n, n], TensorData::F32(vec![1e-3; n * n])).unwrap()]
}

#[test]
fn a_cancelled_onnxruntime_run_stops_between_kernels_with_a_typed_error() {
    // 1000 layers of 1024³ products: about 2 TFLOP, tens of seconds at least.
    let model = support::ort_engine()
        .load(&chain_of_products(1024, 1000), &Limits::default())
        .unwrap();
    let cancel = Cancel::new();
    let firing = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            cancel.cancel();
        })
    };
    let started = Instant::now();
    let result = model.run_cancellable(input(1024), &cancel);
    let took = started.elapsed();
    firing.join().unwrap();
    match result {
        Err(EngineError::Cancelled) => {}
        other => panic!("expected a cancelled run, got {:?}", other.map(|o| o.len())),
    }
    assert_eq!(EngineError::Cancelled.code(), "timeout");
    // One layer is a few tens of milliseconds; the whole chain far longer.
    assert!(took < Duration::from_secs(5), "stopped only after {took:?}");

    // A handle that fired before the run stops it before the first kernel, and the
    // model still serves runs afterwards.
    let fired = Cancel::new();
    fired.cancel();
    assert!(matches!(
        model.run_cancellable(input(1024), &fired),
        Err(EngineError::Cancelled)
    ));
}

#[test]
fn a_handle_nobody_fires_changes_nothing_on_either_engine() {
    let bytes = chain_of_products(8, 3);
    for (name, engine) in support::engines() {
        let model = engine.load(&bytes, &Limits::default()).unwrap();
        let plain = model.run(input(8)).unwrap();
        let with_handle = model.run_cancellable(input(8), &Cancel::new()).unwrap();
        assert_eq!(
            format!("{:?}", plain[0].tensor),
            format!("{:?}", with_handle[0].tensor),
            "{name}"
        );
    }
}
