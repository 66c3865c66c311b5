//! Every error code of docs/PROTOCOL.md's `/infer` table that a request can cause in-process:
//! status and JSON body, on a node served by `Node::build` on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use attesta_content::fetch::GatewayConfig;
use attesta_node::NodeParts;
use attesta_node::fetching::{FetchPlan, FetchPolicy};
use serde_json::json;
use support::*;

#[tokio::test]
async fn codec_and_engine_errors_have_their_codes() {
    let engine = Arc::new(FakeEngine::default());
    let node = start(test_config(), engine.clone()).await;
    let mut spec = FakeSpec::sized(10, 0);
    spec.inputs = vec![
        ("x".into(), "float32".into(), vec![2]),
        ("n".into(), "int8".into(), vec![1]),
        ("s".into(), "string".into(), vec![1]),
    ];
    let cid = add_model(&node.store, &spec.file()).to_string();
    let x = json!({"name": "x", "shape": [2], "values": [{"value": 1, "decimals": 0}, {"value": 2, "decimals": 0}]});
    let n = json!({"name": "n", "shape": [1], "values": [{"value": 5, "decimals": 0}]});
    let send = |numbers: serde_json::Value, strings: serde_json::Value| {
        let inputs = json!({"numbers": numbers, "strings": strings});
        json!({"ipfs_hash": cid, "model_inputs": inputs.to_string()})
    };
    let s = json!([{"name": "s", "shape": [1], "values": ["hi"]}]);

    // The happy path first, so the failures below are about their inputs only.
    let ok = infer(node.addr, &send(json!([x, n]), s.clone())).await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(ok.json()["output"][0]["result"], json!([1.0, 2.0]));

    let cases = [
        (
            send(
                json!([{"name": "x", "shape": [2], "values": [{"value": "1e5", "decimals": 0}, {"value": 2, "decimals": 0}]}, n]),
                s.clone(),
            ),
            "invalid_number",
        ),
        (
            send(
                json!([{"name": "x", "shape": [2], "values": [{"value": 1, "decimals": 19}, {"value": 2, "decimals": 0}]}, n]),
                s.clone(),
            ),
            "invalid_decimals",
        ),
        (
            send(
                json!([x, {"name": "n", "shape": [1], "values": [{"value": 300, "decimals": 0}]}]),
                s.clone(),
            ),
            "value_out_of_range",
        ),
        (
            send(
                json!([{"name": "x", "shape": [3], "values": [{"value": 1, "decimals": 0}, {"value": 2, "decimals": 0}]}, n]),
                s.clone(),
            ),
            "shape_mismatch",
        ),
        (
            send(
                json!([x, n, {"name": "s", "shape": [1], "values": [{"value": 1, "decimals": 0}]}]),
                json!([]),
            ),
            "type_mismatch",
        ),
        (
            send(
                json!([x, n, {"name": "zzz", "shape": [1], "values": [{"value": 1, "decimals": 0}]}]),
                s.clone(),
            ),
            "unknown_input",
        ),
        (send(json!([x]), s.clone()), "missing_input"),
        (send(json!([x, x, n]), s.clone()), "duplicate_input"),
    ];
    for (body, code) in cases {
        infer(node.addr, &body).await.assert_error(400, code);
    }
    infer(
        node.addr,
        &json!({"ipfs_hash": "not-a-cid", "model_inputs": "{}"}),
    )
    .await
    .assert_error(400, "invalid_cid");
    for bad in [&b"{not json"[..], b"{}", b"\xff\xfe"] {
        request(
            node.addr,
            "POST",
            "/infer",
            &[("Content-Type", "application/json")],
            bad,
        )
        .await
        .assert_error(400, "malformed_request");
    }
}

