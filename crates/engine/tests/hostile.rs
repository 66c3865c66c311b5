//! Hostile and corrupt model files: every one must come back as a typed
//! error, quickly, without a panic or an abort.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use crate::support;

use std::time::{Duration, Instant};

use attesta_engine::tract::TractEngine;
use attesta_engine::{Engine, EngineError, Limits, Tensor, TensorData};
use support::build::*;
use tract_onnx::pb;

/// Generous bound for one load of a tiny hostile file in release mode.
const QUICK: Duration = Duration::from_secs(5);

/// Loads `bytes` with every backend and returns tract's error, asserting
/// each backend answers with a quick `Load` error.
fn refused(bytes: &[u8]) -> String {
    let mut first = None;
    for (name, engine) in support::engines() {
        let start = Instant::now();
        let result = engine.load(bytes, &Limits::default());
        assert!(
            start.elapsed() < QUICK,
            "{name}: load took {:?}",
            start.elapsed()
        );
        match result {
            Err(EngineError::Load(msg)) => {
                first.get_or_insert(msg);
            }
            Err(other) => panic!("{name}: expected a Load error, got {other:?}"),
            Ok(_) => panic!("{name}: hostile model was accepted"),
        }
    }
    first.expect("at least one backend")
}

/// A valid one-node model, to show that the builders produce loadable files.
#[test]
fn the_builders_make_a_valid_model() {
    let g = graph(
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![],
        vec![value_info("x", FLOAT, &[2])],
        vec![value_info("y", FLOAT, &[2])],
    );
    let m = TractEngine::new(1)
        .load(&model(g), &Limits::default())
        .unwrap();
    let out = m
        .run(vec![
            Tensor::new(vec![2], TensorData::F32(vec![-1.0, 2.0])).unwrap(),
        ])
        .unwrap();
    assert_eq!(out[0].tensor.data(), &TensorData::F32(vec![0.0, 2.0]));
}

#[test]
fn zero_byte_file() {
    assert!(refused(&[]).contains("empty"));
}

#[test]
fn random_bytes_never_load() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..300 {
        let len = 1 + (round * 37) % 4096;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect();
        refused(&bytes);
    }
}

#[test]
fn truncated_real_models_fail_cleanly() {
    for rel in [
        "onnx/onnxruntime-datasets/sigmoid.onnx",
        "onnx/onnx-light-1.23.2/light_squeezenet.onnx",
        "onnx/real/ch_ppocr_mobile_v2.0_cls_infer.onnx",
    ] {
        let bytes = support::fixture(rel);
        let cuts: Vec<usize> = if bytes.len() <= 256 {
            (0..bytes.len()).collect()
        } else {
            (0..200)
                .map(|i| i * bytes.len() / 200)
                .chain([1, 2, bytes.len() - 1])
                .collect()
        };
        let mut errors = 0;
        for cut in cuts {
            let start = Instant::now();
            let result = TractEngine::new(1).load(&bytes[..cut], &Limits::default());
            assert!(
                start.elapsed() < QUICK,
                "{rel} cut at {cut}: {:?}",
                start.elapsed()
            );
            match result {
                Err(EngineError::Load(_)) => errors += 1,
                Err(other) => panic!("{rel} cut at {cut}: unexpected {other:?}"),
                // A cut on a field boundary can leave a smaller valid model;
                // accepting it is fine as long as nothing panics.
                Ok(_) => {}
            }
        }
        assert!(errors > 0, "{rel}: no truncation was refused");
    }
}

#[test]
fn huge_initializer_without_data() {
    let init = pb::TensorProto {
        name: "w".into(),
        dims: vec![1 << 20, 1 << 20],
        data_type: FLOAT,
        ..Default::default()
    };
    let g = graph(
        vec![node("Add", &["x", "w"], &["y"], vec![])],
        vec![init],
        vec![value_info("x", FLOAT, &[1])],
        vec![value_info("y", FLOAT, &[1])],
    );
    let msg = refused(&model(g));
    assert!(msg.contains("cap"), "{msg}");
}

