//! Tensor sizes a request steers (through values baked into a plan, shape
//! arithmetic, or values only known while running) are refused with a typed
//! client error before tract allocates them.
//!
//! One test function, so the peak RSS it asserts belongs to it alone: every
//! attack here asks for gigabytes under a 64 MiB cap, and the process must
//! never get near that.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use crate::support;

use std::time::{Duration, Instant};

use attesta_engine::tract::TractEngine;
use attesta_engine::{Engine, EngineError, Limits, Model, Tensor, TensorData};
use support::build::*;
use tract_onnx::pb;

const CAP: usize = 64 << 20;
/// Generous bound for a refusal (the old code spent seconds allocating, or aborted).
const QUICK: Duration = Duration::from_secs(10);

fn limits() -> Limits {
    Limits {
        max_tensor_bytes: CAP,
        ..Limits::default()
    }
}

fn load(g: pb::GraphProto) -> std::sync::Arc<dyn Model> {
    TractEngine::new(1)
        .load(&model_with_opset(g, 17), &limits())
        .expect("the model loads")
}

fn i64s(v: &[i64]) -> Tensor {
    Tensor::new(vec![v.len()], TensorData::I64(v.to_vec())).unwrap()
}

fn scalar(v: i64) -> Tensor {
    Tensor::new(vec![], TensorData::I64(vec![v])).unwrap()
}

/// Runs and returns the error, asserting it came quickly.
fn refused(m: &dyn Model, inputs: Vec<Tensor>, what: &str) -> EngineError {
    let start = Instant::now();
    let result = m.run(inputs);
    assert!(
        start.elapsed() < QUICK,
        "{what}: took {:?}",
        start.elapsed()
    );
    match result {
        Err(e) => e,
        Ok(_) => panic!("{what}: the oversized request ran"),
    }
}

fn too_large(m: &dyn Model, inputs: Vec<Tensor>, what: &str) {
    let err = refused(m, inputs, what);
    assert!(
        matches!(err, EngineError::TensorTooLarge(_)),
        "{what}: expected TensorTooLarge, got {err:?}"
    );
    assert!(err.is_client_error(), "{what}");
    assert_eq!(err.code(), "tensor_too_large", "{what}");
}

/// Peak resident set of this process, in bytes (Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `ConstantOfShape(Identity(Cast(s)))`: the size reaches the operator
/// through a chain tract folds while typing.
fn constant_of_shape_through_identity() -> pb::GraphProto {
    graph(
        vec![
            node("Cast", &["s"], &["c"], vec![int_attr("to", INT64 as i64)]),
            node("Identity", &["c"], &["i"], vec![]),
            node("ConstantOfShape", &["i"], &["y"], vec![]),
        ],
        vec![],
        vec![value_info("s", INT64, &[2])],
        vec![typed("y", FLOAT)],
    )
}

/// `Expand(x, Concat(Identity(s), [4]))`.
fn expand_through_concat() -> pb::GraphProto {
    graph(
        vec![
            node("Identity", &["s"], &["i"], vec![]),
            node(
                "Concat",
                &["i", "four"],
                &["shape"],
                vec![int_attr("axis", 0)],
            ),
            node("Expand", &["x", "shape"], &["y"], vec![]),
        ],
        vec![int64s("four", &[4])],
        vec![value_info("x", FLOAT, &[1]), value_info("s", INT64, &[1])],
        vec![typed("y", FLOAT)],
    )
}

/// `OneHot(indices, Identity(depth), [0, 1])`.
fn one_hot() -> pb::GraphProto {
    graph(
        vec![
            node("Identity", &["depth"], &["d"], vec![]),
            node("OneHot", &["idx", "d", "values"], &["y"], vec![]),
        ],
        vec![floats("values", &[0.0, 1.0])],
        vec![
            value_info("idx", INT64, &[1]),
            value_info("depth", INT64, &[]),
        ],
        vec![typed("y", FLOAT)],
    )
}

/// `Range(0, Identity(limit), 1)` over int64.
fn range_of_input() -> pb::GraphProto {
    graph(
        vec![
            node("Identity", &["limit"], &["l"], vec![]),
            node("Range", &["zero", "l", "one"], &["y"], vec![]),
        ],
        vec![scalar_i64("zero", 0), scalar_i64("one", 1)],
        vec![value_info("limit", INT64, &[])],
        vec![typed("y", INT64)],
    )
}

/// An outer sum of `Range(0, n)` with itself: every operator's output is
/// small except the broadcasting `Add` (n × n).
fn outer_sum() -> pb::GraphProto {
    graph(
        vec![
            node("Range", &["zero", "n", "one"], &["r"], vec![]),
            node("Unsqueeze", &["r", "ax1"], &["col"], vec![]),
            node("Unsqueeze", &["r", "ax0"], &["row"], vec![]),
            node("Add", &["col", "row"], &["y"], vec![]),
        ],
        vec![
            scalar_i64("zero", 0),
            scalar_i64("one", 1),
            int64s("ax0", &[0]),
            int64s("ax1", &[1]),
        ],
        vec![value_info("n", INT64, &[])],
        vec![typed("y", INT64)],
    )
}

