//! End to end: `attesta models add` + `attesta node` as real processes on
//! 127.0.0.1, OpenGradient-format requests over HTTP, answers checked
//! against Python onnxruntime on the same inputs, and every error path.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::path::Path;

use serde_json::{Value, json};
use support::*;

/// Deterministic pseudo-random floats in [-1, 1), rounded to 6 decimals.
fn inputs(n: usize, seed: u64) -> Vec<i64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) % 2_000_000) as i64 - 1_000_000
        })
        .collect()
}

fn og_body(cid: &str, name: &str, shape: &[usize], fixed: &[i64], decimals: u32) -> Vec<u8> {
    let values: Vec<Value> = fixed
        .iter()
        .enumerate()
        // Alternate JSON integers and decimal strings, as OpenGradient clients send both.
        .map(|(i, v)| {
            if i % 2 == 0 {
                json!({"value": v, "decimals": decimals})
            } else {
                json!({"value": v.to_string(), "decimals": decimals.to_string()})
            }
        })
        .collect();
    let inner =
        json!({"numbers": [{"name": name, "shape": shape, "values": values}], "strings": []});
    json!({"ipfs_hash": cid, "model_inputs": inner.to_string()})
        .to_string()
        .into_bytes()
}

fn ort(model: &Path, feed: Value) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("in.json");
    std::fs::write(&f, feed.to_string()).unwrap();
    let out = std::process::Command::new(python())
        .arg(workspace().join("crates/cli/tests/support/ort_run.py"))
        .arg(model)
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "onnxruntime failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn flatten(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flatten(x, out)),
        Value::Number(n) => out.push(n.as_f64().unwrap()),
        other => panic!("unexpected {other}"),
    }
}

fn assert_close(ours: &[f64], theirs: &[f64], rel: f64) {
    assert_eq!(ours.len(), theirs.len());
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        let tol = rel * b.abs().max(1e-6) + 1e-7;
        assert!(
            (a - b).abs() <= tol,
            "element {i}: ours {a} vs onnxruntime {b}"
        );
    }
}

