//! Request-path cost per number: decodes an `/infer` body of N fixed-point
//! numbers (`parse_request` + `to_tensors` to float32, the node's path) many
//! times and prints ns per number, and the same for encoding the outputs.
//! The general decoder alone (`parse_request_general`, the path before the
//! single-pass scanner) is timed in alternate rounds, so the two numbers come
//! from the same machine state.
//!
//! ```text
//! cargo run --release -p attesta-engine --example og_decode -- [N] [ITERS] [fast|general]
//! ```
//!
//! With a third argument only that path runs (for `perf record`).
//!
//! Measured on the 2-core development machine: 33 ns per number through the
//! single-pass scanner, against 102–106 ns for the serde-only decoder it
//! replaced (half of that was serde_json walking the escaped `model_inputs`
//! string three times); the goal was 50 ns. With the bodies' string-written
//! pairs taking the compact path too, integers read in one pass and no
//! decoded number copied through a padded temporary: 27.6 → 14.3 ns
//! (2026-12-04, these mixed bodies).

#![allow(clippy::expect_used)] // a benchmark of valid, generated input

use std::time::Instant;

use attesta_engine::og::{
    CodecError, InferRequest, encode_response, parse_request, parse_request_general, to_tensors,
};
use attesta_engine::{DType, Dim, ModelInfo, NamedTensor, Tensor, TensorData, TensorInfo};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(784);
    let iters: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let only = args.next();
    // Values as the benchmark bodies (bench/make_bodies.py) send them: integers
    // with 3 to 6 decimals, every fifth pair written as strings.
    let values: Vec<String> = (0..n)
        .map(|i| {
            let v = (i as i64 * 7919 % 2_000_001) - 1_000_000;
            let d = 3 + i % 4;
            if i % 5 == 4 {
                format!("{{\"value\":\"{v}\",\"decimals\":\"{d}\"}}")
            } else {
                format!("{{\"value\":{v},\"decimals\":{d}}}")
            }
        })
        .collect();
    let inputs = format!(
        "{{\"numbers\":[{{\"name\":\"x\",\"shape\":[1,{n}],\"values\":[{}]}}]}}",
        values.join(",")
    );
    let body = serde_json::json!({"ipfs_hash": "Qm", "model_inputs": inputs}).to_string();
    let info = ModelInfo {
        inputs: vec![TensorInfo {
            name: "x".into(),
            dtype: DType::F32,
            shape: Some(vec![Dim::Fixed(1), Dim::Fixed(n)]),
        }],
        outputs: vec![],
    };
    type Decoder = fn(&[u8]) -> Result<InferRequest, CodecError>;
    let time = |decode: Decoder| {
        let t = Instant::now();
        for _ in 0..iters {
            let req = decode(body.as_bytes()).expect("parses");
            let tensors = to_tensors(&req.inputs, &info).expect("converts");
            std::hint::black_box(tensors);
        }
        t.elapsed().as_secs_f64() * 1e9 / (iters * n) as f64
    };
    let (mut best, mut general) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..5 {
        if only.as_deref() != Some("general") {
            best = best.min(time(parse_request));
        }
        if only.as_deref() != Some("fast") {
            general = general.min(time(parse_request_general));
        }
    }
    let out = vec![NamedTensor {
        name: "y".into(),
        tensor: Tensor::new(
            vec![1, n],
            TensorData::F32((0..n).map(|i| i as f32 * 0.001 - 0.3).collect()),
        )
        .expect("shape"),
    }];
    let mut enc = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..iters {
            let bytes = serde_json::to_vec(&encode_response(&out, "ab")).expect("encodes");
            std::hint::black_box(bytes);
        }
        enc = enc.min(t.elapsed().as_secs_f64() * 1e9 / (iters * n) as f64);
    }
    println!(
        "{{\"numbers\":{n},\"body_bytes\":{},\"decode_ns_per_number\":{best:.1},\"general_decode_ns_per_number\":{general:.1},\"encode_ns_per_number\":{enc:.1}}}",
        body.len()
    );
}