#[test]
fn initializer_with_less_data_than_declared() {
    let init = pb::TensorProto {
        name: "w".into(),
        dims: vec![10],
        data_type: FLOAT,
        float_data: vec![1.0; 3],
        ..Default::default()
    };
    let g = graph(
        vec![node("Add", &["x", "w"], &["y"], vec![])],
        vec![init],
        vec![value_info("x", FLOAT, &[10])],
        vec![value_info("y", FLOAT, &[10])],
    );
    assert!(refused(&model(g)).contains("carries 3"));
    let raw = pb::TensorProto {
        name: "w".into(),
        dims: vec![10],
        data_type: FLOAT,
        raw_data: vec![0; 7],
        ..Default::default()
    };
    let g = graph(
        vec![node("Add", &["x", "w"], &["y"], vec![])],
        vec![raw],
        vec![value_info("x", FLOAT, &[10])],
        vec![value_info("y", FLOAT, &[10])],
    );
    assert!(refused(&model(g)).contains("raw_data"));
}

#[test]
fn negative_dimension() {
    let init = pb::TensorProto {
        name: "w".into(),
        dims: vec![2, -3],
        data_type: FLOAT,
        float_data: vec![1.0; 6],
        ..Default::default()
    };
    let g = graph(
        vec![node("Add", &["x", "w"], &["y"], vec![])],
        vec![init],
        vec![value_info("x", FLOAT, &[1])],
        vec![value_info("y", FLOAT, &[2, 3])],
    );
    assert!(refused(&model(g)).contains("negative"));
}

#[test]
fn constant_of_shape_over_the_cap() {
    // Shape from a Constant node.
    let g = graph(
        vec![
            node(
                "Constant",
                &[],
                &["s"],
                vec![tensor_attr("value", int64s("s", &[1 << 40]))],
            ),
            node("ConstantOfShape", &["s"], &["y"], vec![]),
        ],
        vec![],
        vec![],
        vec![value_info("y", FLOAT, &[1 << 40])],
    );
    assert!(refused(&model(g)).contains("ConstantOfShape"));
    // Shape from an initializer, spread over several dims.
    let g = graph(
        vec![node("ConstantOfShape", &["s"], &["y"], vec![])],
        vec![int64s("s", &[1 << 20, 1 << 20])],
        vec![],
        vec![value_info("y", FLOAT, &[1 << 20, 1 << 20])],
    );
    assert!(refused(&model(g)).contains("ConstantOfShape"));
    // And with a negative extent.
    let g = graph(
        vec![node("ConstantOfShape", &["s"], &["y"], vec![])],
        vec![int64s("s", &[-5])],
        vec![],
        vec![value_info("y", FLOAT, &[5])],
    );
    assert!(refused(&model(g)).contains("invalid"));
}

#[test]
fn expand_tile_and_range_over_the_cap() {
    let x = || vec![value_info("x", FLOAT, &[1])];
    let g = graph(
        vec![node("Expand", &["x", "s"], &["y"], vec![])],
        vec![int64s("s", &[1 << 16, 1 << 16, 1 << 16])],
        x(),
        vec![value_info("y", FLOAT, &[])],
    );
    assert!(refused(&model(g)).contains("Expand"));
    let g = graph(
        vec![node("Tile", &["x", "r"], &["y"], vec![])],
        vec![int64s("r", &[1 << 45])],
        x(),
        vec![value_info("y", FLOAT, &[])],
    );
    assert!(refused(&model(g)).contains("Tile"));
    let scalar = |name: &str, v: i64| pb::TensorProto {
        name: name.into(),
        data_type: INT64,
        int64_data: vec![v],
        ..Default::default()
    };
    let g = graph(
        vec![node("Range", &["a", "b", "c"], &["y"], vec![])],
        vec![scalar("a", 0), scalar("b", 1 << 50), scalar("c", 1)],
        vec![],
        vec![value_info("y", INT64, &[])],
    );
    assert!(refused(&model(g)).contains("Range"));
    let g = graph(
        vec![node("Range", &["a", "b", "c"], &["y"], vec![])],
        vec![scalar("a", 0), scalar("b", 10), scalar("c", 0)],
        vec![],
        vec![value_info("y", INT64, &[])],
    );
    assert!(refused(&model(g)).contains("step"));
}