#[tokio::test]
async fn model_errors_have_their_codes() {
    let engine = Arc::new(FakeEngine::default());
    let mut config = test_config();
    config.request_timeout = Duration::from_millis(300);
    let node = start(config, engine.clone()).await;

    // 404: not in the store, no fetching configured.
    let absent = attesta_content::cid_of_bytes(b"absent", attesta_content::Profile::KuboDefaultV0);
    infer(node.addr, &x2(&absent))
        .await
        .assert_error(404, "model_not_found");

    // 422: the file is not a model; remembered, never parsed twice.
    let junk = add_model(&node.store, b"\x08\x07 definitely not a model");
    infer(node.addr, &x2(&junk))
        .await
        .assert_error(422, "model_load_failed");
    infer(node.addr, &x2(&junk))
        .await
        .assert_error(422, "model_load_failed");
    assert_eq!(engine.loads(), 1, "a failed load must be remembered");

    // 400 invalid_input: the engine rejected an input that passed the codec.
    let mut spec = FakeSpec::sized(10, 1);
    spec.run = "invalid".into();
    let cid = add_model(&node.store, &spec.file());
    infer(node.addr, &x2(&cid))
        .await
        .assert_error(400, "invalid_input");

    // 422 inference_failed: the graph failed on declared inputs.
    spec.run = "fail".into();
    let cid = add_model(&node.store, &spec.file());
    infer(node.addr, &x2(&cid))
        .await
        .assert_error(422, "inference_failed");

    // 503 timeout with Retry-After: the per-request deadline.
    let mut slow = FakeSpec::sized(10, 2);
    slow.run_ms = 3_000;
    let cid = add_model(&node.store, &slow.file());
    let t0 = Instant::now();
    let r = infer(node.addr, &x2(&cid)).await;
    r.assert_error(503, "timeout");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        t0.elapsed() < Duration::from_millis(2_500),
        "the deadline did not cut the request: {:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn fetch_policy_errors_have_their_codes() {
    let (_dir, store) = temp_store();
    // Nothing listens on port 1 of 127.0.0.1: every fetch fails to connect.
    let gateways = GatewayConfig {
        urls: vec!["http://127.0.0.1:1".into()],
        retries: 0,
        timeout: Duration::from_secs(5),
        ..GatewayConfig::default()
    };
    let allowed =
        attesta_content::cid_of_bytes(b"allowed", attesta_content::Profile::KuboDefaultV0);
    let other = attesta_content::cid_of_bytes(b"other", attesta_content::Profile::KuboDefaultV0);
    let mut parts = NodeParts::new(Arc::new(FakeEngine::default()), store);
    parts.fetch = Some(FetchPlan {
        gateways,
        policy: FetchPolicy::AllowList([allowed.clone()].into_iter().collect()),
    });
    let node = start_with(test_config(), parts).await;
    infer(node.addr, &x2(&other))
        .await
        .assert_error(403, "model_not_allowed");
    infer(node.addr, &x2(&allowed))
        .await
        .assert_error(502, "model_fetch_failed");
}

