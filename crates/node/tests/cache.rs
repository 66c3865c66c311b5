//! The model cache through the HTTP surface: LRU eviction by the byte budget, single-flight
//! loading under concurrency, and the real engine on a real ONNX model.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::sync::Arc;

use attesta_engine::tract::TractEngine;
use attesta_node::NodeParts;
use serde_json::json;
use support::*;

async fn loaded(node: &TestNode) -> Vec<String> {
    let r = request(node.addr, "GET", "/v1/models", &[], b"").await;
    assert_eq!(r.status, 200);
    let mut v: Vec<String> = r.json()["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["loaded"] == true)
        .map(|m| m["cid"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn the_least_recently_used_model_is_evicted_when_the_byte_budget_is_exceeded() {
    let engine = Arc::new(FakeEngine::default());
    let mut config = test_config();
    config.cache_bytes = 250;
    let node = start(config, engine.clone()).await;
    let a = add_model(&node.store, &FakeSpec::sized(100, 1).file());
    let b = add_model(&node.store, &FakeSpec::sized(100, 2).file());
    let c = add_model(&node.store, &FakeSpec::sized(100, 3).file());
    for cid in [&a, &b, &a] {
        assert_eq!(infer(node.addr, &x2(cid)).await.status, 200);
    }
    assert_eq!(engine.loads(), 2);
    let mut both = vec![a.to_string(), b.to_string()];
    both.sort();
    assert_eq!(loaded(&node).await, both);

    // c does not fit beside a and b: b, used least recently, goes; a stays.
    assert_eq!(infer(node.addr, &x2(&c)).await.status, 200);
    assert!(node.state.cache.peek(&a).is_some(), "a was used recently");
    assert!(node.state.cache.peek(&b).is_none(), "b should be evicted");
    assert!(node.state.cache.peek(&c).is_some());
    let held: usize = node.state.cache.summary().iter().map(|s| s.bytes).sum();
    assert!(held <= 250, "cache holds {held} bytes over its budget");

    // b comes back with a fresh load; a is still served from memory.
    assert_eq!(infer(node.addr, &x2(&b)).await.status, 200);
    assert_eq!(engine.loads(), 4);

    // A model larger than the whole budget is served, then does not stay beside others.
    let huge = add_model(&node.store, &FakeSpec::sized(1000, 4).file());
    assert_eq!(infer(node.addr, &x2(&huge)).await.status, 200);
    let held: Vec<_> = node.state.cache.summary();
    assert!(held.len() <= 1, "{held:?}");
}

#[tokio::test]
async fn concurrent_requests_for_one_model_share_one_load() {
    let engine = Arc::new(FakeEngine::default());
    let node = start(test_config(), engine.clone()).await;
    let mut spec = FakeSpec::sized(10, 1);
    spec.load_ms = 300;
    let cid = add_model(&node.store, &spec.file());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let addr = node.addr;
        let body = x2(&cid);
        tasks.spawn(async move { infer(addr, &body).await.status });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(engine.loads(), 1, "eight requests, one load");
}

/// The real engine end to end on a model from the onnxruntime wheel (`sigmoid.onnx`,
/// x: float32[3,4,5]).
#[tokio::test]
async fn the_tract_engine_serves_a_real_model() {
    let path = fixtures().join("onnx/onnxruntime-datasets/sigmoid.onnx");
    let model = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_dir, store) = temp_store();
    let cid = add_model(&store, &model);
    let node = start_with(
        test_config(),
        NodeParts::new(Arc::new(TractEngine::new(1)), store),
    )
    .await;
    let values: Vec<_> = (0..60)
        .map(|i| json!({"value": i - 30, "decimals": 1}))
        .collect();
    let body = og_request(
        &cid.to_string(),
        json!([{"name": "x", "shape": [3, 4, 5], "values": values}]),
    );
    let r = infer(node.addr, &body).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let j = r.json();
    let first = j["output"][0]["result"][0][0][0].as_f64().unwrap();
    // sigmoid(-3.0)
    assert!((first - 1.0 / (1.0 + 3f64.exp())).abs() < 1e-6, "{first}");
    assert_eq!(
        j["model_hash"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&model))
    );
}