#[test]
fn huge_constant_attribute() {
    let t = pb::TensorProto {
        name: "c".into(),
        dims: vec![1 << 31, 1 << 31],
        data_type: FLOAT,
        ..Default::default()
    };
    let g = graph(
        vec![node("Constant", &[], &["y"], vec![tensor_attr("value", t)])],
        vec![],
        vec![],
        vec![value_info("y", FLOAT, &[])],
    );
    assert!(refused(&model(g)).contains("cap"));
}

#[test]
fn external_data_is_refused() {
    let t = pb::TensorProto {
        name: "w".into(),
        dims: vec![1],
        data_type: FLOAT,
        data_location: Some(1),
        external_data: vec![pb::StringStringEntryProto {
            key: "location".into(),
            value: "../../etc/passwd".into(),
        }],
        ..Default::default()
    };
    let g = graph(
        vec![node("Add", &["x", "w"], &["y"], vec![])],
        vec![t],
        vec![value_info("x", FLOAT, &[1])],
        vec![value_info("y", FLOAT, &[1])],
    );
    assert!(refused(&model(g)).contains("external"));
}

#[test]
fn unknown_operator_and_domain_are_named() {
    let g = graph(
        vec![node("NoSuchOp", &["x"], &["y"], vec![])],
        vec![],
        vec![value_info("x", FLOAT, &[1])],
        vec![value_info("y", FLOAT, &[1])],
    );
    assert!(refused(&model(g)).contains("NoSuchOp"));
    let mut n = node("Relu", &["x"], &["y"], vec![]);
    n.domain = "com.example".into();
    let g = graph(
        vec![n],
        vec![],
        vec![value_info("x", FLOAT, &[1])],
        vec![value_info("y", FLOAT, &[1])],
    );
    assert!(refused(&model(g)).contains("com.example"));
}

#[test]
fn deeply_nested_subgraphs() {
    let mut inner = graph(
        vec![node("Identity", &["x"], &["y"], vec![])],
        vec![],
        vec![],
        vec![value_info("y", FLOAT, &[1])],
    );
    for _ in 0..40 {
        let branch = |g: &pb::GraphProto, name: &str| pb::AttributeProto {
            name: name.into(),
            r#type: 5,
            g: Some(g.clone()),
            ..Default::default()
        };
        let attrs = vec![branch(&inner, "then_branch"), branch(&inner, "else_branch")];
        inner = graph(
            vec![node("If", &["c"], &["y"], attrs)],
            vec![],
            vec![],
            vec![value_info("y", FLOAT, &[1])],
        );
        // Keep the file small: only the then branch nests further.
        if let Some(a) = inner.node[0].attribute.get_mut(1) {
            a.g = Some(graph(vec![], vec![], vec![], vec![]));
        }
    }
    inner.input = vec![value_info("c", 9, &[]), value_info("x", FLOAT, &[1])];
    refused(&model(inner));
}

#[test]
fn giant_graph() {
    let nodes: Vec<pb::NodeProto> = (0..300_000)
        .map(|i| {
            let input = if i == 0 {
                "x".to_string()
            } else {
                format!("t{}", i - 1)
            };
            pb::NodeProto {
                op_type: "Identity".into(),
                input: vec![input],
                output: vec![format!("t{i}")],
                ..Default::default()
            }
        })
        .collect();
    let g = graph(
        nodes,
        vec![],
        vec![value_info("x", FLOAT, &[1])],
        vec![value_info("t299999", FLOAT, &[1])],
    );
    assert!(refused(&model(g)).contains("nodes"));
}