#[test]
fn node_serves_opengradient_requests_and_rejects_bad_ones() {
    let work = tempfile::tempdir().unwrap();
    let models = work.path().join("models");
    make_models(
        &models,
        &[
            "mlp.onnx",
            "tiny_identity_uint8.onnx",
            "tiny_identity_string.onnx",
        ],
    );
    let store = work.path().join("store");
    let store_s = store.to_str().unwrap();

    // CIDs: `models cid` and `models add` agree, in both CID versions.
    let mlp = models.join("mlp.onnx");
    let mlp_s = mlp.to_str().unwrap();
    let cid = run_ok(&["models", "add", mlp_s, "--store", store_s])
        .trim()
        .to_string();
    assert!(cid.starts_with("Qm"), "{cid}");
    assert_eq!(run_ok(&["models", "cid", mlp_s]).trim(), cid);
    let cid_v1 = run_ok(&["models", "cid", "--cid-version", "1", mlp_s])
        .trim()
        .to_string();
    assert!(cid_v1.starts_with("bafy"), "{cid_v1}");
    let u8_cid = run_ok(&[
        "models",
        "add",
        models.join("tiny_identity_uint8.onnx").to_str().unwrap(),
        "--store",
        store_s,
    ])
    .trim()
    .to_string();
    let str_cid = run_ok(&[
        "models",
        "add",
        models.join("tiny_identity_string.onnx").to_str().unwrap(),
        "--store",
        store_s,
    ])
    .trim()
    .to_string();
    // A hostile "model": random bytes, stored under its own CID.
    let junk = work.path().join("junk.onnx");
    std::fs::write(
        &junk,
        inputs(4096, 9)
            .iter()
            .map(|v| *v as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let junk_cid = run_ok(&["models", "add", junk.to_str().unwrap(), "--store", store_s])
        .trim()
        .to_string();
    let listing = run_ok(&["models", "ls", "--json", "--store", store_s]);
    let listing: Value = serde_json::from_str(&listing).unwrap();
    let mlp_row = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["cid"] == cid.as_str())
        .unwrap();
    assert!(
        mlp_row["signature"]
            .as_str()
            .unwrap()
            .contains("float32[batch,784]"),
        "{mlp_row}"
    );
    let junk_row = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["cid"] == junk_cid.as_str())
        .unwrap();
    assert!(junk_row["load_error"].is_string(), "{junk_row}");

    let node = start_node(&[
        "--tee",
        "none",
        "--store",
        store_s,
        "--max-body-bytes",
        "1MiB",
    ]);
    let addr = node.addr.as_str();
    assert_eq!(http(addr, "GET", "/healthz", b"").status, 200);

    // Happy path, compared with onnxruntime on the very same float32 values.
    let fixed = inputs(2 * 784, 1);
    let body = og_body(&cid, "x", &[2, 784], &fixed, 6);
    let r = http(addr, "POST", "/infer", &body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let j = r.json();
    let sha = hex_sha256(&std::fs::read(&mlp).unwrap());
    assert_eq!(j["model_hash"], sha.as_str());
    let out = &j["output"][0];
    assert_eq!(out["type"], "number");
    assert_eq!(out["shape"], json!([2, 10]));
    let mut ours = Vec::new();
    flatten(&out["result"], &mut ours);
    let as_f32: Vec<f64> = fixed
        .iter()
        .map(|v| f64::from((*v as f64 / 1e6) as f32))
        .collect();
    let reference = ort(
        &mlp,
        json!({"x": {"dtype": "float32", "shape": [2, 784], "data": as_f32}}),
    );
    let name = out["name"].as_str().unwrap();
    let theirs: Vec<f64> = reference[name]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_close(&ours, &theirs, 1e-4);

    // Same request in the older {ipfs_hash, num_inputs, string_inputs} shape.
    let inner: Value = serde_json::from_str(
        serde_json::from_slice::<Value>(&body).unwrap()["model_inputs"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let old = json!({"ipfs_hash": cid, "num_inputs": inner["numbers"], "string_inputs": []});
    let r2 = http(addr, "POST", "/infer", old.to_string().as_bytes());
    assert_eq!(r2.status, 200);
    assert_eq!(r2.json()["output"], j["output"]);

    // Integer and string dtypes.
    let r = http(
        addr,
        "POST",
        "/infer",
        &og_body(&u8_cid, "x", &[3], &[0, 17, 255], 0),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["output"][0]["result"], json!([0, 17, 255]));
    let strings = json!({"ipfs_hash": str_cid, "model_inputs": json!({"strings": [{"name": "x", "shape": [2], "values": ["héllo", ""]}]}).to_string()});
    let r = http(addr, "POST", "/infer", strings.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["output"][0]["type"], "string");
    assert_eq!(r.json()["output"][0]["result"], json!(["héllo", ""]));

    // Every failure is a JSON error with a fitting status.
    let mlp_req = |name: &str, shape: &[usize], n: usize, decimals: u32| {
        og_body(&cid, name, shape, &inputs(n, 2), decimals)
    };
    http(addr, "POST", "/infer", b"{not json").assert_error(400, "malformed_request");
    http(addr, "POST", "/infer", b"{}").assert_error(400, "malformed_request");
    http(addr, "POST", "/infer", &mlp_req("nope", &[1, 784], 784, 6))
        .assert_error(400, "unknown_input");
    http(addr, "POST", "/infer", &mlp_req("x", &[1, 784], 783, 6))
        .assert_error(400, "shape_mismatch");
    http(addr, "POST", "/infer", &mlp_req("x", &[1, 783], 783, 6))
        .assert_error(400, "shape_mismatch");
    http(addr, "POST", "/infer", &mlp_req("x", &[1, 784], 784, 19))
        .assert_error(400, "invalid_decimals");
    let none = json!({"ipfs_hash": cid, "model_inputs": "{}"}).to_string();
    http(addr, "POST", "/infer", none.as_bytes()).assert_error(400, "missing_input");
    http(
        addr,
        "POST",
        "/infer",
        &og_body(&u8_cid, "x", &[1], &[256], 0),
    )
    .assert_error(400, "value_out_of_range");
    http(
        addr,
        "POST",
        "/infer",
        &og_body(&u8_cid, "x", &[1], &[-1], 0),
    )
    .assert_error(400, "value_out_of_range");
    http(
        addr,
        "POST",
        "/infer",
        &og_body("not-a-cid", "x", &[1], &[1], 0),
    )
    .assert_error(400, "invalid_cid");
    let absent = run_ok(&[
        "models",
        "cid",
        junk.to_str().unwrap(),
        "--cid-version",
        "1",
    ]);
    http(
        addr,
        "POST",
        "/infer",
        &og_body(absent.trim(), "x", &[1], &[1], 0),
    )
    .assert_error(404, "model_not_found");
    http(
        addr,
        "POST",
        "/infer",
        &og_body(&junk_cid, "x", &[1], &[1], 0),
    )
    .assert_error(422, "model_load_failed");
    // Twice: the failure is remembered, not re-parsed, and still a 422.
    http(
        addr,
        "POST",
        "/infer",
        &og_body(&junk_cid, "x", &[1], &[1], 0),
    )
    .assert_error(422, "model_load_failed");
    let big = vec![b' '; 2 << 20];
    http(addr, "POST", "/infer", &big).assert_error(413, "body_too_large");
    http(addr, "GET", "/infer", b"").assert_error(405, "method_not_allowed");
    http(addr, "GET", "/nope", b"").assert_error(404, "not_found");

    // Still healthy, and the metrics saw all of it.
    assert_eq!(http(addr, "GET", "/healthz", b"").status, 200);
    let models = http(addr, "GET", "/v1/models", b"").json();
    let loaded = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["cid"] == cid.as_str())
        .unwrap();
    assert_eq!(loaded["loaded"], true);
    assert_eq!(loaded["sha256"], sha.as_str());
    let metrics = String::from_utf8(http(addr, "GET", "/metrics", b"").body).unwrap();
    for needle in [
        "attesta_http_requests_total{route=\"/infer\",status=\"200\"}",
        "attesta_errors_total{code=\"shape_mismatch\"} 2",
        "attesta_model_cache_hits_total",
        "attesta_inference_duration_seconds_bucket",
        "attesta_model_loads_total{result=\"failed\"} 1",
    ] {
        assert!(
            metrics.contains(needle),
            "metrics lack {needle}:\n{metrics}"
        );
    }
}

fn hex_sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
