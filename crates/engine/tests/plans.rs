//! Compiled plans per model are bounded in count and in bytes, so a flood
//! of distinct input shapes (each costing a compile) cannot grow memory
//! without bound; and the per-run memory estimate covers what a run makes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use crate::support;

use attesta_engine::tract::{TractEngine, TractModel};
use attesta_engine::{Limits, Model, Tensor, TensorData};
use support::build::*;

const K: usize = 256;

/// `y = x · W` with `x: [N, 256]` and a 256 KiB weight, so every plan holds
/// its own packed copy of `W`.
fn matmul_model() -> Vec<u8> {
    let w = tract_onnx::pb::TensorProto {
        name: "w".into(),
        dims: vec![K as i64, K as i64],
        data_type: FLOAT,
        float_data: support::pseudo_random(K * K, 7),
        ..Default::default()
    };
    model(graph(
        vec![node("MatMul", &["x", "w"], &["y"], vec![])],
        vec![w],
        vec![value_info_symbolic("x", FLOAT, &[-1, K as i64])],
        vec![value_info_symbolic("y", FLOAT, &[-1, K as i64])],
    ))
}

fn rows(n: usize) -> Tensor {
    Tensor::new(
        vec![n, K],
        TensorData::F32(support::pseudo_random(n * K, n as u64)),
    )
    .unwrap()
}

fn load(limits: &Limits) -> TractModel {
    TractEngine::new(1)
        .load_tract(&matmul_model(), limits)
        .unwrap()
}

#[test]
fn a_flood_of_shapes_keeps_the_plan_count_bounded() {
    let limits = Limits {
        max_plans_per_model: 4,
        ..Limits::default()
    };
    let m = load(&limits);
    let mut peak = 0;
    for n in 1..=24 {
        m.run(vec![rows(n)]).unwrap();
        assert!(
            m.cached_plans() <= 4,
            "{} plans after {n} shapes",
            m.cached_plans()
        );
        peak = peak.max(m.memory_estimate());
    }
    assert_eq!(m.cached_plans(), 4);
    // The estimate after the flood is no larger than with four plans.
    assert!(m.memory_estimate() <= peak);
}

#[test]
fn a_flood_of_shapes_keeps_plan_bytes_within_the_budget() {
    // Measure one plan, then allow room for two.
    let m = load(&Limits::default());
    let empty = m.memory_estimate();
    m.run(vec![rows(1)]).unwrap();
    let one_plan = m.memory_estimate() - empty;
    assert!(
        one_plan >= K * K * 4,
        "a plan holds its weights: {one_plan}"
    );

    let limits = Limits {
        max_plan_bytes: one_plan * 2 + one_plan / 2,
        ..Limits::default()
    };
    let m = load(&limits);
    for n in 1..=24 {
        m.run(vec![rows(n)]).unwrap();
        assert!(
            m.memory_estimate() <= empty + limits.max_plan_bytes,
            "{} bytes after {n} shapes ({} plans)",
            m.memory_estimate(),
            m.cached_plans()
        );
    }
    assert!(m.cached_plans() >= 1 && m.cached_plans() <= 2);
    // The most recent shape is the one kept: running it again compiles nothing.
    let before = m.cached_plans();
    m.run(vec![rows(24)]).unwrap();
    assert_eq!(m.cached_plans(), before);
}

#[test]
fn run_bytes_estimate_covers_inputs_and_outputs() {
    let m = load(&Limits::default());
    for n in [1, 64, 512] {
        let input = rows(n);
        let est = m
            .run_bytes_estimate(std::slice::from_ref(&input))
            .expect("estimate");
        let io = 2 * n * K * 4;
        assert!(est >= io, "n={n}: estimate {est} below inputs+outputs {io}");
        // An upper bound, not a wild one: a MatMul makes nothing else large.
        assert!(est <= 8 * io + (1 << 20), "n={n}: estimate {est}");
        // Asking compiled (and cached) the plan the run then uses.
        let plans = m.cached_plans();
        m.run(vec![input]).unwrap();
        assert_eq!(m.cached_plans(), plans);
    }
    // Invalid inputs have no estimate (the run reports why).
    let wrong = Tensor::new(vec![2, 3], TensorData::F32(vec![0.0; 6])).unwrap();
    assert_eq!(m.run_bytes_estimate(&[wrong]), None);
}
