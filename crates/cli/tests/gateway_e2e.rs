//! The validator as a gateway, with real processes: a devnet (honest nodes and one that
//! answers wrongly) behind the validator's gateway; sealed user requests through it, all
//! answered correctly by honest, correctly measured nodes; a logging relay in front of the
//! gateway sees no plaintext; a node killed mid-run is routed around with no request lost
//! or answered twice; the plaintext-compatible `/infer` answers with a proof bundle that
//! `attesta verify receipt` accepts; and a client over its rate limit gets 429.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use attesta_client::{Client, ClientConfig, GatewayTransport};
use attesta_evidence::{Policy, PolicyFile, TrustedRoot, danger};
use serde_json::{Value, json};
use support::*;

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The client's policy: the devnet's dev root and releases file, no relaxation beyond the
/// dev root (a node declaring a fault would be refused).
fn policy(described: &Value) -> Policy {
    let registry = std::fs::read_to_string(described["registry"].as_str().unwrap()).unwrap();
    let root = std::fs::read_to_string(described["dev_root"].as_str().unwrap()).unwrap();
    let policy = PolicyFile::parse(&registry)
        .unwrap()
        .apply(Policy::aws_nitro().unwrap());
    danger::accept_dev_root(
        policy,
        TrustedRoot::from_pem("dev (insecure)", &root).unwrap(),
    )
}

/// Inputs for the devnet model `cid` as a node declares it, with distinctive values.
fn inputs_for(node_addr: &str, cid: &str) -> Value {
    // Any request loads the model (this one is refused for its missing input), so that
    // the listing shows its signature whichever models the rounds happened to use.
    let body = serde_json::to_vec(&json!({"ipfs_hash": cid, "model_inputs": {}})).unwrap();
    http(node_addr, "POST", "/infer", &body);
    let models = http(node_addr, "GET", "/v1/models", b"").json();
    let model = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["cid"] == cid)
        .unwrap_or_else(|| panic!("{cid} not listed: {models}"));
    // A loaded model lists signatures such as `x: float32[batch, 16]`.
    let sig = model["inputs"][0]
        .as_str()
        .unwrap_or_else(|| panic!("{model}"));
    let (name, rest) = sig.split_once(':').unwrap();
    let dims = rest.split_once('[').unwrap().1.trim_end_matches(']');
    let width: usize = dims.rsplit(',').next().unwrap().trim().parse().unwrap();
    let values: Vec<Value> = (0..width)
        .map(|i| json!({"value": 7_345_123 + i as i64, "decimals": 6}))
        .collect();
    json!({"numbers": [{"name": name.trim(), "shape": [1, width], "values": values}]})
}

/// Starts `attesta devnet ARGS --dir DIR` and waits for its devnet.json; the process
/// (with every process it started) stops when the returned guard drops, however the test ends.
fn start_devnet(dir: &Path, args: &[&str]) -> (DevnetProcess, Value) {
    let child = attesta()
        .arg("devnet")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let devnet = DevnetProcess(child);
    let described_path = dir.join("devnet.json");
    assert!(
        wait_until(Duration::from_secs(120), || described_path.exists()),
        "devnet.json never appeared"
    );
    (devnet, read_json(&described_path).unwrap())
}

/// Whether, within `secs`, the gateway's board shows at least `n` nodes with a score.
fn scored(gateway: &str, n: usize, secs: u64) -> bool {
    wait_until(Duration::from_secs(secs), || {
        let board = http(host(gateway), "GET", "/v1/nodes", b"").json();
        board["nodes"].as_array().is_some_and(|ns| {
            ns.iter()
                .filter(|n| n["score"].as_f64().unwrap_or(0.0) > 0.0)
                .count()
                >= n
        })
    })
}

fn host(url: &str) -> &str {
    url.trim_start_matches("http://")
}