/// `Range(0.0, limit, 1.0)` over a float input: nothing is baked in, the
/// length is only known while running.
fn range_of_float_input() -> pb::GraphProto {
    let f = |name: &str, v: f32| pb::TensorProto {
        name: name.into(),
        data_type: FLOAT,
        float_data: vec![v],
        ..Default::default()
    };
    graph(
        vec![node("Range", &["zero", "limit", "one"], &["y"], vec![])],
        vec![f("zero", 0.0), f("one", 1.0)],
        vec![value_info("limit", FLOAT, &[])],
        vec![typed("y", FLOAT)],
    )
}

/// `Tile(x, Identity(repeats))`.
fn tile_of_input() -> pb::GraphProto {
    graph(
        vec![
            node("Identity", &["reps"], &["r"], vec![]),
            node("Tile", &["x", "r"], &["y"], vec![]),
        ],
        vec![],
        vec![
            value_info("x", FLOAT, &[2]),
            value_info("reps", INT64, &[1]),
        ],
        vec![typed("y", FLOAT)],
    )
}

#[test]
fn request_steered_sizes_are_refused_before_allocation() {
    let x1 = || Tensor::new(vec![1], TensorData::F32(vec![2.5])).unwrap();
    let x2 = || Tensor::new(vec![2], TensorData::F32(vec![1.0, 2.0])).unwrap();

    let m = load(constant_of_shape_through_identity());
    let ok = m.run(vec![i64s(&[2, 3])]).unwrap();
    assert_eq!(ok[0].tensor.shape(), &[2, 3]);
    too_large(&*m, vec![i64s(&[1 << 20, 1 << 20])], "ConstantOfShape 2^40");
    too_large(
        &*m,
        vec![i64s(&[1 << 16, 1 << 14])],
        "ConstantOfShape 4 GiB",
    );
    // A negative extent is a bad value, not an engine fault.
    let err = refused(&*m, vec![i64s(&[2, -3])], "negative extent");
    assert!(err.is_client_error(), "negative extent: {err:?}");

    let m = load(expand_through_concat());
    let ok = m.run(vec![x1(), i64s(&[3])]).unwrap();
    assert_eq!(ok[0].tensor.shape(), &[3, 4]);
    too_large(&*m, vec![x1(), i64s(&[1 << 30])], "Expand 2^32 elements");

    let m = load(one_hot());
    let ok = m.run(vec![i64s(&[1]), scalar(3)]).unwrap();
    assert_eq!(ok[0].tensor.data(), &TensorData::F32(vec![0.0, 1.0, 0.0]));
    too_large(&*m, vec![i64s(&[1]), scalar(1 << 40)], "OneHot depth 2^40");

    let m = load(range_of_input());
    let ok = m.run(vec![scalar(4)]).unwrap();
    assert_eq!(ok[0].tensor.data(), &TensorData::I64(vec![0, 1, 2, 3]));
    too_large(&*m, vec![scalar(1 << 40)], "Range 0..2^40");

    let m = load(outer_sum());
    let ok = m.run(vec![scalar(3)]).unwrap();
    assert_eq!(ok[0].tensor.shape(), &[3, 3]);
    too_large(&*m, vec![scalar(20_000)], "outer sum 20000^2");

    let m = load(tile_of_input());
    let ok = m.run(vec![x2(), i64s(&[2])]).unwrap();
    assert_eq!(ok[0].tensor.shape(), &[4]);
    too_large(&*m, vec![x2(), i64s(&[1 << 31])], "Tile 2^32 elements");

    let m = load(range_of_float_input());
    let scalar_f = |v: f32| Tensor::new(vec![], TensorData::F32(vec![v])).unwrap();
    let ok = m.run(vec![scalar_f(3.0)]).unwrap();
    assert_eq!(ok[0].tensor.data(), &TensorData::F32(vec![0.0, 1.0, 2.0]));
    too_large(&*m, vec![scalar_f(1e12)], "runtime Range 10^12");

    // The estimate a node budgets with exists for these plans and is at
    // least the output.
    let m = load(expand_through_concat());
    let est = m
        .run_bytes_estimate(&[x1(), i64s(&[1000])])
        .expect("estimate");
    assert!(est >= 1000 * 4 * 4, "estimate {est}");

    // Nothing near any of these sizes was ever resident.
    if let Some(peak) = peak_rss() {
        assert!(peak < 512 << 20, "peak RSS {} MiB", peak >> 20);
    }
}
