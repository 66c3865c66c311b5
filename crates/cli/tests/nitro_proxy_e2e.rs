//! The Nitro deployment path end to end over real processes, with Unix sockets standing in
//! for vsock (this kernel has no local vsock transport; the node and the proxy run the same
//! listener/stream code for both): a dev-TEE node listens only on a socket, `attesta proxy`
//! relays clients' TCP to it and the node's gateway fetches back out to TCP. Both attestation
//! endpoints, `/infer` with a model fetched through the outbound route, and a sealed
//! `/v1/infer` work through it; a logging relay in front of the proxy never sees the sealed
//! plaintext; restarting the proxy keeps the node's key set and service.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

use std::sync::{Arc, Mutex};

use attesta_content::Profile;
use serde_json::{Value, json};
use support::*;

/// A trustless gateway stand-in serving blocks with `?format=raw` (CAR requests get 406, so
/// the node falls back to block requests); returns its address and the paths requested.
fn raw_gateway(blocks: HashMap<String, Vec<u8>>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let blocks = Arc::new(blocks);
    std::thread::spawn(move || {
        for conn in listener.incoming().take(512) {
            let Ok(mut s) = conn else { continue };
            let blocks = blocks.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                log.lock().unwrap().push(path.clone());
                let cid = path
                    .strip_prefix("/ipfs/")
                    .and_then(|p| p.split('?').next())
                    .unwrap_or("");
                let (status, ctype, body) = match blocks.get(cid) {
                    _ if !path.contains("format=raw") => {
                        ("406 Not Acceptable", "text/plain", vec![])
                    }
                    Some(b) => ("200 OK", "application/vnd.ipld.raw", b.clone()),
                    None => ("404 Not Found", "text/plain", vec![]),
                };
                let _ = s.write_all(
                    format!(
                        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                let _ = s.write_all(&body);
            });
        }
    });
    (addr, seen)
}

/// Imports `file` as `ipfs add` would and adds its blocks to `blocks`; returns the CID.
fn import(file: &Path, blocks: &mut HashMap<String, Vec<u8>>) -> String {
    let data = std::fs::read(file).unwrap();
    let (root, list) =
        attesta_content::import_reader(&data[..], Profile::KuboDefaultV0, Vec::new()).unwrap();
    blocks.extend(list.into_iter().map(|(c, b)| (c.to_string(), b)));
    root.to_string()
}

/// Starts `attesta proxy` with an inbound route to `node_sock` and an outbound route from
/// `gw_sock` to `gateway`; returns it and the client-facing TCP address.
fn start_proxy(node_sock: &str, gw_sock: &str, gateway: &str) -> (Proc, String) {
    let inbound = format!("127.0.0.1:0=unix:{node_sock}");
    let outbound = format!("unix:{gw_sock}={gateway}");
    let mut cmd = attesta();
    cmd.args([
        "proxy",
        "--inbound",
        &inbound,
        "--outbound",
        &outbound,
        "--idle-timeout",
        "30s",
    ]);
    let (mut proxy, lines) = spawn_reporting(cmd, "attesta proxy", 2);
    let tcp = lines[0]
        .strip_prefix("listening on ")
        .and_then(|l| l.split(" -> ").next())
        .expect("first line names the inbound address")
        .to_owned();
    assert_eq!(
        lines[1],
        format!("listening on unix:{gw_sock} -> {gateway}")
    );
    proxy.addr = tcp.clone();
    (proxy, tcp)
}