#[test]
fn model_tensor_cap_applies_to_known_intermediate_shapes() {
    // 64 KiB input broadcast against a 64 KiB initializer gives 4 GiB: the
    // typed graph knows that shape and the load is refused.
    let w = pb::TensorProto {
        name: "w".into(),
        dims: vec![1, 1 << 14],
        data_type: FLOAT,
        raw_data: vec![0; 4 << 14],
        ..Default::default()
    };
    let g = graph(
        vec![node("Add", &["x", "w"], &["y"], vec![])],
        vec![w],
        vec![value_info("x", FLOAT, &[1 << 14, 1])],
        vec![value_info("y", FLOAT, &[1 << 14, 1 << 14])],
    );
    let limits = Limits {
        max_tensor_bytes: 64 << 20,
        ..Limits::default()
    };
    let bytes = model(g);
    for (name, engine) in support::engines() {
        match engine.load(&bytes, &limits) {
            Err(EngineError::Load(msg)) => assert!(msg.contains("cap"), "{name}: {msg}"),
            other => panic!("{name}: expected a Load error, got {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn sizes_set_by_request_values_are_checked_before_tract_sees_them() {
    // ConstantOfShape fed by a graph input: tract only types it with the
    // value known, so the engine bakes the value in; a huge value must be
    // refused, not allocated.
    let g = graph(
        vec![node("ConstantOfShape", &["s"], &["y"], vec![])],
        vec![],
        vec![value_info("s", INT64, &[1])],
        vec![value_info("y", FLOAT, &[])],
    );
    let bytes = model(g);
    for (name, engine) in support::engines() {
        eprintln!("backend {name}");
        request_values_checked(&*engine, &bytes);
    }
}

fn request_values_checked(engine: &dyn Engine, bytes: &[u8]) {
    let model = engine.load(bytes, &Limits::default()).unwrap();
    let small = model
        .run(vec![
            Tensor::new(vec![1], TensorData::I64(vec![4])).unwrap(),
        ])
        .unwrap();
    assert_eq!(small[0].tensor.data(), &TensorData::F32(vec![0.0; 4]));
    for huge in [1i64 << 40, -3] {
        let err = model
            .run(vec![
                Tensor::new(vec![1], TensorData::I64(vec![huge])).unwrap(),
            ])
            .unwrap_err();
        assert!(
            matches!(
                (huge, &err),
                (-3, EngineError::InvalidInput { .. }) | (_, EngineError::TensorTooLarge(_))
            ),
            "{huge}: {err:?}"
        );
    }
}

fn relu_chain(n: usize) -> Vec<u8> {
    let nodes: Vec<pb::NodeProto> = (0..n)
        .map(|i| {
            let input = if i == 0 {
                "x".to_string()
            } else {
                format!("t{}", i - 1)
            };
            node("Relu", &[&input], &[&format!("t{i}")], vec![])
        })
        .collect();
    let last = format!("t{}", n - 1);
    model(graph(
        nodes,
        vec![],
        vec![value_info("x", FLOAT, &[1])],
        vec![value_info(&last, FLOAT, &[1])],
    ))
}

#[test]
fn long_operator_chains_are_refused_before_parsing() {
    // The attack file: 240,000 chained Relu (about 6 MB) used to pass the
    // pre-scan and load for minutes.
    let msg = refused(&relu_chain(240_000));
    assert!(msg.contains("node limit"), "{msg}");
    // Just over the default limit, and over a lower configured one.
    let over = Limits::default().max_nodes + 1;
    assert!(refused(&relu_chain(over)).contains("node limit"));
    let limits = Limits {
        max_nodes: 100,
        ..Limits::default()
    };
    match TractEngine::new(1).load(&relu_chain(101), &limits) {
        Err(EngineError::Load(msg)) => assert!(msg.contains("node limit"), "{msg}"),
        other => panic!("expected a Load error, got {:?}", other.map(|_| ())),
    }
    // A real-sized chain still loads and runs.
    let m = TractEngine::new(1)
        .load(&relu_chain(2_000), &Limits::default())
        .unwrap();
    let out = m
        .run(vec![
            Tensor::new(vec![1], TensorData::F32(vec![-1.5])).unwrap(),
        ])
        .unwrap();
    assert_eq!(out[0].tensor.data(), &TensorData::F32(vec![0.0]));
}