#[tokio::test]
async fn transport_level_errors_have_their_codes() {
    let mut config = test_config();
    config.max_body_bytes = 1024;
    config.http.body_timeout = Duration::from_millis(500);
    let node = start(config, Arc::new(FakeEngine::default())).await;
    let json_ct = [("Content-Type", "application/json")];

    // Routes and methods.
    request(node.addr, "GET", "/nope", &[], b"")
        .await
        .assert_error(404, "not_found");
    request(node.addr, "GET", "/infer", &[], b"")
        .await
        .assert_error(405, "method_not_allowed");
    request(node.addr, "DELETE", "/healthz", &[], b"")
        .await
        .assert_error(405, "method_not_allowed");

    // Body limit, with a declared length and with a chunked body that grows past it.
    let big = vec![b' '; 4096];
    request(node.addr, "POST", "/infer", &json_ct, &big)
        .await
        .assert_error(413, "body_too_large");
    let mut chunked = Vec::new();
    for _ in 0..4 {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b' '; 0x400]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    request(
        node.addr,
        "POST",
        "/infer",
        &[
            ("Content-Type", "application/json"),
            ("Transfer-Encoding", "chunked"),
        ],
        &chunked,
    )
    .await
    .assert_error(413, "body_too_large");

    // A broken chunked body: the request's fault, 400 bad_body.
    request(
        node.addr,
        "POST",
        "/infer",
        &[
            ("Content-Type", "application/json"),
            ("Transfer-Encoding", "chunked"),
        ],
        b"zz\r\n{}\r\n0\r\n\r\n",
    )
    .await
    .assert_error(400, "bad_body");

    // A body that stops arriving: 408 body_timeout once the body timeout passes.
    let mut s = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    s.write_all(
        b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"ipfs",
    )
    .await
    .unwrap();
    let t0 = Instant::now();
    let r = read_response(&mut s).await;
    r.assert_error(408, "body_timeout");
    assert!(t0.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn post_routes_require_their_media_type() {
    let node = start(test_config(), Arc::new(FakeEngine::default())).await;
    let absent = attesta_content::cid_of_bytes(b"absent", attesta_content::Profile::KuboDefaultV0);
    let body = x2(&absent).to_string();

    // What a browser may send cross-origin without a preflight: refused before any work.
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
    ] {
        let headers: Vec<(&str, &str)> = ct.map(|c| ("Content-Type", c)).into_iter().collect();
        request(node.addr, "POST", "/infer", &headers, body.as_bytes())
            .await
            .assert_error(415, "unsupported_media_type");
    }
    // JSON with parameters and any letter case is JSON.
    for ct in ["application/json; charset=utf-8", "Application/JSON"] {
        request(
            node.addr,
            "POST",
            "/infer",
            &[("Content-Type", ct)],
            body.as_bytes(),
        )
        .await
        .assert_error(404, "model_not_found");
    }
    // The sealed route takes only sealed envelopes.
    for ct in ["application/json", "text/plain"] {
        request(
            node.addr,
            "POST",
            "/v1/infer",
            &[("Content-Type", ct)],
            b"\x01\x01",
        )
        .await
        .assert_error(415, "unsupported_media_type");
    }
    // With the right type it reaches the handler (this node has no TEE).
    request(
        node.addr,
        "POST",
        "/v1/infer",
        &[("Content-Type", attesta_seal::MEDIA_TYPE)],
        b"\x01\x01",
    )
    .await
    .assert_error(404, "attestation_disabled");
}

#[tokio::test]
async fn a_model_added_to_the_store_while_the_node_runs_is_served() {
    let node = start(test_config(), Arc::new(FakeEngine::default())).await;
    let file = FakeSpec::sized(10, 7).file();
    let cid = attesta_content::cid_of_bytes(&file, attesta_content::Profile::KuboDefaultV0);
    infer(node.addr, &x2(&cid))
        .await
        .assert_error(404, "model_not_found");

    // Another handle on the same directory, as `attesta models add --store DIR` would be.
    let adder = attesta_content::ModelStore::open(
        node.store.dir(),
        attesta_content::StoreOptions::default(),
    )
    .unwrap();
    assert_eq!(add_model(&adder, &file), cid);

    let r = infer(node.addr, &x2(&cid)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let listed = request(node.addr, "GET", "/v1/models", &[], b"")
        .await
        .json();
    assert_eq!(listed["models"][0]["cid"], cid.to_string());
}

#[tokio::test]
async fn attestation_and_sealed_routes_answer_json_errors() {
    let (dir, store) = temp_store();
    let opts = attesta_attester::SelectOptions {
        dev: Some(attesta_attester::dev::DevOptions::new(dir.path()).unwrap()),
        ..Default::default()
    };
    let attester = attesta_attester::select(attesta_attester::TeeKind::Dev, opts).unwrap();
    let mut parts = NodeParts::new(Arc::new(FakeEngine::default()), store);
    parts.attester = Some(Arc::from(attester));
    let mut config = test_config();
    config.max_body_bytes = 1024;
    let node = start_with(config, parts).await;

    // Lengths are stated correctly: two hex characters per byte.
    let r = request(node.addr, "GET", "/v1/attestation?nonce=abcd", &[], b"").await;
    r.assert_error(400, "invalid_nonce");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("16..=64 bytes (32..=128 hex characters)"),
        "{msg}"
    );
    let r = request(
        node.addr,
        "GET",
        "/enclave/attestation?nonce=abcd",
        &[],
        b"",
    )
    .await;
    r.assert_error(400, "invalid_nonce");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("20 bytes (40 hex characters)"), "{msg}");

    // A query that does not parse is a JSON error too, not plain text.
    let n = "00".repeat(20);
    for path in ["/v1/attestation", "/enclave/attestation"] {
        request(
            node.addr,
            "GET",
            &format!("{path}?nonce={n}&nonce={n}"),
            &[],
            b"",
        )
        .await
        .assert_error(400, "invalid_nonce");
    }
    // And the happy path still works.
    let ok = request(
        node.addr,
        "GET",
        &format!("/enclave/attestation?nonce={n}"),
        &[],
        b"",
    )
    .await;
    assert_eq!(ok.status, 200);

    // The body limit holds on the sealed route as well.
    request(
        node.addr,
        "POST",
        "/v1/infer",
        &[("Content-Type", attesta_seal::MEDIA_TYPE)],
        &vec![1u8; 4096],
    )
    .await
    .assert_error(413, "body_too_large");
}