#[test]
fn node_behind_the_proxy_attests_fetches_and_seals_and_survives_a_proxy_restart() {
    let work = tempfile::tempdir().unwrap();
    let w = |p: &str| work.path().join(p).to_str().unwrap().to_owned();
    make_models(
        &work.path().join("models"),
        &["mlp.onnx", "tiny_identity_string.onnx"],
    );
    let mut blocks = HashMap::new();
    let mlp = import(&work.path().join("models/mlp.onnx"), &mut blocks);
    let strings = import(
        &work.path().join("models/tiny_identity_string.onnx"),
        &mut blocks,
    );
    let (gateway, gateway_log) = raw_gateway(blocks);

    // The node has no TCP at all: its API and its gateway are sockets, as in an enclave.
    let node_sock = w("node.sock");
    let gw_sock = w("gw.sock");
    let mut cmd = attesta();
    cmd.args([
        "node",
        "--listen",
        &format!("unix:{node_sock}"),
        "--tee",
        "dev",
        "--data-dir",
        &w("data"),
        "--store",
        &w("store"),
        "--gateway",
        &format!("unix:{gw_sock}"),
    ]);
    let (mut node, lines) = spawn_reporting(cmd, "attesta node", 1);
    node.addr = node_sock.clone();
    assert_eq!(lines[0], format!("listening on unix:{node_sock}"));
    let (proxy, proxy_addr) = start_proxy(&node_sock, &gw_sock, &gateway);
    let (relay, seen) = logging_relay(proxy_addr.clone());

    let health = http(&relay, "GET", "/healthz", b"").json();
    assert_eq!(health["tee"], "dev (insecure)");
    let keyset = health["keyset_digest"].as_str().unwrap().to_owned();

    // nitriding's public path, and verification of what it returned.
    let nonce = "00112233445566778899aabbccddeeff00112233";
    let r = http(
        &relay,
        "GET",
        &format!("/enclave/attestation?nonce={nonce}"),
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(r.body.ends_with(b"\n"));
    std::fs::write(w("doc.b64"), &r.body).unwrap();
    let registry = w("registry.toml");
    std::fs::write(&registry, run_ok(&["measure"])).unwrap();
    let root = w("data/dev-root.pem");
    let (code, out, _) = run_status(&[
        "verify",
        "evidence",
        &w("doc.b64"),
        "--nonce",
        nonce,
        "--dev-root",
        &root,
        "--measurements",
        &registry,
    ]);
    assert_eq!(code, 0, "{out}");
    let v1 = http(
        &relay,
        "GET",
        &format!("/v1/attestation?nonce={}", "ab".repeat(32)),
        b"",
    );
    assert_eq!(v1.status, 200);
    assert_eq!(v1.json()["keyset_digest"], keyset.as_str());

    // /infer on a model the node does not have: fetched through the outbound route.
    let mlp_inputs = json!({"numbers": [{"name": "x", "shape": [1, 784], "values": (0..784).map(|i| json!({"value": i % 7, "decimals": 1})).collect::<Vec<_>>()}]});
    let plain = http(
        &relay,
        "POST",
        "/infer",
        json!({"ipfs_hash": mlp, "model_inputs": mlp_inputs.to_string()})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(
        plain.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&plain.body)
    );
    assert_eq!(plain.json()["output"][0]["shape"], json!([1, 10]));
    let requested = gateway_log.lock().unwrap().clone();
    assert!(
        requested
            .iter()
            .any(|p| p.starts_with(&format!("/ipfs/{mlp}")) && p.contains("format=raw")),
        "the model came through the outbound route: {requested:?}"
    );

    // Control: a plaintext /infer carries its input past the relay for all to see...
    let marker = "PLAINTEXT-VISIBLE-51c2";
    let string_inputs =
        json!({"strings": [{"name": "x", "shape": [1], "values": [marker]}]}).to_string();
    let r = http(
        &relay,
        "POST",
        "/infer",
        json!({"ipfs_hash": strings, "model_inputs": string_inputs})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert!(contains(&seen.lock().unwrap(), marker.as_bytes()));

    // ...a sealed one does not, although it went through the same relay and proxy.
    let sealed_infer = |node_url: &str, secret: &str| {
        let inputs = w("inputs.json");
        std::fs::write(
            &inputs,
            json!({"strings": [{"name": "x", "shape": [1], "values": [secret]}]}).to_string(),
        )
        .unwrap();
        let (code, out, err) = run_status(&[
            "infer",
            "--node",
            node_url,
            "--model",
            &strings,
            "--inputs",
            &inputs,
            "--dev-root",
            &root,
            "--measurements",
            &registry,
        ]);
        assert_eq!(code, 0, "{out}\n{err}");
        let answer: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(answer["output"][0]["result"], json!([secret]));
    };
    let secret = "SEALED-SECRET-INPUT-0d9e4b";
    sealed_infer(&format!("http://{relay}"), secret);
    let log = seen.lock().unwrap().clone();
    assert!(contains(&log, b"POST /v1/infer "), "the relay carried it");
    assert!(
        !contains(&log, secret.as_bytes()),
        "the host side saw the sealed plaintext"
    );

    // Restarting the proxy drops connections, not the enclave's state.
    drop(proxy);
    let (_proxy2, proxy_addr2) = start_proxy(&node_sock, &gw_sock, &gateway);
    assert!(
        node.child.try_wait().unwrap().is_none(),
        "the node outlives its proxy"
    );
    let health2 = http(&proxy_addr2, "GET", "/healthz", b"").json();
    assert_eq!(
        health2["keyset_digest"], keyset,
        "same key set after a proxy restart"
    );
    sealed_infer(&format!("http://{proxy_addr2}"), "after-restart");

    // `models fetch` takes the same socket gateways (e.g. to preload a store in the enclave).
    let gw = format!("unix:{gw_sock}");
    let fetched = run_ok(&[
        "models",
        "fetch",
        &mlp,
        "--gateway",
        &gw,
        "--store",
        &w("store2"),
    ]);
    assert_eq!(fetched.trim(), mlp);
}
