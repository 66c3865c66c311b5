//! Interop with the real Python SDK (bittensor 10.5.0, in `.venv-bittensor`, located by
//! `ATTESTA_BITTENSOR_PYTHON`): the SDK's dendrite calls `attesta axon` in front of a real
//! dev-TEE node (`TeeAttestation`, `TeeInference` and `TeeCompletion` counted as success by
//! Python, the sealed answer and the sealed stream opened by the sender only), the recorded
//! negative cases get the Rust axon's refusals, the Rust dendrite calls the SDK's axon, and
//! a `--bittensor --llm` devnet scores honest nodes on LLM challenges through their axons. The axon's hotkey is read from a wallet the Python
//! wallet wrote.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use attesta_bittensor::{AxonTarget, Dendrite, Hotkey};
use attesta_seal::{PublicKeySet, RequestPlaintext, seal_request};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use support::*;

const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";

/// The SDK's interpreter (scripts/setup-venv makes it; missing is a failure, not a skip).
fn bt_python() -> Command {
    let p = attesta_test_support::bittensor_python();
    let mut c = Command::new(p);
    c.arg(workspace().join("tests/bittensor/interop.py"))
        .env("PYTHONPATH", workspace().join("python"));
    c
}

fn py_ok(args: &[&str]) -> String {
    let out = bt_python().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "interop.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn start_axon(node: &str, wallet: &Path, extra: &[&str]) -> Proc {
    let mut cmd = attesta();
    cmd.args([
        "axon",
        "--node",
        &format!("http://{node}"),
        "--listen",
        "127.0.0.1:0",
    ])
    .args(["--wallet-path", wallet.to_str().unwrap()])
    .args(["--wallet-name", "miner", "--wallet-hotkey", "default"])
    .args(extra);
    let (mut p, lines) = spawn_reporting(cmd, "attesta axon", 1);
    p.addr = lines[0]
        .strip_prefix("listening on ")
        .unwrap()
        .trim()
        .to_owned();
    p
}