#[test]
fn sealed_and_plaintext_requests_go_through_the_gateway_to_honest_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let (_devnet, described) = start_devnet(
        dir.path(),
        &["--nodes", "3", "--faulty", "1", "--interval", "300ms"],
    );
    let gateway = described["gateway"].as_str().unwrap().to_owned();
    let nodes = described["nodes"].as_array().unwrap().clone();
    let honest: BTreeSet<String> = nodes
        .iter()
        .filter(|n| n["behaviour"] == "honest")
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(honest.len(), 2, "{described}");
    // Wait until a round has scored the honest nodes.
    assert!(scored(&gateway, 2, 60), "no round scored the honest nodes");
    let cid = described["models"][0].as_str().unwrap().to_owned();
    let first_honest = nodes.iter().find(|n| n["behaviour"] == "honest").unwrap();
    let inputs = inputs_for(host(first_honest["url"].as_str().unwrap()), &cid);
    // The reference answer: an honest node's plaintext /infer.
    let reference = http(
        host(first_honest["url"].as_str().unwrap()),
        "POST",
        "/infer",
        &serde_json::to_vec(&json!({"ipfs_hash": cid, "model_inputs": inputs})).unwrap(),
    )
    .json();
    let expected_output = reference["output"].clone();
    assert!(expected_output.is_array(), "{reference}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let policy = policy(&described);
    let inputs_text = inputs.to_string();

    // 1. Sealed requests through a logging relay in front of the gateway.
    let (relay, seen) = logging_relay(host(&gateway).to_owned());
    let transport = Arc::new(
        GatewayTransport::new(&format!("http://{relay}"), Duration::from_secs(10))
            .unwrap()
            .with_model(&cid),
    );
    let client =
        Client::with_transport(transport.clone(), ClientConfig::new(policy.clone())).unwrap();
    let mut routed: BTreeMap<String, usize> = BTreeMap::new();
    rt.block_on(async {
        for i in 0..40 {
            if i % 10 == 0 {
                client.forget_node(); // a fresh route now and then
            }
            let out = client.infer(&cid, &inputs_text).await.unwrap();
            let got: Value = serde_json::from_str(out.output.get()).unwrap();
            assert_eq!(got, expected_output, "request {i}");
            *routed.entry(transport.node().unwrap()).or_default() += 1;
        }
    });
    assert!(
        routed.keys().all(|id| honest.contains(id)),
        "routed to {routed:?}"
    );
    let log = seen.lock().unwrap().clone();
    assert!(!log.is_empty());
    // The distinctive input values and the output never cross the relay in the clear.
    assert!(
        !contains(&log, b"7345123"),
        "an input value crossed the relay in plaintext"
    );
    let out_text = expected_output.to_string();
    let probe = out_text.get(..out_text.len().min(24)).unwrap();
    assert!(
        !contains(&log, probe.as_bytes()),
        "the output crossed the relay in plaintext"
    );

    // 2. Many sealed requests straight to the gateway; the routed node is killed midway.
    let direct = Arc::new(
        GatewayTransport::new(&gateway, Duration::from_secs(10))
            .unwrap()
            .with_model(&cid),
    );
    let client = Client::with_transport(direct.clone(), ClientConfig::new(policy)).unwrap();
    let total = 1000;
    let mut answered = 0;
    let mut killed = None;
    let mut nonces = BTreeSet::new();
    rt.block_on(async {
        for i in 0..total {
            if i == total / 2 {
                let victim = direct.node().unwrap();
                let pid = nodes
                    .iter()
                    .find(|n| n["id"] == victim.as_str())
                    .and_then(|n| n["pid"].as_u64())
                    .unwrap();
                // The devnet started this node for this test; stop it mid-run.
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
                killed = Some(victim);
            }
            let mut tries = 0;
            let out = loop {
                tries += 1;
                match client.infer(&cid, &inputs_text).await {
                    Ok(o) => break o,
                    Err(e) if tries < 4 => {
                        // The gateway names the dead node's failure; route again.
                        assert!(
                            matches!(
                                e.code(),
                                "node_unreachable"
                                    | "node_timeout"
                                    | "transport"
                                    | "timeout"
                                    | "no_node_available"
                            ),
                            "request {i}: {e}"
                        );
                        client.forget_node();
                    }
                    Err(e) => panic!("request {i} lost: {e}"),
                }
            };
            let got: Value = serde_json::from_str(out.output.get()).unwrap();
            assert_eq!(got, expected_output, "request {i}");
            // One answer per request: every receipt is for a distinct request.
            assert!(
                nonces.insert(out.request.clone()),
                "request {i} answered twice"
            );
            assert!(honest.contains(&direct.node().unwrap()));
            answered += 1;
        }
    });
    assert_eq!(answered, total);
    let killed = killed.unwrap();
    assert_ne!(
        direct.node().unwrap(),
        killed,
        "still routed to the dead node"
    );

    // 3. Plaintext-compatible /infer: the gateway attests, seals and checks the receipt.
    let body = serde_json::to_vec(&json!({"ipfs_hash": cid, "model_inputs": inputs})).unwrap();
    let answer = http(host(&gateway), "POST", "/infer", &body);
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let answer = answer.json();
    assert_eq!(answer["output"], expected_output);
    assert!(honest.contains(answer["node"].as_str().unwrap()));
    assert_ne!(answer["node"].as_str().unwrap(), killed);
    let proof = dir.path().join("proof.json");
    std::fs::write(&proof, serde_json::to_vec(&answer["proof"]).unwrap()).unwrap();
    let (code, out, err) = run_status(&[
        "verify",
        "receipt",
        proof.to_str().unwrap(),
        "--dev-root",
        described["dev_root"].as_str().unwrap(),
        "--measurements",
        described["registry"].as_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");

    // 4. The dashboard, in a real headless browser: every node with its verdict (dev TEEs
    //    in red), live updates after a round, plots with points, gateway traffic, and no
    //    console error, failed request or exception.
    let shot = dir.path().join("dashboard.png");
    let out = std::process::Command::new(python())
        .arg(workspace().join("tests/dashboard/check.py"))
        .arg(format!("{gateway}/"))
        .arg(nodes.len().to_string())
        .arg(&shot)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dashboard check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["problems"], json!([]), "{seen:#}");
    let rows = seen["rows"].as_array().unwrap();
    assert_eq!(rows.len(), nodes.len(), "{seen:#}");
    let killed_row = rows.iter().find(|r| r["id"] == killed.as_str()).unwrap();
    for r in rows.iter().filter(|r| r["id"] != killed.as_str()) {
        // Every live node here runs the dev TEE: shown, and shown insecure, in red.
        assert_eq!(r["verdict"], "verdict insecure", "{seen:#}");
        assert!(r["platform"].as_str().unwrap().contains("insecure"));
        assert_eq!(r["color"], "rgb(207, 34, 46)", "{seen:#}");
    }
    assert!(killed_row["verdict"].is_string());
    assert!(seen["round_after"].as_u64() > seen["round_before"].as_u64());
    let points = seen["score_points"].as_array().unwrap();
    assert_eq!(
        points.len(),
        nodes.len(),
        "one score line per node: {seen:#}"
    );
    assert!(points.iter().all(|p| p.as_u64().unwrap() >= 2), "{seen:#}");
    assert!(
        seen["gateway"].as_str().unwrap().contains("requests: "),
        "{seen:#}"
    );
    // The screenshot is a real rendering of a full page.
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert!(width >= 1000 && height >= 600, "{width}x{height}");

    // 5. Bad requests get typed JSON errors, not 5xx.
    let r = http(host(&gateway), "GET", "/v1/route?nonce=zz", b"");
    r.assert_error(400, "invalid_nonce");
    let r = http_typed(
        host(&gateway),
        "POST",
        "/v1/nodes/nobody/infer",
        "application/vnd.attesta.sealed",
        b"x",
    );
    r.assert_error(404, "unknown_node");
    let r = http(host(&gateway), "POST", "/infer", b"{\"ipfs_hash\": 1}");
    r.assert_error(400, "invalid_body");
}

/// Language models through the gateway in sealed mode: `attesta chat --gateway` routes to a
/// verified node, the gateway relays the sealed stream as it arrives (a logging relay in
/// front of it sees neither prompt nor answer), the receipt verifies, and the greedy answer
/// is the one the node gives directly.
#[test]
fn sealed_chats_stream_through_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = attesta_test_support::llm::test_gguf("tiny-spm-q8_0");
    let gguf = gguf.to_str().unwrap();
    let (_devnet, described) = start_devnet(
        dir.path(),
        &[
            "--nodes",
            "2",
            "--faulty",
            "0",
            "--interval",
            "300ms",
            "--llm",
            gguf,
        ],
    );
    let gateway = described["gateway"].as_str().unwrap().to_owned();
    let cid = described["llm"].as_str().unwrap().to_owned();
    assert!(scored(&gateway, 2, 90), "no round scored the nodes");
    let (relay, seen) = logging_relay(host(&gateway).to_owned());
    let secret = "GATEWAY-SECRET-PROMPT-9e41";
    let chat = |target: &[&str]| {
        let mut args = vec!["chat"];
        args.extend_from_slice(target);
        args.extend_from_slice(&[
            "--model",
            &cid,
            "--dev-root",
            described["dev_root"].as_str().unwrap(),
            "--measurements",
            described["registry"].as_str().unwrap(),
            "--max-tokens",
            "12",
            "--stream",
            secret,
        ]);
        run_status(&args)
    };
    let via_gateway = format!("http://{relay}");
    let (code, out, err) = chat(&["--gateway", &via_gateway]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("receipt verified"), "{err}");
    let log = seen.lock().unwrap().clone();
    assert!(contains(&log, b"/v1/chat/completions"), "not relayed");
    assert!(
        !contains(&log, secret.as_bytes()),
        "the relay saw the prompt"
    );
    let answer = out.trim_end_matches('\n');
    if let Some(word) = answer
        .split_whitespace()
        .max_by_key(|w| w.len())
        .filter(|w| w.len() >= 4)
    {
        assert!(!contains(&log, word.as_bytes()), "the relay saw the answer");
    }
    // Greedy: the node answers the same directly.
    let node = described["nodes"][0]["url"].as_str().unwrap().to_owned();
    let (code, direct, err) = chat(&["--node", &node]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(direct, out);
}

/// The official `openai` Python client, unchanged, against the gateway's plaintext-
/// compatible OpenAI routes: model listing, chats and completions (whole and streamed)
/// routed to verified nodes, each answer's `attesta` proof accepted by
/// `attesta verify receipt` (with the exact output the receipt digests), an unknown model
/// as `openai.NotFoundError`, and a node's context-overflow verdict as a 400.
#[test]
fn the_openai_client_works_unchanged_against_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = attesta_test_support::llm::test_gguf("tiny-spm-q8_0");
    let (_devnet, described) = start_devnet(
        dir.path(),
        &[
            "--nodes",
            "2",
            "--faulty",
            "0",
            "--interval",
            "300ms",
            "--llm",
            gguf.to_str().unwrap(),
        ],
    );
    let gateway = described["gateway"].as_str().unwrap().to_owned();
    let cid = described["llm"].as_str().unwrap().to_owned();
    let node_ids: BTreeSet<String> = described["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(scored(&gateway, 2, 90), "no round scored the nodes");
    // The board lists the model once a round verified a node's answer for it.
    assert!(
        wait_until(Duration::from_secs(30), || {
            let models = http(host(&gateway), "GET", "/v1/models", b"").json();
            models["data"][0]["id"] == cid.as_str()
        }),
        "the gateway never listed {cid}"
    );
    let proofs = dir.path().join("proofs");
    std::fs::create_dir_all(&proofs).unwrap();
    let out = std::process::Command::new(attesta_test_support::llm::llm_python())
        .arg(workspace().join("tests/llm/openai_gateway.py"))
        .arg(&gateway)
        .arg(&cid)
        .arg(&proofs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    let models = seen["models"].as_array().unwrap();
    assert_eq!(models.len(), 1, "{seen:#}");
    assert_eq!(models[0]["id"], cid.as_str());
    assert_eq!(models[0]["context_length"], 512);
    assert_eq!(seen["chat"]["object"], "chat.completion", "{seen:#}");
    assert!(
        !seen["chat"]["content"].as_str().unwrap().is_empty(),
        "{seen:#}"
    );
    // Greedy: the stream adds up to the whole answer.
    assert_eq!(seen["chat_stream"]["content"], seen["chat"]["content"]);
    assert!(seen["chat_stream"]["chunks"].as_u64().unwrap() >= 2);
    assert_eq!(seen["completion"]["object"], "text_completion");
    assert_eq!(
        seen["completion_stream"]["text"],
        seen["completion"]["text"]
    );
    assert_eq!(
        seen["unknown_model"],
        json!({"status": 404, "code": "model_not_found", "param": "model"})
    );
    assert_eq!(
        seen["too_long"],
        json!({"status": 400, "code": "context_length_exceeded"})
    );
    for call in ["chat", "chat_stream", "completion", "completion_stream"] {
        let attesta = &seen[call]["attesta"];
        assert!(
            node_ids.contains(attesta["node"].as_str().unwrap()),
            "{call}: {seen:#}"
        );
        assert_eq!(attesta["model_hash"].as_str().unwrap().len(), 64);
        let (code, out, err) = run_status(&[
            "verify",
            "receipt",
            proofs.join(format!("{call}.proof.json")).to_str().unwrap(),
            "--dev-root",
            described["dev_root"].as_str().unwrap(),
            "--measurements",
            described["registry"].as_str().unwrap(),
            "--output",
            proofs.join(format!("{call}.output.json")).to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{call}: {out}{err}");
    }
    // A proof does not vouch for another answer's output.
    let (code, _, _) = run_status(&[
        "verify",
        "receipt",
        proofs.join("chat.proof.json").to_str().unwrap(),
        "--dev-root",
        described["dev_root"].as_str().unwrap(),
        "--measurements",
        described["registry"].as_str().unwrap(),
        "--output",
        proofs.join("completion.output.json").to_str().unwrap(),
    ]);
    assert_ne!(code, 0, "a proof verified another answer's output");
}