#[test]
fn python_sdk_dendrite_calls_the_rust_axon() {
    let work = tempfile::tempdir().unwrap();
    let w = |p: &str| work.path().join(p);
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    make_models(&w("models"), &["mlp.onnx"]);
    let store = s(&w("store"));
    let cid = run_ok(&[
        "models",
        "add",
        &s(&w("models/mlp.onnx")),
        "--store",
        &store,
    ])
    .trim()
    .to_owned();
    let gguf = attesta_test_support::llm::test_gguf("tiny-spm-q8_0");
    let llm_cid = run_ok(&["models", "add", gguf.to_str().unwrap(), "--store", &store])
        .trim()
        .to_owned();
    let node = start_node(&[
        "--tee",
        "dev",
        "--data-dir",
        &s(&w("data")),
        "--store",
        &store,
    ]);
    assert_eq!(py_ok(&["wallet", &s(&w("wallets"))]).trim(), ALICE);
    let axon = start_axon(&node.addr, &w("wallets"), &["--allow-caller", BOB]);

    // Seal a request to the node's key set, as a validator would (the axon never sees it open).
    let nonce = "ab".repeat(32);
    let att = http(
        &node.addr,
        "GET",
        &format!("/v1/attestation?nonce={nonce}"),
        b"",
    )
    .json();
    let keyset: PublicKeySet = serde_json::from_value(att["keyset"].clone()).unwrap();
    let inputs = json!({"numbers": [{"name": "x", "shape": [1, 784], "values": (0..784).map(|i| json!({"value": (i * 37 % 1000) - 500, "decimals": 3})).collect::<Vec<_>>()}]});
    let request = RequestPlaintext {
        model: cid,
        inputs: serde_json::value::to_raw_value(&inputs).unwrap(),
        request_id: "interop".into(),
        issued_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        nonce: None,
    };
    let rng = attesta_client::system_rng();
    let (envelope, ctx) = {
        let mut guard = rng.lock().unwrap();
        let mut r: &mut dyn attesta_client::SharedRng = &mut *guard;
        seal_request(&keyset, &request, &mut r).unwrap()
    };
    std::fs::write(w("envelope.b64"), B64.encode(&envelope)).unwrap();
    // And a greedy completion, sealed the same way, for `TeeCompletion`.
    let body =
        json!({"model": llm_cid, "prompt": "Once upon a time", "max_tokens": 6, "temperature": 0});
    let completion = RequestPlaintext {
        model: llm_cid.clone(),
        inputs: serde_json::value::to_raw_value(&body).unwrap(),
        request_id: "interop-completion".into(),
        ..request.clone()
    };
    let (completion_envelope, completion_ctx) = {
        let mut guard = rng.lock().unwrap();
        let mut r: &mut dyn attesta_client::SharedRng = &mut *guard;
        seal_request(&keyset, &completion, &mut r).unwrap()
    };
    std::fs::write(w("completion.b64"), B64.encode(&completion_envelope)).unwrap();

    py_ok(&[
        "dendrite",
        &axon.addr,
        ALICE,
        &nonce,
        &s(&w("envelope.b64")),
        &s(&w("completion.b64")),
        &s(&w("out.json")),
    ]);
    let out: Value = serde_json::from_slice(&std::fs::read(w("out.json")).unwrap()).unwrap();

    let a = &out["attestation"];
    assert_eq!(
        (a["is_success"].as_bool(), a["status_code"].as_i64()),
        (Some(true), Some(200)),
        "{a}"
    );
    assert_eq!(a["platform"], "dev");
    assert_eq!(a["keyset"], att["keyset"], "the node's key set, relayed");
    assert!(
        !B64.decode(a["evidence"].as_str().unwrap())
            .unwrap()
            .is_empty()
    );

    let i = &out["inference"];
    assert_eq!(
        (i["is_success"].as_bool(), i["status_code"].as_i64()),
        (Some(true), Some(200)),
        "{i}"
    );
    let sealed = B64.decode(i["sealed_response"].as_str().unwrap()).unwrap();
    let opened: Value = serde_json::from_slice(&ctx.open_response(&sealed).unwrap()).unwrap();
    assert!(
        opened["output"].is_array(),
        "the sender opens the node's answer: {opened}"
    );

    // The node's whole sealed stream came back in the SDK's synapse, and the sender opens it.
    let c = &out["completion"];
    assert_eq!(
        (c["is_success"].as_bool(), c["status_code"].as_i64()),
        (Some(true), Some(200)),
        "{c}"
    );
    assert!(c["sealed_response"].is_null(), "{c}");
    let stream = B64.decode(c["sealed_stream"].as_str().unwrap()).unwrap();
    let mut opener = completion_ctx.stream_opener();
    let chunks = opener.feed(&stream).unwrap();
    let text: String = chunks
        .iter()
        .filter_map(|ch| match ch {
            attesta_seal::Chunk::Data(d) => {
                let v: Value = serde_json::from_slice(d).unwrap();
                v["choices"][0]["text"].as_str().map(str::to_owned)
            }
            _ => None,
        })
        .collect();
    assert!(
        chunks
            .iter()
            .any(|ch| matches!(ch, attesta_seal::Chunk::Data(_))),
        "no data chunk opened"
    );
    assert!(!text.is_empty(), "the opened stream carries the completion");

    let b = &out["blacklisted"];
    assert_eq!(
        (b["is_success"].as_bool(), b["status_code"].as_i64()),
        (Some(false), Some(403)),
        "{b}"
    );

    let n = &out["negative"];
    for (case, status, code) in [
        ("first", 200, None),
        ("replay", 401, Some("replayed_nonce")),
        ("stale_nonce", 401, Some("stale_nonce")),
        ("missing_signature", 401, Some("missing_signature")),
        ("wrong_signature", 401, Some("bad_signature")),
        ("body_hash_mismatch", 400, Some("body_hash_mismatch")),
        ("blacklisted_hotkey", 403, Some("caller_not_allowed")),
    ] {
        let c = &n[case];
        assert_eq!(c["status"].as_u64(), Some(status), "{case}: {c}");
        assert_eq!(c["code"].as_str(), code, "{case}: {c}");
        assert_eq!(
            c["axon_status"].as_str(),
            Some(status.to_string().as_str()),
            "{case}: {c}"
        );
    }
}

#[test]
fn rust_dendrite_calls_the_python_sdk_axon() {
    let work = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cmd = bt_python();
    cmd.args(["axon", work.path().to_str().unwrap(), &port.to_string()]);
    let (_axon, lines) = spawn_reporting(cmd, "the SDK's axon", 1);
    assert_eq!(lines[0].trim(), format!("ready {ALICE}"));
    let target = AxonTarget {
        url: format!("http://127.0.0.1:{port}"),
        hotkey: Hotkey::from_dev_uri("//Alice").unwrap().account(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let d = Dendrite::new(
            Hotkey::from_dev_uri("//Bob").unwrap(),
            Duration::from_secs(30),
        )
        .unwrap();
        // The SDK's axon may take a moment to accept connections after printing ready.
        let nonce = "cd".repeat(16);
        let mut att = d.attestation(&target, &nonce).await;
        for _ in 0..50 {
            if att.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            att = d.attestation(&target, &nonce).await;
        }
        let att = att.unwrap();
        assert_eq!(att.platform.as_deref(), Some("dev"));
        assert_eq!(
            att.evidence.unwrap(),
            B64.encode(format!("evidence-for-{nonce}"))
        );
        assert_eq!(att.keyset.unwrap()["hpke_pk"], "11".repeat(32));
        // Twice more: every call signs a fresh nonce under a new uuid.
        for payload in [&b"sealed bytes"[..], b"more"] {
            let back = d.inference(&target, payload).await.unwrap();
            let mut want = payload.to_vec();
            want.reverse();
            assert_eq!(back, want);
        }
        // Addressed to the wrong hotkey, the SDK's axon refuses our signature.
        let wrong = AxonTarget {
            hotkey: Hotkey::from_dev_uri("//Charlie").unwrap().account(),
            ..target.clone()
        };
        match d.attestation(&wrong, &nonce).await {
            Err(attesta_bittensor::DendriteError::Refused { status: 401, .. }) => {}
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn axon_refuses_to_start_without_a_caller_policy_or_with_an_encrypted_hotkey() {
    let out = attesta()
        .args([
            "axon",
            "--node",
            "http://127.0.0.1:9",
            "--hotkey-uri",
            "//Alice",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no caller policy"));
    let work = tempfile::tempdir().unwrap();
    let hotkeys = work.path().join("miner/hotkeys");
    std::fs::create_dir_all(&hotkeys).unwrap();
    std::fs::write(hotkeys.join("default"), b"$NACL\x01ciphertext").unwrap();
    let out = attesta()
        .args(["axon", "--node", "http://127.0.0.1:9", "--allow-any-caller"])
        .args([
            "--wallet-path",
            work.path().to_str().unwrap(),
            "--wallet-name",
            "miner",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("encrypted"), "{err}");
}

#[test]
fn devnet_bittensor_reaches_every_node_through_its_axon() {
    let dir = tempfile::tempdir().unwrap();
    // With a language model: every round also sends each node a sealed LLM challenge
    // through its axon (`TeeCompletion`), so the honest nodes' weights need those to pass.
    let gguf = attesta_test_support::llm::test_gguf("tiny-spm-q8_0");
    let out = attesta()
        .args(["devnet", "--nodes", "3", "--faulty", "1", "--bittensor"])
        .arg("--llm")
        .arg(&gguf)
        .args([
            "--rounds",
            "3",
            "--json",
            "--interval",
            "200ms",
            "--timeout",
            "3s",
        ])
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "devnet failed: {stderr}");
    let state: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    // Every node is listed behind an axon, with the axon's hotkey.
    let nodes: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("nodes.json")).unwrap()).unwrap();
    for n in nodes.as_array().unwrap() {
        assert_eq!(n["via"], "axon", "{nodes:#}");
        assert!(n["hotkey"].as_str().unwrap().starts_with('5'));
    }
    let list = state["nodes"].as_array().unwrap();
    // Discovered through the chain stand-in's metagraph: the validator names nodes by the
    // hotkeys registered there (the node file names them node-<i> and is not read).
    let mut registered: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["hotkey"].as_str().unwrap())
        .collect();
    let mut discovered: Vec<&str> = list.iter().map(|n| n["id"].as_str().unwrap()).collect();
    registered.sort_unstable();
    discovered.sort_unstable();
    assert_eq!(discovered, registered, "{state:#}");
    let honest: Vec<&Value> = list.iter().filter(|n| n["behaviour"] == "honest").collect();
    assert_eq!(honest.len(), 2, "{state:#}");
    for n in honest {
        assert!(n["weight"].as_f64().unwrap() > 0.0, "{state:#}");
        // Every challenge answered right, the LLM ones through the axon included.
        assert_eq!(
            (n["wrong"].as_u64(), n["other_failures"].as_u64()),
            (Some(0), Some(0)),
            "{state:#}"
        );
    }
    let liar = list
        .iter()
        .find(|n| n["behaviour"] == "wrong-output")
        .unwrap();
    assert_eq!(
        (liar["weight"].as_f64(), liar["weight_u16"].as_u64()),
        (Some(0.0), Some(0)),
        "{state:#}"
    );
    // The weights went to the stand-in as commit-reveal v4 commits (its default), recorded
    // beside the weights file.
    let record = std::fs::read_to_string(dir.path().join("validator/weights.chain.jsonl"))
        .unwrap_or_else(|e| panic!("no chain weights record: {e}: {stderr}"));
    let lines: Vec<Value> = record
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.iter().any(|l| l["record"]["action"] == "committed"),
        "{record}"
    );
    // The devnet exits after its third round, taking the stand-in chain with it; a round the
    // validator had already started by then may record "chain connection closed". Every
    // requested round must have gone through.
    assert!(
        lines
            .iter()
            .filter(|l| l["round"].as_u64().is_some_and(|r| r <= 3))
            .all(|l| l.get("error").is_none()),
        "{record}"
    );
}
